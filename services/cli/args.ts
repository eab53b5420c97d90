import { parseArgs, type ParseArgsConfig } from "node:util";
import { UsageError } from "../../shared/errors.ts";

type Options = NonNullable<ParseArgsConfig["options"]>;

/** node:util's parseArgs, with its errors turned into a UsageError naming the command. */
export function parse<O extends Options>(command: string, argv: string[], options: O) {
  try {
    return parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError(`${command}: ${(err as Error).message}. See \`switchyard ${command} --help\`.`);
  }
}

export function intFlag(command: string, name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new UsageError(`${command}: --${name} must be a whole number, got "${value}"`);
  return n;
}

/** Resolves when the process is asked to stop (SIGINT or SIGTERM). */
export function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (sig: NodeJS.Signals) => {
      process.off("SIGINT", on);
      process.off("SIGTERM", on);
      resolve(sig);
    };
    process.on("SIGINT", on);
    process.on("SIGTERM", on);
  });
}

/**
 * An AbortSignal that fires on the first SIGINT or SIGTERM, for a command that must clean up
 * before it ends (stop the stack, remove the demo's temporary NATS store). A second signal
 * while that runs exits at once (130), as an impatient Ctrl-C should; exit hooks still run,
 * so a local nats-server is killed rather than orphaned. `dispose` removes the handlers.
 */
export function interruption(): { readonly signal: AbortSignal; dispose(): void } {
  const ac = new AbortController();
  const on = () => {
    if (ac.signal.aborted) process.exit(130);
    ac.abort();
  };
  process.on("SIGINT", on);
  process.on("SIGTERM", on);
  return {
    signal: ac.signal,
    dispose() {
      process.off("SIGINT", on);
      process.off("SIGTERM", on);
    },
  };
}

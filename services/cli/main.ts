/**
 * `switchyard`: one binary for every service and tool. Errors from Switchyard's own family
 * print as one clear message and exit 1 (2 for usage); anything else is a bug and prints
 * its stack.
 */
import { SwitchyardError } from "../../shared/errors.ts";
import { packageVersion } from "../../shared/package-root.ts";
import { CATALOG } from "./commands/catalog.ts";

function help(): string {
  const width = Math.max(...CATALOG.map((c) => c.name.length));
  return `switchyard — route LLM completion jobs over NATS JetStream to the cheapest healthy model

Usage: switchyard <command> [options]     (switchyard <command> --help for details)
       switchyard --version

Commands:
${CATALOG.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`).join("\n")}

Environment: NATS_URL (default nats://127.0.0.1:4222), SWITCHYARD_CONFIG (default: the
embedded config/switchyard.yaml), LOG_LEVEL (info). A secured NATS: NATS_CREDS, NATS_NKEY,
NATS_USER and NATS_PASSWORD, or NATS_TOKEN; TLS: a tls:// URL, NATS_CA, NATS_CERT, NATS_KEY
(or the config's nats: section).
`;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "help" || name === "--help" || name === "-h") {
    process.stdout.write(help());
    return 0;
  }
  if (name === "--version" || name === "-v" || name === "version") {
    process.stdout.write(`${packageVersion()}\n`);
    return 0;
  }
  const entry = CATALOG.find((c) => c.name === name);
  if (!entry) {
    process.stderr.write(`switchyard: unknown command "${name}"\n\n${help()}`);
    return 2;
  }
  const command = await entry.load();
  if (rest.includes("--help") || rest.includes("-h")) {
    process.stdout.write(`${command.usage}\n`);
    return 0;
  }
  return command.run(rest);
}

/**
 * A reader that went away (`switchyard dlq list | head`) ends the command the way SIGPIPE ends
 * a Unix tool: quietly, status 0. Node ignores SIGPIPE, so without this the next write would
 * throw EPIPE as an unhandled error. A command that must clean up first (up, tail, router…)
 * listens for SIGTERM, and is stopped the same way; anything else exits at once.
 */
let outputClosed = false;
const onOutputError = (err: NodeJS.ErrnoException) => {
  if (outputClosed) return;
  if (err.code !== "EPIPE") throw err;
  outputClosed = true;
  if (process.listenerCount("SIGTERM") === 0) process.exit(0);
  process.emit("SIGTERM", "SIGTERM");
  // Should the command not wind up on its own, the pipe still ends it.
  setTimeout(() => process.exit(0), 10_000).unref();
};
process.stdout.on("error", onOutputError);
process.stderr.on("error", onOutputError);

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = outputClosed ? 0 : code;
  },
  (err: unknown) => {
    if (outputClosed) {
      // Cut short by the closed pipe: nothing went wrong that anyone is reading about.
      process.exitCode = 0;
    } else if (err instanceof SwitchyardError) {
      process.stderr.write(`switchyard: ${err.message}\n`);
      process.exitCode = err.kind === "usage" ? 2 : 1;
    } else {
      process.stderr.write(`switchyard: unexpected error: ${(err as Error)?.stack ?? String(err)}\n`);
      process.exitCode = 1;
    }
  },
);

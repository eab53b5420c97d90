import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const BIN = fileURLToPath(new URL("../../bin/switchyard.js", import.meta.url));

export interface CliProcess {
  readonly child: ChildProcess;
  /** Resolves to the exit code (or the signal's name) once the process has ended. */
  readonly exited: Promise<number | string>;
  output(): string;
}

/** Runs `switchyard <args>` as its own process, the way a user or an orchestrator would. */
export function spawnCli(args: string[], env: Record<string, string>): CliProcess {
  const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, LOG_LEVEL: "warn", ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout?.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | string>((resolve) => child.once("exit", (code, signal) => resolve(code ?? signal ?? -1)));
  return { child, exited, output: () => out };
}

/** nats-server processes whose command line names a path under `dir` (Linux /proc). */
export function natsServersUnder(dir: string): number[] {
  if (!existsSync("/proc")) return [];
  return readdirSync("/proc")
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        const cmd = readFileSync(`/proc/${p}/cmdline`, "utf8");
        return cmd.includes("nats-server") && cmd.includes(dir);
      } catch {
        return false;
      }
    })
    .map(Number);
}

/**
 * Resolves with the match once the process's output shows `pattern` (use its groups for what
 * was printed); rejects with the whole output if the process exits first or the time runs out.
 */
export async function printed(p: Pick<CliProcess, "output" | "exited">, pattern: RegExp, timeoutMs = 30_000): Promise<RegExpExecArray> {
  const deadline = Date.now() + timeoutMs;
  let code: number | string | undefined;
  void p.exited.then((c) => (code = c));
  for (;;) {
    const m = pattern.exec(p.output());
    if (m) return m;
    if (code !== undefined || Date.now() > deadline) throw new Error(`${code === undefined ? "timed out" : `exited ${code}`} before printing ${pattern}:\n${p.output()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * The bench's child processes (sim-provider, router workers, limit drivers) and what it
 * reads about them from /proc: CPU seconds and resident memory, per process, so every figure
 * is attributable to the process that spent it.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const BIN = `${ROOT}bin/switchyard.js`;
/** Clock ticks per second for /proc/<pid>/stat; 100 on every Linux this runs on (`getconf CLK_TCK`). */
const CLK_TCK = 100;

export interface Child {
  readonly pid: number;
  readonly label: string;
  /** Resolves with the first output line matching, rejects when the process exits first or after `timeoutMs`. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** Everything the process printed so far (the last 64 KiB), for error messages. */
  output(): string;
  readonly exited: Promise<number | string>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
  stop(graceMs?: number): Promise<void>;
}

const running = new Set<ChildProcess>();
// A crash or Ctrl-C of the bench must not leave servers behind; only our own children, by pid.
process.once("exit", () => {
  for (const c of running) c.kill("SIGKILL");
});

/** `switchyard <args>` as its own process, as a user or an orchestrator runs it; `nodeArgs` such as `--cpu-prof` go to node. */
export function spawnCli(label: string, args: string[], env: Record<string, string>, nodeArgs: string[] = []): Child {
  return spawnNode(label, [...nodeArgs, BIN, ...args], env);
}

/** A bench worker script (TypeScript, through tsx's loader) as its own process. */
export function spawnWorker(label: string, script: string, env: Record<string, string>, nodeArgs: string[] = []): Child {
  return spawnNode(label, [...nodeArgs, "--import", "tsx", fileURLToPath(new URL(`../workers/${script}`, import.meta.url))], env);
}

/** `node <nodeArgs> <script> <args>`: e.g. another source tree's bin/switchyard.js, for A/B runs (bench/compare.ts). */
export function spawnScript(label: string, script: string, args: string[], env: Record<string, string>, nodeArgs: string[] = []): Child {
  return spawnNode(label, [...nodeArgs, script, ...args], env);
}

function spawnNode(label: string, args: string[], env: Record<string, string>): Child {
  const child = spawn(process.execPath, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  running.add(child);
  let out = "";
  let partial = "";
  const watchers = new Set<(line: string) => void>();
  const onData = (d: Buffer) => {
    const text = d.toString();
    out = (out + text).slice(-65_536);
    const lines = (partial + text).split("\n");
    partial = lines.pop() ?? "";
    for (const line of lines) for (const w of watchers) w(line);
  };
  child.stdout!.on("data", onData);
  child.stderr!.on("data", onData);
  const exited = new Promise<number | string>((resolve) =>
    child.once("exit", (code, signal) => {
      running.delete(child);
      resolve(code ?? signal ?? -1);
    }),
  );
  return {
    pid: child.pid!,
    label,
    output: () => out,
    exited,
    waitFor(pattern, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const done = (fn: () => void) => {
          watchers.delete(watch);
          clearTimeout(timer);
          fn();
        };
        const watch = (line: string) => {
          if (pattern.test(line)) done(() => resolve(line));
        };
        const timer = setTimeout(() => done(() => reject(new Error(`${label}: no ${pattern} within ${timeoutMs} ms:\n${out}`))), timeoutMs);
        watchers.add(watch);
        void exited.then((code) => done(() => reject(new Error(`${label} exited (${code}) before ${pattern}:\n${out}`))));
      });
    },
    async stop(graceMs = 15_000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** The fields of /proc/<pid>/stat after the command name (which may hold spaces): [0] is the state, the 3rd field. */
function statFields(pid: number | string): string[] {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
}

/** User plus system CPU milliseconds the process has used so far. */
export function cpuMs(pid: number): number {
  const f = statFields(pid);
  // utime and stime are the 14th and 15th fields.
  return ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK;
}

/** Resident set size in KiB. */
export function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) : NaN;
}

/** CPU ms the machine's processes have spent (user, nice, system) since boot, all cores, and the hypervisor's steal. */
export function machineCpuMs(): { busy: number; steal: number } {
  const f = readFileSync("/proc/stat", "utf8").slice(0, 200).split("\n")[0]!.split(/\s+/).slice(1).map(Number);
  return { busy: ((f[0]! + f[1]! + f[2]!) * 1000) / CLK_TCK, steal: ((f[7] ?? 0) * 1000) / CLK_TCK };
}

/**
 * CPU ms so far of this process with its descendants (ended ones included) and of kernel
 * threads (softirq and the like, which loopback traffic from any process keeps busy); the
 * machine's busy time minus both is what other processes used.
 */
export function treeAndKernelCpuMs(): { own: number; kernel: number } {
  const stats = new Map<number, { ppid: number; ms: number }>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const f = statFields(entry);
      // ppid is the 4th field; utime, stime, cutime, cstime the 14th to 17th.
      stats.set(Number(entry), { ppid: Number(f[1]), ms: ((Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) * 1000) / CLK_TCK });
    } catch {
      // The process ended while we listed; its parent's cutime has it.
    }
  }
  let own = 0;
  let kernel = 0;
  for (const [pid, s] of stats) {
    if (pid === 2 || s.ppid === 2) {
      kernel += s.ms;
      continue;
    }
    for (let p: number | undefined = pid; p !== undefined && p > 1; p = stats.get(p)?.ppid) {
      if (p === process.pid) {
        own += s.ms;
        break;
      }
    }
  }
  return { own, kernel };
}

/**
 * Ctrl-C on the demo (`npm start`): the run stops early, the stack is stopped in order, and the
 * local nats-server's temporary store (a mkdtemp folder, `switchyard-nats-*`) is removed — as
 * it is after a normal run. The demo runs with its own TMPDIR, so whatever it leaves is seen.
 */
import { spawn } from "node:child_process";
import { readdirSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { natsServersUnder } from "./harness/processes.ts";

const BIN = fileURLToPath(new URL("../bin/switchyard.js", import.meta.url));
const dirs: string[] = [];

afterEach(async () => {
  for (const d of dirs.splice(0)) {
    // A failed run may have left its nats-server behind: that is the bug, not the next test's problem.
    for (const pid of natsServersUnder(d)) process.kill(pid, "SIGKILL");
    await rm(d, { recursive: true, force: true });
  }
});

/** Starts a small, slow demo in its own process group; resolves once it is publishing. */
async function startDemo() {
  const tmp = await mkdtemp(join(tmpdir(), "switchyard-demo-test-"));
  dirs.push(tmp);
  const env: NodeJS.ProcessEnv = { ...process.env, TMPDIR: tmp, LOG_LEVEL: "error" };
  delete env.NATS_URL; // the demo must start (and clean up) its own nats-server
  const child = spawn(process.execPath, [BIN, "demo", "--jobs-per-task", "100", "--rate", "20"], { env, stdio: ["ignore", "pipe", "pipe"], detached: true });
  let output = "";
  child.stdout.on("data", (d: Buffer) => (output += d.toString()));
  child.stderr.on("data", (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | string>((resolve) => child.once("exit", (code, signal) => resolve(code ?? signal ?? -1)));
  const deadline = Date.now() + 30_000;
  while (!/^published\s/m.test(output)) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`the demo did not start publishing:\n${output}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const store = () => readdirSync(tmp).filter((f) => f.startsWith("switchyard-nats"));
  expect(store().length, "the demo's nats-server store and run folders exist while it runs").toBeGreaterThan(0);
  return { child, exited, output: () => output, store, tmp };
}


async function endsWithin<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} did not end within ${ms} ms`)), ms)));
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

describe("interrupting the demo", () => {
  it("Ctrl-C at a terminal (SIGINT to the whole process group) stops it and removes the temporary NATS store", async () => {
    const demo = await startDemo();
    try {
      process.kill(-demo.child.pid!, "SIGINT");
      expect(await endsWithin(demo.exited, 30_000, "the interrupted demo")).toBe(130);
    } finally {
      if (demo.child.exitCode === null) process.kill(-demo.child.pid!, "SIGKILL");
    }
    expect(demo.output()).toContain("interrupted");
    expect(demo.output()).not.toMatch(/unexpected error|\n\s+at /);
    expect(demo.store()).toEqual([]);
    expect(natsServersUnder(demo.tmp)).toEqual([]);
  });

  it("SIGTERM to the process alone (a supervisor stopping it) does the same", async () => {
    const demo = await startDemo();
    try {
      demo.child.kill("SIGTERM");
      expect(await endsWithin(demo.exited, 30_000, "the terminated demo")).toBe(130);
    } finally {
      if (demo.child.exitCode === null) process.kill(-demo.child.pid!, "SIGKILL");
    }
    expect(demo.store()).toEqual([]);
    expect(natsServersUnder(demo.tmp)).toEqual([]);
  });

  it("a second Ctrl-C quits at once, and still leaves no nats-server or store behind", async () => {
    const demo = await startDemo();
    try {
      process.kill(-demo.child.pid!, "SIGINT");
      await new Promise((r) => setTimeout(r, 50));
      process.kill(demo.child.pid!, "SIGINT");
      expect(await endsWithin(demo.exited, 10_000, "the twice-interrupted demo")).toBe(130);
    } finally {
      if (demo.child.exitCode === null) process.kill(-demo.child.pid!, "SIGKILL");
    }
    expect(natsServersUnder(demo.tmp)).toEqual([]);
    expect(demo.store()).toEqual([]);
  });
});

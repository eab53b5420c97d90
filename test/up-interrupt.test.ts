/**
 * Ctrl-C on `switchyard up` as a terminal sends it: SIGINT to the whole foreground process
 * group. The local nats-server runs in its own group, so it is not killed under the services;
 * `up` stops them in order and the server last, and exits 0 well within 15 s, leaving no
 * nats-server behind.
 */
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { natsServersUnder } from "./harness/processes.ts";

const BIN = fileURLToPath(new URL("../bin/switchyard.js", import.meta.url));
let dir = "";

afterAll(async () => {
  if (dir) for (const pid of natsServersUnder(dir)) process.kill(pid, "SIGKILL");
  await rm(dir, { recursive: true, force: true });
});

describe("Ctrl-C on switchyard up", () => {
  it("stops every service, then its nats-server, and exits 0 within 15 s", async () => {
    dir = await mkdtemp(join(tmpdir(), "switchyard-up-test-"));
    const env: NodeJS.ProcessEnv = { ...process.env, TMPDIR: dir, LOG_LEVEL: "info", SWITCHYARD_DEV_API_KEY: "sk-up-test" };
    delete env.NATS_URL;
    const child = spawn(process.execPath, [BIN, "up", "--data", join(dir, "data"), "--nats-port", "0", "--sim-port", "0", "--gateway-listen", "127.0.0.1:0", "--workers", "2"], { env, stdio: ["ignore", "pipe", "pipe"], detached: true });
    let output = "";
    child.stdout.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr.on("data", (d: Buffer) => (output += d.toString()));
    const exited = new Promise<number | string>((resolve) => child.once("exit", (code, signal) => resolve(code ?? signal ?? -1)));
    const deadline = Date.now() + 30_000;
    while (!output.includes("Switchyard is up")) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`switchyard up did not start:\n${output}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(natsServersUnder(dir)).toHaveLength(1);

    const t0 = Date.now();
    process.kill(-child.pid!, "SIGINT");
    expect(await exited).toBe(0);
    expect(Date.now() - t0).toBeLessThan(15_000);
    expect(natsServersUnder(dir)).toEqual([]);
    // The services stopped while NATS was still there: none of them logged a lost connection.
    expect(output).not.toMatch(/Disconnect|CONNECTION_REFUSED|ECONNREFUSED/i);
  }, 60_000);
});

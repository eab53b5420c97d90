/**
 * `switchyard … | head`: a reader that stops after one line must end the command quietly with
 * status 0, as SIGPIPE ends a Unix tool — not with an unhandled EPIPE and its stack trace. Both
 * kinds of command: one that exits when done (`dlq list`) and one that runs until stopped
 * (`tail`). Each prints far more than a pipe buffer holds, so it is still writing when the
 * reader goes.
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_CONFIG_PATH, loadConfig } from "../shared/config/load.ts";
import { provision } from "../shared/nats/provision.ts";
import { startTestNats, type TestNats } from "./harness/nats.ts";

const BIN = fileURLToPath(new URL("../bin/switchyard.js", import.meta.url));
const COUNT = 3000;

let nats: TestNats;

beforeAll(async () => {
  nats = await startTestNats({ ownServer: true });
  await provision(nats.jsm, loadConfig(DEFAULT_CONFIG_PATH, {}));
  const at = new Date().toISOString();
  const padding = "x".repeat(200);
  const acks: Promise<unknown>[] = [];
  for (let i = 0; i < COUNT; i++) {
    const id = `pipe-${i}`;
    acks.push(nats.js.publish("dlq.moderation", JSON.stringify({ id, task: "moderation", status: "failed", reason: "no_route", error: padding, attempts: [], job: {}, metadata: {}, failed_at: at }), { msgID: id }));
    acks.push(nats.js.publish("results.moderation", JSON.stringify({ id, task: "moderation", status: "succeeded", padding }), { msgID: id }));
  }
  await Promise.all(acks);
});

afterAll(async () => {
  await nats?.close();
});

/** Runs the CLI with stdout read until its first line, then closed, as `| head -1` does. */
async function headOne(args: string[]): Promise<{ code: number | string; first: string; stderr: string }> {
  const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, NATS_URL: nats.url, LOG_LEVEL: "warn" }, stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | string>((resolve) => child.once("exit", (code, signal) => resolve(code ?? signal ?? -1)));
  let buffered = "";
  const first = await new Promise<string>((resolve) => {
    child.stdout.on("data", (d: Buffer) => {
      buffered += d.toString();
      const nl = buffered.indexOf("\n");
      if (nl < 0) return;
      child.stdout.destroy();
      resolve(buffered.slice(0, nl));
    });
    child.stdout.once("close", () => resolve(buffered));
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
  const code = await exited;
  clearTimeout(timer);
  return { code, first, stderr };
}

describe("a closed stdout (| head)", () => {
  it("ends `dlq list --json` quietly with status 0", async () => {
    const r = await headOne(["dlq", "list", "--json", "--limit", String(COUNT)]);
    expect(JSON.parse(r.first)).toMatchObject({ id: "pipe-0" });
    expect(r.stderr).not.toMatch(/EPIPE|Error|\n\s+at /);
    expect(r.code).toBe(0);
  });

  it("stops `tail --all`, which runs until signalled, quietly with status 0", async () => {
    const r = await headOne(["tail", "--results", "--all"]);
    expect(JSON.parse(r.first)).toMatchObject({ id: "pipe-0" });
    expect(r.stderr).not.toMatch(/EPIPE|Error|\n\s+at /);
    expect(r.code).toBe(0);
  });
});

import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DeadLetter, Result } from "../shared/contract/job.ts";
import { STREAMS } from "../shared/contract/subjects.ts";
import { jobsSettled, readAll } from "./harness/nats.ts";
import { startStack, type TestStack } from "./harness/stack.ts";

const run = promisify(execFile);
const SCRIPT = fileURLToPath(new URL("./fixtures/raw_producer.py", import.meta.url));

let stack: TestStack;
beforeAll(async () => {
  stack = await startStack({ routers: 1 });
});
afterAll(async () => {
  await stack?.close();
});

describe("a producer written from the README alone", () => {
  it("Python over the raw NATS protocol gets one result per job and a dead letter for garbage", async () => {
    const { hostname, port } = new URL(stack.nats.url.replace("nats://", "http://"));
    const { stdout } = await run("python3", [SCRIPT, hostname, port, "moderation", "20", "py"], { timeout: 30_000 });
    const lines = stdout.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    const events = lines.filter((l) => "id" in l);
    expect(lines.at(-1)).toEqual({ acks: 20 });
    expect(events).toHaveLength(20);
    expect(new Set(events.map((e) => e.id)).size).toBe(20);
    expect(events.filter((e) => e.subject === "results.moderation" && e.status === "succeeded")).toHaveLength(19);
    expect(events.filter((e) => e.subject === "dlq.moderation")).toEqual([{ subject: "dlq.moderation", id: "py-19", status: "failed", reason: "invalid_job" }]);
    // The script stops at its twentieth event: a second outcome for a job, stored later, is looked for in the streams.
    await jobsSettled(stack.nats.jsm);
    const stored = [...(await readAll<Result>(stack.nats.js, STREAMS.results)), ...(await readAll<DeadLetter>(stack.nats.js, STREAMS.dlq))].map((o) => o.id).filter((id) => id.startsWith("py-"));
    expect(stored.sort()).toEqual(events.map((e) => e.id as string).sort());
  });
});

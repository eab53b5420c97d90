/**
 * A clean stop and a safe reload, on real processes and a real nats-server: a stop past the
 * grace period cuts the calls off and publishes nothing for their jobs (the next worker serves
 * them, once each); a worker whose NATS is gone for good still stops in time; a reload under
 * 200 running calls cuts none of them off.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import type { Result } from "../shared/contract/job.ts";
import { ROUTER_DURABLE, STREAMS } from "../shared/contract/subjects.ts";
import { parseConfig } from "../shared/config/load.ts";
import { readStream } from "./harness/nats.ts";
import { spawnCli } from "./harness/processes.ts";
import { moderationJob, startStack, testConfigYaml, type TestStack } from "./harness/stack.ts";

const GRACE_MS = 1_000;
let stack: TestStack;
let env: Record<string, string>;

beforeAll(async () => {
  stack = await startStack({ routers: 0, ownServer: true, router: { shutdown_grace: `${GRACE_MS}ms`, ack_wait: "30s" } });
  const dir = mkdtempSync(join(tmpdir(), "sy-stop-"));
  writeFileSync(join(dir, "switchyard.yaml"), stack.configYaml);
  env = { NATS_URL: stack.nats.url, SWITCHYARD_CONFIG: join(dir, "switchyard.yaml") };
}, 30_000);

afterAll(async () => {
  await stack?.close();
}, 30_000);

const stored = async (stream: string) => (await stack.nats.jsm.streams.info(stream)).state.messages;

describe("a reload under load", () => {
  it("reloading twice while 192 calls are running cuts none of them off, nor the calls their jobs make after it", async () => {
    for (const [p, m] of [["budget", "budget-lite"], ["swift", "swift-mini"], ["premium", "premium-large"]] as const) stack.sim.control(p, m, { latency_ms: { min: 800, max: 800 } });
    // The cheapest model's answers all fail the check, so every job's second call (to swift)
    // starts after the reloads, on the setup the job leased before them.
    stack.sim.control("budget", "budget-lite", { latency_ms: { min: 800, max: 800 }, disobey_rate: 1 });
    const running = await stack.addRouter();
    const before = await stored(STREAMS.results);
    await stack.publishJobs("moderation", Array.from({ length: 200 }, (_, i) => moderationJob(i, { id: `reload-${i}` })));
    // The first calls are running (the worker holds 192 of them: its batch lane's share of 256 slots).
    await vi.waitFor(() => expect(stack.sim.stats().models["budget/budget-lite"]?.requests).toBeGreaterThanOrEqual(150), { timeout: 10_000 });
    const next = parseConfig(testConfigYaml(stack.simUrl, { shutdown_grace: `${GRACE_MS}ms` }), "reloaded.yaml", {});
    running.router.reload(next);
    running.router.reload(next);
    const results = (await readStream<Result>(stack.nats.js, STREAMS.results, { count: before + 200, timeoutMs: 15_000 })).filter((r) => r.id.startsWith("reload-"));
    expect(results).toHaveLength(200);
    const attempts = results.flatMap((r) => r.attempts);
    expect(attempts.filter((a) => a.outcome === "network_error")).toEqual([]);
    expect(results.every((r) => r.provider === "swift" && r.attempts.map((a) => a.outcome).join() === "invalid_output,ok")).toBe(true);
    await running.stop();
    stack.sim.reset();
  }, 40_000);
});

describe("a clean stop", () => {
  it("past the grace period the calls are cut off, nothing is published for their jobs, and the next worker serves each once", async () => {
    // Every provider takes 20 s: no call can finish within the grace period.
    for (const [p, m] of [["budget", "budget-lite"], ["swift", "swift-mini"], ["premium", "premium-large"]] as const) stack.sim.control(p, m, { latency_ms: { min: 20_000, max: 20_000 } });
    const [results0, dlq0] = [await stored(STREAMS.results), await stored(STREAMS.dlq)];
    await stack.publishJobs("moderation", Array.from({ length: 20 }, (_, i) => moderationJob(i, { id: `slow-${i}` })));
    const first = spawnCli(["router"], env);
    await vi.waitFor(() => expect(Object.values(stack.sim.stats().models).reduce((n, m) => n + m.requests, 0)).toBe(20), { timeout: 10_000 });

    const t0 = Date.now();
    first.child.kill("SIGTERM");
    expect(await first.exited).toBe(0);
    expect(Date.now() - t0).toBeLessThan(GRACE_MS + 1_000);
    expect(await stored(STREAMS.results)).toBe(results0);
    expect(await stored(STREAMS.dlq)).toBe(dlq0);

    // The jobs were handed back at once: a fresh worker with fast providers serves each one.
    stack.sim.reset();
    const second = await stack.addRouter();
    const results = (await readStream<Result>(stack.nats.js, STREAMS.results, { count: results0 + 20, timeoutMs: 15_000 })).filter((r) => r.id.startsWith("slow-"));
    expect(new Set(results.map((r) => r.id)).size).toBe(20);
    await second.stop();
    // The first worker has exited, so nothing of its cut-off calls can arrive later: one result each.
    expect(await stored(STREAMS.results)).toBe(results0 + 20);
  }, 40_000);

  it("a worker whose NATS is gone for good still stops within its grace period", async () => {
    const router = spawnCli(["router"], env);
    // Consuming: its pull requests are waiting on the consumer.
    await vi.waitFor(async () => expect((await stack.nats.jsm.consumers.info(STREAMS.jobs, ROUTER_DURABLE)).num_waiting).toBeGreaterThan(0), { timeout: 10_000 });
    await stack.nats.server!.kill();
    // Long enough for the worker to have lost its connection and started reconnecting.
    await sleep(300);
    const t0 = Date.now();
    router.child.kill("SIGTERM");
    const code = await router.exited;
    expect(Date.now() - t0).toBeLessThan(GRACE_MS + 1_000);
    expect(code).toBe(0);
  }, 30_000);
});


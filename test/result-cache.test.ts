/**
 * The result cache (README, "Result cache"): a task with `cache: {ttl}` serves a job identical
 * to one served within the TTL from a KV entry, with no provider call; identical jobs at once
 * in one worker make one call; a config change or the TTL's end makes the next one call.
 * A real stack (nats-server, sim-provider, a router worker); the router's clock is moved
 * forward past the TTL instead of waiting it out.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { parse, stringify } from "yaml";
import { canonicalJson, cacheKey, policyVersion } from "../shared/cache/result-cache.ts";
import { parseConfig } from "../shared/config/load.ts";
import type { Config } from "../shared/config/schema.ts";
import { ResultSchema, type Result } from "../shared/contract/job.ts";
import { STREAMS } from "../shared/contract/subjects.ts";
import { createLogger } from "../shared/log.ts";
import { startRouter, type RunningRouter } from "../services/router/main.ts";
import { readAll } from "./harness/nats.ts";
import { startStack, testConfigYaml, type TestStack } from "./harness/stack.ts";

const HOUR = 3_600_000;

/** The test config with `cache` on the moderation task, and `edit` applied to that task. */
function cachedYaml(simUrl: string, edit: (task: Record<string, unknown>) => void = () => {}): string {
  const cfg = parse(testConfigYaml(simUrl)) as { tasks: Record<string, Record<string, unknown>> };
  cfg.tasks.moderation!.cache = { ttl: "1h" };
  edit(cfg.tasks.moderation!);
  return stringify(cfg);
}

/** Job `i` of a night: distinct text per `i`, the id naming the night. */
const job = (night: string, i: number, text = `message number ${i}`) => ({
  id: `${night}-${i}`,
  request: { messages: [{ role: "system", content: "You are a content moderation classifier. Answer with JSON." }, { role: "user", content: text }], response_format: { type: "json_object" } },
  metadata: { night, i },
});

describe("cache keys", () => {
  it("are the same for the same request in any key order, whatever the id, metadata or deadline", () => {
    expect(canonicalJson({ b: 1, a: { d: [1, { y: 2, x: 1 }], c: null } })).toBe('{"a":{"c":null,"d":[1,{"x":1,"y":2}]},"b":1}');
    const a = { task: "moderation", request: { model: "auto", messages: [{ role: "user" as const, content: "hi" }], temperature: 0 } };
    const b = { ...a, id: "other", metadata: { x: 1 }, deadline: "2030-01-01T00:00:00Z", request: { temperature: 0, messages: [{ content: "hi", role: "user" as const }], model: "auto" } };
    expect(cacheKey(b, "v1")).toBe(cacheKey(a, "v1"));
    expect(cacheKey(a, "v1")).toMatch(/^moderation\.[0-9a-f]{64}$/);
    expect(cacheKey({ ...a, request: { ...a.request, temperature: 1 } }, "v1")).not.toBe(cacheKey(a, "v1"));
    expect(cacheKey({ ...a, routing: { allow_providers: ["swift"] } }, "v1")).not.toBe(cacheKey(a, "v1"));
    expect(cacheKey(a, "v2")).not.toBe(cacheKey(a, "v1"));
  });

  it("change with the task's config, but not with its TTL", () => {
    const cfg = parseConfig(cachedYaml("http://127.0.0.1:1"), "c.yaml", {});
    const task = cfg.tasks.moderation!;
    expect(policyVersion({ ...task, cache: { ttl: 2 * HOUR } })).toBe(policyVersion(task));
    expect(policyVersion({ ...task, expected_completion_tokens: 33 })).not.toBe(policyVersion(task));
  });

  it("a TTL of 0 or above 30d is a config error at its path", () => {
    for (const ttl of ["0s", "31d"]) {
      const text = cachedYaml("http://127.0.0.1:1", (t) => (t.cache = { ttl }));
      expect(() => parseConfig(text, "c.yaml", {})).toThrow(/tasks\.moderation\.cache\.ttl/);
    }
  });
});

describe("a task with a result cache", () => {
  let stack: TestStack;
  let router: RunningRouter;
  // The router's clock runs this far ahead of the real one: moved forward past the TTL.
  let ahead = 0;

  beforeAll(async () => {
    stack = await startStack({ routers: 0, configYaml: (simUrl) => cachedYaml(simUrl) });
    router = await startRouter({ natsUrl: stack.nats.url, config: stack.config, logger: createLogger("test-router", process.env.LOG_LEVEL ?? "silent"), clock: () => Date.now() + ahead });
  }, 30_000);

  afterAll(async () => {
    await router?.stop();
    await stack?.close();
  });

  const calls = () => Object.values(stack.sim.stats().models).reduce((n, m) => n + m.requests, 0);

  /** Publishes the jobs and returns their results by id, once every one is on RESULTS. */
  async function run(jobs: ReturnType<typeof job>[]): Promise<Map<string, Result>> {
    await stack.publishJobs("moderation", jobs);
    const ids = new Set(jobs.map((j) => j.id));
    let got = new Map<string, Result>();
    await vi.waitFor(
      async () => {
        const all = await readAll<Result>(stack.nats.js, STREAMS.results, { subject: "results.moderation" });
        got = new Map(all.filter((r) => ids.has(r.id)).map((r) => [r.id, r]));
        expect(got.size).toBe(ids.size);
      },
      { timeout: 30_000, interval: 100 },
    );
    for (const r of got.values()) ResultSchema.parse(r);
    return got;
  }

  it("a nightly re-run of the same 50 jobs makes no provider call, each result marked cached at no cost", async () => {
    const first = await run(Array.from({ length: 50 }, (_, i) => job("night1", i)));
    const paid = calls();
    expect(paid).toBeGreaterThanOrEqual(50);
    for (const r of first.values()) expect(r.cached).toBeUndefined();

    const again = await run(Array.from({ length: 50 }, (_, i) => job("night2", i)));
    expect(calls()).toBe(paid);
    for (let i = 0; i < 50; i++) {
      const r = again.get(`night2-${i}`)!;
      const was = first.get(`night1-${i}`)!;
      expect(r).toMatchObject({ cached: true, cost_usd: 0, billed_usd: 0, cached_from: { id: `night1-${i}`, completed_at: was.completed_at }, metadata: { night: "night2", i } });
      expect(r.response).toEqual(was.response);
      expect(r.attempts).toEqual([{ provider: was.provider, model: was.model, tier: was.attempts.at(-1)!.tier, outcome: "ok", http_status: null, latency_ms: 0, error: null, cost_usd: 0 }]);
    }
  }, 60_000);

  it("a re-run with 10 % of the jobs changed pays only for those (the issue's ≤ 12 % of the first run)", async () => {
    const night1 = await readAll<Result>(stack.nats.js, STREAMS.results, { subject: "results.moderation" });
    const firstCost = night1.filter((r) => r.id.startsWith("night1-")).reduce((sum, r) => sum + r.billed_usd!, 0);
    const before = calls();
    const got = await run(Array.from({ length: 50 }, (_, i) => (i % 10 === 0 ? job("night3", i, `message number ${i}, changed tonight`) : job("night3", i))));
    expect(calls()).toBe(before + 5);
    const cost = [...got.values()].reduce((sum, r) => sum + r.billed_usd!, 0);
    console.log(`result cache: night 1 ${firstCost.toFixed(8)} USD, night 3 (5 of 50 changed) ${cost.toFixed(8)} USD = ${((100 * cost) / firstCost).toFixed(1)} %`);
    expect(cost / firstCost).toBeLessThanOrEqual(0.12);
  }, 30_000);

  it("a changed job is called", async () => {
    const before = calls();
    const got = await run([job("changed", 3, "message number 3, edited")]);
    expect(calls()).toBe(before + 1);
    expect(got.get("changed-3")!.cached).toBeUndefined();
  }, 30_000);

  /** Ten identical jobs published together, with answers slow enough that all ten are in flight before the first is served: one call, nine cache hits. */
  async function tenIdenticalMakeOneCall(night: string, text: string): Promise<void> {
    for (const [p, m] of [["budget", "budget-lite"], ["swift", "swift-mini"], ["premium", "premium-large"]] as const) stack.sim.control(p, m, { latency_ms: { min: 300, max: 300 } });
    try {
      const before = calls();
      const got = await run(Array.from({ length: 10 }, (_, i) => ({ ...job(night, 0, text), id: `${night}-${i}` })));
      expect(calls()).toBe(before + 1);
      expect([...got.values()].filter((r) => r.cached === true)).toHaveLength(9);
    } finally {
      stack.sim.reset();
    }
  }

  it("ten identical jobs at once make one call", () => tenIdenticalMakeOneCall("same", "one message, ten times"), 30_000);

  it("ten identical jobs at once across three workers make one call", async () => {
    const worker = () => startRouter({ natsUrl: stack.nats.url, config: stack.config, logger: createLogger("test-router", process.env.LOG_LEVEL ?? "silent"), clock: () => Date.now() + ahead });
    const others = [await worker(), await worker()];
    try {
      await tenIdenticalMakeOneCall("across", "one message, ten times, three workers");
    } finally {
      await Promise.all(others.map((r) => r.stop()));
    }
  }, 30_000);

  it("after the TTL the job is called again", async () => {
    const before = calls();
    await run([job("ttl-a", 7)]);
    expect(calls()).toBe(before);
    ahead += HOUR;
    const got = await run([job("ttl-b", 7)]);
    expect(calls()).toBe(before + 1);
    expect(got.get("ttl-b-7")!.cached).toBeUndefined();
  }, 30_000);

  it("a change to the task's config makes every entry a miss; a change to its TTL alone does not", async () => {
    const longer: Config = parseConfig(cachedYaml(stack.simUrl, (t) => (t.cache = { ttl: "2h" })), "c.yaml", {});
    router.router.reload(longer);
    let before = calls();
    expect((await run([job("ttl-only", 8)])).get("ttl-only-8")!.cached).toBe(true);
    expect(calls()).toBe(before);

    const edited: Config = parseConfig(cachedYaml(stack.simUrl, (t) => (t.expected_completion_tokens = 48)), "c.yaml", {});
    router.router.reload(edited);
    before = calls();
    expect((await run([job("edited", 8)])).get("edited-8")!.cached).toBeUndefined();
    expect(calls()).toBe(before + 1);
  }, 30_000);
});

/**
 * Invalid output escalates, once, and is never an outage: a task whose check rejects every
 * answer ends at once as one `invalid_output` dead letter after at most one call per
 * candidate, while the models it shares with another task keep serving that task, and the
 * pricing service keeps them healthy.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { startPricing, type RunningPricing } from "../services/pricing/main.ts";
import type { DeadLetter, Result } from "../shared/contract/job.ts";
import { ModelStateSchema } from "../shared/contract/live.ts";
import { STREAMS } from "../shared/contract/subjects.ts";
import { createLogger } from "../shared/log.ts";
import { openBuckets } from "../shared/nats/buckets.ts";
import { readStream } from "./harness/nats.ts";
import { moderationJob, startStack, testConfigYaml, type TestStack } from "./harness/stack.ts";

let stack: TestStack;
let pricing: RunningPricing;

beforeAll(async () => {
  stack = await startStack({
    routers: 2,
    configYaml: (simUrl) =>
      `${testConfigYaml(simUrl)}
  # Every answer the sim gives is prose with letters in it: the check rejects them all.
  picky:
    max_attempts: 4
    tiers:
      - strategy: cheapest
        models: [budget/lite, swift/mini]
      - models: [premium/large]
    output:
      forbidden_patterns: ["/[a-z]/i"]
`,
  });
  pricing = await startPricing({ natsUrl: stack.nats.url, config: stack.config, logger: createLogger("test-pricing", "silent") });
}, 30_000);

afterAll(async () => {
  await pricing?.stop();
  await stack?.close();
}, 30_000);

describe("invalid output escalates once and is never an outage", () => {
  it("a never-passing job: one call per candidate, then one invalid_output dead letter within 2 s; the shared models keep serving the other task", async () => {
    const picky = Array.from({ length: 10 }, (_, i) => ({ id: `picky-${i}`, request: { messages: [{ role: "user", content: `Describe item ${i} in one word.` }] } }));
    const published = Date.now();
    await stack.publishJobs("picky", picky);
    const dead = await readStream<DeadLetter>(stack.nats.js, STREAMS.dlq, { count: 10, timeoutMs: 10_000 });
    expect(dead).toHaveLength(10);
    for (const d of dead) {
      expect(d.reason).toBe("invalid_output");
      // One call per candidate, each a distinct model, each saying why its answer failed.
      expect(d.attempts.map((a) => `${a.provider}/${a.model}`).sort()).toEqual(["budget/lite", "premium/large", "swift/mini"]);
      for (const a of d.attempts) expect(a).toMatchObject({ outcome: "invalid_output", http_status: 200, error: "the answer matches forbidden pattern /[a-z]/i" });
      expect(Date.parse(d.failed_at) - published).toBeLessThan(2_000);
    }
    // Three calls per job reached the providers, not one more.
    const calls = Object.values(stack.sim.stats().models).reduce((n, m) => n + m.requests, 0);
    expect(calls).toBe(30);

    // Twenty moderation jobs right after: the cheap tier serves them all, as before.
    await stack.publishJobs("moderation", Array.from({ length: 20 }, (_, i) => moderationJob(i)));
    const results = await readStream<Result>(stack.nats.js, STREAMS.results, { count: 20, timeoutMs: 10_000 });
    expect(results).toHaveLength(20);
    for (const r of results) expect(["budget", "swift"]).toContain(r.provider);

    // The pricing service counted the invalid answers against quality, not health.
    const { models } = await openBuckets(stack.nats.nc, stack.config);
    await vi.waitFor(async () => {
      for (const id of ["budget/lite", "swift/mini", "premium/large"]) {
        const state = ModelStateSchema.parse((await models.get(id))!.json());
        expect(state.health).toBe("healthy");
        expect(state.error_rate).toBe(0);
      }
    }, { timeout: 5_000 });
  }, 30_000);

  it("mixed failures redeliver only to the candidates that have not answered invalidly", async () => {
    stack.sim.reset();
    // premium is down: the first delivery gets two invalid answers and one outage.
    stack.sim.control("premium", "premium-large", { outage: "503" });
    await stack.publishJobs("picky", [{ id: "picky-mixed", request: { messages: [{ role: "user", content: "One word, please." }] } }]);
    await vi.waitFor(() => expect(stack.sim.stats().models["premium/premium-large"]?.requests).toBeGreaterThanOrEqual(1), { timeout: 5_000 });
    stack.sim.control("premium", "premium-large", { outage: null });
    const dead = (await readStream<DeadLetter>(stack.nats.js, STREAMS.dlq, { count: 11, timeoutMs: 10_000 })).find((d) => d.id === "picky-mixed");
    expect(dead?.reason).toBe("invalid_output");
    const byModel = new Map<string, string[]>();
    for (const a of dead!.attempts) byModel.set(`${a.provider}/${a.model}`, [...(byModel.get(`${a.provider}/${a.model}`) ?? []), a.outcome]);
    // The two that answered invalidly were asked once; only premium was asked again after its outage.
    expect(byModel.get("budget/lite")).toEqual(["invalid_output"]);
    expect(byModel.get("swift/mini")).toEqual(["invalid_output"]);
    expect(byModel.get("premium/large")?.at(-1)).toBe("invalid_output");
    expect(byModel.get("premium/large")?.slice(0, -1).every((o) => o === "unavailable")).toBe(true);
  }, 30_000);
});

import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { DeadLetterSchema, ResultSchema, type DeadLetter, type Result } from "../shared/contract/job.ts";
import { STREAMS } from "../shared/contract/subjects.ts";
import { jobsSettled, readAll, readMsgIds } from "./harness/nats.ts";
import { moderationJob, startStack, type TestStack } from "./harness/stack.ts";

let stack: TestStack;
let prefix = 0;
let tag = "";

beforeAll(async () => {
  stack = await startStack({ routers: 0 });
});
afterAll(async () => {
  await stack?.close();
});
beforeEach(async () => {
  stack.sim.reset();
  // A fresh worker per test: no local cooldown or counter carried over from the previous test.
  await Promise.all(stack.routers.splice(0).map((r) => r.stop()));
  await stack.addRouter();
  tag = `t${++prefix}`;
});

// Every test uses its own id prefix and reads whole streams, so earlier tests' messages are filtered out.
const mine = <T extends { id: string }>(xs: T[]) => xs.filter((x) => x.id.startsWith(`${tag}-`));
/**
 * This test's results and dead letters, once every job published so far is acknowledged: all
 * of each stream, so a second outcome for an id is seen wherever it landed.
 */
async function outcomes(): Promise<{ results: Result[]; deadLetters: DeadLetter[] }> {
  await jobsSettled(stack.nats.jsm);
  return { results: mine(await readAll<Result>(stack.nats.js, STREAMS.results)), deadLetters: mine(await readAll<DeadLetter>(stack.nats.js, STREAMS.dlq)) };
}
const calls = (key: string) => stack.sim.stats().models[key]?.requests ?? 0;
const job = (i: number, extra: Record<string, unknown> = {}) => ({ ...moderationJob(i, extra), id: `${tag}-${i}` });

describe("router on a real nats-server", () => {
  it("N jobs in → exactly N results, each valid per the contract, cheapest model first", async () => {
    const n = 300;
    await stack.publishJobs("moderation", Array.from({ length: n }, (_, i) => job(i)));
    const { results: got, deadLetters } = await outcomes();
    expect(got).toHaveLength(n);
    expect(new Set(got.map((r) => r.id)).size).toBe(n);
    expect(deadLetters).toEqual([]);
    for (const r of got) {
      ResultSchema.parse(r);
      expect(r.provider).toBe("budget");
      expect(r.attempts).toEqual([expect.objectContaining({ outcome: "ok", provider: "budget", model: "lite", tier: 0, http_status: 200 })]);
      expect(r.cost_usd).toBeCloseTo((r.usage.prompt_tokens * 0.05 + r.usage.completion_tokens * 0.2) / 1e6, 12);
    }
    const killer = got.find((r) => r.metadata.n === 1)!;
    expect(killer.output).toMatchObject({ flagged: true, categories: ["violence"] });
    expect(got.find((r) => r.metadata.n === 0)!.output).toMatchObject({ flagged: false });
  });

  it("a failing provider is failed over to the next candidate, and the attempts say so", async () => {
    stack.sim.control("budget", "budget-lite", { outage: "503" });
    await stack.publishJobs("moderation", Array.from({ length: 20 }, (_, i) => job(i)));
    const { results: got } = await outcomes();
    expect(got).toHaveLength(20);
    for (const r of got) expect(r.provider).toBe("swift");
    // Until the local cooldown trips, each job first tries budget and gets 503.
    const failedOver = got.filter((r) => r.attempts.length === 2);
    expect(failedOver.length).toBeGreaterThan(0);
    expect(failedOver[0]!.attempts[0]).toMatchObject({ provider: "budget", outcome: "unavailable", http_status: 503 });
    expect(failedOver[0]!.attempts[1]).toMatchObject({ provider: "swift", outcome: "ok" });
  });

  it("rate limits fall through to the next tier and record rate_limited", async () => {
    stack.sim.control("budget", "budget-lite", { outage: "429" });
    stack.sim.control("swift", "swift-mini", { outage: "429" });
    await stack.publishJobs("moderation", [job(0)]);
    const { results: [r, ...more] } = await outcomes();
    expect(more).toEqual([]);
    expect(r).toMatchObject({ provider: "premium", model: "large" });
    // A fresh worker has no cooldown yet: both tier-0 models are called and answer 429.
    expect(r!.attempts).toEqual([
      expect.objectContaining({ provider: "budget", outcome: "rate_limited", http_status: 429, tier: 0 }),
      expect.objectContaining({ provider: "swift", outcome: "rate_limited", http_status: 429, tier: 0 }),
      expect.objectContaining({ provider: "premium", outcome: "ok", tier: 1 }),
    ]);
  });

  it("every provider down → delayed redeliveries, then one dead letter listing every attempt", async () => {
    for (const [p, m] of [["budget", "budget-lite"], ["swift", "swift-mini"], ["premium", "premium-large"]] as const) stack.sim.control(p, m, { outage: "503" });
    const t0 = Date.now();
    await stack.publishJobs("moderation", [job(0)]);
    // Exactly one outcome: a dead letter and no result.
    const { results, deadLetters } = await outcomes();
    expect(results).toEqual([]);
    expect(deadLetters).toHaveLength(1);
    const d = deadLetters[0]!;
    DeadLetterSchema.parse(d);
    expect(d).toMatchObject({ reason: "exhausted", status: "failed", metadata: { n: 0 } });
    expect(d.job).toMatchObject({ id: `${tag}-0` });
    expect(d.error).toContain("All 3 deliveries failed");
    expect(d.attempts.length).toBeGreaterThanOrEqual(3);
    expect(d.attempts.every((a) => a.outcome === "unavailable")).toBe(true);
    // Two redeliveries with 200 ms and 400 ms backoff (± 20 %) before the dead letter.
    expect(Date.parse(d.failed_at) - t0).toBeGreaterThanOrEqual(480);
  });

  it("malformed payloads become invalid_job dead letters and the worker keeps serving", async () => {
    const js = stack.nats.js;
    await js.publish("jobs.moderation", "{not json", { msgID: `${tag}-0` });
    await js.publish("jobs.moderation", new Uint8Array([0xde, 0xad, 0xbe, 0xef]), { msgID: `${tag}-1` });
    await js.publish("jobs.moderation", JSON.stringify({ id: `${tag}-2`, request: { messages: [] } }));
    await js.publish("jobs.moderation", JSON.stringify({ id: `${tag}-3`, request: { messages: [{ role: "user", content: 42 }] } }));
    await js.publish("jobs.moderation", JSON.stringify({ id: `${tag}-4`, request: { messages: [{ role: "user", content: "x".repeat(300 * 1024) }] } }));
    await js.publish("jobs.moderation", JSON.stringify({ id: `${tag}-5`, task: "classification", request: { messages: [{ role: "user", content: "x" }] } }));
    await stack.publishJobs("moderation", [job(6)]);
    const { results, deadLetters: dls } = await outcomes();
    expect(dls.map((d) => d.id).sort()).toEqual([0, 1, 2, 3, 4, 5].map((i) => `${tag}-${i}`));
    for (const d of dls) {
      DeadLetterSchema.parse(d);
      expect(d.reason).toBe("invalid_job");
    }
    expect(Buffer.from(dls.find((d) => d.id === `${tag}-0`)!.job.raw_base64 as string, "base64").toString()).toBe("{not json");
    expect(dls.find((d) => d.id === `${tag}-4`)!.error).toContain("byte limit");
    expect(results.map((r) => r.id)).toEqual([`${tag}-6`]);
  });

  it("a job for an unknown task becomes a no_route dead letter on dlq.<task>", async () => {
    await stack.nats.js.publish("jobs.translation", JSON.stringify({ id: `${tag}-0`, request: { messages: [{ role: "user", content: "bonjour" }] } }));
    const { results, deadLetters } = await outcomes();
    expect(results).toEqual([]);
    expect(deadLetters).toEqual([expect.objectContaining({ id: `${tag}-0`, reason: "no_route", task: "translation" })]);
    expect(mine(await readAll<DeadLetter>(stack.nats.js, STREAMS.dlq, { subject: "dlq.translation" }))).toHaveLength(1);
  });

  it("the same job id published twice yields one result", async () => {
    // Same Nats-Msg-Id: JOBS drops the second inside the duplicate window.
    await stack.publishJobs("moderation", [job(0), job(0)]);
    // Same body id under different message ids: both are served, RESULTS keeps one.
    await stack.nats.js.publish("jobs.moderation", JSON.stringify(job(1)), { msgID: `${tag}-x1` });
    await stack.nats.js.publish("jobs.moderation", JSON.stringify(job(1)), { msgID: `${tag}-x2` });
    const { results: got } = await outcomes();
    expect((await readMsgIds(stack.nats.js, STREAMS.jobs)).filter((id) => id?.startsWith(`${tag}-`))).toEqual([`${tag}-0`, `${tag}-x1`, `${tag}-x2`]);
    expect(calls("budget/budget-lite")).toBe(3);
    expect(got.map((r) => r.id).sort()).toEqual([`${tag}-0`, `${tag}-1`]);
  });

  it("a job past its deadline is dead-lettered, never served late", async () => {
    await stack.publishJobs("moderation", [job(0, { deadline: new Date(Date.now() - 1000).toISOString() })]);
    const { results, deadLetters } = await outcomes();
    expect(results).toEqual([]);
    expect(deadLetters).toEqual([expect.objectContaining({ reason: "deadline_exceeded", attempts: [] })]);
    expect(calls("budget/budget-lite") + calls("swift/swift-mini") + calls("premium/premium-large")).toBe(0);
  });

  it("a job over its cost budget is dead-lettered as budget_exceeded", async () => {
    await stack.publishJobs("moderation", [job(0, { routing: { max_cost_usd: 1e-12 } })]);
    const { results, deadLetters } = await outcomes();
    expect(results).toEqual([]);
    expect(deadLetters).toEqual([expect.objectContaining({ reason: "budget_exceeded" })]);
    expect(calls("budget/budget-lite") + calls("swift/swift-mini") + calls("premium/premium-large")).toBe(0);
  });

  it("two workers share one durable consumer with no overlap", async () => {
    const first = stack.routers[0]!;
    const second = await stack.addRouter();
    stack.sim.control("budget", "budget-lite", { latency_ms: { min: 5, max: 10 } });
    await stack.publishJobs("moderation", Array.from({ length: 400 }, (_, i) => job(i)));
    const { results: got } = await outcomes();
    expect(got).toHaveLength(400);
    expect(new Set(got.map((r) => r.id)).size).toBe(400);
    // No job was served by both: one call per job, one success counted per job.
    expect(calls("budget/budget-lite")).toBe(400);
    const a = first.router.stats.succeeded;
    const b = second.router.stats.succeeded;
    expect(a + b).toBe(400);
    expect(a).toBeGreaterThan(0);
    expect(b).toBeGreaterThan(0);
  });
});

/**
 * Hedged requests in the delivery state machine, on a fake clock: a call unanswered at its
 * `hedgeAt` is raced by the next candidate, the first acceptable answer wins, the loser is
 * recorded as cut off, and every answer that came is billed.
 */
import { describe, expect, it } from "vitest";
import { bindContract } from "../shared/acceptance/contract.ts";
import { UnavailableError } from "../shared/adapters/errors.ts";
import type { Completion } from "../shared/adapters/types.ts";
import { parseConfig } from "../shared/config/load.ts";
import type { Job } from "../shared/contract/job.ts";
import { buildCatalog, type ModelInfo } from "../shared/routing/catalog.ts";
import { plan } from "../shared/routing/planner.ts";
import { LocalHealth } from "../shared/routing/health.ts";
import { Delivery, type Step } from "../services/router/job.ts";

const config = parseConfig(
  `
providers:
  a: { dialect: openai, base_url: "http://127.0.0.1:1/v1", timeout_ms: 5s, models: { m: { input_per_mtok: 1, output_per_mtok: 2, context_window: 8000 } } }
  b: { dialect: openai, base_url: "http://127.0.0.1:1/v1", timeout_ms: 5s, models: { m: { input_per_mtok: 2, output_per_mtok: 4, context_window: 8000 } } }
  c: { dialect: openai, base_url: "http://127.0.0.1:1/v1", timeout_ms: 5s, models: { m: { input_per_mtok: 900, output_per_mtok: 900, context_window: 8000 } } }
tasks:
  sort:
    tiers: [{ models: [a/m, b/m, c/m] }]
    output: { labels: [yes, no] }
    hedge: { after: p95, max_extra_cost_usd: 0.01 }
`,
  "hedge-test.yaml",
  {},
);
const catalog = buildCatalog(config);
const policy = catalog.tasks.get("sort")!;

function delivery(hedgeAfterOf: ((m: ModelInfo) => number | undefined) | "off" = () => 800, maxExtra = policy.hedge?.maxExtraCostUsd) {
  const job: Job = { id: "j1", task: "sort", request: { model: "auto", messages: [{ role: "user", content: "is it?" }] } };
  const contract = bindContract(policy.contract, job.request);
  if ("kind" in contract) throw new Error(contract.message);
  return new Delivery({
    job,
    policy,
    contract,
    plan: plan({ policy, catalog, view: new LocalHealth(), job, now: 1_000, random: () => 0.5 }),
    earlier: [],
    deliveryCount: 1,
    backoffMs: [1_000],
    timeoutOf: () => 5_000,
    ...(hedgeAfterOf === "off" ? {} : { hedgeAfterOf }),
    hedgeMaxExtraCostUsd: maxExtra,
    startedAt: 1_000,
    publishedAt: 960,
    ackWaitMs: 30_000,
    random: () => 0.5,
  });
}

const ready = { cooldownUntil: () => 0 };
const at = (now: number) => ({ now, renewedAt: 1_000, stopping: false });
const answer = (content: string): Completion => ({
  response: { id: "x", object: "chat.completion", created: 0, model: "up", choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: "stop" }] },
  usage: { prompt_tokens: 100, completion_tokens: 10, total_tokens: 110 },
  usageEstimated: false,
});
const callOf = (s: Step | undefined) => {
  if (s?.kind !== "call") throw new Error(`expected a call, got ${s?.kind}`);
  return s;
};

describe("hedged requests", () => {
  it("the config parses `after` as p95 or a duration, and no hedge is the default", () => {
    expect(policy.hedge).toEqual({ after: "p95", maxExtraCostUsd: 0.01 });
    const plain = parseConfig(`
providers:
  a: { dialect: openai, base_url: "http://127.0.0.1:1/v1", models: { m: { input_per_mtok: 1, output_per_mtok: 2, context_window: 8000 } } }
tasks:
  t: { tiers: [{ models: [a/m] }] }
  u: { tiers: [{ models: [a/m] }], hedge: { after: 1.5s } }
`, "h.yaml", {});
    expect(buildCatalog(plain).tasks.get("t")!.hedge).toBeUndefined();
    expect(buildCatalog(plain).tasks.get("u")!.hedge).toEqual({ after: 1_500, maxExtraCostUsd: undefined });
    expect(() => parseConfig(`
providers:
  a: { dialect: openai, base_url: "http://127.0.0.1:1/v1", models: { m: { input_per_mtok: 1, output_per_mtok: 2, context_window: 8000 } } }
tasks:
  t: { tiers: [{ models: [a/m] }], hedge: { after: p99 } }
`, "h.yaml", {})).toThrow(/tasks\.t\.hedge\.after/);
  });

  it("a call is hedged at its hedgeAt only when hedging is on and it comes before the timeout", () => {
    expect(callOf(delivery().next(ready, at(1_000))).hedgeAt).toBe(1_800);
    expect(callOf(delivery("off").next(ready, at(1_000))).hedgeAt).toBeUndefined();
    expect(callOf(delivery(() => undefined).next(ready, at(1_000))).hedgeAt).toBeUndefined();
    expect(callOf(delivery(() => 5_000).next(ready, at(1_000))).hedgeAt).toBeUndefined();
  });

  it("the hedge answers first: it wins, the hanging primary is recorded as cut off, unbilled", () => {
    const d = delivery();
    const primary = callOf(d.next(ready, at(1_000)));
    expect(primary.planned.model.id).toBe("a/m");
    const hedge = callOf(d.hedge(ready, at(1_800)));
    expect(hedge.planned.model.id).toBe("b/m");
    // A hedge never hedges itself.
    expect(hedge.hedgeAt).toBeUndefined();
    expect(d.inFlight).toBe(2);
    expect(d.hedge(ready, at(1_900))).toBeUndefined();
    expect(() => d.next(ready, at(1_900))).toThrow(/in flight/);
    expect(d.answered(answer('{"label":"yes"}'), at(2_100), hedge.planned)).toBe("ok");
    expect(d.inFlight).toBe(0);
    expect(d.holds(primary.planned)).toBe(false);
    // The worker aborts the loser; its report changes nothing.
    d.aborted(primary.planned);
    const step = d.next(ready, at(2_101));
    if (step.kind !== "result") throw new Error(step.kind);
    expect(step.result.model).toBe("m");
    expect(step.result.provider).toBe("b");
    expect(step.result.attempts.map((a) => [a.provider, a.outcome, a.latency_ms])).toEqual([["b", "ok", 300], ["a", "timeout", 1_100]]);
    expect(step.result.attempts[1]!.error).toMatch(/cut off: the hedged call to b\/m answered first/);
    expect(step.result.billed_usd).toBe(step.result.cost_usd);
  });

  it("the primary answers first after all: it wins and the hedge is cut off", () => {
    const d = delivery();
    const primary = callOf(d.next(ready, at(1_000)));
    const hedge = callOf(d.hedge(ready, at(1_800)));
    expect(d.answered(answer('{"label":"no"}'), at(1_850), primary.planned)).toBe("ok");
    expect(d.holds(hedge.planned)).toBe(false);
    const step = d.next(ready, at(1_851));
    if (step.kind !== "result") throw new Error(step.kind);
    expect(step.result.provider).toBe("a");
    expect(step.result.attempts.map((a) => [a.provider, a.outcome])).toEqual([["a", "ok"], ["b", "timeout"]]);
  });

  it("an unacceptable answer does not win: the other call goes on, and both answers are billed", () => {
    const d = delivery();
    const primary = callOf(d.next(ready, at(1_000)));
    const hedge = callOf(d.hedge(ready, at(1_800)));
    expect(d.answered(answer("maybe"), at(1_900), hedge.planned)).toBe("invalid_output");
    expect(d.holds(primary.planned)).toBe(true);
    expect(d.answered(answer('{"label":"yes"}'), at(2_500), primary.planned)).toBe("ok");
    const step = d.next(ready, at(2_501));
    if (step.kind !== "result") throw new Error(step.kind);
    expect(step.result.attempts.map((a) => [a.provider, a.outcome])).toEqual([["b", "invalid_output"], ["a", "ok"]]);
    expect(step.result.billed_usd).toBeCloseTo(step.result.attempts[0]!.cost_usd! + step.result.cost_usd, 12);
  });

  it("a failed primary leaves the hedge running; both failing moves on to the next candidate", () => {
    const d = delivery();
    const primary = callOf(d.next(ready, at(1_000)));
    const hedge = callOf(d.hedge(ready, at(1_800)));
    d.failed(new UnavailableError("HTTP 503", { status: 503 }), "503", at(2_000), primary.planned);
    expect(() => d.next(ready, at(2_001))).toThrow(/in flight/);
    d.failed(new UnavailableError("HTTP 503", { status: 503 }), "503", at(2_200), hedge.planned);
    // The next candidate is over the hedge's cost cap, but failover is not a hedge: it is called.
    expect(callOf(d.next(ready, at(2_201))).planned.model.id).toBe("c/m");
  });

  it("no hedge to a candidate over max_extra_cost_usd, and that candidate is kept for failover", () => {
    const d = delivery(() => 800, 0);
    const primary = callOf(d.next(ready, at(1_000)));
    expect(d.hedge(ready, at(1_800))).toBeUndefined();
    d.failed(new UnavailableError("HTTP 503", { status: 503 }), "503", at(2_000), primary.planned);
    expect(callOf(d.next(ready, at(2_001))).planned.model.id).toBe("b/m");
  });

  it("no hedge to a candidate cooling down, nor while stopping", () => {
    const d = delivery();
    const primary = callOf(d.next(ready, at(1_000)));
    // b/m cools down and c/m is over the cost cap: nothing to hedge with.
    expect(d.hedge({ cooldownUntil: (m) => (m.id === "b/m" ? 9_999 : 0) }, at(1_800))).toBeUndefined();
    expect(d.hedge(ready, { now: 1_800, renewedAt: 1_000, stopping: true })).toBeUndefined();
    expect(d.holds(primary.planned)).toBe(true);
  });
});

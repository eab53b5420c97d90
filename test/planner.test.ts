import { describe, expect, it } from "vitest";
import { parseConfig } from "../shared/config/load.ts";
import type { Job } from "../shared/contract/job.ts";
import { buildCatalog } from "../shared/routing/catalog.ts";
import { decideAfterFailure } from "../shared/routing/decide.ts";
import { LocalHealth } from "../shared/routing/health.ts";
import { plan, type Plan } from "../shared/routing/planner.ts";

const CONFIG = `
providers:
  cheap:
    dialect: openai
    base_url: http://127.0.0.1:9/v1
    models:
      a: { input_per_mtok: 0.10, output_per_mtok: 0.40, context_window: 1000 }
  mid:
    dialect: openai
    base_url: http://127.0.0.1:9/v1
    models:
      b: { input_per_mtok: 0.50, output_per_mtok: 1.50, context_window: 100000 }
  pricey:
    dialect: openai
    base_url: http://127.0.0.1:9/v1
    models:
      c: { input_per_mtok: 5.00, output_per_mtok: 15.0, context_window: 100000 }
aliases:
  best: pricey/c
tasks:
  cheapest:
    expected_completion_tokens: 10
    tiers:
      - strategy: cheapest
        models: [mid/b, cheap/a]
      - models: [pricey/c]
  ordered:
    tiers:
      - strategy: ordered
        models: [mid/b, cheap/a, pricey/c]
  weighted:
    tiers:
      - strategy: weighted
        models: [cheap/a, mid/b]
        weights: [3, 1]
  fastest:
    tiers:
      - strategy: fastest
        models: [cheap/a, mid/b, pricey/c]
`;
const catalog = buildCatalog(parseConfig(CONFIG, "planner.yaml", {}));

function job(over: Partial<Job> & { content?: string } = {}): Job {
  const { content = "hello", ...rest } = over;
  return { id: "j1", task: "cheapest", request: { model: "auto", messages: [{ role: "user", content }] }, ...rest };
}

function ids(p: Plan): string[] {
  if (p.kind !== "attempts") throw new Error(`expected attempts, got ${JSON.stringify(p)}`);
  return p.attempts.map((a) => `${a.model.id}@${a.tier}`);
}

const run = (task: string, j: Job, health = new LocalHealth(), now = 1_000, random = () => 0.5) =>
  plan({ policy: catalog.tasks.get(task)!, catalog, view: health, job: j, now, random });

describe("planner", () => {
  it("cheapest: orders a tier by expected cost, then the next tier", () => {
    expect(ids(run("cheapest", job()))).toEqual(["cheap/a@0", "mid/b@0", "pricey/c@1"]);
  });

  it("ordered: keeps the configured order", () => {
    expect(ids(run("ordered", job()))).toEqual(["mid/b@0", "cheap/a@0", "pricey/c@0"]);
  });

  it("weighted: shares load by weight over many draws, deterministically for a given random source", () => {
    let seed = 1;
    const random = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
    let firstA = 0;
    for (let i = 0; i < 4000; i++) if (ids(run("weighted", job(), new LocalHealth(), 0, random))[0] === "cheap/a@0") firstA++;
    expect(firstA / 4000).toBeGreaterThan(0.7);
    expect(firstA / 4000).toBeLessThan(0.8);
  });

  it("fastest: orders by observed latency, trying an unmeasured model first", () => {
    const health = new LocalHealth();
    health.succeeded("cheap/a", 300);
    health.succeeded("pricey/c", 50);
    expect(ids(run("fastest", job(), health))).toEqual(["mid/b@0", "pricey/c@0", "cheap/a@0"]);
  });

  it("skips a model whose context window is too small for the prompt plus completion", () => {
    const long = "x".repeat(4000 * 4);
    expect(ids(run("cheapest", job({ content: long })))).toEqual(["mid/b@0", "pricey/c@1"]);
  });

  it("skips models cooling down, and waits when all are", () => {
    const health = new LocalHealth({ failureThreshold: 1, cooldownMs: 500, authCooldownMs: 10_000, rateLimitCooldownMs: 100 });
    health.failed("cheap/a", "cheap", "unavailable", 1_000);
    expect(ids(run("cheapest", job(), health, 1_100))).toEqual(["mid/b@0", "pricey/c@1"]);
    expect(ids(run("cheapest", job(), health, 1_600))).toEqual(["cheap/a@0", "mid/b@0", "pricey/c@1"]);
    health.failed("mid/b", "mid", "rate_limited", 1_000, 2_000);
    health.failed("pricey/c", "pricey", "auth_failed", 1_000);
    expect(run("cheapest", job(), health, 1_100)).toEqual({ kind: "wait", until: 1_500 });
  });

  it("honours allow and deny lists", () => {
    expect(ids(run("cheapest", job({ routing: { allow_providers: ["mid", "pricey"] } })))).toEqual(["mid/b@0", "pricey/c@1"]);
    expect(ids(run("cheapest", job({ routing: { deny_providers: ["cheap"] } })))).toEqual(["mid/b@0", "pricey/c@1"]);
  });

  it("drops candidates over the job's cost budget, and says budget_exceeded when none fit", () => {
    expect(ids(run("cheapest", job({ routing: { max_cost_usd: 0.00002 } })))).toEqual(["cheap/a@0", "mid/b@0"]);
    expect(run("cheapest", job({ routing: { max_cost_usd: 1e-9 } }))).toMatchObject({ kind: "none", reason: "budget_exceeded" });
  });

  it("drops candidates slower than max_latency_ms", () => {
    const health = new LocalHealth();
    health.succeeded("cheap/a", 900);
    expect(ids(run("cheapest", job({ routing: { max_latency_ms: 500 } }), health))).toEqual(["mid/b@0", "pricey/c@1"]);
  });

  it("the job's strategy overrides the tier's", () => {
    expect(ids(run("ordered", job({ routing: { strategy: "cost" } })))).toEqual(["cheap/a@0", "mid/b@0", "pricey/c@0"]);
  });

  it("an explicit model or alias replaces the tiers; an unknown one is no_route", () => {
    expect(ids(run("cheapest", job({ request: { model: "best", messages: [{ role: "user", content: "x" }] } })))).toEqual(["pricey/c@0"]);
    expect(ids(run("cheapest", job({ request: { model: "mid/b", messages: [{ role: "user", content: "x" }] } })))).toEqual(["mid/b@0"]);
    expect(run("cheapest", job({ request: { model: "nope/x", messages: [{ role: "user", content: "x" }] } }))).toMatchObject({ kind: "none", reason: "no_route" });
  });
});

describe("decideAfterFailure", () => {
  const base = { lastError: "HTTP 503: overloaded", untried: 0, maxDeliveries: 3, backoffMs: [1000, 5000], readyAt: 0, deadline: undefined, now: 10_000, random: () => 0.5 };

  it("redelivers with the configured backoff (jitter centred on it), the last value repeating", () => {
    expect(decideAfterFailure({ ...base, failures: ["unavailable"], deliveryCount: 1 })).toEqual({ action: "redeliver", delayMs: 1000 });
    expect(decideAfterFailure({ ...base, failures: ["timeout"], deliveryCount: 2 })).toEqual({ action: "redeliver", delayMs: 5000 });
    const low = decideAfterFailure({ ...base, failures: ["timeout"], deliveryCount: 1, random: () => 0 });
    expect(low).toEqual({ action: "redeliver", delayMs: 800 });
  });

  it("waits at least until a cooling candidate is ready", () => {
    expect(decideAfterFailure({ ...base, failures: [], deliveryCount: 1, readyAt: 13_000 })).toEqual({ action: "redeliver", delayMs: 3000 });
  });

  it("dead-letters as exhausted on the last delivery, with the last error", () => {
    const d = decideAfterFailure({ ...base, failures: ["rate_limited"], deliveryCount: 3 });
    expect(d).toMatchObject({ action: "dead_letter", reason: "exhausted" });
    expect(d.action === "dead_letter" && d.error).toContain("HTTP 503");
  });

  it("dead-letters at once when every candidate refused the request", () => {
    expect(decideAfterFailure({ ...base, failures: ["bad_request", "auth_failed"], deliveryCount: 1 })).toMatchObject({ action: "dead_letter", reason: "exhausted" });
  });

  it("dead-letters as invalid_output at once when every answer failed the output check, and nothing is left to try", () => {
    expect(decideAfterFailure({ ...base, failures: ["invalid_output", "invalid_output"], deliveryCount: 1 })).toMatchObject({ action: "dead_letter", reason: "invalid_output" });
    expect(decideAfterFailure({ ...base, failures: ["invalid_output", "bad_request"], deliveryCount: 1 })).toMatchObject({ action: "dead_letter", reason: "invalid_output" });
  });

  it("redelivers mixed failures (an outage and an invalid answer), and invalid answers while untried candidates remain", () => {
    expect(decideAfterFailure({ ...base, failures: ["invalid_output", "unavailable"], deliveryCount: 1 })).toEqual({ action: "redeliver", delayMs: 1000 });
    expect(decideAfterFailure({ ...base, failures: ["invalid_output"], untried: 1, deliveryCount: 1 })).toEqual({ action: "redeliver", delayMs: 1000 });
  });

  it("dead-letters as deadline_exceeded when the deadline passes before the next try", () => {
    expect(decideAfterFailure({ ...base, failures: ["unavailable"], deliveryCount: 1, deadline: 10_500 })).toMatchObject({ action: "dead_letter", reason: "deadline_exceeded" });
  });
});

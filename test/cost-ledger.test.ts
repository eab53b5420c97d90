/**
 * The cost ledger without a process: each dialect's documented usage (cache reads, cache
 * writes, reasoning) normalised without double counting and priced to the cent by the one
 * formula, part prices from the config, billed cost carried by every answered attempt into the
 * result and the dead letter, and the token kinds of the metrics.
 */
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bindContract } from "../shared/acceptance/contract.ts";
import { createProviderClient } from "../shared/adapters/http.ts";
import { ADAPTERS } from "../shared/adapters/index.ts";
import type { Completion, Dialect, HttpReply } from "../shared/adapters/types.ts";
import { parseConfig } from "../shared/config/load.ts";
import { DeadLetterSchema, ResultSchema, type Attempt, type Job } from "../shared/contract/job.ts";
import { routerMetrics } from "../shared/ops/router-metrics.ts";
import { createOps } from "../shared/ops/server.ts";
import { buildCatalog } from "../shared/routing/catalog.ts";
import { costBreakdown, costUsd, type Prices } from "../shared/routing/cost.ts";
import { LocalHealth } from "../shared/routing/health.ts";
import { plan } from "../shared/routing/planner.ts";
import { estimatePromptTokens, estimateTextTokens } from "../shared/tokens.ts";
import { Delivery, type Step } from "../services/router/job.ts";
import { parseScenario } from "../services/sim-provider/scenario.ts";
import { createSimProvider, type SimProvider } from "../services/sim-provider/server.ts";

function fixture(dialect: Dialect, name: string): HttpReply {
  const file = new URL(`../shared/adapters/__fixtures__/${dialect}/${name}.json`, import.meta.url);
  const recorded = JSON.parse(readFileSync(file, "utf8")) as { status: number; headers: Record<string, string>; body: unknown };
  return { status: recorded.status, headers: recorded.headers, body: JSON.stringify(recorded.body) };
}
const hi = { model: "auto", messages: [{ role: "user" as const, content: "hi" }] };
const usageOf = (dialect: Dialect, name: string) => ADAPTERS[dialect].fromResponse(fixture(dialect, name), hi).usage;

/** Each model's list prices, USD per million tokens, as its provider publishes them. */
const O4_MINI: Prices = { inputPerMtok: 1.1, cachedInputPerMtok: 0.275, outputPerMtok: 4.4 };
const SONNET_4: Prices = { inputPerMtok: 3, cachedInputPerMtok: 0.3, cacheWritePerMtok: 3.75, outputPerMtok: 15 };
const GEMINI_25_FLASH: Prices = { inputPerMtok: 0.3, cachedInputPerMtok: 0.075, outputPerMtok: 2.5 };

describe("usage in one normal form, each part counted once", () => {
  it("openai: cached_tokens is part of prompt_tokens, reasoning_tokens of completion_tokens", () => {
    expect(usageOf("openai", "cached-reasoning")).toEqual({
      prompt_tokens: 2048,
      completion_tokens: 612,
      total_tokens: 2660,
      prompt_tokens_details: { cached_tokens: 1920 },
      completion_tokens_details: { reasoning_tokens: 448 },
    });
  });

  it("anthropic: input_tokens leaves the cache out, so reads and writes are added to the prompt; thinking is inside output_tokens", () => {
    // 50 uncached + 248 written + 1800 read.
    expect(usageOf("anthropic", "cache-read-write")).toEqual({
      prompt_tokens: 2098,
      completion_tokens: 120,
      total_tokens: 2218,
      prompt_tokens_details: { cached_tokens: 1800, cache_write_tokens: 248 },
    });
  });

  it("gemini: promptTokenCount includes the cached content; thoughts are billed as output but counted apart from the candidates", () => {
    expect(usageOf("gemini", "cached-thinking")).toEqual({
      prompt_tokens: 12000,
      completion_tokens: 395,
      total_tokens: 12395,
      prompt_tokens_details: { cached_tokens: 10240 },
      completion_tokens_details: { reasoning_tokens: 310 },
    });
  });

  it("zero parts (openai's usual details of 0) give the three v1 fields alone", () => {
    expect(usageOf("openai", "text")).toEqual({ prompt_tokens: 41, completion_tokens: 2, total_tokens: 43 });
  });
});

describe("priced to the cent by the one formula", () => {
  it("openai o4-mini: 128 × $1.10 + 1,920 cached × $0.275 + 164 × $4.40 + 448 reasoning × $4.40", () => {
    const cost = costBreakdown(usageOf("openai", "cached-reasoning"), O4_MINI);
    expect(cost.input).toBeCloseTo(0.0001408, 12);
    expect(cost.cached_input).toBeCloseTo(0.000528, 12);
    expect(cost.cache_write).toBe(0);
    expect(cost.output).toBeCloseTo(0.0007216, 12);
    expect(cost.reasoning).toBeCloseTo(0.0019712, 12);
    expect(cost.total).toBeCloseTo(0.0033616, 12);
    // Ten thousand such calls, to the cent; pricing every prompt token at the input price would say $49.46.
    expect(Math.round(cost.total * 10_000 * 100) / 100).toBe(33.62);
  });

  it("anthropic claude-sonnet-4: 50 × $3 + 248 written × $3.75 + 1,800 read × $0.30 + 120 × $15", () => {
    const cost = costBreakdown(usageOf("anthropic", "cache-read-write"), SONNET_4);
    expect(cost.input).toBeCloseTo(0.00015, 12);
    expect(cost.cache_write).toBeCloseTo(0.00093, 12);
    expect(cost.cached_input).toBeCloseTo(0.00054, 12);
    expect(cost.output).toBeCloseTo(0.0018, 12);
    expect(cost.reasoning).toBe(0);
    expect(cost.total).toBeCloseTo(0.00342, 12);
    expect(Math.round(cost.total * 10_000 * 100) / 100).toBe(34.2);
  });

  it("gemini 2.5 flash: 1,760 × $0.30 + 10,240 cached × $0.075 + 85 × $2.50 + 310 thinking × $2.50", () => {
    const cost = costBreakdown(usageOf("gemini", "cached-thinking"), GEMINI_25_FLASH);
    expect(cost.input).toBeCloseTo(0.000528, 12);
    expect(cost.cached_input).toBeCloseTo(0.000768, 12);
    expect(cost.output).toBeCloseTo(0.0002125, 12);
    expect(cost.reasoning).toBeCloseTo(0.000775, 12);
    expect(cost.total).toBeCloseTo(0.0022835, 12);
    expect(Math.round(cost.total * 10_000 * 100) / 100).toBe(22.84);
  });

  it("unpriced parts fall back: cache reads and writes at the input price, reasoning at the output price", () => {
    const usage = usageOf("anthropic", "cache-read-write");
    // Every prompt token at $3, every output token at $15.
    expect(costUsd(usage, { inputPerMtok: 3, outputPerMtok: 15 })).toBeCloseTo((2098 * 3 + 120 * 15) / 1e6, 12);
    const gemini = costBreakdown(usageOf("gemini", "cached-thinking"), { ...GEMINI_25_FLASH, reasoningPerMtok: 3.5 });
    expect(gemini.reasoning).toBeCloseTo((310 * 3.5) / 1e6, 12);
    expect(gemini.output).toBeCloseTo((85 * 2.5) / 1e6, 12);
  });

  it("usage without parts costs exactly what prompt × input + completion × output gave before", () => {
    for (const [dialect, name] of [["openai", "text"], ["anthropic", "text"], ["gemini", "text"]] as const) {
      const u = usageOf(dialect, name);
      expect(costUsd(u, { inputPerMtok: 0.15, outputPerMtok: 0.6 })).toBe((u.prompt_tokens * 0.15 + u.completion_tokens * 0.6) / 1e6);
    }
  });
});

const config = parseConfig(
  `
providers:
  a: { dialect: openai, base_url: "http://127.0.0.1:1/v1", timeout_ms: 5s, models: { m: { input_per_mtok: 1.1, cached_input_per_mtok: 0.275, output_per_mtok: 4.4, context_window: 8000 } } }
  b: { dialect: anthropic, base_url: "http://127.0.0.1:1/v1", timeout_ms: 5s, models: { m: { input_per_mtok: 3, cached_input_per_mtok: 0.3, cache_write_per_mtok: 3.75, output_per_mtok: 15, reasoning_per_mtok: 15, context_window: 8000 } } }
tasks:
  sort:
    max_deliveries: 3
    tiers:
      - { models: [a/m] }
      - { models: [b/m] }
    output: { labels: [billing, other] }
`,
  "cost-ledger-test.yaml",
  {},
);
const catalog = buildCatalog(config);
const policy = catalog.tasks.get("sort")!;

function delivery(earlier: Attempt[] = []) {
  const job: Job = { id: "j1", task: "sort", request: { model: "auto", messages: [{ role: "user", content: "charged twice?" }] }, metadata: { tenant: "acme" } };
  const contract = bindContract(policy.contract, job.request);
  if ("kind" in contract) throw new Error(contract.message);
  return new Delivery({
    job,
    policy,
    contract,
    plan: plan({ policy, catalog, view: new LocalHealth(), job, now: 1_000, random: () => 0.5 }),
    earlier,
    deliveryCount: earlier.length === 0 ? 1 : 2,
    backoffMs: [1_000],
    timeoutOf: () => 5_000,
    startedAt: 1_000,
    publishedAt: 990,
    ackWaitMs: 30_000,
    random: () => 0.5,
  });
}
const ready = { cooldownUntil: () => 0 };
const at = (now: number) => ({ now, renewedAt: now, stopping: false });
/** A fixture's answer with its content replaced: the usage stays the provider's. */
const answer = (dialect: Dialect, name: string, content: string): Completion => {
  const c = ADAPTERS[dialect].fromResponse(fixture(dialect, name), hi);
  return { ...c, response: { ...c.response, choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: "stop" }] } };
};
const callOf = (s: Step) => {
  if (s.kind !== "call") throw new Error(`expected a call, got ${s.kind}`);
  return s;
};

describe("billed across attempts", () => {
  it("part prices come from the model's config entry", () => {
    const a = catalog.models.get("a/m")!;
    expect(costUsd(usageOf("openai", "cached-reasoning"), a)).toBeCloseTo(0.0033616, 12);
    const b = catalog.models.get("b/m")!;
    expect(costUsd(usageOf("anthropic", "cache-read-write"), b)).toBeCloseTo(0.00342, 12);
  });

  it("an answer that fails the output check is billed, and the result's billed_usd counts it beside the answering call", () => {
    const d = delivery();
    expect(callOf(d.next(ready, at(1_000))).planned.model.id).toBe("a/m");
    expect(d.answered(answer("openai", "cached-reasoning", "no idea"), at(1_010))).toBe("invalid_output");
    expect(callOf(d.next(ready, at(1_010))).planned.model.id).toBe("b/m");
    expect(d.answered(answer("anthropic", "cache-read-write", "billing"), at(1_030))).toBe("ok");
    const step = d.next(ready, at(1_031));
    if (step.kind !== "result") throw new Error(`expected a result, got ${step.kind}`);
    const r = ResultSchema.parse(step.result);
    expect(r.attempts.map((a) => [a.outcome, a.cost_usd])).toEqual([
      ["invalid_output", expect.closeTo(0.0033616, 12)],
      ["ok", expect.closeTo(0.00342, 12)],
    ]);
    expect(r.attempts[0]!.usage).toMatchObject({ prompt_tokens: 2048, prompt_tokens_details: { cached_tokens: 1920 } });
    // cost_usd stays the answering call's; billed_usd is every billed attempt's.
    expect(r.cost_usd).toBeCloseTo(0.00342, 12);
    expect(r.cost).toEqual({ input: expect.closeTo(0.00015, 12), cached_input: expect.closeTo(0.00054, 12), cache_write: expect.closeTo(0.00093, 12), output: expect.closeTo(0.0018, 12), reasoning: 0, total: r.cost_usd });
    expect(r.billed_usd).toBeCloseTo(0.0033616 + 0.00342, 12);
  });

  it("attempts of an earlier delivery keep their cost, and a failed call none", () => {
    const earlier: Attempt[] = [
      { provider: "a", model: "m", tier: 0, outcome: "unavailable", http_status: 503, latency_ms: 5, error: "HTTP 503" },
      { provider: "b", model: "m", tier: 1, outcome: "timeout", http_status: 200, latency_ms: 5, error: "answered after the job's deadline", usage: { prompt_tokens: 100, completion_tokens: 10, total_tokens: 110 }, cost_usd: 0.00045 },
    ];
    const d = delivery(earlier);
    callOf(d.next(ready, at(1_000)));
    d.answered(answer("openai", "cached-reasoning", "billing"), at(1_010));
    const step = d.next(ready, at(1_011));
    if (step.kind !== "result") throw new Error(`expected a result, got ${step.kind}`);
    expect(step.result.attempts.map((a) => a.cost_usd)).toEqual([undefined, 0.00045, expect.closeTo(0.0033616, 12)]);
    expect(step.result.billed_usd).toBeCloseTo(0.00045 + 0.0033616, 12);
  });

  it("a dead letter carries what its attempts were billed", () => {
    const d = delivery();
    callOf(d.next(ready, at(1_000)));
    d.answered(answer("openai", "cached-reasoning", "no idea"), at(1_010));
    callOf(d.next(ready, at(1_010)));
    d.answered(answer("anthropic", "cache-read-write", "maybe"), at(1_020));
    const step = d.next(ready, at(1_021));
    if (step.kind !== "dead_letter") throw new Error(`expected a dead letter, got ${step.kind}`);
    const dl = DeadLetterSchema.parse(step.deadLetter);
    expect(dl.reason).toBe("invalid_output");
    expect(dl.attempts.map((a) => a.cost_usd)).toEqual([expect.closeTo(0.0033616, 12), expect.closeTo(0.00342, 12)]);
    expect(dl.billed_usd).toBeCloseTo(0.0033616 + 0.00342, 12);
  });
});

describe("switchyard_tokens_total", () => {
  it("counts cached, cache_write and reasoning as their own kinds, parts of input and output", async () => {
    const ops = createOps({ processMetrics: false });
    const m = routerMetrics(ops);
    const t = m.task("sort", true);
    const model = catalog.models.get("b/m")!;
    m.billed(t, model, "acme", 0.00342, { prompt_tokens: 2098, completion_tokens: 120, prompt_tokens_details: { cached_tokens: 1800, cache_write_tokens: 248 }, completion_tokens_details: { reasoning_tokens: 0 } });
    m.billed(t, model, "acme", 0.001, { prompt_tokens: 10, completion_tokens: 5 });
    const text = await ops.render();
    const sample = (kind: string) => Number(new RegExp(`^switchyard_tokens_total\\{task="sort",provider="b",model="m",tenant="acme",kind="${kind}"\\} (\\S+)$`, "m").exec(text)?.[1]);
    expect([sample("input"), sample("output"), sample("cached"), sample("cache_write")]).toEqual([2108, 125, 1800, 248]);
    // A part never reported gets no series.
    expect(text).not.toMatch(/kind="reasoning"/);
  });
});

describe("the sim-provider's usage_details, in each dialect's own fields", () => {
  let sim: SimProvider;
  let url: string;
  beforeAll(async () => {
    sim = createSimProvider(
      parseScenario(
        `
providers:
  p:
    models:
      plain: {}
      parts: { usage_details: { cached_tokens: 8, cache_write_tokens: 4, reasoning_tokens: 16 } }
`,
        "usage-details.yaml",
      ),
    );
    url = await sim.listen(0);
  });
  afterAll(async () => {
    await sim?.close();
  });
  const bases: Record<Dialect, string> = { openai: "/p/v1", anthropic: "/p/v1", gemini: "/p/v1beta" };
  const request = { model: "auto", messages: [{ role: "user" as const, content: "Which team handles a double charge on my card, billing or shipping?" }], max_tokens: 64 };
  const prompt = estimatePromptTokens(request.messages);

  async function answer(dialect: Dialect, model: string): Promise<Completion> {
    const client = createProviderClient({ base_url: `${url}${bases[dialect]}`, max_concurrency: 1 });
    try {
      const adapter = ADAPTERS[dialect];
      return adapter.fromResponse(await client.send(adapter.toRequest(request, { provider: "p", upstream: model, apiKey: undefined }), 2_000), request);
    } finally {
      await client.close();
    }
  }

  it.each(["openai", "anthropic", "gemini"] as const)("%s: the adapter reads back the parts the sim reported, each once", async (dialect) => {
    const plain = (await answer(dialect, "plain")).usage;
    expect(plain.prompt_tokens_details).toBeUndefined();
    expect(plain.completion_tokens_details).toBeUndefined();
    const c = await answer(dialect, "parts");
    const u = c.usage;
    expect(u.prompt_tokens).toBe(prompt);
    // The answer's own tokens, with the thinking on top of them.
    expect(u.completion_tokens).toBe(estimateTextTokens(c.response.choices[0]!.message.content ?? "") + 16);
    expect(u.total_tokens).toBe(u.prompt_tokens + u.completion_tokens);
    // Only Anthropic reports cache writes; OpenAI and Gemini count them as plain prompt. Anthropic
    // reports no thinking count of its own: its thoughts are inside output_tokens.
    expect(u.prompt_tokens_details).toEqual(dialect === "anthropic" ? { cached_tokens: 8, cache_write_tokens: 4 } : { cached_tokens: 8 });
    expect(u.completion_tokens_details).toEqual(dialect === "anthropic" ? undefined : { reasoning_tokens: 16 });
  });
});

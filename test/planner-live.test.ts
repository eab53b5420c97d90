import { describe, expect, it } from "vitest";
import { parseConfig } from "../shared/config/load.ts";
import type { ModelState } from "../shared/contract/live.ts";
import { buildCatalog } from "../shared/routing/catalog.ts";
import { LocalHealth } from "../shared/routing/health.ts";
import { LiveState } from "../shared/routing/live-state.ts";
import { plan } from "../shared/routing/planner.ts";
import { estimatePromptTokens } from "../shared/tokens.ts";

function rng(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const N = 12;
const yaml = `providers:
${Array.from({ length: N }, (_, i) => `  p${i}:
    dialect: openai
    base_url: http://127.0.0.1:9/v1
    models:
      m: { input_per_mtok: 1, output_per_mtok: 1, context_window: 100000 }`).join("\n")}
tasks:
  t:
    expected_completion_tokens: 50
    min_quality: 0.5
    quality: { ${Array.from({ length: N }, (_, i) => `p${i}/m: ${i % 5 === 0 ? 0.3 : 0.9}`).join(", ")} }
    tiers:
      - strategy: cheapest
        models: [${Array.from({ length: N }, (_, i) => `p${i}/m`).join(", ")}]
`;
const catalog = buildCatalog(parseConfig(yaml, "live.yaml", {}));
const policy = catalog.tasks.get("t")!;
const job = { id: "j", task: "t", request: { model: "auto", messages: [{ role: "user" as const, content: "x".repeat(400) }] }, routing: { max_latency_ms: 800 } };

function state(id: string, r: () => number, now: number): ModelState & { _p95: number } {
  const roll = r();
  const health = roll < 0.3 ? "down" : roll < 0.5 ? "degraded" : "healthy";
  const p95 = Math.round(r() * 1200);
  const iso = new Date(now).toISOString();
  return {
    id,
    provider: id.split("/")[0]!,
    model: "m",
    input_per_mtok: Math.round(r() * 1000) / 100,
    output_per_mtok: Math.round(r() * 1000) / 100,
    context_window: 100000,
    price_source: "cli",
    price_updated_at: iso,
    health,
    error_rate: 0,
    rate_limit_rate: 0,
    latency_p50_ms: p95 / 2,
    latency_p95_ms: p95,
    samples: 10,
    cooldown_until: health === "down" ? new Date(now + 5_000).toISOString() : null,
    health_updated_at: iso,
    updated_at: iso,
    _p95: p95,
  };
}

describe("planner on randomised live states", () => {
  it("never picks a down model, and picks the cheapest of those meeting latency and quality", () => {
    const r = rng(42);
    const now = 1_000_000;
    let checked = 0;
    for (let trial = 0; trial < 500; trial++) {
      const live = new LiveState(new LocalHealth(), () => now);
      live.heartbeat(now);
      const states = [...catalog.models.keys()].map((id) => state(id, r, now));
      for (const s of states) live.apply(s);
      const result = plan({ policy, catalog, view: live, job, now, random: r });
      const qualifying = states.filter((s) => s.health !== "down" && s._p95 <= 800 && (policy.quality.get(s.id) ?? 1) >= 0.5);
      if (qualifying.length === 0) {
        expect(result.kind).not.toBe("attempts");
        continue;
      }
      expect(result.kind).toBe("attempts");
      if (result.kind !== "attempts") continue;
      checked++;
      const down = new Set(states.filter((s) => s.health === "down").map((s) => s.id));
      expect(result.attempts.some((a) => down.has(a.model.id))).toBe(false);
      const prompt = estimatePromptTokens(job.request.messages);
      const cost = (s: ModelState) => prompt * s.input_per_mtok + 50 * s.output_per_mtok;
      const cheapest = Math.min(...qualifying.map(cost));
      expect(cost(states.find((s) => s.id === result.attempts[0]!.model.id)!)).toBe(cheapest);
      // The plan holds at least max_attempts of the cheapest qualifying models, cheapest first.
      expect(result.attempts.length).toBeGreaterThanOrEqual(Math.min(qualifying.length, policy.maxAttempts));
      const expected = qualifying.map(cost).sort((a, b) => a - b).slice(0, result.attempts.length);
      expect(result.attempts.map((a) => cost(states.find((s) => s.id === a.model.id)!))).toEqual(expected);
    }
    expect(checked).toBeGreaterThan(400);
  });

  it("while the pricing service is silent, its down verdicts are ignored but its last prices stay", () => {
    const now = 1_000_000;
    const live = new LiveState(new LocalHealth(), () => now);
    live.heartbeat(now - 10_000);
    const r = rng(1);
    const states = [...catalog.models.keys()].map((id) => ({ ...state(id, r, now), health: "down" as const, cooldown_until: new Date(now + 60_000).toISOString() }));
    states[3]!.input_per_mtok = 0;
    states[3]!.output_per_mtok = 0;
    for (const s of states) live.apply(s);
    const result = plan({ policy, catalog, view: live, job: { ...job, routing: {} }, now, random: r });
    expect(result.kind).toBe("attempts");
    if (result.kind === "attempts") expect(result.attempts[0]!.model.id).toBe("p3/m");
  });
});

describe("pins and per-job overrides", () => {
  const cfg = parseConfig(
    `providers:
  a: { dialect: openai, base_url: "http://127.0.0.1:9/v1", models: { x: { input_per_mtok: 1, output_per_mtok: 1, context_window: 1000 } } }
  b: { dialect: openai, base_url: "http://127.0.0.1:9/v1", models: { y: { input_per_mtok: 2, output_per_mtok: 2, context_window: 1000 } } }
  c: { dialect: openai, base_url: "http://127.0.0.1:9/v1", models: { z: { input_per_mtok: 3, output_per_mtok: 3, context_window: 1000 } } }
aliases: { fast: b/y }
tasks:
  sort-things:
    allow_models: [b/y, c/z]
    tiers:
      - { strategy: cheapest, models: [a/x, b/y] }
      - { models: [c/z] }
`,
    "pins.yaml",
    {},
  );
  const j = (model = "auto") => ({ id: "j", task: "sort-things", request: { model, messages: [{ role: "user" as const, content: "hi" }] } });
  const ids = (env: NodeJS.ProcessEnv, model?: string) => {
    const c = buildCatalog(cfg, env);
    const p = plan({ policy: c.tasks.get("sort-things")!, catalog: c, view: new LocalHealth(), job: j(model), now: 0, random: Math.random });
    return p.kind === "attempts" ? p.attempts.map((a) => `${a.model.id}@${a.tier}`) : p;
  };

  it("SWITCHYARD_PIN_<TASK> pins a model or a tier", () => {
    expect(ids({})).toEqual(["a/x@0", "b/y@0", "c/z@1"]);
    expect(ids({ SWITCHYARD_PIN_SORT_THINGS: "fast" })).toEqual(["b/y@0"]);
    expect(ids({ SWITCHYARD_PIN_SORT_THINGS: "tier:1" })).toEqual(["c/z@1"]);
  });

  it("a bad pin stops start-up naming the variable", () => {
    expect(() => buildCatalog(cfg, { SWITCHYARD_PIN_SORT_THINGS: "tier:7" })).toThrow(/SWITCHYARD_PIN_SORT_THINGS=tier:7/);
    expect(() => buildCatalog(cfg, { SWITCHYARD_PIN_SORT_THINGS: "nope/x" })).toThrow(/not a configured model/);
  });

  it("the job's own model beats the pin, within allow_models", () => {
    expect(ids({ SWITCHYARD_PIN_SORT_THINGS: "tier:1" }, "b/y")).toEqual(["b/y@0"]);
    expect(ids({}, "a/x")).toMatchObject({ kind: "none", reason: "no_route", error: expect.stringContaining("allow_models") });
  });
});

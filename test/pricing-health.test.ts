import { describe, expect, it } from "vitest";
import { parseConfig } from "../shared/config/load.ts";
import { buildCatalog } from "../shared/routing/catalog.ts";
import { DEFAULT_HEALTH_POLICY, ModelHealth } from "../services/pricing/health.ts";
import { effectivePrices } from "../services/pricing/prices.ts";

const policy = { ...DEFAULT_HEALTH_POLICY, minSamples: 4, cooldownMs: 1_000, maxCooldownMs: 4_000, downConsecutive: 3 };

describe("model health", () => {
  it("stays healthy on successes and reports latency percentiles", () => {
    const h = new ModelHealth(policy);
    for (let i = 1; i <= 100; i++) h.record("ok", i, 1_000 + i);
    const s = h.snapshot(2_000);
    expect(s).toMatchObject({ health: "healthy", errorRate: 0, samples: 100, cooldownUntil: 0 });
    expect(s.latencyP50Ms).toBe(50);
    expect(s.latencyP95Ms).toBe(95);
  });

  it("degrades above 20 % errors and recovers only below 10 % (hysteresis)", () => {
    const h = new ModelHealth(policy);
    let t = 0;
    const feed = (ok: number, bad: number) => {
      for (let i = 0; i < ok; i++) h.record("ok", 10, ++t);
      for (let i = 0; i < bad; i++) {
        h.record("unavailable", 10, ++t);
        h.record("ok", 10, ++t);
      }
    };
    feed(6, 2); // 2 of 10 fail
    expect(h.snapshot(t).health).toBe("degraded");
    feed(8, 0); // 2 of 18 ≈ 11 %: not yet back
    expect(h.snapshot(t).health).toBe("degraded");
    feed(4, 0); // 2 of 22 ≈ 9 %
    expect(h.snapshot(t).health).toBe("healthy");
  });

  it("goes down after consecutive failures, cools down, and ignores stragglers from before", () => {
    const h = new ModelHealth(policy);
    for (let i = 0; i < 3; i++) h.record("timeout", 5_000, 100 + i);
    expect(h.snapshot(200)).toMatchObject({ health: "down", cooldownUntil: 1_102 });
    h.record("ok", 10, 500); // an attempt started before the cooldown: no verdict
    expect(h.snapshot(600).health).toBe("down");
    expect(h.needsProbe(600)).toBe(false);
    expect(h.needsProbe(1_200)).toBe(true);
  });

  it("a successful probe brings the model back; a failed one doubles the cooldown up to the cap", () => {
    const h = new ModelHealth(policy);
    for (let i = 0; i < 3; i++) h.record("unavailable", 1, 0);
    h.probed(false, 1, 1_000);
    expect(h.snapshot(1_000)).toMatchObject({ health: "down", cooldownUntil: 3_000 });
    h.probed(false, 1, 3_000);
    expect(h.snapshot(3_000).cooldownUntil).toBe(7_000);
    h.probed(false, 1, 7_000);
    expect(h.snapshot(7_000).cooldownUntil).toBe(11_000);
    h.probed(true, 12, 11_000);
    expect(h.snapshot(11_000).health).toBe("degraded");
    for (let i = 0; i < 10; i++) h.record("ok", 12, 11_001 + i);
    expect(h.snapshot(11_100).health).toBe("healthy");
  });

  it("auth failures take a model down at once; bad requests say nothing about it", () => {
    const h = new ModelHealth(policy);
    for (let i = 0; i < 20; i++) h.record("bad_request", 1, i);
    expect(h.snapshot(50)).toMatchObject({ health: "healthy", samples: 0 });
    h.record("auth_failed", 1, 60);
    expect(h.snapshot(60).health).toBe("down");
  });

  it("invalid output is a quality signal, not an availability one: it neither counts as an error nor cools a model down", () => {
    const h = new ModelHealth(policy);
    // More than downConsecutive in a row, and far more than the window's minimum.
    for (let i = 0; i < 50; i++) h.record("invalid_output", 10, i);
    expect(h.snapshot(60)).toMatchObject({ health: "healthy", errorRate: 0, samples: 0, cooldownUntil: 0 });
    expect(h.needsProbe(10_000)).toBe(false);
    // Mixed in with real traffic, it changes neither the error rate nor the consecutive count.
    for (let i = 0; i < 10; i++) {
      h.record("ok", 10, 100 + 2 * i);
      h.record("invalid_output", 10, 101 + 2 * i);
    }
    expect(h.snapshot(130)).toMatchObject({ health: "healthy", errorRate: 0, samples: 10 });
    h.record("unavailable", 10, 200);
    h.record("invalid_output", 10, 201);
    h.record("unavailable", 10, 202);
    h.record("invalid_output", 10, 203);
    expect(h.snapshot(210).health).not.toBe("down"); // 2 failures in a row counted, not 4
  });

  it("a task's invalid outputs never cool a model down, even while it is recovering from a real outage", () => {
    const h = new ModelHealth(policy);
    for (let i = 0; i < 3; i++) h.record("timeout", 10, i);
    h.record("invalid_output", 10, 5_000); // after the cooldown: not a failure, so no longer cooldown
    expect(h.snapshot(5_000)).toMatchObject({ health: "down", cooldownUntil: 1_002 });
    h.probed(true, 10, 5_001);
    for (let i = 0; i < 20; i++) h.record("invalid_output", 10, 5_002 + i);
    expect(h.snapshot(5_100).health).toBe("degraded");
  });

  it("a degraded model with nothing left in its window returns to healthy; a down model keeps its cooldown", () => {
    const h = new ModelHealth({ ...policy, windowMs: 1_000 });
    let t = 0;
    for (let i = 0; i < 6; i++) h.record("ok", 10, ++t);
    for (let i = 0; i < 2; i++) h.record("unavailable", 10, ++t);
    expect(h.snapshot(t).health).toBe("degraded");
    // Traffic stops. Fewer than minSamples but some evidence: still degraded.
    expect(h.snapshot(t + 999).health).toBe("degraded");
    // No evidence left at all.
    expect(h.snapshot(t + 1_001)).toMatchObject({ health: "healthy", samples: 0, errorRate: 0 });

    const d = new ModelHealth({ ...policy, windowMs: 1_000 });
    for (let i = 0; i < 3; i++) d.record("unavailable", 10, i);
    expect(d.snapshot(100_000)).toMatchObject({ health: "down", cooldownUntil: 1_002 });
    expect(d.needsProbe(100_000)).toBe(true);
  });

  it("mostly rate-limited means degraded, not down", () => {
    const h = new ModelHealth(policy);
    for (let i = 0; i < 10; i++) h.record(i % 4 === 0 ? "ok" : "rate_limited", 1, i);
    expect(h.snapshot(20).health).toBe("degraded");
  });

  it("forgets events older than the window", () => {
    const h = new ModelHealth({ ...policy, windowMs: 1_000 });
    for (let i = 0; i < 2; i++) h.record("unavailable", 1, i);
    for (let i = 0; i < 4; i++) h.record("ok", 1, 10 + i);
    expect(h.snapshot(500).errorRate).toBeCloseTo(2 / 6);
    expect(h.snapshot(1_005).errorRate).toBe(0);
  });
});

describe("price table", () => {
  const catalog = buildCatalog(
    parseConfig(
      `providers:
  p:
    dialect: openai
    base_url: http://127.0.0.1:9/v1
    models:
      a: { input_per_mtok: 1, output_per_mtok: 2, context_window: 100 }
      b: { input_per_mtok: 3, output_per_mtok: 4, context_window: 100 }
tasks:
  t:
    tiers: [{ models: [p/a] }]
`,
      "prices.yaml",
      {},
    ),
  );

  it("config prices, then the most recent of file and override per model", () => {
    const none = effectivePrices(catalog.models, 100, undefined, new Map());
    expect(none.get("p/a")).toMatchObject({ inputPerMtok: 1, source: "config" });
    const file = { prices: { "p/a": { input_per_mtok: 0.5, output_per_mtok: 1 } }, setAt: 200 };
    const override = new Map([["p/a", { input_per_mtok: 0.1, output_per_mtok: 0.2, set_at: new Date(300).toISOString() }]]);
    expect(effectivePrices(catalog.models, 100, file, new Map()).get("p/a")).toMatchObject({ inputPerMtok: 0.5, source: "file" });
    expect(effectivePrices(catalog.models, 100, file, override).get("p/a")).toMatchObject({ inputPerMtok: 0.1, source: "cli" });
    const newerFile = { ...file, setAt: 400 };
    expect(effectivePrices(catalog.models, 100, newerFile, override).get("p/a")).toMatchObject({ inputPerMtok: 0.5, source: "file" });
    expect(effectivePrices(catalog.models, 100, newerFile, override).get("p/b")).toMatchObject({ inputPerMtok: 3, source: "config" });
  });
});

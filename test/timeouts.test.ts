/**
 * Adaptive attempt timeouts (`shared/routing/timeouts.ts`): a pure function of the configured
 * ceiling, the live p95 and its sample count; and the config that turns it on.
 */
import { describe, expect, it } from "vitest";
import { parseConfig } from "../shared/config/load.ts";
import { buildCatalog } from "../shared/routing/catalog.ts";
import { LocalHealth } from "../shared/routing/health.ts";
import { LiveState } from "../shared/routing/live-state.ts";
import { adaptiveTimeoutMs } from "../shared/routing/timeouts.ts";

const opts = { multiplier: 3, floor: 1_000, min_samples: 20 };

describe("adaptive attempt timeouts", () => {
  it("is the configured timeout when off, with no live stats, before the first answer, or with too few samples", () => {
    expect(adaptiveTimeoutMs(30_000, { p95Ms: 800, samples: 500 }, undefined)).toBe(30_000);
    expect(adaptiveTimeoutMs(30_000, undefined, opts)).toBe(30_000);
    expect(adaptiveTimeoutMs(30_000, { p95Ms: NaN, samples: 50 }, opts)).toBe(30_000);
    expect(adaptiveTimeoutMs(30_000, { p95Ms: 800, samples: 19 }, opts)).toBe(30_000);
  });

  it("is p95 × multiplier once enough samples exist", () => {
    expect(adaptiveTimeoutMs(30_000, { p95Ms: 800, samples: 20 }, opts)).toBe(2_400);
    expect(adaptiveTimeoutMs(30_000, { p95Ms: 800.2, samples: 20 }, opts)).toBe(2_401);
  });

  it("never goes below the floor nor above the configured timeout", () => {
    expect(adaptiveTimeoutMs(30_000, { p95Ms: 50, samples: 100 }, opts)).toBe(1_000);
    expect(adaptiveTimeoutMs(30_000, { p95Ms: 20_000, samples: 100 }, opts)).toBe(30_000);
    // A floor above the ceiling: the configured timeout still wins.
    expect(adaptiveTimeoutMs(500, { p95Ms: 50, samples: 100 }, opts)).toBe(500);
  });

  it("is off by default and takes defaults and durations from the provider's config", () => {
    const yaml = (extra: string) => `
providers:
  a: { dialect: openai, base_url: "http://127.0.0.1:1/v1", timeout_ms: 20s, ${extra} models: { m: { input_per_mtok: 1, output_per_mtok: 2, context_window: 8000 } } }
tasks:
  t: { tiers: [{ models: [a/m] }] }
`;
    expect(parseConfig(yaml(""), "t.yaml", {}).providers.a!.adaptive_timeout).toBeUndefined();
    expect(parseConfig(yaml("adaptive_timeout: {},"), "t.yaml", {}).providers.a!.adaptive_timeout).toEqual({ multiplier: 3, floor: 1_000, min_samples: 20 });
    expect(parseConfig(yaml("adaptive_timeout: { floor: 2s, multiplier: 4 },"), "t.yaml", {}).providers.a!.adaptive_timeout).toEqual({ multiplier: 4, floor: 2_000, min_samples: 20 });
    expect(() => parseConfig(yaml("adaptive_timeout: { multiplier: 0.5 },"), "t.yaml", {})).toThrow(/providers\.a\.adaptive_timeout\.multiplier/);
  });

  it("reads the p95 and its samples from the pricing service's KV entry", () => {
    const config = parseConfig(`
providers:
  a: { dialect: openai, base_url: "http://127.0.0.1:1/v1", models: { m: { input_per_mtok: 1, output_per_mtok: 2, context_window: 8000 } } }
tasks:
  t: { tiers: [{ models: [a/m] }] }
`, "t.yaml", {});
    const model = buildCatalog(config).models.get("a/m")!;
    const live = new LiveState(new LocalHealth(), () => 0);
    expect(live.latency(model)).toBeUndefined();
    const iso = new Date(0).toISOString();
    live.apply({ id: "a/m", provider: "a", model: "m", input_per_mtok: 1, output_per_mtok: 2, context_window: 8000, price_source: "config", price_updated_at: iso, health: "healthy", error_rate: 0, rate_limit_rate: 0, latency_p50_ms: 300, latency_p95_ms: 800, samples: 42, cooldown_until: null, health_updated_at: iso, updated_at: iso });
    expect(live.latency(model)).toEqual({ p95Ms: 800, samples: 42 });
    expect(adaptiveTimeoutMs(30_000, live.latency(model), opts)).toBe(2_400);
  });
});

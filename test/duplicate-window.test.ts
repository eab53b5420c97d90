/**
 * `streams.duplicate_window` must outlast a job's whole retry span, or an outcome published
 * again after a lost ack is stored twice: config load refuses a shorter one, naming both.
 */
import { describe, expect, it } from "vitest";
import { DEFAULT_CONFIG_PATH, loadConfig, parseConfig } from "../shared/config/load.ts";
import { humanDuration, retrySpan } from "../shared/config/retry-span.ts";
import { ConfigError } from "../shared/errors.ts";

const withRetries = (streams: string, router: string) => `
streams:
${streams}
router:
${router}
providers:
  acme:
    dialect: openai
    base_url: http://127.0.0.1:9/v1
    models:
      small: { input_per_mtok: 0.1, output_per_mtok: 0.4, context_window: 8000 }
tasks:
  moderation:
    tiers:
      - models: [acme/small]
`;

const DEFAULT_ROUTER = "  ack_wait: 30s\n  max_deliveries: 5\n  redelivery_backoff: [1s, 5s, 15s, 30s]";

function configError(text: string): ConfigError {
  try {
    parseConfig(text, "cfg.yaml", {});
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error("expected a ConfigError");
}

describe("the longest retry span", () => {
  it("is max_deliveries × ack_wait plus every delivery's backoff (the last repeating) stretched by the +20 % jitter", () => {
    // 5 × 30 s + 1.2 × (1 + 5 + 15 + 30 + 30) s: the fifth delivery can still be followed by one that stores the outcome.
    expect(retrySpan({ ack_wait: 30_000, max_deliveries: 5, redelivery_backoff: [1000, 5000, 15_000, 30_000] })).toEqual({
      ms: 150_000 + 97_200,
      deliveries: 5,
      ackWaitMs: 30_000,
      backoffsMs: [1000, 5000, 15_000, 30_000, 30_000],
    });
    // More backoff values than deliveries: only the first max_deliveries count.
    expect(retrySpan({ ack_wait: 1000, max_deliveries: 1, redelivery_backoff: [250, 60_000] }).ms).toBe(1000 + 300);
  });

  it("reads as a config would write it", () => {
    expect(humanDuration(247_200)).toBe("4m 7.2s");
    expect(humanDuration(60_000)).toBe("1m");
    expect(humanDuration(400)).toBe("400ms");
    expect(humanDuration(90 * 60_000)).toBe("1h 30m");
  });
});

describe("streams.duplicate_window at config load", () => {
  it("accepts the embedded default (15m against a 4m 7.2s span)", () => {
    const cfg = loadConfig(DEFAULT_CONFIG_PATH, {});
    expect(cfg.streams.duplicate_window).toBeGreaterThanOrEqual(retrySpan(cfg.router).ms);
  });

  it("refuses a window shorter than the span, naming both figures and how the span adds up, at the window's line", () => {
    const err = configError(withRetries("  duplicate_window: 1m", DEFAULT_ROUTER));
    expect(err.problems).toHaveLength(1);
    expect(err.problems[0]).toMatchObject({ path: "streams.duplicate_window", line: 3 });
    expect(err.problems[0]!.message).toContain("duplicate_window 1m is shorter than the longest retry span 4m 7.2s");
    expect(err.problems[0]!.message).toContain("max_deliveries 5 × ack_wait 30s + backoff 1s+5s+15s+30s+30s");
    expect(err.message).toMatch(/^cfg\.yaml:3:\d+: streams\.duplicate_window: /);
  });

  it("accepts a window exactly as long as the span and refuses one a millisecond shorter", () => {
    const router = "  ack_wait: 5s\n  max_deliveries: 3\n  redelivery_backoff: [200ms, 400ms]"; // 15 s + 1.2 s
    expect(parseConfig(withRetries("  duplicate_window: 16200", router), "cfg.yaml", {}).streams.duplicate_window).toBe(16_200);
    expect(configError(withRetries("  duplicate_window: 16199", router)).problems[0]!.message).toContain("shorter than the longest retry span 16.2s");
  });

  it("counts the default window against retries made longer (default 15m, ack_wait 5m × 3)", () => {
    const err = configError(withRetries("  replicas: 1", "  ack_wait: 5m\n  max_deliveries: 3"));
    expect(err.problems[0]).toMatchObject({ path: "streams.duplicate_window" });
    expect(err.problems[0]!.message).toContain("duplicate_window 15m is shorter than the longest retry span 15m 25.2s");
  });
});

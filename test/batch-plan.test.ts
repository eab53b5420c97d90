import { describe, expect, it } from "vitest";
import { parseConfig } from "../shared/config/load.ts";
import { ConfigError } from "../shared/errors.ts";
import {
  abandonAt,
  batchAttempt,
  batchPrices,
  groupLines,
  LIVE_MARGIN_MS,
  liveNeedMs,
  mustAbandon,
  nextFlushAt,
  qualifies,
  type ArrivingLine,
  type BatchPolicy,
} from "../shared/routing/batch-plan.ts";
import type { PlannedAttempt } from "../shared/routing/planner.ts";

const MIN = 60_000;
const HOUR = 60 * MIN;
const NOW = Date.parse("2026-12-02T00:00:00Z");
const POLICY: BatchPolicy = { minSlackMs: 2 * HOUR, windowMs: 5 * MIN, maxLines: 3, pollIntervalMs: MIN };
/** Four 30 s attempts, polled every 10 s: 2 min 40 s with the margin. */
const NEED = liveNeedMs({ timeoutMs: 30_000, attempts: 4, pollIntervalMs: 10_000 });

const line = (jobId: string, provider = "acme", model = "small", deadline = NOW + 24 * HOUR): ArrivingLine => ({ jobId, provider, model, deadline });

describe("the live path's need", () => {
  it("is every attempt timing out, one poll interval and the margin", () => {
    expect(NEED).toBe(4 * 30_000 + 10_000 + LIVE_MARGIN_MS);
  });
});

describe("which jobs qualify for a batch", () => {
  it("takes a job whose deadline leaves at least min_slack", () => {
    expect(qualifies({ deadline: NOW + 2 * HOUR }, POLICY, NEED, NOW)).toEqual({ batch: true, slackMs: 2 * HOUR });
  });

  it("serves live a job with less slack than min_slack, or with no deadline", () => {
    expect(qualifies({ deadline: NOW + 2 * HOUR - 1 }, POLICY, NEED, NOW)).toMatchObject({ batch: false, reason: "slack_below_min" });
    expect(qualifies({ deadline: undefined }, POLICY, NEED, NOW)).toMatchObject({ batch: false, reason: "no_deadline" });
  });

  it("takes a job that asks for the batch lane below min_slack, but never one that could not fall back in time", () => {
    const justEnough = NOW + POLICY.windowMs + NEED;
    expect(qualifies({ deadline: justEnough, wantsBatch: true }, POLICY, NEED, NOW)).toMatchObject({ batch: true });
    expect(qualifies({ deadline: justEnough - 1, wantsBatch: true }, POLICY, NEED, NOW)).toMatchObject({ batch: false, reason: "slack_below_fallback" });
  });
});

describe("how jobs group into batches", () => {
  it("groups by provider and model, keeps arrival order, and holds groups until their window closes", () => {
    const g = groupLines([], [line("a"), line("b", "acme", "large"), line("c"), line("d", "other")], POLICY, NOW);
    expect(g.ready).toEqual([]);
    expect(g.open.map((o) => [o.provider, o.model, o.lines.map((l) => l.jobId)])).toEqual([
      ["acme", "small", ["a", "c"]],
      ["acme", "large", ["b"]],
      ["other", "small", ["d"]],
    ]);
    expect(nextFlushAt(g.open, POLICY)).toBe(NOW + 5 * MIN);
  });

  it("submits a group as soon as it is full and opens a new one for the next line", () => {
    const g = groupLines([], ["a", "b", "c", "d"].map((id) => line(id)), POLICY, NOW);
    expect(g.ready.map((r) => r.lines.map((l) => l.jobId))).toEqual([["a", "b", "c"]]);
    expect(g.open.map((o) => o.lines.map((l) => l.jobId))).toEqual([["d"]]);
  });

  it("submits a group whose window, counted from its first line, has closed", () => {
    const first = groupLines([], [line("a")], POLICY, NOW);
    const later = groupLines(first.open, [line("b")], POLICY, NOW + 4 * MIN);
    expect(later.ready).toEqual([]);
    expect(later.open[0]).toMatchObject({ openedAt: NOW, lines: [{ jobId: "a" }, { jobId: "b" }] });
    const closed = groupLines(later.open, [], POLICY, NOW + 5 * MIN);
    expect(closed.open).toEqual([]);
    expect(closed.ready.map((r) => r.lines.length)).toEqual([2]);
    expect(nextFlushAt(closed.open, POLICY)).toBeUndefined();
  });

  it("leaves the groups it was given untouched", () => {
    const first = groupLines([], [line("a")], POLICY, NOW);
    const snapshot = structuredClone(first.open);
    groupLines(first.open, [line("b"), line("c")], POLICY, NOW);
    expect(first.open).toEqual(snapshot);
  });
});

describe("when a batch must be given up for the live path", () => {
  const lines = [
    { jobId: "late", deadline: NOW + 10 * HOUR },
    { jobId: "soon", deadline: NOW + 3 * HOUR },
  ];

  it("is when the time to the earliest deadline in it falls below the live path's need", () => {
    expect(abandonAt(lines, NEED)).toBe(NOW + 3 * HOUR - NEED);
    expect(mustAbandon(lines, NEED, NOW + 3 * HOUR - NEED - 1)).toBe(false);
    expect(mustAbandon(lines, NEED, NOW + 3 * HOUR - NEED)).toBe(true);
  });
});

describe("batch prices", () => {
  const live = { input_per_mtok: 0.15, output_per_mtok: 0.6 };

  it("take the discount off the live prices", () => {
    expect(batchPrices({ ...live, batch_discount: 0.5 })).toEqual({ inputPerMtok: 0.075, outputPerMtok: 0.3 });
  });

  it("prefer explicit batch prices over the discount", () => {
    expect(batchPrices({ ...live, batch_discount: 0.5, batch_input_per_mtok: 0.05 })).toEqual({ inputPerMtok: 0.05, outputPerMtok: 0.3 });
  });

  it("are absent for a model with neither: it is not batched", () => {
    expect(batchPrices(live)).toBeUndefined();
  });
});

describe("the batch config", () => {
  const CONFIG = `
providers:
  acme:
    dialect: openai
    base_url: http://127.0.0.1:9/v1
    models:
      small: { input_per_mtok: 0.15, output_per_mtok: 0.6, context_window: 8000, batch_discount: 0.5 }
tasks:
  nightly:
    tiers:
      - models: [acme/small]
    batch: { min_slack: 3h, window: 10m, max_lines: 2000 }
  backlog:
    tiers:
      - models: [acme/small]
    batch: {}
  live:
    tiers:
      - models: [acme/small]
`;

  it("parses durations, fills defaults, and stays absent when not given", () => {
    const cfg = parseConfig(CONFIG, "cfg.yaml", {});
    expect(cfg.tasks.nightly!.batch).toEqual({ min_slack: 3 * HOUR, window: 10 * MIN, max_lines: 2000, poll_interval: MIN });
    expect(cfg.tasks.backlog!.batch).toEqual({ min_slack: 2 * HOUR, window: 5 * MIN, max_lines: 50_000, poll_interval: MIN });
    expect(cfg.tasks.live!.batch).toBeUndefined();
    expect(batchPrices(cfg.providers.acme!.models.small!)).toEqual({ inputPerMtok: 0.075, outputPerMtok: 0.3 });
  });

  it("reports a bad batch setting at its path and line", () => {
    const text = CONFIG.replace("max_lines: 2000", "max_lines: 60000").replace("window: 10m", "window: soon").replace("batch_discount: 0.5", "batch_discount: 2");
    let err: ConfigError | undefined;
    try {
      parseConfig(text, "cfg.yaml", {});
    } catch (e) {
      err = e as ConfigError;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const byPath = Object.fromEntries(err!.problems.map((p) => [p.path, p]));
    expect(byPath["tasks.nightly.batch.max_lines"]).toMatchObject({ line: 12 });
    expect(byPath["tasks.nightly.batch.max_lines"]!.message).toContain("at most 50000");
    expect(byPath["tasks.nightly.batch.window"]!.message).toContain("not a duration");
    expect(byPath["providers.acme.models.small.batch_discount"]).toMatchObject({ line: 7 });
  });
});

describe("the batch line's model", () => {
  const model = (provider: string, name: string) => ({ id: `${provider}/${name}`, ordinal: 0, provider, name, upstream: name, inputPerMtok: 0, outputPerMtok: 0, cachedInputPerMtok: undefined, cacheWritePerMtok: undefined, reasoningPerMtok: undefined, contextWindow: 8000, structuredOutput: true });
  const planned = (provider: string, name: string, input: number, output: number, tier = 0): PlannedAttempt => ({
    model: model(provider, name),
    tier,
    expectedCostUsd: (1000 * input + 100 * output) / 1e6,
    inputPerMtok: input,
    outputPerMtok: output,
    cachedInputPerMtok: input / 10,
    cacheWritePerMtok: undefined,
    reasoningPerMtok: undefined,
  });
  const tokens = { prompt: 1000, completion: 100 };
  const half = (p: PlannedAttempt) => ({ inputPerMtok: p.inputPerMtok / 2, outputPerMtok: p.outputPerMtok / 2 });

  it("is the candidate cheapest at its batch price, priced so, part prices scaled alike", () => {
    const plan = [planned("a", "small", 1, 4), planned("b", "mid", 0.5, 2)];
    const chosen = batchAttempt(plan, half, tokens)!;
    expect(chosen.model.id).toBe("b/mid");
    expect(chosen).toMatchObject({ inputPerMtok: 0.25, outputPerMtok: 1, cachedInputPerMtok: 0.025, expectedCostUsd: (1000 * 0.25 + 100 * 1) / 1e6 });
  });

  it("is none when no candidate has batch prices", () => {
    expect(batchAttempt([planned("a", "small", 1, 4)], () => undefined, tokens)).toBeUndefined();
  });

  it("is none when the live plan's first choice costs no more than the best batch line", () => {
    // A cheap model with no batch API beats a dear one at half price.
    const plan = [planned("cheap", "live-only", 0.1, 0.4), planned("dear", "batched", 2, 8)];
    expect(batchAttempt(plan, (p) => (p.model.provider === "dear" ? half(p) : undefined), tokens)).toBeUndefined();
  });
});

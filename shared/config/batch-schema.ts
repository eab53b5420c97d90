/**
 * A task's `batch:` section: when its jobs may go through the providers' batch APIs (about half
 * price, answers within hours) instead of live calls, and how they are grouped. The decisions
 * themselves are the pure functions of `shared/routing/batch-plan.ts`.
 *
 * Built by a factory that takes the config's duration type, so it stays defined once, in
 * `schema.ts`, without an import cycle.
 */
import { z } from "zod";

type Units = { readonly duration: z.ZodType<number, number | string> };

/**
 * The most lines any of the three APIs takes in one batch: OpenAI's 50,000 (Anthropic takes
 * 100,000; Gemini's inlined requests are bounded by a 20 MB body instead).
 */
export const MAX_BATCH_LINES = 50_000;

export function batchConfigSchema({ duration }: Units) {
  return z.strictObject({
    /**
     * A job goes through a batch only when its deadline is at least this far away on arrival
     * (a job without a deadline is served live). Batch APIs promise answers within 24 h, so a
     * slack well under that relies on the fallback to live calls.
     * @defaultValue 2h
     */
    min_slack: duration.default(2 * 3600_000),
    /** How long a group of jobs for one provider and model collects lines before it is submitted. @defaultValue 5m */
    window: duration.default(5 * 60_000),
    /** A group is submitted as soon as it holds this many lines. @defaultValue 50000 */
    /**
     * How often a submitted batch is polled. A batch that must be given up for its jobs'
     * deadlines is noticed at most this late, so it counts in the live path's need.
     * @defaultValue 1m
     */
    poll_interval: duration.default(60_000),
    max_lines: z.int().positive().max(MAX_BATCH_LINES, `max_lines must be at most ${MAX_BATCH_LINES} (OpenAI's limit per batch)`).default(MAX_BATCH_LINES),
  });
}

/**
 * Per-model batch prices, beside the live ones. Either a discount on the live prices or
 * explicit prices; explicit ones win where both are given. Neither: the model is not batched.
 */
export const batchPriceFields = {
  /** Share of the live price the batch API takes off: 0.5 is half price (OpenAI, Anthropic and Gemini as of 2025). */
  batch_discount: z.number().gt(0).lt(1).optional(),
  /** USD per million prompt tokens through the batch API. */
  batch_input_per_mtok: z.number().nonnegative().optional(),
  /** USD per million completion tokens through the batch API. */
  batch_output_per_mtok: z.number().nonnegative().optional(),
};

/**
 * The one cost formula: what a call cost, from its usage (the normal form of `Usage`: parts
 * included in the totals) and the model's prices per million tokens. The planner's expected
 * cost uses the same prices with estimated tokens.
 */
import type { Attempt, Cost, Usage } from "../contract/job.ts";

export interface Prices {
  readonly inputPerMtok: number;
  readonly outputPerMtok: number;
  /** Prompt tokens read from the provider's cache; `inputPerMtok` when absent. */
  readonly cachedInputPerMtok?: number | undefined;
  /** Prompt tokens written to the cache (Anthropic charges a premium); `inputPerMtok` when absent. */
  readonly cacheWritePerMtok?: number | undefined;
  /** Reasoning tokens, which every provider bills as output; `outputPerMtok` when absent. */
  readonly reasoningPerMtok?: number | undefined;
}

/** What the formula reads of a usage: the totals, and the parts when the provider reported them. */
export type PricedUsage = Pick<Usage, "prompt_tokens" | "completion_tokens" | "prompt_tokens_details" | "completion_tokens_details">;

/**
 * The cost by part, each token counted once: the cache parts and reasoning are taken out of
 * the prompt and completion totals before those are priced. A provider whose parts exceed its
 * total (never documented) is clamped rather than charged a negative amount.
 */
export function costBreakdown(usage: PricedUsage, prices: Prices): Cost {
  const cached = usage.prompt_tokens_details?.cached_tokens ?? 0;
  const written = usage.prompt_tokens_details?.cache_write_tokens ?? 0;
  const reasoning = usage.completion_tokens_details?.reasoning_tokens ?? 0;
  const input = Math.max(0, usage.prompt_tokens - cached - written) * prices.inputPerMtok;
  const cachedInput = cached * (prices.cachedInputPerMtok ?? prices.inputPerMtok);
  const cacheWrite = written * (prices.cacheWritePerMtok ?? prices.inputPerMtok);
  const output = Math.max(0, usage.completion_tokens - reasoning) * prices.outputPerMtok;
  const reasoningCost = reasoning * (prices.reasoningPerMtok ?? prices.outputPerMtok);
  return {
    input: input / 1e6,
    cached_input: cachedInput / 1e6,
    cache_write: cacheWrite / 1e6,
    output: output / 1e6,
    reasoning: reasoningCost / 1e6,
    // Summed before the one division, in this order: usage without parts costs exactly what
    // (prompt × input + completion × output) / 1e6 gave before parts were priced.
    total: (input + cachedInput + cacheWrite + output + reasoningCost) / 1e6,
  };
}

export function costUsd(usage: PricedUsage, prices: Prices): number {
  return costBreakdown(usage, prices).total;
}

/** What the providers billed for these attempts: those that answered carry their cost. */
export function billedUsd(attempts: readonly Attempt[]): number {
  let sum = 0;
  for (const a of attempts) if (a.cost_usd !== undefined) sum += a.cost_usd;
  return sum;
}

/**
 * The one cost formula: what a call cost, from its usage and the model's prices per million
 * tokens. The planner's expected cost uses the same prices with estimated tokens.
 */
import type { Usage } from "../contract/job.ts";

export interface Prices {
  readonly inputPerMtok: number;
  readonly outputPerMtok: number;
}

export function costUsd(usage: Pick<Usage, "prompt_tokens" | "completion_tokens">, prices: Prices): number {
  return (usage.prompt_tokens * prices.inputPerMtok + usage.completion_tokens * prices.outputPerMtok) / 1e6;
}

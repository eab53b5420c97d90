/**
 * The batch lane's decisions, as pure functions (`now` comes in, nothing is read or written):
 * which jobs may wait for a provider batch, how they group into batches, and when a batch must
 * be given up so its jobs still make their deadlines on the live path.
 *
 * The trade: a batch line costs about half a live call but may take hours. Switchyard only
 * takes that trade when it can still back out: a job qualifies only if, after waiting for its
 * group to fill, there is still time to serve it live; and a submitted batch is abandoned (its
 * unanswered jobs sent to the live tiers) once the earliest deadline in it comes within the
 * live path's need. Being served late is never the price of being served cheaply.
 */

import type { PlannedAttempt } from "./planner.ts";

/** A task's `batch:` section, in milliseconds (see `shared/config/batch-schema.ts`). */
export interface BatchPolicy {
  readonly minSlackMs: number;
  readonly windowMs: number;
  readonly maxLines: number;
  readonly pollIntervalMs: number;
}

/** What the live path needs to serve a job from scratch. */
export interface LiveNeed {
  /** The provider timeout of one attempt (`providers.<p>.timeout_ms`; the slowest candidate's). */
  readonly timeoutMs: number;
  /** Attempts the live path may make (`tasks.<t>.max_attempts`). */
  readonly attempts: number;
  /** How often open batches are polled: an abandonment is noticed at most this late. */
  readonly pollIntervalMs: number;
}

/**
 * Added to the live path's need for what the attempts themselves do not count: cancelling the
 * batch, handing the job back to the router, queueing behind other jobs, retry backoff.
 * @defaultValue 30 s
 */
export const LIVE_MARGIN_MS = 30_000;

/**
 * Time the live path needs to serve a job whose batch is given up: every attempt timing out,
 * plus one poll interval (the moment is noticed at the next poll) and `LIVE_MARGIN_MS`.
 */
export function liveNeedMs(need: LiveNeed): number {
  return need.timeoutMs * need.attempts + need.pollIntervalMs + LIVE_MARGIN_MS;
}

export interface BatchCandidate {
  /** Epoch ms; undefined: the job has no deadline. */
  readonly deadline: number | undefined;
  /** The job asked for the batch lane itself; it still needs a deadline it can make. */
  readonly wantsBatch?: boolean;
}

export type Qualification =
  | { readonly batch: true; readonly slackMs: number }
  | { readonly batch: false; readonly reason: "no_deadline" | "slack_below_min" | "slack_below_fallback"; readonly slackMs: number };

/**
 * Whether a job may go through a batch. It needs a deadline (without one nobody said waiting
 * hours is fine), a slack of at least `min_slack` (unless it asked for the batch lane), and in
 * any case enough slack to wait out a full window and still be served live after: otherwise
 * it would be abandoned the moment its batch was submitted, and the batch would have cost a
 * delay for nothing.
 */
export function qualifies(job: BatchCandidate, policy: BatchPolicy, liveNeed: number, now: number): Qualification {
  if (job.deadline === undefined) return { batch: false, reason: "no_deadline", slackMs: Infinity };
  const slackMs = job.deadline - now;
  if (slackMs < policy.windowMs + liveNeed) return { batch: false, reason: "slack_below_fallback", slackMs };
  if (!job.wantsBatch && slackMs < policy.minSlackMs) return { batch: false, reason: "slack_below_min", slackMs };
  return { batch: true, slackMs };
}

/** One job waiting in a group. */
export interface GroupLine {
  readonly jobId: string;
  /** Epoch ms. */
  readonly deadline: number;
}

/** Jobs for one provider and model collecting until the window closes or the group is full. */
export interface OpenGroup {
  readonly provider: string;
  readonly model: string;
  readonly openedAt: number;
  readonly lines: readonly GroupLine[];
}

export interface ArrivingLine extends GroupLine {
  readonly provider: string;
  readonly model: string;
}

export interface Grouping {
  /** Groups still collecting, at most one per provider and model. */
  readonly open: readonly OpenGroup[];
  /** Groups to submit now, each with 1 to `maxLines` lines, in the order they became ready. */
  readonly ready: readonly OpenGroup[];
}

/**
 * Adds the arriving lines to the open groups and says which groups to submit: a group is
 * submitted when it reaches `maxLines` (a new one opens for the next line) or when its window,
 * counted from its first line, has closed by `now`. Lines keep their arrival order, so a
 * batch's lines and its jobs' order in the results match.
 */
export function groupLines(open: readonly OpenGroup[], arriving: readonly ArrivingLine[], policy: BatchPolicy, now: number): Grouping {
  const groups = new Map<string, { provider: string; model: string; openedAt: number; lines: GroupLine[] }>();
  for (const g of open) groups.set(groupKey(g.provider, g.model), { ...g, lines: [...g.lines] });
  const ready: OpenGroup[] = [];
  for (const line of arriving) {
    const key = groupKey(line.provider, line.model);
    let g = groups.get(key);
    if (!g) {
      g = { provider: line.provider, model: line.model, openedAt: now, lines: [] };
      groups.set(key, g);
    }
    g.lines.push({ jobId: line.jobId, deadline: line.deadline });
    if (g.lines.length >= policy.maxLines) {
      ready.push(g);
      groups.delete(key);
    }
  }
  const stillOpen: OpenGroup[] = [];
  for (const g of groups.values()) {
    if (now - g.openedAt >= policy.windowMs) ready.push(g);
    else stillOpen.push(g);
  }
  return { open: stillOpen, ready };
}

/** When the first open group's window closes (to set a timer), or undefined with none open. */
export function nextFlushAt(open: readonly OpenGroup[], policy: BatchPolicy): number | undefined {
  let at: number | undefined;
  for (const g of open) at = Math.min(at ?? Infinity, g.openedAt + policy.windowMs);
  return at;
}

/**
 * The moment a batch holding these lines must be given up: the earliest deadline minus the
 * live path's need. Past it, waiting on the batch risks serving that job late.
 */
export function abandonAt(lines: readonly GroupLine[], liveNeed: number): number {
  let earliest = Infinity;
  for (const l of lines) earliest = Math.min(earliest, l.deadline);
  return earliest - liveNeed;
}

/**
 * Whether a running batch must be abandoned now: the time left to its earliest deadline is
 * below the live path's need. Its unanswered lines then go to the live tiers (and the batch is
 * cancelled; lines it answers meanwhile are dropped, the job's one outcome being the live one).
 */
export function mustAbandon(lines: readonly GroupLine[], liveNeed: number, now: number): boolean {
  return now >= abandonAt(lines, liveNeed);
}

/** A model's prices, live and batch, as configured (`providers.<p>.models.<m>`). */
export interface BatchPriceConfig {
  readonly input_per_mtok: number;
  readonly output_per_mtok: number;
  readonly batch_discount?: number | undefined;
  readonly batch_input_per_mtok?: number | undefined;
  readonly batch_output_per_mtok?: number | undefined;
}

/**
 * USD per million tokens through the batch API: an explicit batch price where set, else the
 * live price less the discount; undefined when the model has neither (it is not batched: there
 * is no saving to plan with).
 */
export function batchPrices(m: BatchPriceConfig): { readonly inputPerMtok: number; readonly outputPerMtok: number } | undefined {
  const discount = m.batch_discount;
  if (m.batch_input_per_mtok === undefined && m.batch_output_per_mtok === undefined && discount === undefined) return undefined;
  const off = 1 - (discount ?? 0);
  return {
    inputPerMtok: m.batch_input_per_mtok ?? m.input_per_mtok * off,
    outputPerMtok: m.batch_output_per_mtok ?? m.output_per_mtok * off,
  };
}

/**
 * The attempt a job's batch line makes: among the live plan's candidates (already filtered by
 * health, the job's routing and context windows), the one cheapest at its batch prices (a
 * discount applies to the live price the plan used, so a price change reaches batches too), priced
 * so; none when no candidate is batched, or when the batch line would cost no less than the
 * live plan's first attempt (a cheap live model can beat a dear one at half price). The
 * result's cost and the ledger then use the batch prices, as a live result uses the live ones.
 */
export function batchAttempt(
  attempts: readonly PlannedAttempt[],
  batchPricesOf: (planned: PlannedAttempt) => { readonly inputPerMtok: number; readonly outputPerMtok: number } | undefined,
  tokens: { readonly prompt: number; readonly completion: number },
): PlannedAttempt | undefined {
  let best: PlannedAttempt | undefined;
  for (const p of attempts) {
    const prices = batchPricesOf(p);
    if (prices === undefined) continue;
    const expectedCostUsd = (tokens.prompt * prices.inputPerMtok + tokens.completion * prices.outputPerMtok) / 1e6;
    if (best !== undefined && best.expectedCostUsd <= expectedCostUsd) continue;
    // Part prices scale with the discount: batch APIs take the same share off every part.
    const scale = (part: number | undefined, live: number, batch: number) => (part === undefined || live === 0 ? undefined : (part * batch) / live);
    best = {
      ...p,
      expectedCostUsd,
      inputPerMtok: prices.inputPerMtok,
      outputPerMtok: prices.outputPerMtok,
      cachedInputPerMtok: scale(p.cachedInputPerMtok, p.inputPerMtok, prices.inputPerMtok),
      cacheWritePerMtok: scale(p.cacheWritePerMtok, p.inputPerMtok, prices.inputPerMtok),
      reasoningPerMtok: scale(p.reasoningPerMtok, p.outputPerMtok, prices.outputPerMtok),
    };
  }
  const live = attempts[0];
  return best !== undefined && live !== undefined && best.expectedCostUsd < live.expectedCostUsd ? best : undefined;
}

function groupKey(provider: string, model: string): string {
  return `${provider}\u0000${model}`;
}

/**
 * What to do with a delivery none of whose attempts succeeded: the one retry-or-fail
 * decision, pure like the planner.
 */
import type { AttemptOutcome, DlqReason } from "../contract/job.ts";
import { isTransient, permanentFailureReason } from "./outcomes.ts";

export type Decision =
  | { readonly action: "redeliver"; readonly delayMs: number }
  | { readonly action: "dead_letter"; readonly reason: DlqReason; readonly error: string };

export interface DecideInput {
  /** Failure kinds of this delivery's attempts, in order (empty when no candidate was ready). */
  readonly failures: readonly AttemptOutcome[];
  /**
   * Candidates this delivery did not call (cooling down, over `max_attempts`) that may still
   * be called for this job: while any remain, a permanent failure elsewhere is not the end.
   */
  readonly untried: number;
  readonly lastError: string | undefined;
  /** 1 on the first delivery. */
  readonly deliveryCount: number;
  readonly maxDeliveries: number;
  /** Delay before redelivery n is `backoff[n - 1]`; the last value repeats. */
  readonly backoffMs: readonly number[];
  /** No candidate is ready before this time (all cooling down), or 0. */
  readonly readyAt: number;
  readonly deadline: number | undefined;
  readonly now: number;
  readonly random: () => number;
}

const JITTER = 0.2;

export function decideAfterFailure(input: DecideInput): Decision {
  const { failures, lastError, deliveryCount, maxDeliveries, now } = input;
  const last = lastError ? ` Last error: ${lastError}` : "";
  // Time heals only transient failures (outcomes.ts): with none, and no candidate left to
  // try, a redelivery would pay for the same answers again.
  if (failures.length > 0 && input.untried === 0 && !failures.some(isTransient)) {
    const reason = permanentFailureReason(failures);
    const error = reason === "invalid_output"
      ? `No candidate's answer passed the output check, and a model that failed it is not asked again.${last}`
      : `Every candidate refused the request, so retrying cannot help.${last}`;
    return { action: "dead_letter", reason, error };
  }
  if (deliveryCount >= maxDeliveries) {
    return { action: "dead_letter", reason: "exhausted", error: `All ${maxDeliveries} deliveries failed.${last}` };
  }
  const base = input.backoffMs[Math.min(deliveryCount, input.backoffMs.length) - 1] ?? 0;
  // ± 20 % so jobs that failed together do not all come back together.
  const jittered = Math.round(base * (1 - JITTER + 2 * JITTER * input.random()));
  const delayMs = Math.max(jittered, input.readyAt - now, 0);
  if (input.deadline !== undefined && now + delayMs >= input.deadline) {
    return { action: "dead_letter", reason: "deadline_exceeded", error: `The job's deadline passes before its next try.${last}` };
  }
  return { action: "redeliver", delayMs };
}

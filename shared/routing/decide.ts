/**
 * What to do with a delivery none of whose attempts succeeded: the one retry-or-fail
 * decision, pure like the planner.
 */
import type { DlqReason } from "../contract/job.ts";
import type { FailureKind } from "../adapters/errors.ts";

export type Decision =
  | { readonly action: "redeliver"; readonly delayMs: number }
  | { readonly action: "dead_letter"; readonly reason: DlqReason; readonly error: string };

export interface DecideInput {
  /** Failure kinds of this delivery's attempts, in order (empty when no candidate was ready). */
  readonly failures: readonly FailureKind[];
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
  if (failures.length > 0 && failures.every((k) => k === "bad_request" || k === "auth_failed")) {
    return { action: "dead_letter", reason: "exhausted", error: `Every candidate refused the request, so retrying cannot help.${last}` };
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

/**
 * The one table of attempt-outcome semantics. For every outcome a provider call can have, it
 * says what happens next and what the outcome counts against. Everything that decides reads
 * it: the retry decision (`decide.ts`), the worker's local health (`health.ts`), the pricing
 * service's health and quality (`services/pricing/health.ts`, `quality.ts`), `switchyard
 * verify`, and the gateway's error mapping. Nothing else may say what is "transient".
 */
import type { AttemptOutcome, DlqReason } from "../contract/job.ts";

/** What an attempt outcome does to the model's health (availability) record. */
export type HealthEffect =
  /** A successful call: resets consecutive failures, feeds latency. */
  | "success"
  /** Counts towards the error rate and consecutive-failure trip. */
  | "failure"
  /** Counts towards the rate-limit rate; cools the model down for Retry-After. */
  | "rate_limited"
  /** The provider's credentials or account are wrong: the whole provider goes down. */
  | "provider_down"
  /** Says nothing about availability (the caller's request, or the answer's content, was at fault). */
  | "none";

/** What an attempt outcome does to the model's pass rate for the job's task (quality). */
export type QualityEffect = "pass" | "fail" | "none";

export interface OutcomeSemantics {
  /** The job moves on to the next planned candidate within the same delivery. */
  readonly nextCandidate: boolean;
  /**
   * A delivery whose failures include this outcome may be redelivered later (with backoff):
   * the same call can succeed then. False where time changes nothing.
   */
  readonly redeliver: boolean;
  /** The same model may be called again for this job (on a later delivery). */
  readonly retrySameModel: boolean;
  readonly health: HealthEffect;
  readonly quality: QualityEffect;
  /** The provider charges for the call (it produced tokens). */
  readonly billed: boolean;
}

export const OUTCOMES: Readonly<Record<AttemptOutcome, OutcomeSemantics>> = {
  ok: { nextCandidate: false, redeliver: false, retrySameModel: false, health: "success", quality: "pass", billed: true },
  rate_limited: { nextCandidate: true, redeliver: true, retrySameModel: true, health: "rate_limited", quality: "none", billed: false },
  unavailable: { nextCandidate: true, redeliver: true, retrySameModel: true, health: "failure", quality: "none", billed: false },
  timeout: { nextCandidate: true, redeliver: true, retrySameModel: true, health: "failure", quality: "none", billed: false },
  network_error: { nextCandidate: true, redeliver: true, retrySameModel: true, health: "failure", quality: "none", billed: false },
  // The reply was not the API's shape (not JSON, cut short): the provider misbehaved, not the model.
  malformed_response: { nextCandidate: true, redeliver: true, retrySameModel: true, health: "failure", quality: "none", billed: false },
  // The model answered, but not to the output contract. A quality signal for (task, model), never
  // an outage: another model may do better now, the same one later will not.
  invalid_output: { nextCandidate: true, redeliver: false, retrySameModel: false, health: "none", quality: "fail", billed: true },
  // The request itself was refused; another candidate (a larger context, another dialect) may take it.
  bad_request: { nextCandidate: true, redeliver: false, retrySameModel: false, health: "none", quality: "none", billed: false },
  auth_failed: { nextCandidate: true, redeliver: false, retrySameModel: false, health: "provider_down", quality: "none", billed: false },
};

/** Whether waiting and trying again can turn this outcome into a success. */
export function isTransient(outcome: AttemptOutcome): boolean {
  return OUTCOMES[outcome].redeliver;
}

/**
 * The dead-letter reason when a delivery ends with no transient failure left to wait out:
 * `invalid_output` when some model answered but none to the contract, else `exhausted`
 * (every candidate refused the request itself).
 */
export function permanentFailureReason(failures: readonly AttemptOutcome[]): Extract<DlqReason, "invalid_output" | "exhausted"> {
  return failures.includes("invalid_output") ? "invalid_output" : "exhausted";
}

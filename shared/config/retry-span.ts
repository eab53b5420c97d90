/**
 * How long a job can stay in play, from the router settings alone: what
 * `streams.duplicate_window` must outlast (checked at config load, `schema.ts`).
 *
 * Why it matters: every result and dead letter is published with `Nats-Msg-Id` = the job id,
 * and JetStream drops a repeat only within the duplicate window. A repeat happens when a
 * delivery stored the outcome but its ack was lost (or its worker died just after): the job
 * comes back and the next delivery publishes the outcome again. The longer a job can bounce
 * between deliveries, the longer the window must be.
 *
 * The bound, for N = router.max_deliveries:
 *
 *     span = Σ_{n=1..N} (ack_wait + 1.2 × backoff[n])
 *
 * - each delivery can hold the job up to `ack_wait` before JetStream hands it out again (a
 *   worker that stopped or froze without acknowledging);
 * - a failed delivery n is put back with `redelivery_backoff[n−1]` (the last value repeats),
 *   stretched by up to +20 % jitter (`shared/routing/decide.ts`);
 * - all N backoffs count, not N − 1: after the Nth delivery one more can still come (its
 *   worker died, or its dead letter could not be stored and it was put back with backoff N),
 *   and that delivery publishes the outcome.
 *
 * A delivery either runs into `ack_wait` or is put back with its backoff, so adding both is an
 * upper bound — provided a delivery's work fits in `ack_wait`. What the config cannot bound is
 * left out: a provider call kept alive past `ack_wait` with `working()`, or a cooldown from a
 * long Retry-After, stretches a delivery further. Keep a margin above the span.
 */
import type { RouterConfig } from "./schema.ts";


export interface RetrySpan {
  readonly ms: number;
  readonly deliveries: number;
  readonly ackWaitMs: number;
  /** The backoff before redelivery n, for n = 1..deliveries, before jitter. */
  readonly backoffsMs: readonly number[];
}

export function retrySpan(router: Pick<RouterConfig, "ack_wait" | "max_deliveries" | "redelivery_backoff">): RetrySpan {
  const n = router.max_deliveries;
  const backoff = router.redelivery_backoff;
  const backoffsMs = Array.from({ length: n }, (_, i) => backoff[Math.min(i, backoff.length - 1)] ?? 0);
  // + 20 % jitter at most (decide.ts), as × 6 / 5 so whole milliseconds stay whole.
  const ms = n * router.ack_wait + Math.ceil((6 * backoffsMs.reduce((a, b) => a + b, 0)) / 5);
  return { ms, deliveries: n, ackWaitMs: router.ack_wait, backoffsMs };
}

/** `1m`, `4m 7.2s`, `1h 30m`, `400ms`: as a config would write it, to the millisecond. */
export function humanDuration(ms: number): string {
  let rest = Math.ceil(ms);
  if (rest < 1000) return `${rest}ms`;
  const parts: string[] = [];
  for (const [unit, size] of [["d", 86_400_000], ["h", 3_600_000], ["m", 60_000]] as const) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  if (rest > 0) parts.push(rest < 1000 ? `${rest}ms` : `${rest / 1000}s`);
  return parts.join(" ");
}

/** Why `duplicate_window` is too short for this span, naming both figures and how the span adds up. */
export function duplicateWindowProblem(windowMs: number, span: RetrySpan): string | undefined {
  if (windowMs >= span.ms) return undefined;
  const backoffs = span.backoffsMs.map(humanDuration).join("+");
  return (
    `duplicate_window ${humanDuration(windowMs)} is shorter than the longest retry span ${humanDuration(span.ms)} ` +
    `(max_deliveries ${span.deliveries} × ack_wait ${humanDuration(span.ackWaitMs)} + backoff ${backoffs}, up to +20% jitter), ` +
    `so an outcome repeated after a lost ack could be stored twice: lengthen it, or shorten the router's retries`
  );
}

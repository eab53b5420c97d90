/**
 * Adaptive attempt timeouts: a provider that usually answers in 800 ms but hangs now and then
 * should not hold a job for its 30 s ceiling. The timeout follows the model's observed p95
 * (the pricing service's window, `latency_p95_ms`) times a margin, between a floor and the
 * configured `timeout_ms`. Pure: the worker passes what it read from the live state.
 */

/** A provider's `adaptive_timeout` (config names, so the parsed config passes as is). */
export interface AdaptiveTimeout {
  /** Timeout = p95 × this; 3 leaves room for the tail past p95 (a long completion, a slow token). */
  readonly multiplier: number;
  /** Never below this (ms): a model whose p95 is tiny still gets time for a long answer. */
  readonly floor: number;
  /** Below this many attempts in the window the p95 is noise, and the configured timeout holds. */
  readonly min_samples: number;
}

/** What the live state knows of a model's latency; p95 is NaN before its first answer. */
export interface LatencyStats {
  readonly p95Ms: number;
  readonly samples: number;
}

/** The attempt timeout for a model: `ceilingMs` (its `timeout_ms`) unless enough samples exist. */
export function adaptiveTimeoutMs(ceilingMs: number, stats: LatencyStats | undefined, opts: AdaptiveTimeout | undefined): number {
  if (opts === undefined || stats === undefined || Number.isNaN(stats.p95Ms) || stats.samples < opts.min_samples) return ceilingMs;
  return Math.min(ceilingMs, Math.max(opts.floor, Math.ceil(stats.p95Ms * opts.multiplier)));
}

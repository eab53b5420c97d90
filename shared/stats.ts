/**
 * The one percentile definition Switchyard reports with (the demo, `switchyard verify`, the
 * pricing service's health window, the benchmarks), so a p95 means the same everywhere.
 */

/**
 * Nearest-rank percentile: the smallest value of `sorted` such that at least `p` % of the
 * values are less than or equal to it — always one of the observed values, never an
 * interpolation between two. For n values that is the value at rank ⌈p/100 × n⌉ (1-based),
 * with rank 0 (p = 0) taken as the first value: p = 0 gives the minimum, p = 100 the maximum,
 * and for 1..100 p50 is 50 and p95 is 95.
 *
 * @param sorted ascending; not checked (sort first: `[...xs].sort((a, b) => a - b)`)
 * @param p from 0 to 100
 * @returns NaN for an empty array
 * @throws RangeError when `p` is outside 0–100 or not a number
 */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile: p must be within 0–100, got ${p}`);
  const n = sorted.length;
  if (n === 0) return NaN;
  const rank = Math.ceil((p / 100) * n);
  return sorted[Math.min(n, Math.max(1, rank)) - 1]!;
}

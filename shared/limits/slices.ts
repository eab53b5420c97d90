/**
 * Quota shared by every worker (or gateway) of a cluster: the pure part. No I/O and no clock of
 * its own; `shared-rate.ts` keeps the state in a KV entry and this module decides.
 *
 * Why this scheme. A compare-and-set on a KV entry costs a NATS round trip (~0.1–0.3 ms on
 * loopback, more across machines) and serialises every taker of one limit: one per call would
 * cap a limit at a few thousand calls per second cluster-wide and put a round trip on every
 * call's latency. So each limit is one KV entry holding a GCRA clock (`tat`, the "theoretical
 * arrival time": when the quota handed out so far is used up at the limit's rate), and a taker
 * moves it forward by a *slice* of units (requests or tokens) at once, then spends the slice
 * locally. A slice covers about SLICE_MS of the limit's rate, so the cluster does about
 * 1000 / SLICE_MS compare-and-sets per second per busy limit whatever the call rate, and none
 * while a worker's slice lasts.
 *
 * Unlike a fixed window (which lets twice the limit through around a window boundary) or
 * per-replica local buckets (N replicas, N times the limit: LiteLLM #27736), the clock in the
 * entry makes the cluster's total a smooth rate with a small, fixed burst. A slice's units are
 * spent between (its slot's start − tolerance) and its slot's end, and lapse after: unused
 * quota is lost (under-use), never carried.
 *
 * The bound, for a limit of L units per window W (rate r = L / W) and any interval of length T:
 *   units spent ≤ r × (T + tolerance) + 2 × slice
 * (the slices wholly inside the interval, plus one partial slice at each end). With the defaults
 * (tolerance 100 ms, a slice of 100 ms of rate, at least one unit) and T = 10 s, that is
 * 10.1 s of rate plus two slices: for 600 rpm, at most 103 requests in any 10 s (limit 100:
 * +3 %). Clock skew between machines adds skew × r (the entry holds epoch milliseconds).
 * Token limits reserve an estimate before the call and settle to the actual count after
 * (a shortfall becomes a debt the next slice pays), so they may also exceed by what calls in
 * flight under-estimated.
 */

/** L units per window W ms. */
export interface Rate {
  readonly limit: number;
  readonly windowMs: number;
}

/** A limit's shared state: the GCRA clock, epoch ms. Absent means "idle since ever". */
export interface BucketState {
  readonly tat: number;
}

/** How far ahead of its slot a slice may be spent: the cluster's burst above the smooth rate. */
export const TOLERANCE_MS = 100;
/** A slice covers this much of the limit's rate (at least one unit, and at least what the caller needs). */
export const SLICE_MS = 100;

export type SliceDecision =
  /** `units` are the taker's to spend until `until`; `next` is the entry to write (compare-and-set). */
  | { readonly kind: "granted"; readonly units: number; readonly until: number; readonly next: BucketState }
  /** The quota is taken until `retryAt`: no write, ask again then. */
  | { readonly kind: "wait"; readonly retryAt: number };

/** Milliseconds of quota one unit stands for. */
export function intervalOf(rate: Rate): number {
  return rate.windowMs / rate.limit;
}

/**
 * Units to ask for when `need` are needed now: about SLICE_MS of rate, in whole multiples of
 * `need` (leftovers too few for the next call are dropped at the next refill, so a slice that
 * is a multiple wastes nothing when calls are alike), and at least `need`.
 */
export function sliceUnits(rate: Rate, need: number): number {
  const n = Math.max(1, need);
  return n * Math.max(1, Math.floor((rate.limit * SLICE_MS) / rate.windowMs / n));
}

/**
 * GCRA for a slice: granted while the clock is at most `toleranceMs` ahead of `now` (so a slice
 * larger than the tolerance, a big token reservation, still goes through on an idle limit and
 * pushes the clock ahead for everyone after it); else wait until it is back within tolerance.
 */
export function grantSlice(state: BucketState | undefined, rate: Rate, units: number, now: number, toleranceMs = TOLERANCE_MS): SliceDecision {
  const tat = state?.tat ?? 0;
  if (tat - now > toleranceMs) return { kind: "wait", retryAt: tat - toleranceMs };
  const until = Math.max(tat, now) + units * intervalOf(rate);
  return { kind: "granted", units, until, next: { tat: until } };
}

/** A taker's unspent part of its last slice. `left` below zero is a debt (tokens used beyond the estimate) the next slice pays. */
export interface LocalSlice {
  readonly left: number;
  readonly until: number;
}

export const EMPTY_SLICE: LocalSlice = { left: 0, until: 0 };

/** The slice after spending `need`, or undefined when it cannot cover them now (spent, or lapsed). */
export function spend(slice: LocalSlice, need: number, now: number): LocalSlice | undefined {
  if (now > slice.until || slice.left < need) return undefined;
  return { left: slice.left - need, until: slice.until };
}

/**
 * The local slice once a new one is granted. Leftovers of the old one are dropped (they were too
 * few for the caller, and spending them under the new slot would widen the bound); a debt stays.
 */
export function refill(slice: LocalSlice, granted: Extract<SliceDecision, { kind: "granted" }>): LocalSlice {
  return { left: Math.min(0, slice.left) + granted.units, until: granted.until };
}

/**
 * The slice after a call reserved `reserved` units and used `used`: unused units come back while
 * the slice lasts (after, they lapse like any other), units used beyond the reservation are a debt.
 */
export function settle(slice: LocalSlice, reserved: number, used: number, now: number): LocalSlice {
  const extra = used - reserved;
  if (extra === 0) return slice;
  if (extra > 0) return { left: slice.left - extra, until: slice.until };
  return now > slice.until ? slice : { left: slice.left - extra, until: slice.until };
}

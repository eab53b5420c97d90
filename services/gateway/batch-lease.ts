/**
 * The owner lease: which gateway instance drives a batch. It sits in the batch's KV entry as
 * `{owner, until}`; the owner renews it as it works (at each step and dispatch checkpoint),
 * releases it on a clean stop so another instance takes over at once, and a killed owner's
 * lease simply lapses (`leaseMs`, 10 s by default), after which any instance claims it and
 * carries on from the entry's checkpoint. Claims are compare-and-set writes, so two instances
 * never both believe they own a batch for longer than one step.
 */
import type { BatchRecord, Lease } from "./batch-schema.ts";
import type { BatchEntry, BatchStore } from "./batch-store.ts";

/** How `me` stands towards a lease at `now`. */
export type LeaseStanding =
  /** Nobody holds it, or its holder let it lapse: free to claim. */
  | "free"
  /** Ours, with more than half its time left. */
  | "mine"
  /** Ours, due for renewal. */
  | "mine_expiring"
  /** Another live instance holds it. */
  | "other";

export function leaseStanding(lease: Lease, me: string, now: number, leaseMs: number): LeaseStanding {
  if (!lease || lease.until <= now) return "free";
  if (lease.owner !== me) return "other";
  return lease.until - now < leaseMs / 2 ? "mine_expiring" : "mine";
}

export interface BatchLeaseOptions {
  /** This instance's id (a nuid): the owner written into the leases it holds. */
  readonly me: string;
  /** How long a claim lasts without renewal. */
  readonly leaseMs: number;
  readonly clock: () => number;
}

export class BatchLeases {
  readonly me: string;
  readonly #store: BatchStore;
  readonly #leaseMs: number;
  readonly #clock: () => number;

  constructor(store: BatchStore, opts: BatchLeaseOptions) {
    this.#store = store;
    this.me = opts.me;
    this.#leaseMs = opts.leaseMs;
    this.#clock = opts.clock;
  }

  /** Another live instance drives the batch: not ours to touch. */
  heldElsewhere(record: BatchRecord): boolean {
    return leaseStanding(record.lease, this.me, this.#clock(), this.#leaseMs) === "other";
  }

  /** Ours (live), as the entry says. */
  isMine(record: BatchRecord): boolean {
    return record.lease?.owner === this.me;
  }

  /** The record with our lease on it, good for another `leaseMs` from now. */
  renewed(record: BatchRecord): BatchRecord {
    return { ...record, lease: { owner: this.me, until: this.#clock() + this.#leaseMs } };
  }

  /**
   * The entry with our lease on it, claimed or renewed when due; null when another instance
   * holds it or the entry changed under us (then this step is not ours to run).
   */
  async acquire(id: string, entry: BatchEntry): Promise<BatchEntry | null> {
    const standing = leaseStanding(entry.record.lease, this.me, this.#clock(), this.#leaseMs);
    if (standing === "other") return null;
    if (standing === "mine") return entry;
    return this.#store.update(id, this.renewed(entry.record), entry.revision);
  }

  /** Hands a batch over at once (a clean stop) instead of after the lease lapses; a no-op when it is no longer ours. */
  async release(id: string): Promise<void> {
    const entry = await this.#store.get(id);
    if (!entry || !this.isMine(entry.record)) return;
    await this.#store.update(id, { ...entry.record, lease: null }, entry.revision);
  }
}

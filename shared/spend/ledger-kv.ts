/**
 * The spend ledger in a NATS KV bucket: reserve before a call, settle or release after, each
 * change an optimistic compare-and-set on the entry's revision (`kv.update(key, value,
 * revision)`), retried from a fresh read when another worker wrote first. The decisions are
 * `budget.ts`'s; this file only reads, asks and writes.
 *
 * Per key, a worker has at most one write in flight. Reservations, settlements and releases
 * that arrive meanwhile wait and go together in the next write (a group commit), so a
 * thousand concurrent calls on one budget make a handful of writes, and only workers — not
 * their calls — contend for the entry. While it holds reservations on a key a worker
 * rewrites its hold every third of the TTL, which is what keeps them from lapsing.
 */
import type { KV } from "@nats-io/kv";
import { parseJsonOrUndefined } from "../json.ts";
import { isWrongRevision } from "../nats/errors.ts";
import { applyWrite, decide, EMPTY_ENTRY, SpendEntrySchema, type Answer, type Ask, type SpendEntry } from "./budget.ts";

/** The ledger could not be read or written (NATS unavailable, a malformed entry). */
export class SpendLedgerError extends Error {
  readonly kind = "spend_ledger" as const;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "SpendLedgerError";
  }
}

interface Pending extends Ask {
  resolve(a: Answer): void;
  reject(err: unknown): void;
}

interface KeyState {
  /** This worker's granted, unsettled reservations on the key: what its hold must say. */
  held: number;
  /** Settled costs not yet written. */
  unsettled: number;
  /** A write is owed: the hold or the settled spend changed since the last one. */
  dirty: boolean;
  readonly asks: Pending[];
  writing: boolean;
  /** The write loop running (or last run): it goes on while anything is owed, so awaiting it awaits what was owed when it was asked. */
  done: Promise<void>;
  /** The entry as this worker last wrote or read it; undefined forces a fresh read. */
  known: { value: SpendEntry; revision: number } | undefined;
  lastWriteAt: number;
}

export interface SpendLedgerOptions {
  readonly kv: KV;
  /** This worker's id in the entries' holds: unique per process. */
  readonly worker: string;
  readonly ttlMs: number;
  readonly clock?: () => number;
  /** Told about a write that failed for another reason than a conflict; it is retried at the next renewal. */
  readonly onError?: (key: string, err: unknown) => void;
}

/** Below this a worker's hold is nothing (applyWrite drops such holds from the entry too). */
const HELD_CRUMB_USD = 1e-12;

/** Conflicts in a row on one key before a reservation gives up (each is another worker's successful write, so this is not reached under any real load). */
const MAX_CONFLICTS = 1000;

export class SpendLedger {
  readonly #kv: KV;
  readonly #worker: string;
  readonly #ttlMs: number;
  readonly #clock: () => number;
  readonly #onError: ((key: string, err: unknown) => void) | undefined;
  readonly #keys = new Map<string, KeyState>();
  readonly #renewal: NodeJS.Timeout;

  constructor({ kv, worker, ttlMs, clock = Date.now, onError }: SpendLedgerOptions) {
    this.#kv = kv;
    this.#worker = worker;
    this.#ttlMs = ttlMs;
    this.#clock = clock;
    this.#onError = onError;
    this.#renewal = setInterval(() => this.#renew(), Math.max(100, Math.floor(ttlMs / 3)));
    this.#renewal.unref();
  }

  /** Asks to reserve `amountUsd` on `key` within `limitUsd`. Rejects with SpendLedgerError when the ledger cannot be reached. */
  reserve(key: string, amountUsd: number, limitUsd: number): Promise<Answer> {
    const s = this.#state(key);
    return new Promise<Answer>((resolve, reject) => {
      s.asks.push({ amountUsd, limitUsd, resolve, reject });
      void this.#flush(key, s);
    });
  }

  /** A granted reservation ends with the call's real cost (0 when the provider billed nothing). Written in the background. */
  settle(key: string, reservedUsd: number, costUsd: number): void {
    const s = this.#state(key);
    // Float sums of many reservations rarely come back to exactly 0; a crumb must not keep the key renewing forever.
    s.held = s.held - reservedUsd < HELD_CRUMB_USD ? 0 : s.held - reservedUsd;
    s.unsettled += costUsd;
    s.dirty = true;
    void this.#flush(key, s);
  }

  /** Writes what is owed on every key now (on stop); resolves when done or failed. */
  async flush(): Promise<void> {
    await Promise.all([...this.#keys].map(([key, s]) => this.#flush(key, s)));
  }

  close(): void {
    clearInterval(this.#renewal);
  }

  #state(key: string): KeyState {
    let s = this.#keys.get(key);
    if (!s) {
      s = { held: 0, unsettled: 0, dirty: false, asks: [], writing: false, done: Promise.resolve(), known: undefined, lastWriteAt: 0 };
      this.#keys.set(key, s);
    }
    return s;
  }

  #renew(): void {
    const now = this.#clock();
    for (const [key, s] of this.#keys) {
      if (s.held > 0 && now - s.lastWriteAt >= this.#ttlMs / 3) s.dirty = true;
      if (s.dirty) void this.#flush(key, s);
      // A key nothing is owed on is forgotten: windows roll over, and keys with them.
      else if (s.held === 0 && s.asks.length === 0 && !s.writing) this.#keys.delete(key);
    }
  }

  #flush(key: string, s: KeyState): Promise<void> {
    if (s.writing) return s.done;
    s.writing = true;
    s.done = (async () => {
      try {
        while (s.asks.length > 0 || s.dirty) await this.#writeOnce(key, s);
      } catch (err) {
        const e = err instanceof SpendLedgerError ? err : new SpendLedgerError(`spend ledger ${key}: ${(err as Error).message}`, { cause: err });
        for (const a of s.asks.splice(0)) a.reject(e);
        this.#onError?.(key, e);
      } finally {
        // In the same turn as the loop's last check: whatever comes after starts a new loop.
        s.writing = false;
      }
    })();
    return s.done;
  }

  /** One compare-and-set carrying every ask and change owed at this moment, retried on conflict. */
  async #writeOnce(key: string, s: KeyState): Promise<void> {
    const asks = s.asks.splice(0);
    try {
      for (let conflicts = 0; ; conflicts++) {
        const known = s.known ?? (await this.#read(key));
        const now = this.#clock();
        const heldBefore = s.held;
        const unsettled = s.unsettled;
        const dirtyBefore = s.dirty;
        s.dirty = false;
        const { answers, heldUsd } = decide(known?.value ?? EMPTY_ENTRY, this.#worker, s.held, unsettled, asks, now);
        const next = applyWrite(known?.value ?? EMPTY_ENTRY, { worker: this.#worker, heldUsd, settledUsd: unsettled, now, ttlMs: this.#ttlMs });
        const data = JSON.stringify(next);
        try {
          const revision = known ? await this.#kv.update(key, data, known.revision) : await this.#kv.create(key, data);
          // Settlements that came during the write moved `held` and `unsettled` under it: they stay owed (settle marked the key dirty).
          s.held += heldUsd - heldBefore;
          s.unsettled -= unsettled;
          s.known = { value: next, revision };
          s.lastWriteAt = now;
          answers.forEach((a, i) => asks[i]!.resolve(a));
          return;
        } catch (err) {
          s.dirty ||= dirtyBefore;
          if (!isWrongRevision(err) || conflicts >= MAX_CONFLICTS) throw err;
          s.known = undefined;
        }
      }
    } catch (err) {
      // Not decided: they go back to be rejected (or retried) by the caller of this write.
      s.asks.unshift(...asks);
      throw err;
    }
  }

  async #read(key: string): Promise<{ value: SpendEntry; revision: number } | undefined> {
    const e = await this.#kv.get(key);
    if (!e || e.operation !== "PUT") return e ? { value: EMPTY_ENTRY, revision: e.revision } : undefined;
    const parsed = SpendEntrySchema.safeParse(parseJsonOrUndefined(e.string()));
    if (!parsed.success) throw new SpendLedgerError(`spend ledger ${key}: the entry is not a spend entry (${parsed.error.issues[0]?.message})`);
    return { value: parsed.data, revision: e.revision };
  }
}


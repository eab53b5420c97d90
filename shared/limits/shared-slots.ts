/**
 * One cluster-wide concurrency cap as a process holds it (`concurrency.ts`): a lease in a KV
 * entry, grown by compare-and-set when the process needs a slot more than it holds, renewed (and
 * brought down to what was used) every LEASE_MS / 3, given back on close.
 */
import type { KV } from "@nats-io/kv";
import { z } from "zod";
import { parseJsonOrUndefined } from "../json.ts";
import { lease, LEASE_MS, type Leases } from "./concurrency.ts";
import { isWrongRevision } from "../nats/errors.ts";

const LeasesSchema = z.record(z.string(), z.object({ n: z.int().nonnegative(), until: z.number().finite() }));

/** While the cap is full, a process asks again at most this often. */
export const FULL_RETRY_MS = 100;
const MAX_RACES = 32;

export class SharedSlots {
  readonly #kv: () => Promise<KV>;
  readonly #key: string;
  readonly #me: string;
  readonly #clock: () => number;
  #cap: number;
  #held = 0;
  #inUse = 0;
  /** The most slots in use since the last renewal: what the next renewal keeps. */
  #peak = 0;
  #fullUntil = 0;
  #writing: Promise<unknown> = Promise.resolve();
  #timer: NodeJS.Timeout | undefined;

  constructor(kv: () => Promise<KV>, key: string, cap: number, me: string, clock: () => number) {
    this.#kv = kv;
    this.#key = key;
    this.#cap = cap;
    this.#me = me;
    this.#clock = clock;
  }

  retune(cap: number): void {
    this.#cap = cap;
  }

  /** Takes a slot of this process's lease, growing it when all are in use; false while the cap is full. */
  async tryAcquire(): Promise<boolean> {
    if (this.#inUse < this.#held) return this.#take();
    if (this.#clock() < this.#fullUntil) return false;
    // One write at a time: a grow waits for a renewal in flight, and sees its result.
    const grown = this.#writing.then(() => (this.#inUse < this.#held ? undefined : this.#write(this.#inUse + 1)));
    this.#writing = grown.catch(() => {});
    await grown;
    if (this.#inUse < this.#held) return this.#take();
    this.#fullUntil = this.#clock() + FULL_RETRY_MS;
    return false;
  }

  release(): void {
    this.#inUse--;
  }

  /** Gives the lease back (best effort: it runs out by itself otherwise). */
  async close(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    if (this.#held > 0) await (this.#writing = this.#writing.then(() => this.#write(0)).catch(() => {}));
  }

  #take(): true {
    this.#inUse++;
    if (this.#inUse > this.#peak) this.#peak = this.#inUse;
    return true;
  }

  #renew(): void {
    const want = Math.max(this.#inUse, this.#peak);
    this.#peak = this.#inUse;
    // A failed renewal (NATS away) leaves the lease to run out; the next one tries again.
    this.#writing = this.#writing.then(() => this.#write(want)).catch(() => {});
  }

  /** Sets this process's lease to `want` slots (fewer if the cap leaves fewer); the held count follows what was written. */
  async #write(want: number): Promise<void> {
    const kv = await this.#kv();
    for (let race = 0; race < MAX_RACES; race++) {
      const e = await kv.get(this.#key);
      const parsed = e?.operation === "PUT" ? LeasesSchema.safeParse(parseJsonOrUndefined(e.string())) : undefined;
      const d = lease(parsed?.success ? parsed.data : undefined, this.#me, want, this.#cap, this.#clock(), LEASE_MS);
      if (d.kind === "full") return;
      try {
        await kv.put(this.#key, JSON.stringify(d.next satisfies Leases), { previousSeq: e?.revision ?? 0 });
        this.#held = d.n;
        if (this.#held > 0 && this.#timer === undefined) {
          this.#timer = setInterval(() => this.#renew(), LEASE_MS / 3);
          this.#timer.unref();
        } else if (this.#held === 0 && this.#timer !== undefined) {
          clearInterval(this.#timer);
          this.#timer = undefined;
        }
        return;
      } catch (err) {
        if (!isWrongRevision(err)) throw err;
      }
    }
  }
}

/**
 * One cluster-wide limit as a process takes from it: a KV entry (the GCRA clock of
 * `slices.ts`) moved forward a slice at a time by compare-and-set on its revision, and the
 * process's own slice spent locally. Takers in one process share one slice and one write in
 * flight; while the limit is used up, nobody in the process writes before the time the entry
 * named.
 */
import type { KV } from "@nats-io/kv";
import { z } from "zod";
import { parseJsonOrUndefined } from "../json.ts";
import { isWrongRevision } from "../nats/errors.ts";
import { EMPTY_SLICE, grantSlice, refill, settle, sliceUnits, spend, TOLERANCE_MS, type BucketState, type LocalSlice, type Rate, type SliceDecision } from "./slices.ts";

const BucketStateSchema = z.object({ tat: z.number().finite() });

export type Taken = { readonly ok: true } | { readonly ok: false; readonly retryAt: number };

/** Compare-and-set attempts before a taker gives up on one refill (each loss means another taker moved the clock: it re-reads). */
const MAX_RACES = 32;

/** The limit's entry could not be read or written within MAX_RACES tries. */
export class QuotaContentionError extends Error {
  override readonly name = "QuotaContentionError";
  readonly kind = "quota_contention";
}

export class SharedRate {
  /** Opened on first need: a process whose limits are never hit never opens the bucket. */
  readonly #kv: () => Promise<KV>;
  readonly #key: string;
  #rate: Rate;
  #toleranceMs: number;
  readonly #clock: () => number;
  #slice: LocalSlice = EMPTY_SLICE;
  /** The entry as last seen (revision 0: not there). A write is tried against it before any read. */
  #seen: { state: BucketState | undefined; revision: number } | undefined;
  #waitUntil = 0;
  #refilling: Promise<SliceDecision> | undefined;

  constructor(kv: () => Promise<KV>, key: string, rate: Rate, clock: () => number, toleranceMs = TOLERANCE_MS) {
    this.#kv = kv;
    this.#key = key;
    this.#rate = rate;
    this.#toleranceMs = toleranceMs;
    this.#clock = clock;
  }

  /** A reloaded config's limit: the entry's clock carries on at the new rate. */
  retune(rate: Rate, toleranceMs = TOLERANCE_MS): void {
    this.#rate = rate;
    this.#toleranceMs = toleranceMs;
  }

  /** Takes `need` units now, or says when to ask again. One KV write per slice, none while the limit is used up. */
  async take(need: number): Promise<Taken> {
    for (;;) {
      const now = this.#clock();
      const spent = spend(this.#slice, need, now);
      if (spent) {
        this.#slice = spent;
        return { ok: true };
      }
      if (now < this.#waitUntil) return { ok: false, retryAt: this.#waitUntil };
      // Another taker here is already refilling: its slice may cover this one too.
      const d = await (this.#refilling ??= this.#refill(need).finally(() => (this.#refilling = undefined)));
      if (d.kind === "wait") return { ok: false, retryAt: d.retryAt };
    }
  }

  /** A call that reserved `reserved` units used `used` (token limits): the difference comes back or becomes a debt. */
  settle(reserved: number, used: number): void {
    this.#slice = settle(this.#slice, reserved, used, this.#clock());
  }

  async #refill(need: number): Promise<SliceDecision> {
    for (let race = 0; race < MAX_RACES; race++) {
      const seen = (this.#seen ??= await this.#read());
      const d = grantSlice(seen.state, this.#rate, sliceUnits(this.#rate, need), this.#clock(), this.#toleranceMs);
      if (d.kind === "wait") {
        // A stale clock (another process wrote since) is behind the real one: asking again at its time may be early, never unsafe.
        this.#waitUntil = d.retryAt;
        this.#seen = undefined;
        return d;
      }
      try {
        const revision = await (await this.#kv()).put(this.#key, JSON.stringify(d.next), { previousSeq: seen.revision });
        this.#seen = { state: d.next, revision };
        this.#slice = refill(this.#slice, d);
        return d;
      } catch (err) {
        if (!isWrongRevision(err)) throw err;
        this.#seen = undefined;
      }
    }
    throw new QuotaContentionError(`the limit ${this.#key} kept changing under ${MAX_RACES} compare-and-set tries`);
  }

  async #read(): Promise<{ state: BucketState | undefined; revision: number }> {
    const e = await (await this.#kv()).get(this.#key);
    if (!e) return { state: undefined, revision: 0 };
    if (e.operation !== "PUT") return { state: undefined, revision: e.revision };
    // A malformed entry (written by hand) is overwritten as if idle.
    const parsed = BucketStateSchema.safeParse(parseJsonOrUndefined(e.string()));
    return { state: parsed.success ? parsed.data : undefined, revision: e.revision };
  }
}

/** A KV key from parts that may hold any character (a gateway key's name): hex keeps it to the characters KV allows. */
export function keyPart(s: string): string {
  return /^[a-z0-9_-]{1,64}$/.test(s) ? s : `=${Buffer.from(s, "utf8").toString("hex")}`;
}

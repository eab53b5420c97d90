/**
 * Publishing replays safely: each candidate's new id is checked against the ledger, claimed,
 * published with `Nats-Msg-Id` = new id, then confirmed. Interrupting a run at any point and
 * starting it again publishes every selected job exactly once:
 *   - stopped by a signal: the jobs in flight finish and are confirmed before exit;
 *   - killed between claim and confirm: the next run finds the claim and looks the id up in
 *     JOBS (`resolveClaims`): published → confirmed, not there → released and published.
 * The duplicate window is a second net for two runs racing on the same id at the same time.
 */
import type { JetStreamClient, JetStreamManager, PubAck } from "@nats-io/jetstream";
import { setTimeout as sleep } from "node:timers/promises";
import { names as namesFor, type Names } from "../../shared/contract/subjects.ts";
import type { LedgerEntry, ReplayLedger } from "./ledger.ts";
import { scan } from "../../shared/nats/read.ts";
import type { Scanned } from "./sources.ts";
import { boundedWindow } from "../../shared/concurrency.ts";

export interface ReplayStats {
  /** Messages read from the source stream. */
  scanned: number;
  /** Of those, selected by the filter. */
  selected: number;
  /** New jobs this run published. */
  published: number;
  /** Already replayed (by an earlier run, or twice in the selection). */
  alreadyReplayed: number;
  /** Selected but not replayable, by why. */
  skipped: Map<string, number>;
  /** Not confirmed (NATS errors after retries): their claims stay, and a re-run settles them. */
  failed: number;
  /** With `dryRun`: would be published. */
  wouldPublish: number;
  /** Stopped by the signal before the source was read to its end. */
  interrupted: boolean;
}

export interface ClaimResolution {
  /** Claims whose job was found in JOBS: now confirmed. */
  readonly confirmed: number;
  /** Claims whose job was never published: released, so this run publishes them. */
  readonly released: number;
  /**
   * Claims older than the oldest job in JOBS: the job may have been published and aged out.
   * Left alone, and not replayed, rather than risk a second copy.
   */
  readonly uncertain: ReadonlySet<string>;
}

/** Settles the claims an interrupted run left behind (see the module comment). */
export async function resolveClaims(js: JetStreamClient, jsm: JetStreamManager, ledger: ReplayLedger, n: Names = namesFor()): Promise<ClaimResolution> {
  const STREAMS = n.streams;
  const claims = await ledger.claims();
  if (claims.length === 0) return { confirmed: 0, released: 0, uncertain: new Set() };
  const wanted = new Map<string, LedgerEntry>(claims.map((c) => [c.id, c]));
  const state = (await jsm.streams.info(STREAMS.jobs)).state;
  // A little before the earliest claim: the claim is written just before its publish, on another clock than the server's.
  const since = new Date(Math.min(...claims.map((c) => Date.parse(c.at))) - 60_000);
  let confirmed = 0;
  if (state.messages > 0) {
    for await (const m of scan(js, STREAMS.jobs, { since, lastSeq: state.last_seq, headersOnly: true })) {
      const c = m.msgId === undefined ? undefined : wanted.get(m.msgId);
      if (!c) continue;
      await ledger.confirm({ ...c, at: new Date(m.time).toISOString(), seq: m.seq });
      wanted.delete(c.id);
      confirmed++;
      if (wanted.size === 0) break;
    }
  }
  const oldest = state.messages > 0 ? Date.parse(state.first_ts) : Infinity;
  const uncertain = new Set<string>();
  let released = 0;
  for (const c of wanted.values()) {
    if (Date.parse(c.at) < oldest - 60_000) uncertain.add(c.id);
    else {
      await ledger.dropClaim(c.id);
      released++;
    }
  }
  return { confirmed, released, uncertain };
}

export interface ReplayOptions {
  readonly js: JetStreamClient;
  readonly ledger: ReplayLedger;
  readonly source: AsyncIterable<Scanned>;
  /** Ids `resolveClaims` could not settle: skipped. */
  readonly uncertain?: ReadonlySet<string>;
  /** Stops taking new candidates; those in flight finish. */
  readonly signal?: AbortSignal;
  /** Only count what would be published. */
  readonly dryRun?: boolean;
  /** Stop after this many selected candidates. */
  readonly limit?: number;
  /** Candidates handled at once. @defaultValue 64 */
  readonly window?: number;
  readonly onProgress?: (stats: Readonly<ReplayStats>, total: number) => void;
  readonly now?: () => Date;
  /** The deployment's names (the job subjects replays go to). @defaultValue names() (no namespace) */
  readonly names?: Names;
}

const PUBLISH_TRIES = 6;

export async function runReplay(opts: ReplayOptions): Promise<ReplayStats> {
  const { js, ledger, signal, now = () => new Date() } = opts;
  const { jobSubject } = opts.names ?? namesFor();
  const window = opts.window ?? 64;
  const stats: ReplayStats = { scanned: 0, selected: 0, published: 0, alreadyReplayed: 0, skipped: new Map(), failed: 0, wouldPublish: 0, interrupted: false };
  const skip = (why: string): void => {
    stats.skipped.set(why, (stats.skipped.get(why) ?? 0) + 1);
  };
  let total = 0;
  const inFlight = boundedWindow(window);

  // Candidates sharing a new id (a job and its retries) go one after another, so the second finds the first's ledger entry.
  const busy = new Map<string, Promise<void>>();

  async function one(c: Extract<NonNullable<Scanned["candidate"]>, { kind: "replay" }>): Promise<void> {
    const before = busy.get(c.newId);
    const mine = (async () => {
      await before;
      await attempt(c);
    })();
    busy.set(c.newId, mine);
    await mine;
    if (busy.get(c.newId) === mine) busy.delete(c.newId);
  }

  async function attempt(c: Extract<NonNullable<Scanned["candidate"]>, { kind: "replay" }>): Promise<void> {
    try {
      if (opts.uncertain?.has(c.newId)) return skip("claimed by a run interrupted longer ago than JOBS retains jobs: check by hand");
      if (await ledger.done(c.newId)) {
        stats.alreadyReplayed++;
        return;
      }
      if (opts.dryRun) {
        stats.wouldPublish++;
        return;
      }
      const entry: LedgerEntry = { id: c.newId, of: c.of, task: c.task, at: now().toISOString() };
      await ledger.claim(entry);
      const ack = await publish(js, jobSubject(c.task), JSON.stringify(c.job), c.newId);
      await ledger.confirm({ ...entry, at: now().toISOString(), seq: ack.seq });
      // A duplicate ack: an interrupted run (or a racing one) published it within the window.
      if (ack.duplicate) stats.alreadyReplayed++;
      else stats.published++;
    } catch {
      stats.failed++;
    }
  }

  for await (const s of opts.source) {
    if (signal?.aborted) {
      stats.interrupted = true;
      break;
    }
    stats.scanned++;
    total = Math.max(total, stats.scanned + s.pending);
    const c = s.candidate;
    if (c !== undefined) {
      stats.selected++;
      if (c.kind === "skip") skip(c.why);
      else {
        await inFlight.add(one(c));
      }
    }
    opts.onProgress?.(stats, total);
    if (opts.limit !== undefined && stats.selected >= opts.limit) break;
  }
  await inFlight.drain();
  opts.onProgress?.(stats, total);
  return stats;
}

/** Retries through a NATS restart or a stream leader election; the same msgID makes every retry safe. */
async function publish(js: JetStreamClient, subject: string, payload: string, msgID: string): Promise<PubAck> {
  for (let i = 1; ; i++) {
    try {
      return await js.publish(subject, payload, { msgID });
    } catch (err) {
      if (i >= PUBLISH_TRIES) throw err;
      await sleep(Math.min(4_000, 250 * 2 ** i));
    }
  }
}

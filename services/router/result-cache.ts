/**
 * The result cache's I/O for one router worker (README, "Result cache"; the decisions are in
 * `shared/cache/result-cache.ts`): the KV bucket, opened on the first job of a task with
 * `cache:`, and the jobs in flight here by cache key, so identical jobs at the same time in
 * this worker are served by one call; across workers, a claim written in the bucket on a miss
 * holds identical jobs back until its result is stored (or the claim lapses). A cache that
 * cannot be read or written never fails a job: it is a miss, and the job is routed as usual.
 */
import { jetstream } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import type { CallCancel } from "../../shared/adapters/http.ts";
import { CacheEntrySchema, cacheKey, entryOf, fresh, PendingEntrySchema, pendingHolds, policyVersion, RESULT_CACHE_MAX_AGE_MS, type PendingEntry } from "../../shared/cache/result-cache.ts";
import { isWrongRevision } from "../../shared/nats/errors.ts";
import type { Config, TaskConfig } from "../../shared/config/schema.ts";
import type { Job, Result } from "../../shared/contract/job.ts";
import { namesOf } from "../../shared/contract/subjects.ts";
import { parseJsonOrUndefined } from "../../shared/json.ts";
import type { Logger } from "../../shared/log.ts";

/** A miss this worker now answers for: `store` the result once it passed its output check; `release` in any case when the job's delivery ends. */
export interface CacheClaim {
  store(result: Result): Promise<void>;
  release(): void;
}

export type Lookup =
  /** `stored`: the result as first served, to be re-issued under the job's own id (`cachedResult`). */
  | { readonly kind: "hit"; readonly stored: Result }
  | { readonly kind: "miss"; readonly claim: CacheClaim }
  /** The worker is stopping while the job waited for an identical one. */
  | { readonly kind: "cancelled" };

export interface ResultCache {
  /** Creates the bucket (`provision: auto`) or binds it (`check`) at start, as the other buckets are; a failure is logged, and the first cached job tries again. */
  open(): Promise<void>;
  /** Only for a task with `cache:`. */
  lookup(job: Job, task: TaskConfig, ttlMs: number, cancel: CallCancel): Promise<Lookup>;
}

export function createResultCache({ nc, config, logger, clock }: { nc: NatsConnection; config: Config; logger: Logger; clock: () => number }): ResultCache {
  const bucketName = namesOf(config).resultCacheBucket;
  // Identical jobs in flight here: the first one's result (undefined when it ended without one).
  const inFlight = new Map<string, Promise<Result | undefined>>();
  // Per task config object: a reload makes new ones, so a changed task gets a new version.
  const versions = new WeakMap<TaskConfig, string>();
  let opened: Promise<KV> | undefined;

  const bucket = (): Promise<KV> =>
    (opened ??= (
      config.provision === "check"
        ? new Kvm(jetstream(nc, { checkAPI: false })).open(bucketName, { allow_direct: true })
        : new Kvm(nc).create(bucketName, { history: 1, replicas: config.streams.replicas, ttl: RESULT_CACHE_MAX_AGE_MS })
    ).catch((err: unknown) => {
      // Tried again on the next job: NATS may be back by then.
      opened = undefined;
      throw err;
    }));

  async function lookup(job: Job, task: TaskConfig, ttlMs: number, cancel: CallCancel): Promise<Lookup> {
    let version = versions.get(task);
    if (version === undefined) versions.set(task, (version = policyVersion(task)));
    const key = cacheKey(job, version);
    for (;;) {
      const pending = inFlight.get(key);
      if (pending === undefined) break;
      const first = await unlessCancelled(pending, cancel);
      if (first === "cancelled") return { kind: "cancelled" };
      if (first !== undefined) return { kind: "hit", stored: first };
      // The first ended without a result (redelivered, dead-lettered): this job tries itself.
    }
    // Claimed before any await, so an identical job arriving meanwhile waits for this one.
    let settle!: (r: Result | undefined) => void;
    const mine = new Promise<Result | undefined>((r) => (settle = r));
    inFlight.set(key, mine);
    let done = false;
    const end = (r: Result | undefined) => {
      if (done) return;
      done = true;
      if (inFlight.get(key) === mine) inFlight.delete(key);
      settle(r);
    };

    // The revision the store must find: our claim's, or undefined when the bucket could not be read or claimed.
    let revision: number | undefined;
    let kv: KV | undefined;
    try {
      kv = await bucket();
      const read = await readOrClaim(kv, key, ttlMs, cancel);
      if (read.kind === "hit") {
        end(read.stored);
        return read;
      }
      if (read.kind === "cancelled") {
        end(undefined);
        return read;
      }
      revision = read.revision;
    } catch (err) {
      logger.warn({ err: (err as Error).message, task: job.task }, "result cache unreadable; routing the job");
    }

    return {
      kind: "miss",
      claim: {
        async store(result) {
          // Over our own claim: a worker that took the claim over after ours lapsed keeps its own.
          if (kv !== undefined && revision !== undefined) {
            try {
              await kv.update(key, JSON.stringify(entryOf(result, clock())), revision);
            } catch (err) {
              logger.debug({ err: (err as Error).message, task: job.task }, "result not cached (the claim was taken over, or NATS refused)");
            }
            revision = undefined;
          }
          end(result);
        },
        release() {
          // No result: the claim goes, so identical jobs waiting on it try themselves.
          if (kv !== undefined && revision !== undefined) {
            const [k, rev] = [kv, revision];
            revision = undefined;
            void k
              .get(key)
              .then((e) => (e?.revision === rev ? k.delete(key) : undefined))
              .catch(() => {});
          }
          end(undefined);
        },
      },
    };
  }

  /**
   * A fresh result (hit), or our claim on the entry (its revision): created where there is
   * none, written over a stale result or a lapsed claim by compare-and-set. While another
   * worker's claim holds, waits for its result, polling the entry.
   */
  async function readOrClaim(kv: KV, key: string, ttlMs: number, cancel: CallCancel): Promise<{ kind: "hit"; stored: Result } | { kind: "cancelled" } | { kind: "claimed"; revision: number }> {
    let wait = 25;
    for (;;) {
      const e = await kv.get(key);
      const now = clock();
      let value: unknown;
      if (e && e.operation === "PUT") {
        value = parseJsonOrUndefined(e.string());
        const entry = CacheEntrySchema.safeParse(value);
        if (entry.success && fresh(entry.data.stored_at, ttlMs, now)) return { kind: "hit", stored: entry.data.result };
        const pending = PendingEntrySchema.safeParse(value);
        if (pending.success && pendingHolds(pending.data.pending_since, now)) {
          if (cancel.cancelled) return { kind: "cancelled" };
          await new Promise((r) => setTimeout(r, wait));
          wait = Math.min(wait * 2, 500);
          continue;
        }
      }
      const claim = JSON.stringify({ pending_since: now } satisfies PendingEntry);
      try {
        const revision = e && e.operation === "PUT" ? await kv.update(key, claim, e.revision) : await kv.create(key, claim);
        return { kind: "claimed", revision };
      } catch (err) {
        // Another worker claimed or stored it first: read again.
        if (!isWrongRevision(err)) throw err;
      }
    }
  }

  async function open(): Promise<void> {
    await bucket().catch((err: unknown) => logger.warn({ err: (err as Error).message, bucket: bucketName }, "result cache bucket not opened; tried again on the first cached job"));
  }

  return { open, lookup };
}

/** The promise's value, or "cancelled" as soon as `cancel` fires (the worker is stopping). */
function unlessCancelled<T>(p: Promise<T>, cancel: CallCancel): Promise<T | "cancelled"> {
  if (cancel.cancelled) return Promise.resolve("cancelled");
  return new Promise((resolve) => {
    cancel.attach(() => resolve("cancelled"));
    void p.then((v) => {
      cancel.attach(undefined);
      resolve(v);
    });
  });
}

/**
 * The result cache's I/O for one router worker (README, "Result cache"; the decisions are in
 * `shared/cache/result-cache.ts`): the KV bucket, opened on the first job of a task with
 * `cache:`, and the jobs in flight here by cache key, so identical jobs at the same time in
 * this worker are served by one call. A cache that cannot be read or written never fails a
 * job: it is a miss, and the job is routed as usual.
 */
import { jetstream } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import type { CallCancel } from "../../shared/adapters/http.ts";
import { CacheEntrySchema, cacheKey, entryOf, fresh, policyVersion, RESULT_CACHE_MAX_AGE_MS } from "../../shared/cache/result-cache.ts";
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

    // The revision the store must find: 0 for none, the stale or unreadable entry's otherwise; undefined when the read failed.
    let revision: number | undefined;
    let kv: KV | undefined;
    try {
      kv = await bucket();
      const e = await kv.get(key);
      revision = e?.revision ?? 0;
      if (e && e.operation === "PUT") {
        const entry = CacheEntrySchema.safeParse(parseJsonOrUndefined(e.string()));
        if (entry.success && fresh(entry.data.stored_at, ttlMs, clock())) {
          end(entry.data.result);
          return { kind: "hit", stored: entry.data.result };
        }
      }
    } catch (err) {
      logger.warn({ err: (err as Error).message, task: job.task }, "result cache unreadable; routing the job");
    }

    return {
      kind: "miss",
      claim: {
        async store(result) {
          // First write wins: a create, or a compare-and-set over the stale entry read above; a
          // worker that lost the race to an identical job leaves the winner's entry alone.
          if (kv !== undefined && revision !== undefined) {
            const data = JSON.stringify(entryOf(result, clock()));
            try {
              await (revision === 0 ? kv.create(key, data) : kv.update(key, data, revision));
            } catch (err) {
              logger.debug({ err: (err as Error).message, task: job.task }, "result not cached (written by another worker first, or NATS refused)");
            }
          }
          end(result);
        },
        release: () => end(undefined),
      },
    };
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

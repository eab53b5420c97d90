/**
 * The result cache's decisions (README, "Result cache"), with no I/O: which jobs are the same
 * job (a canonical hash), what a stored entry looks like, whether it is still fresh, and the
 * result a cache hit publishes. The router (`services/router/result-cache.ts`) does the I/O.
 */
import { createHash } from "node:crypto";
import { z } from "zod";
import type { TaskConfig } from "../config/schema.ts";
import { ResultSchema, type Attempt, type Job, type Result } from "../contract/job.ts";
import { billedUsd } from "../routing/cost.ts";

/**
 * The bucket's max age, and so the longest `cache.ttl` a task may set: the bucket drops an
 * entry this long after it was written whatever its task's TTL, since nats-server 2.9 has no
 * per-message TTL (the TTL itself is checked against `stored_at`).
 */
export const RESULT_CACHE_MAX_AGE_MS = 30 * 86_400_000;

/** JSON with every object's keys sorted, so two requests that differ only in key order hash alike. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === "object" && !Array.isArray(v) ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : v,
  );
}

const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");

/**
 * A hash of the task's config, so editing it (tiers, output contract, quality floors…) makes
 * every earlier entry a miss. `cache` itself is left out: lengthening or shortening the TTL
 * changes how long entries count, not what the answers would be.
 */
export function policyVersion(task: TaskConfig): string {
  const { cache: _ttl, ...rest } = task;
  return sha256(canonicalJson(rest)).slice(0, 16);
}

/**
 * The KV key of a job: `<task>.<sha256>` over the task, its policy version and what decides
 * the answer: the request and the routing constraints (which models may answer). The id,
 * metadata and deadline are left out: a nightly re-run gives every job a new id.
 */
export function cacheKey(job: Pick<Job, "task" | "request" | "routing">, version: string): string {
  return `${job.task}.${sha256(canonicalJson({ task: job.task, policy: version, request: job.request, routing: job.routing ?? null }))}`;
}

/** A KV entry: the result as first published, and when it was stored (epoch ms, the TTL's start). */
export const CacheEntrySchema = z.object({
  stored_at: z.int().nonnegative(),
  result: ResultSchema,
});
export type CacheEntry = z.infer<typeof CacheEntrySchema>;

/**
 * A KV entry that says a worker is calling a model for this job now (written by compare-and-set
 * on a miss), so a worker that takes an identical job meanwhile waits for its result instead of
 * paying for a second call. It counts for PENDING_LEASE_MS at most: a claimant that stopped, or
 * a call that runs longer, lets the others go ahead.
 */
export const PendingEntrySchema = z.object({
  pending_since: z.int().nonnegative(),
});
export type PendingEntry = z.infer<typeof PendingEntrySchema>;

/** How long a claim on an identical job holds the others back. */
export const PENDING_LEASE_MS = 60_000;

/** Whether a claim written at `since` still holds identical jobs back. */
export function pendingHolds(since: number, now: number): boolean {
  return now - since < PENDING_LEASE_MS;
}

/** Whether an entry stored at `storedAt` is still served under a TTL of `ttlMs`. */
export function fresh(storedAt: number, ttlMs: number, now: number): boolean {
  return now - storedAt < ttlMs;
}

/** What a stored result is made of; only results whose output check passed are ever stored. */
export function entryOf(result: Result, now: number): CacheEntry {
  return { stored_at: now, result };
}

/**
 * The result a cache hit publishes for `job`: the stored answer under the job's own id and
 * metadata, `cached: true`, costing nothing. Its attempts are those of earlier deliveries of
 * the job (billed, so in `billed_usd`) and one marker for the hit: the model that first
 * answered, outcome `ok`, `http_status` null, no cost.
 */
export function cachedResult(stored: Result, job: Pick<Job, "id" | "task" | "metadata">, earlier: readonly Attempt[], at: { startedAt: number; publishedAt: number; now: number }): Result {
  const marker: Attempt = { provider: stored.provider, model: stored.model, tier: stored.attempts.at(-1)?.tier ?? 0, outcome: "ok", http_status: null, latency_ms: 0, error: null, cost_usd: 0 };
  return {
    id: job.id,
    task: job.task,
    status: "succeeded",
    provider: stored.provider,
    model: stored.model,
    response: stored.response,
    ...(stored.output === undefined ? {} : { output: stored.output }),
    usage: { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 },
    cost_usd: 0,
    cost: { input: 0, cached_input: 0, cache_write: 0, output: 0, reasoning: 0, total: 0 },
    billed_usd: billedUsd(earlier),
    latency_ms: at.now - at.startedAt,
    queued_ms: Math.max(0, at.startedAt - at.publishedAt),
    attempts: [...earlier, marker],
    metadata: job.metadata ?? {},
    completed_at: new Date(at.now).toISOString(),
    cached: true,
    cached_from: { id: stored.id, completed_at: stored.completed_at },
  };
}

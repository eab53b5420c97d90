/**
 * The batch lane's stored shapes, parsed at the boundary: a queued line (a job the router sent
 * to the batch lane, on BATCH_QUEUE) and a provider batch's record (one KV entry of
 * PROVIDER_BATCHES). Everything a restarted batcher needs to resume is in these two: it never
 * holds state that a crash could lose without the line coming back to someone.
 */
import { createHash } from "node:crypto";
import { z } from "zod";
import { AttemptSchema, JobSchema, type Attempt, type Job } from "../../shared/contract/job.ts";
import { parseJsonOrUndefined } from "../../shared/json.ts";

/** A job on its way to a provider batch: the job as the router parsed it, and the attempt it is to make. */
export const QueuedLineSchema = z.object({
  job: JobSchema.extend({ id: z.string(), task: z.string() }),
  /** `provider/model` of the batch attempt. */
  model: z.string(),
  tier: z.int().nonnegative(),
  /** Batch prices per million tokens, fixed when the job was routed (the result's cost uses them). */
  input_per_mtok: z.number().nonnegative(),
  output_per_mtok: z.number().nonnegative(),
  /** When the router took the job (epoch ms): the result's `latency_ms` counts from it. */
  received_at: z.int().nonnegative(),
  /** When the job was published (epoch ms), for `queued_ms`. */
  published_at: z.number().nonnegative(),
  /** Attempts of earlier deliveries (a job redelivered after live failures may still have slack). */
  earlier: z.array(AttemptSchema),
});
export type QueuedLine = z.infer<typeof QueuedLineSchema> & { readonly job: Job; readonly earlier: Attempt[] };

export function parseQueuedLine(data: Uint8Array): QueuedLine | undefined {
  const parsed = QueuedLineSchema.safeParse(parseJsonOrUndefined(new TextDecoder().decode(data)));
  return parsed.success ? (parsed.data as QueuedLine) : undefined;
}

/**
 * A provider batch's life, each state written by compare-and-set:
 * - `submitting`: recorded before the submission, so a crash mid-submit is never followed by a
 *   second submission of the same lines (its lines go live instead once the record is stale);
 * - `running`: submitted; polled every `poll_interval` by whichever batcher claims the poll;
 * - `finishing`: its results are being turned into outcomes, under a lease a crashed finisher
 *   lets lapse;
 * - then the record moves from `open.<id>` to `done.<id>` as `done`.
 */
export const BATCH_RECORD_STATES = ["submitting", "running", "finishing", "done"] as const;

export const BatchRecordSchema = z.object({
  id: z.string(),
  task: z.string(),
  /** `provider/model`. */
  model: z.string(),
  state: z.enum(BATCH_RECORD_STATES),
  /** The provider's batch id, once submitted. */
  provider_batch_id: z.string().optional(),
  /** The provider's last reported state (`shared/adapters/batch.ts` BatchState). */
  provider_state: z.string().optional(),
  /** Sequences in BATCH_QUEUE of the lines, in submission order; a line's custom id is `l<seq>`. */
  lines: z.array(z.int().positive()),
  /**
   * For a task with `cache:`: lines identical to an earlier line of this batch (the same cache
   * key), by sequence → that line's sequence. Submitted once; the copy is answered as a cache
   * hit of the first (`cached: true`, no cost), or sent live with it.
   */
  same_as: z.record(z.string(), z.int().positive()).optional(),
  counts: z
    .object({ total: z.int(), processing: z.int(), succeeded: z.int(), errored: z.int(), expired: z.int(), cancelled: z.int() })
    .optional(),
  created_at: z.int(),
  submitted_at: z.int().optional(),
  /** The moment the batch must be given up so its earliest deadline is still met live (`abandonAt`). */
  abandon_at: z.number(),
  /** The next poll is due; a batcher claims it by moving this forward. */
  next_poll_at: z.int(),
  /**
   * Set when the finish sends every line live instead of reading results: the batch was given
   * up for a deadline, or its submission was cut off. A finish taken over after a crash goes on
   * the same way.
   */
  give_up: z.enum(["abandoned", "interrupted"]).optional(),
  /** While `finishing`: lines done so far, in `lines` order, and what became of them; a finish taken over resumes after them. */
  done: z.int().nonnegative().optional(),
  tally: z.object({ results: z.int().nonnegative(), live: z.int().nonnegative() }).optional(),
  /** While `submitting` or `finishing`: until when the process doing it holds it. */
  lease_until: z.int().optional(),
  /** How it ended: results published, lines sent to the live tiers, and why the batch was not used (if so). */
  ended: z.object({ at: z.int(), results: z.int(), live: z.int(), why: z.string().optional() }).optional(),
});
export type BatchRecord = z.infer<typeof BatchRecordSchema>;

export function parseBatchRecord(data: Uint8Array | string): BatchRecord | undefined {
  const parsed = BatchRecordSchema.safeParse(parseJsonOrUndefined(typeof data === "string" ? data : new TextDecoder().decode(data)));
  return parsed.success ? parsed.data : undefined;
}

/** A line's custom id in its provider batch: its queue sequence, which every API's id rule accepts. */
export const customIdOf = (seq: number): string => `l${seq}`;

const CarriedAttemptsSchema = z.array(AttemptSchema);

/** The attempts a job handed back by the batcher carries (ATTEMPTS_HEADER); none when absent or unreadable. */
export function carriedAttempts(header: string | undefined): Attempt[] {
  if (!header) return [];
  const parsed = CarriedAttemptsSchema.safeParse(parseJsonOrUndefined(header));
  return parsed.success ? parsed.data : [];
}

/** A job id as one subject token: ids may hold dots, spaces or wildcards, a hex digest holds none. */
export const queueKeyOf = (jobId: string): string => createHash("sha256").update(jobId).digest("hex").slice(0, 32);


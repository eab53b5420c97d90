/**
 * The Batch API's shapes as zod schemas: what a client sends (the POST /v1/batches body, the
 * list query), what the gateway keeps per batch in the `switchyard-batches` KV bucket, and
 * the bookkeeping messages in BATCH_LINES. Everything that arrives from outside the process
 * (HTTP, KV, a stream) is parsed by one of these once, where it arrives; typed after.
 */
import { z } from "zod";
import { BATCH_ENDPOINT } from "./batch-lines.ts";

export const BATCH_STATUSES = ["validating", "failed", "in_progress", "finalizing", "completed", "expired", "cancelling", "cancelled"] as const;
export type BatchStatus = (typeof BATCH_STATUSES)[number];

/** Statuses a batch never leaves. */
export const TERMINAL_STATUSES: ReadonlySet<BatchStatus> = new Set(["failed", "completed", "expired", "cancelled"]);
export const isTerminal = (s: BatchStatus): boolean => TERMINAL_STATUSES.has(s);

/** The only completion window OpenAI offers, and so the only one Switchyard takes. */
export const COMPLETION_WINDOW = "24h";
export const COMPLETION_WINDOW_S = 24 * 3600;

/** Batch ids are `batch_` and a nuid: anything else is not ours, and is a 404 without a lookup. */
export const BATCH_ID_PATTERN = /^batch_[A-Za-z0-9]+$/;

const METADATA_PROBLEM = "metadata must be an object of at most 16 string values.";

/**
 * The POST /v1/batches body. The first problem becomes the 400's message and `param`, the
 * same words OpenAI's own API uses where it has them. Unknown fields (OpenAI adds some now and
 * then) are ignored.
 */
export const CreateBatchBodySchema = z.object(
  {
    input_file_id: z.string({ error: "input_file_id is required." }),
    endpoint: z.literal(BATCH_ENDPOINT, { error: `endpoint must be "${BATCH_ENDPOINT}" (the only one Switchyard batches).` }),
    completion_window: z.literal(COMPLETION_WINDOW, { error: `completion_window must be "${COMPLETION_WINDOW}".` }),
    /** OpenAI's limits: up to 16 pairs, values up to 512 characters. */
    metadata: z
      .record(z.string(), z.string({ error: METADATA_PROBLEM }).max(512, { error: METADATA_PROBLEM }), { error: METADATA_PROBLEM })
      .refine((m) => Object.keys(m).length <= 16, { error: METADATA_PROBLEM })
      .nullish()
      .transform((m) => m ?? null),
  },
  { error: "The request body must be a JSON object." },
);
export type CreateBatchBody = z.output<typeof CreateBatchBodySchema>;

/** GET /v1/batches: `after` (a batch id) and `limit` (1–100, 20 when absent or not a number). */
export const ListBatchesQuerySchema = z.object({
  after: z.string().optional(),
  limit: z
    .string()
    .nullish()
    .transform((s) => Math.min(100, Math.max(1, Number(s) || 20))),
});

const ErrorDataSchema = z.object({ code: z.string(), message: z.string(), param: z.string().nullable(), line: z.int().nullable() });

/** OpenAI's batch object, as clients get it and as it sits in the KV entry. */
export const BatchSchema = z.object({
  id: z.string().regex(BATCH_ID_PATTERN),
  object: z.literal("batch"),
  endpoint: z.string(),
  errors: z.object({ object: z.literal("list"), data: z.array(ErrorDataSchema) }).nullable(),
  input_file_id: z.string(),
  completion_window: z.string(),
  status: z.enum(BATCH_STATUSES),
  output_file_id: z.string().nullable(),
  error_file_id: z.string().nullable(),
  /** Unix seconds, like every `*_at`. */
  created_at: z.int(),
  in_progress_at: z.int().nullable(),
  expires_at: z.int(),
  finalizing_at: z.int().nullable(),
  completed_at: z.int().nullable(),
  failed_at: z.int().nullable(),
  expired_at: z.int().nullable(),
  cancelling_at: z.int().nullable(),
  cancelled_at: z.int().nullable(),
  request_counts: z.object({ total: z.int().nonnegative(), completed: z.int().nonnegative(), failed: z.int().nonnegative() }),
  metadata: z.record(z.string(), z.string()).nullable(),
});
export type Batch = z.output<typeof BatchSchema>;
export type RequestCounts = Batch["request_counts"];

/** Which gateway instance drives a batch, until when (ms since the epoch); see `batch-lease.ts`. */
export const LeaseSchema = z.object({ owner: z.string().min(1), until: z.number() }).nullable();
export type Lease = z.output<typeof LeaseSchema>;

/**
 * A batch's KV entry: the batch object plus what the owner needs to carry on after a restart.
 * Changed only through `transition` (batch-status.ts) and the lease functions, and written
 * with compare-and-set.
 */
export const BatchRecordSchema = z.object({
  batch: BatchSchema,
  /** The tenant of the key that created it: only that tenant sees it. */
  tenant: z.string().min(1),
  /** The task (routing policy) every line runs under. */
  task: z.string().min(1),
  /** Input lines (by line number) handled so far: dispatch resumes after it. */
  dispatched: z.int().nonnegative(),
  /** How a batch in `finalizing` ends: `expired` when its window ran out first. */
  ending: z.literal("expired").optional(),
  lease: LeaseSchema,
  /**
   * The W3C trace context of the create request (its span's when the gateway traces, else the
   * caller's own `traceparent`): every line's job carries it, so the lines' job spans join the
   * trace of the request that made the batch.
   */
  trace: z.object({ traceparent: z.string(), tracestate: z.string().optional() }).optional(),
});
export type BatchRecord = z.output<typeof BatchRecordSchema>;

/** `batchlines.<batch>.seqs`: the JOBS sequence of each published line, `[lineNo, seq]`, so a cancel can withdraw the jobs not yet run. */
export const LineSeqsSchema = z.array(z.tuple([z.int().positive(), z.int().positive()]));
export type LineSeqs = z.output<typeof LineSeqsSchema>;

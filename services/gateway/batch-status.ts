/**
 * A batch's life as one pure function: `transition(record, event, now)` → the next record, or
 * the reason the event does not apply in the batch's status. The batch service only carries
 * out what it returns (writes it with compare-and-set); nothing else changes a batch's status,
 * counts, timestamps or errors.
 *
 * ```
 *   validating ─validated→ in_progress ─counted (every line in)→ finalizing ─finalized→ completed
 *   validating | in_progress ─tick (window over)→ finalizing ─finalized→ expired
 *   validating | in_progress ─cancel→ cancelling ─finalized→ cancelled
 *   validating ─invalid_input→ failed
 * ```
 *
 * `checkpoint` (validating) and `counted` short of the total (in_progress) record progress
 * without a change of status; a repeated `cancel` and a `tick` that finds nothing due change
 * nothing. Any other event is refused in a status it does not apply to.
 *
 * Timestamps are OpenAI's: whole Unix seconds, each `*_at` set once, when its status is
 * entered. `now` is milliseconds (the service's clock), so tests drive time by hand.
 */
import type { Batch, BatchRecord, BatchStatus, RequestCounts } from "./batch-schema.ts";
import { COMPLETION_WINDOW, COMPLETION_WINDOW_S, isTerminal } from "./batch-schema.ts";
import { BATCH_ENDPOINT } from "./batch-lines.ts";

export type BatchEvent =
  /** Dispatch has handled the input lines up to `dispatched` (a checkpoint to resume from). validating only. */
  | { readonly type: "checkpoint"; readonly dispatched: number }
  /** Every line is published or filed as invalid: validating → in_progress, `total` lines. */
  | { readonly type: "validated"; readonly total: number }
  /** The input file cannot be run at all (missing, empty, too long): validating → failed, with the reason in `errors`. */
  | { readonly type: "invalid_input"; readonly code: string; readonly message: string }
  /** Lines filed so far; in_progress → finalizing once every line is in. */
  | { readonly type: "counted"; readonly completed: number; readonly failed: number }
  /** The client cancels: validating | in_progress → cancelling; repeated, a no-op. */
  | { readonly type: "cancel" }
  /** Time passes: a validating or in_progress batch past its window goes to finalizing, to end as expired. */
  | { readonly type: "tick" }
  /** The output and error files are written: finalizing → completed | expired, cancelling → cancelled. */
  | { readonly type: "finalized"; readonly outputFileId: string | null; readonly errorFileId: string | null; readonly counts: RequestCounts };

export type BatchEventType = BatchEvent["type"];

/**
 * `ok: true` with the next record (the very same object when the event changes nothing), or
 * `ok: false` when the event does not apply in the batch's status.
 */
export type Transition = { readonly ok: true; readonly record: BatchRecord } | { readonly ok: false; readonly reason: string };

/** A new batch, `validating`, as POST /v1/batches creates it. */
export function newBatchRecord(
  init: { readonly id: string; readonly inputFileId: string; readonly metadata: Record<string, string> | null; readonly tenant: string; readonly task: string },
  now: number,
): BatchRecord {
  const at = seconds(now);
  const batch: Batch = {
    id: init.id,
    object: "batch",
    endpoint: BATCH_ENDPOINT,
    errors: null,
    input_file_id: init.inputFileId,
    completion_window: COMPLETION_WINDOW,
    status: "validating",
    output_file_id: null,
    error_file_id: null,
    created_at: at,
    in_progress_at: null,
    expires_at: at + COMPLETION_WINDOW_S,
    finalizing_at: null,
    completed_at: null,
    failed_at: null,
    expired_at: null,
    cancelling_at: null,
    cancelled_at: null,
    request_counts: { total: 0, completed: 0, failed: 0 },
    metadata: init.metadata,
  };
  return { batch, tenant: init.tenant, task: init.task, dispatched: 0, lease: null };
}

export function transition(record: BatchRecord, event: BatchEvent, now: number): Transition {
  const status = record.batch.status;
  const at = seconds(now);
  const refuse = (): Transition => ({ ok: false, reason: `A batch that is ${status} cannot take "${event.type}".` });
  const same = (): Transition => ({ ok: true, record });
  const next = (batch: Partial<Batch>, rest: Partial<Omit<BatchRecord, "batch">> = {}): Transition => {
    const b: Batch = { ...record.batch, ...batch };
    // A finished batch has no owner: nothing is left to drive.
    const lease = isTerminal(b.status) ? null : record.lease;
    return { ok: true, record: { ...record, lease, ...rest, batch: b } };
  };

  switch (event.type) {
    case "checkpoint":
      if (status !== "validating") return refuse();
      if (event.dispatched <= record.dispatched) return same();
      return next({}, { dispatched: event.dispatched });

    case "validated":
      if (status !== "validating") return refuse();
      return next({ status: "in_progress", in_progress_at: at, request_counts: { total: event.total, completed: 0, failed: 0 } });

    case "invalid_input":
      if (status !== "validating") return refuse();
      return next({ status: "failed", failed_at: at, errors: { object: "list", data: [{ code: event.code, message: event.message, param: null, line: null }] } });

    case "counted": {
      if (status !== "in_progress") return refuse();
      const c = record.batch.request_counts;
      const allIn = event.completed + event.failed >= c.total;
      if (!allIn && event.completed === c.completed && event.failed === c.failed) return same();
      const request_counts = { total: c.total, completed: event.completed, failed: event.failed };
      return next(allIn ? { status: "finalizing", finalizing_at: at, request_counts } : { request_counts });
    }

    case "cancel":
      if (status === "cancelling" || status === "cancelled") return same();
      if (status !== "validating" && status !== "in_progress") return { ok: false, reason: `Cannot cancel a batch with status ${status}.` };
      return next({ status: "cancelling", cancelling_at: at });

    case "tick":
      if ((status === "validating" || status === "in_progress") && now >= record.batch.expires_at * 1000) {
        return next({ status: "finalizing", finalizing_at: at }, { ending: "expired" });
      }
      return same();

    case "finalized": {
      const files = { output_file_id: event.outputFileId, error_file_id: event.errorFileId, request_counts: event.counts };
      if (status === "cancelling") return next({ ...files, status: "cancelled", cancelled_at: at });
      if (status !== "finalizing") return refuse();
      return record.ending === "expired" ? next({ ...files, status: "expired", expired_at: at }) : next({ ...files, status: "completed", completed_at: at });
    }
  }
}

/** How the owner's work on a batch in `status` goes on: the step `batch-worker.ts` runs. */
export function nextStep(status: BatchStatus): "dispatch" | "count" | "finalize" | "none" {
  switch (status) {
    case "validating":
      return "dispatch";
    case "in_progress":
      return "count";
    case "finalizing":
    case "cancelling":
      return "finalize";
    default:
      return "none";
  }
}

/** How a batch being finalized ends: what the error file says of the lines that never ran. */
export function endingOf(record: BatchRecord): "completed" | "expired" | "cancelled" {
  if (record.batch.status === "cancelling") return "cancelled";
  return record.ending === "expired" ? "expired" : "completed";
}

const seconds = (ms: number) => Math.floor(ms / 1000);

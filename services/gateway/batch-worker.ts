/**
 * The owner's work on one batch, one step at a time: claim (or renew) the lease, let time act
 * (`tick`: a batch past its window is finalized as expired), then the step its status calls
 * for — dispatch the input lines as jobs, count the lines filed, or collect them into the
 * output and error files. Each step reads the entry, decides through `transition`, and writes
 * with compare-and-set; a write that loses (a cancel, another owner) ends the step, and the
 * next tick starts from what the entry then says.
 */
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import { headers as natsHeaders, type MsgHdrs } from "@nats-io/transport-node";
import type { JobInput } from "../../shared/contract/job.ts";
import { names as namesFor, type Names } from "../../shared/contract/subjects.ts";
import type { Logger } from "../../shared/log.ts";
import { TRACEPARENT, TRACESTATE } from "../../shared/ops/tracing.ts";
import type { Catalog } from "../../shared/routing/catalog.ts";
import { collectBatch, discardLines } from "./batch-collector.ts";
import { linesSubject } from "./batch-filer.ts";
import type { BatchLeases } from "./batch-lease.ts";
import { fileLines, jobIdFor, notRunLine, parseLine } from "./batch-lines.ts";
import { isTerminal, type BatchRecord, type LineSeqs } from "./batch-schema.ts";
import { endingOf, nextStep, transition, type BatchEvent } from "./batch-status.ts";
import type { BatchEntry, BatchStore } from "./batch-store.ts";
import type { FileStore } from "./files.ts";

export interface BatchWorkerDeps {
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  readonly store: BatchStore;
  readonly leases: BatchLeases;
  readonly files: FileStore;
  readonly catalog: () => Catalog;
  /** Most request lines one batch may hold (read at each dispatch, so a config reload applies). */
  readonly maxLines: () => number;
  readonly logger: Logger;
  readonly clock: () => number;
  /** Lines published between checkpoints of the dispatch position. */
  readonly checkpointLines: number;
  /** Job publishes awaiting their acknowledgement at once. */
  readonly publishWindow: number;
  /** Set when the instance stops: dispatch checkpoints where it is and returns. */
  readonly signal: AbortSignal;
  /** The deployment's names. @defaultValue names() (no namespace) */
  readonly names?: Names;
}

/** Runs one step of a batch's life, if this instance may; errors are the caller's to log (the next tick retries). */
export function createBatchWorker(deps: BatchWorkerDeps): (id: string) => Promise<void> {
  const { js, jsm, store, leases, logger, clock } = deps;
  const n = deps.names ?? namesFor();
  const { jobSubject } = n;

  /** Applies an event; the entry as written (the same one when nothing changed), or null when the event no longer applies or the entry changed under us. */
  async function advance(id: string, entry: BatchEntry, event: BatchEvent, renew = false): Promise<BatchEntry | null> {
    const t = transition(renew ? leases.renewed(entry.record) : entry.record, event, clock());
    if (!t.ok) {
      logger.debug({ batch: id, reason: t.reason }, "batch moved on; step dropped");
      return null;
    }
    return t.record === entry.record ? entry : store.update(id, t.record, entry.revision);
  }

  async function step(id: string): Promise<void> {
    const got = await store.get(id);
    if (!got || isTerminal(got.record.batch.status)) return;
    const owned = await leases.acquire(id, got);
    const entry = owned && (await advance(id, owned, { type: "tick" }));
    if (!entry) return;
    switch (nextStep(entry.record.batch.status)) {
      case "dispatch":
        return dispatch(id, entry);
      case "count":
        return count(id, entry);
      case "finalize":
        return finalize(id, entry);
      case "none":
        return;
    }
  }

  /** Publishes the input lines as jobs (invalid ones straight to the error lines), checkpointing as it goes. */
  async function dispatch(id: string, start: BatchEntry): Promise<void> {
    const rec = start.record;
    let entry: BatchEntry | null = start;
    let data: Uint8Array;
    try {
      data = await deps.files.content(rec.tenant, rec.batch.input_file_id);
    } catch {
      await advance(id, start, { type: "invalid_input", code: "invalid_input_file", message: `The input file ${rec.batch.input_file_id} no longer exists.` });
      return;
    }
    const lines = [...fileLines(data)];
    const maxLines = deps.maxLines();
    if (lines.length === 0) {
      await advance(id, start, { type: "invalid_input", code: "empty_file", message: "The input file has no request lines." });
      return;
    }
    if (lines.length > maxLines) {
      await advance(id, start, { type: "invalid_input", code: "too_many_requests", message: `The input file has ${lines.length} request lines; a batch may hold ${maxLines}.` });
      return;
    }
    const catalog = deps.catalog();
    const seen = new Set<string>();
    const pending: Promise<unknown>[] = [];
    let seqs: LineSeqs = [];
    let checkpointed = rec.dispatched;
    let handled = rec.dispatched;
    const deadline = new Date(rec.batch.expires_at * 1000).toISOString();

    // Every publish so far acknowledged, their JOBS sequences filed, the position and the lease in the entry.
    const checkpoint = async (upTo: number): Promise<boolean> => {
      await Promise.all(pending.splice(0));
      if (seqs.length > 0) {
        await js.publish(linesSubject(id, "seqs", n), JSON.stringify(seqs), { msgID: `${id}-seqs-${upTo}` });
        seqs = [];
      }
      entry = entry && (await advance(id, entry, { type: "checkpoint", dispatched: upTo }, true));
      checkpointed = upTo;
      return entry !== null;
    };

    for (const { lineNo, text } of lines) {
      // Earlier lines are parsed again only to know their custom_ids.
      const line = parseLine(text, lineNo, catalog, seen);
      if (lineNo <= rec.dispatched) continue;
      if (deps.signal.aborted) {
        // Stopping: what is published is recorded; the next owner resumes after it.
        if (handled > checkpointed) await checkpoint(handled);
        return;
      }
      const jobId = jobIdFor(id, lineNo);
      if (line.kind === "invalid") {
        pending.push(js.publish(linesSubject(id, "err", n), notRunLine(jobId, line.customId, "invalid_request", line.message), { msgID: jobId }));
      } else {
        const job: JobInput = { id: jobId, task: rec.task, request: line.request, deadline, metadata: { tenant: rec.tenant, batch_id: id, custom_id: line.customId } };
        pending.push(js.publish(jobSubject(rec.task), JSON.stringify(job), { msgID: jobId, headers: traceHeaders(rec.trace) }).then((ack) => seqs.push([lineNo, ack.seq])));
      }
      handled = lineNo;
      if (pending.length >= deps.publishWindow) await Promise.all(pending.splice(0));
      if (lineNo - checkpointed >= deps.checkpointLines && !(await checkpoint(lineNo))) return;
    }
    if (!(await checkpoint(lines.at(-1)!.lineNo)) || !entry) return;
    await advance(id, entry, { type: "validated", total: lines.length });
  }

  /** Lines filed so far, from BATCH_LINES' per-subject counts. */
  async function filed(id: string): Promise<{ completed: number; failed: number }> {
    const info = await jsm.streams.info(n.batchLinesStream, { subjects_filter: `${n.batchLinesSubject}.${id}.*` });
    const subjects = info.state.subjects ?? {};
    return { completed: subjects[linesSubject(id, "ok", n)] ?? 0, failed: subjects[linesSubject(id, "err", n)] ?? 0 };
  }

  async function count(id: string, entry: BatchEntry): Promise<void> {
    const next = await advance(id, entry, { type: "counted", ...(await filed(id)) });
    if (next && next.record.batch.status === "finalizing") await finalize(id, next);
  }

  async function finalize(id: string, entry: BatchEntry): Promise<void> {
    const c = await collectBatch(deps, entry.record, endingOf(entry.record));
    const done = await advance(id, entry, { type: "finalized", outputFileId: c.outputFileId, errorFileId: c.errorFileId, counts: c.counts });
    if (!done) return;
    await discardLines(jsm, id, n).catch(() => {});
    logger.info({ batch: id, status: done.record.batch.status, ...done.record.batch.request_counts }, "batch finished");
  }

  return step;
}

/** The batch's trace context as a line job's headers (README "Tracing"); one set per publish, since the client adds the message id to them. */
function traceHeaders(trace: BatchRecord["trace"]): MsgHdrs | undefined {
  if (!trace) return undefined;
  const h = natsHeaders();
  h.set(TRACEPARENT, trace.traceparent);
  if (trace.tracestate) h.set(TRACESTATE, trace.tracestate);
  return h;
}

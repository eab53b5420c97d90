/**
 * The Batch API on JetStream. A batch is one KV entry (its OpenAI batch object plus
 * bookkeeping); its lines become jobs on the batch lane (`jobs.<task>`, id `<batch>-<line>`);
 * every gateway collects batch outcomes from RESULTS and DLQ through one shared durable
 * consumer per stream and files each as a line in BATCH_LINES; the batch's owner counts
 * them, and once all are in writes the output and error files to the object store.
 *
 * Every step survives a restart: the owner holds a lease in the batch's entry (renewed as it
 * works, released on a clean stop) and any instance takes over a lapsed one; dispatch
 * checkpoints the input lines it has handled, and republishing past the checkpoint is
 * harmless because jobs are published with Nats-Msg-Id.
 */
import { DeliverPolicy, type JetStreamClient, type JetStreamManager, type JsMsg } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import { nuid } from "@nats-io/transport-node";
import type { DeadLetter, JobInput, Result } from "../../shared/contract/job.ts";
import { BATCH_LINES_STREAM, BATCH_LINES_SUBJECT, GATEWAY_BATCH_DURABLE, jobSubject, STREAMS } from "../../shared/contract/subjects.ts";
import type { Logger } from "../../shared/log.ts";
import type { Catalog } from "../../shared/routing/catalog.ts";
import type { Caller } from "./auth.ts";
import { BATCH_ENDPOINT, failedLine, fileLines, jobIdFor, lineNoOf, notRunLine, okLine, parseLine } from "./batch-lines.ts";
import { taskFor } from "./chat.ts";
import type { FileStore } from "./files.ts";
import { GatewayError } from "./openai-error.ts";

export const BATCH_STATUSES = ["validating", "failed", "in_progress", "finalizing", "completed", "expired", "cancelling", "cancelled"] as const;
export type BatchStatus = (typeof BATCH_STATUSES)[number];
const TERMINAL: ReadonlySet<BatchStatus> = new Set(["failed", "completed", "expired", "cancelled"]);

/** OpenAI's batch object. */
export interface Batch {
  id: string;
  object: "batch";
  endpoint: string;
  errors: { object: "list"; data: { code: string; message: string; param: string | null; line: number | null }[] } | null;
  input_file_id: string;
  completion_window: string;
  status: BatchStatus;
  output_file_id: string | null;
  error_file_id: string | null;
  created_at: number;
  in_progress_at: number | null;
  expires_at: number;
  finalizing_at: number | null;
  completed_at: number | null;
  failed_at: number | null;
  expired_at: number | null;
  cancelling_at: number | null;
  cancelled_at: number | null;
  request_counts: { total: number; completed: number; failed: number };
  metadata: Record<string, string> | null;
}

/** A batch's KV entry. */
export interface BatchRecord {
  batch: Batch;
  tenant: string;
  task: string;
  /** Input lines (by line number) handled so far: dispatch resumes after it. */
  dispatched: number;
  /** How a batch in `finalizing` ends: `expired` when its window ran out first. */
  ending?: "expired";
  lease: { owner: string; until: number } | null;
}

export interface BatchServiceDeps {
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  readonly kv: KV;
  readonly files: FileStore;
  readonly catalog: () => Catalog;
  readonly logger: Logger;
  readonly maxLines: number;
  readonly clock?: () => number;
  /** How long an owner's claim lasts without renewal. @defaultValue 10 s */
  readonly leaseMs?: number;
}

export interface BatchService {
  create(caller: Caller, taskHeader: string | string[] | undefined, body: unknown): Promise<Batch>;
  get(caller: Caller, id: string): Promise<Batch>;
  list(caller: Caller, after: string | undefined, limit: number): { object: "list"; data: Batch[]; first_id: string | null; last_id: string | null; has_more: boolean };
  cancel(caller: Caller, id: string): Promise<Batch>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

const TICK_MS = 500;
/** Lines published between checkpoints of the dispatch position. */
const CHECKPOINT_LINES = 500;
const PUBLISH_WINDOW = 256;

export const linesSubject = (batchId: string, kind: "ok" | "err" | "seqs") => `${BATCH_LINES_SUBJECT}.${batchId}.${kind}`;

export function createBatchService(deps: BatchServiceDeps): BatchService {
  const { js, jsm, kv, files, logger } = deps;
  const clock = deps.clock ?? Date.now;
  const leaseMs = deps.leaseMs ?? 10_000;
  const me = nuid.next();
  /** Every batch, from the KV watch: for listing and for finding work. */
  const known = new Map<string, BatchRecord>();
  /** Batches this instance is working on right now. */
  const running = new Set<string>();
  const stops: (() => void)[] = [];
  let ticker: NodeJS.Timeout | undefined;
  let stopping = false;

  const seconds = () => Math.floor(clock() / 1000);

  async function load(id: string): Promise<{ rec: BatchRecord; rev: number } | undefined> {
    const e = await kv.get(id);
    if (!e || e.operation !== "PUT") return undefined;
    return { rec: e.json<BatchRecord>(), rev: e.revision };
  }

  /** Compare-and-set: null when someone else wrote first (a cancel, or a lapsed lease taken over). */
  async function save(id: string, rec: BatchRecord, rev: number): Promise<number | null> {
    try {
      return await kv.update(id, JSON.stringify(rec), rev);
    } catch (err) {
      logger.debug({ batch: id, err: (err as Error).message }, "batch entry changed under us");
      return null;
    }
  }

  async function own(caller: Caller, id: string): Promise<{ rec: BatchRecord; rev: number }> {
    const got = /^batch_[A-Za-z0-9]+$/.test(id) ? await load(id) : undefined;
    if (!got || got.rec.tenant !== caller.tenant) throw new GatewayError(404, `No batch found with id '${id}'.`, { code: "not_found", param: "batch_id" });
    return got;
  }

  // ---- the API ----

  async function create(caller: Caller, taskHeader: string | string[] | undefined, body: unknown): Promise<Batch> {
    if (typeof body !== "object" || body === null || Array.isArray(body)) throw new GatewayError(400, "The request body must be a JSON object.");
    const b = body as Record<string, unknown>;
    if (typeof b.input_file_id !== "string") throw new GatewayError(400, "input_file_id is required.", { param: "input_file_id" });
    if (b.endpoint !== BATCH_ENDPOINT) throw new GatewayError(400, `endpoint must be "${BATCH_ENDPOINT}" (the only one Switchyard batches).`, { param: "endpoint" });
    if (b.completion_window !== "24h") throw new GatewayError(400, 'completion_window must be "24h".', { param: "completion_window" });
    const metadata = b.metadata ?? null;
    if (metadata !== null && (typeof metadata !== "object" || Array.isArray(metadata) || Object.keys(metadata).length > 16 || Object.values(metadata).some((v) => typeof v !== "string" || v.length > 512))) {
      throw new GatewayError(400, "metadata must be an object of at most 16 string values.", { param: "metadata" });
    }
    const task = taskFor(caller, taskHeader, deps.catalog());
    const input = await files.get(caller.tenant, b.input_file_id).catch((err: unknown) => {
      throw err instanceof GatewayError ? new GatewayError(400, err.message, { param: "input_file_id", code: "invalid_input_file" }) : err;
    });
    if (input.purpose !== "batch") throw new GatewayError(400, `File ${input.id} has purpose "${input.purpose}"; a batch needs purpose "batch".`, { param: "input_file_id" });
    const now = seconds();
    const batch: Batch = {
      id: `batch_${nuid.next()}`,
      object: "batch",
      endpoint: BATCH_ENDPOINT,
      errors: null,
      input_file_id: input.id,
      completion_window: "24h",
      status: "validating",
      output_file_id: null,
      error_file_id: null,
      created_at: now,
      in_progress_at: null,
      expires_at: now + 24 * 3600,
      finalizing_at: null,
      completed_at: null,
      failed_at: null,
      expired_at: null,
      cancelling_at: null,
      cancelled_at: null,
      request_counts: { total: 0, completed: 0, failed: 0 },
      metadata: metadata as Record<string, string> | null,
    };
    await kv.create(batch.id, JSON.stringify({ batch, tenant: caller.tenant, task, dispatched: 0, lease: null } satisfies BatchRecord));
    setImmediate(() => void work(batch.id));
    return batch;
  }

  async function cancel(caller: Caller, id: string): Promise<Batch> {
    for (let tries = 0; tries < 10; tries++) {
      const { rec, rev } = await own(caller, id);
      const s = rec.batch.status;
      if (s === "cancelling" || s === "cancelled") return rec.batch;
      if (TERMINAL.has(s) || s === "finalizing") throw new GatewayError(409, `Cannot cancel a batch with status ${s}.`, { code: "batch_not_cancellable" });
      rec.batch.status = "cancelling";
      rec.batch.cancelling_at = seconds();
      if ((await save(id, rec, rev)) !== null) {
        setImmediate(() => void work(id));
        return rec.batch;
      }
    }
    throw new GatewayError(503, "The batch is changing too fast to cancel; try again.", { code: "busy" });
  }

  function list(caller: Caller, after: string | undefined, limit: number) {
    const mine = [...known.values()]
      .filter((r) => r.tenant === caller.tenant)
      .map((r) => r.batch)
      .sort((a, b) => b.created_at - a.created_at || (a.id < b.id ? 1 : -1));
    const start = after === undefined ? 0 : mine.findIndex((b) => b.id === after) + 1;
    const data = mine.slice(start, start + limit);
    return { object: "list" as const, data, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null, has_more: start + limit < mine.length };
  }

  // ---- the owner's work ----

  /** One step of a batch's life, run by whoever holds (or takes) its lease. */
  async function work(id: string): Promise<void> {
    if (running.has(id) || stopping) return;
    running.add(id);
    try {
      const got = await load(id);
      if (!got || TERMINAL.has(got.rec.batch.status)) return;
      let { rec, rev } = got;
      const now = clock();
      if (rec.lease && rec.lease.owner !== me && rec.lease.until > now) return;
      if (!rec.lease || rec.lease.owner !== me || rec.lease.until - now < leaseMs / 2) {
        rec.lease = { owner: me, until: now + leaseMs };
        const next = await save(id, rec, rev);
        if (next === null) return;
        rev = next;
      }
      const s = rec.batch.status;
      if ((s === "validating" || s === "in_progress") && now >= rec.batch.expires_at * 1000) {
        rec.batch.status = "finalizing";
        rec.batch.finalizing_at = seconds();
        rec.ending = "expired";
        const next = await save(id, rec, rev);
        if (next === null) return;
        rev = next;
      }
      if (rec.batch.status === "validating") await dispatch(id, rec, rev);
      else if (rec.batch.status === "in_progress") await count(id, rec, rev);
      else await finalize(id, rec, rev);
    } catch (err) {
      logger.error({ batch: id, err: (err as Error).message }, "batch step failed; it will be retried");
    } finally {
      running.delete(id);
    }
  }

  async function fail(id: string, rec: BatchRecord, rev: number, code: string, message: string): Promise<void> {
    rec.batch.status = "failed";
    rec.batch.failed_at = seconds();
    rec.batch.errors = { object: "list", data: [{ code, message, param: null, line: null }] };
    rec.lease = null;
    await save(id, rec, rev);
  }

  /** Publishes the input lines as jobs (invalid ones straight to the error lines), checkpointing as it goes. */
  async function dispatch(id: string, rec: BatchRecord, rev: number): Promise<void> {
    let data: Uint8Array;
    try {
      data = await files.content(rec.tenant, rec.batch.input_file_id);
    } catch {
      return fail(id, rec, rev, "invalid_input_file", `The input file ${rec.batch.input_file_id} no longer exists.`);
    }
    const lines = [...fileLines(data)];
    if (lines.length === 0) return fail(id, rec, rev, "empty_file", "The input file has no request lines.");
    if (lines.length > deps.maxLines) return fail(id, rec, rev, "too_many_requests", `The input file has ${lines.length} request lines; a batch may hold ${deps.maxLines}.`);
    const catalog = deps.catalog();
    const seen = new Set<string>();
    const pending: Promise<unknown>[] = [];
    let seqs: [number, number][] = [];
    let since = rec.dispatched;
    const deadline = new Date(rec.batch.expires_at * 1000).toISOString();

    const checkpoint = async (upTo: number): Promise<boolean> => {
      await Promise.all(pending.splice(0));
      if (seqs.length > 0) {
        await js.publish(linesSubject(id, "seqs"), JSON.stringify(seqs), { msgID: `${id}-seqs-${upTo}` });
        seqs = [];
      }
      rec.dispatched = upTo;
      rec.lease = { owner: me, until: clock() + leaseMs };
      const next = await save(id, rec, rev);
      if (next === null) return false;
      rev = next;
      since = upTo;
      return !stopping;
    };

    for (const { lineNo, text } of lines) {
      // Earlier lines are parsed again only to know their custom_ids.
      const line = parseLine(text, lineNo, catalog, seen);
      if (lineNo <= rec.dispatched) continue;
      const jobId = jobIdFor(id, lineNo);
      if (line.kind === "invalid") {
        pending.push(js.publish(linesSubject(id, "err"), notRunLine(jobId, line.customId, "invalid_request", line.message), { msgID: jobId }));
      } else {
        const job: JobInput = { id: jobId, task: rec.task, request: line.request, deadline, metadata: { tenant: rec.tenant, batch_id: id, custom_id: line.customId } };
        pending.push(js.publish(jobSubject(rec.task), JSON.stringify(job), { msgID: jobId }).then((ack) => seqs.push([lineNo, ack.seq])));
      }
      if (pending.length >= PUBLISH_WINDOW) await Promise.all(pending.splice(0));
      if (lineNo - since >= CHECKPOINT_LINES && !(await checkpoint(lineNo))) return;
    }
    if (!(await checkpoint(lines.at(-1)!.lineNo))) return;
    rec.batch.status = "in_progress";
    rec.batch.in_progress_at = seconds();
    rec.batch.request_counts.total = lines.length;
    await save(id, rec, rev);
  }

  /** Lines filed so far, from BATCH_LINES' per-subject counts. */
  async function filed(id: string): Promise<{ completed: number; failed: number }> {
    const info = await jsm.streams.info(BATCH_LINES_STREAM, { subjects_filter: `${BATCH_LINES_SUBJECT}.${id}.*` });
    const subjects = info.state.subjects ?? {};
    return { completed: subjects[linesSubject(id, "ok")] ?? 0, failed: subjects[linesSubject(id, "err")] ?? 0 };
  }

  async function count(id: string, rec: BatchRecord, rev: number): Promise<void> {
    const c = await filed(id);
    const counts = rec.batch.request_counts;
    const allIn = c.completed + c.failed >= counts.total;
    if (c.completed === counts.completed && c.failed === counts.failed && !allIn) return;
    counts.completed = c.completed;
    counts.failed = c.failed;
    if (allIn) {
      rec.batch.status = "finalizing";
      rec.batch.finalizing_at = seconds();
    }
    const next = await save(id, rec, rev);
    if (next !== null && rec.batch.status === "finalizing") await finalize(id, rec, next);
  }

  /**
   * Writes the output and error files and ends the batch. An expired or cancelled batch first
   * withdraws its jobs that have not run (deleting them from JOBS), and reports every line
   * without an outcome in the error file.
   */
  async function finalize(id: string, rec: BatchRecord, rev: number): Promise<void> {
    const ending: BatchStatus = rec.batch.status === "cancelling" ? "cancelled" : rec.ending === "expired" ? "expired" : "completed";
    const ok: string[] = [];
    const err: string[] = [];
    const done = new Set<number>();
    const seqs: [number, number][] = [];
    for await (const m of readLines(js, `${BATCH_LINES_SUBJECT}.${id}.>`)) {
      const kind = m.subject.slice(m.subject.lastIndexOf(".") + 1);
      if (kind === "seqs") {
        seqs.push(...m.json<[number, number][]>());
        continue;
      }
      const lineNo = lineNoOf(m.headers?.get("Nats-Msg-Id") ?? "");
      // A line filed twice (its result outlived the duplicate window) counts once.
      if (done.has(lineNo)) continue;
      done.add(lineNo);
      (kind === "ok" ? ok : err).push(m.string());
    }
    let total = rec.batch.request_counts.total;
    if (ending !== "completed") {
      await Promise.all(seqs.filter(([lineNo]) => !done.has(lineNo)).map(([, seq]) => jsm.streams.deleteMessage(STREAMS.jobs, seq, false).catch(() => false)));
      const code = ending === "expired" ? "batch_expired" : "batch_cancelled";
      const message = ending === "expired" ? "The batch's 24h completion window ended before this request ran." : "The batch was cancelled before this request ran.";
      const data = await files.content(rec.tenant, rec.batch.input_file_id).catch(() => new Uint8Array());
      const seen = new Set<string>();
      total = 0;
      for (const { lineNo, text } of fileLines(data)) {
        total++;
        const line = parseLine(text, lineNo, deps.catalog(), seen);
        if (!done.has(lineNo)) err.push(notRunLine(jobIdFor(id, lineNo), line.customId, code, message));
      }
    }
    const file = async (lines: string[], kind: "output" | "error") =>
      lines.length === 0 ? null : (await files.put(rec.tenant, `${id}_${kind}.jsonl`, "batch_output", Buffer.from(`${lines.join("\n")}\n`), `file-${id}-${kind}`)).id;
    const b = rec.batch;
    b.output_file_id = await file(ok, "output");
    b.error_file_id = await file(err, "error");
    b.request_counts = { total, completed: ok.length, failed: err.length };
    b.status = ending;
    const at = seconds();
    if (ending === "completed") b.completed_at = at;
    else if (ending === "expired") b.expired_at = at;
    else b.cancelled_at = at;
    rec.lease = null;
    if ((await save(id, rec, rev)) !== null) {
      await jsm.streams.purge(BATCH_LINES_STREAM, { filter: `${BATCH_LINES_SUBJECT}.${id}.>` }).catch(() => {});
      logger.info({ batch: id, status: ending, ...b.request_counts }, "batch finished");
    }
  }

  // ---- collecting outcomes ----

  /** Files each batch job's result or dead letter as a line; every other message is acknowledged and skipped. */
  async function collect(stream: string): Promise<void> {
    const consumer = await js.consumers.get(stream, GATEWAY_BATCH_DURABLE);
    const messages = await consumer.consume({ max_messages: 512 });
    stops.push(() => void messages.stop());
    const inFlight = new Set<Promise<void>>();
    for await (const m of messages) {
      const p = fileOutcome(m);
      inFlight.add(p);
      void p.finally(() => inFlight.delete(p));
      if (inFlight.size >= PUBLISH_WINDOW) await Promise.race(inFlight);
    }
  }

  async function fileOutcome(m: JsMsg): Promise<void> {
    // Batch jobs' ids start with the batch id: other producers' outcomes are skipped unparsed.
    if (!(m.headers?.get("Nats-Msg-Id") ?? "").startsWith("batch_")) {
      m.ack();
      return;
    }
    try {
      const o = m.json<Result | DeadLetter>();
      const batchId = o.metadata.batch_id;
      const customId = o.metadata.custom_id;
      if (typeof batchId !== "string" || typeof customId !== "string" || !/^batch_[A-Za-z0-9]+$/.test(batchId)) {
        m.ack();
        return;
      }
      const line = o.status === "succeeded" ? okLine(o, customId) : failedLine(o, customId);
      await js.publish(linesSubject(batchId, o.status === "succeeded" ? "ok" : "err"), line, { msgID: o.id });
      m.ack();
    } catch (err) {
      logger.warn({ err: (err as Error).message }, "filing a batch outcome failed; it will be redelivered");
      m.nak(1_000);
    }
  }

  async function watch(): Promise<void> {
    const watcher = await kv.watch();
    stops.push(() => watcher.stop());
    for await (const e of watcher) {
      if (e.operation === "PUT") known.set(e.key, e.json<BatchRecord>());
      else known.delete(e.key);
    }
  }

  return {
    create,
    async get(caller, id) {
      return (await own(caller, id)).rec.batch;
    },
    list,
    cancel,
    async start() {
      for (const stream of [STREAMS.results, STREAMS.dlq]) {
        void collect(stream).catch((err: unknown) => logger.error({ stream, err: (err as Error).message }, "batch outcome collector stopped"));
      }
      void watch().catch((err: unknown) => logger.error({ err: (err as Error).message }, "batch watch stopped"));
      ticker = setInterval(() => {
        const now = clock();
        for (const [id, r] of known) {
          if (TERMINAL.has(r.batch.status) || (r.lease && r.lease.owner !== me && r.lease.until > now)) continue;
          void work(id);
        }
      }, TICK_MS);
    },
    async stop() {
      stopping = true;
      clearInterval(ticker);
      for (const s of stops) s();
      while (running.size > 0) await new Promise((r) => setTimeout(r, 20));
      // Hand our batches over at once instead of after the lease lapses.
      for (const [id, r] of known) {
        if (r.lease?.owner !== me || TERMINAL.has(r.batch.status)) continue;
        const got = await load(id).catch(() => undefined);
        if (got && got.rec.lease?.owner === me) {
          got.rec.lease = null;
          await save(id, got.rec, got.rev);
        }
      }
    },
  };
}

/** A subject filter's messages in BATCH_LINES, up to the last one there when reading started. */
async function* readLines(js: JetStreamClient, subject: string): AsyncGenerator<JsMsg> {
  const consumer = await js.consumers.get(BATCH_LINES_STREAM, { filter_subjects: subject, deliver_policy: DeliverPolicy.All });
  for (;;) {
    const batch = await consumer.fetch({ max_messages: 1000, expires: 1000 });
    let got = 0;
    let caughtUp = false;
    for await (const m of batch) {
      got++;
      yield m;
      caughtUp = m.info.pending === 0;
    }
    if (got === 0 || caughtUp) return;
  }
}

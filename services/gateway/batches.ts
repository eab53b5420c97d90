/**
 * The Batch API on JetStream: the HTTP operations (create, retrieve, list, cancel) and the
 * scheduler that drives batches. A batch is one KV entry (its OpenAI batch object plus
 * bookkeeping, `batch-schema.ts`); its lines become jobs on the batch lane (`jobs.<task>`, id
 * `<batch>-<line>`); the outcome filer (`batch-filer.ts`) files their results and dead letters
 * in BATCH_LINES; the batch's owner (`batch-lease.ts`) counts them and, once all are in,
 * collects them into the output and error files (`batch-collector.ts`).
 *
 * The pieces: `batch-status.ts` decides every change of a batch (pure), `batch-worker.ts`
 * carries out one step, `batch-store.ts` reads and compare-and-sets the entries. Every step
 * survives a restart: dispatch checkpoints the input lines it has handled, and republishing
 * past the checkpoint is harmless because jobs are published with Nats-Msg-Id.
 */
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import { nuid } from "@nats-io/transport-node";
import type { Logger } from "../../shared/log.ts";
import type { Catalog } from "../../shared/routing/catalog.ts";
import type { Caller } from "./auth.ts";
import { startOutcomeFiler, type OutcomeFiler } from "./batch-filer.ts";
import type { Names } from "../../shared/contract/subjects.ts";
import { BatchLeases } from "./batch-lease.ts";
import { BATCH_ID_PATTERN, CreateBatchBodySchema, isTerminal, type Batch, type BatchRecord } from "./batch-schema.ts";
import { newBatchRecord, transition } from "./batch-status.ts";
import { BatchStore, type BatchEntry } from "./batch-store.ts";
import { createBatchWorker } from "./batch-worker.ts";
import { taskFor } from "./chat.ts";
import type { FileStore } from "./files.ts";
import { GatewayError } from "./openai-error.ts";

/** Timings and sizes of the batch machinery; tests shorten and shrink them. */
export interface BatchTuning {
  /** How long an owner's claim lasts without renewal. @defaultValue 10 s */
  readonly leaseMs?: number;
  /** How often every batch is looked at (work to take over, a window ending). @defaultValue 500 ms */
  readonly tickMs?: number;
  /** Input lines published between checkpoints of the dispatch position. @defaultValue 500 */
  readonly checkpointLines?: number;
  /** Job publishes awaiting their acknowledgement at once, per batch. @defaultValue 256 */
  readonly publishWindow?: number;
  /** On stop, how long running steps may take to finish before they are left to their leases. @defaultValue 10 s */
  readonly stopTimeoutMs?: number;
}

/** Outcomes filed at once per stream. */
const FILER_WINDOW = 256;

export interface BatchServiceDeps {
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  readonly kv: KV;
  readonly files: FileStore;
  /** The live catalogue (swapped on a config reload). */
  readonly catalog: () => Catalog;
  /** `gateway.max_batch_lines`, as the config in force says. */
  readonly maxLines: () => number;
  readonly logger: Logger;
  readonly clock?: () => number;
  readonly tuning?: BatchTuning;
  /** The deployment's names. @defaultValue names() (no namespace) */
  readonly names?: Names;
  /** Background responses' outcomes, read by the same outcome filer (`responses.ts`). */
  readonly fileResponse?: (outcomeText: string) => Promise<void>;
}

export interface BatchList {
  readonly object: "list";
  readonly data: Batch[];
  readonly first_id: string | null;
  readonly last_id: string | null;
  readonly has_more: boolean;
}

export interface BatchService {
  /** POST /v1/batches; `body` is the parsed JSON, checked here. */
  /** `trace`: the create request's trace context, which every line's job carries. */
  create(caller: Caller, taskHeader: string | string[] | undefined, body: unknown, trace?: { readonly traceparent?: string | undefined; readonly tracestate?: string | undefined }): Promise<Batch>;
  get(caller: Caller, id: string): Promise<Batch>;
  list(caller: Caller, after: string | undefined, limit: number): BatchList;
  cancel(caller: Caller, id: string): Promise<Batch>;
  start(): Promise<void>;
  /** Stops taking work, waits (at most `stopTimeoutMs`) for running steps, and hands this instance's batches over. */
  stop(): Promise<void>;
}

export function createBatchService(deps: BatchServiceDeps): BatchService {
  const { files, logger } = deps;
  const t = deps.tuning ?? {};
  const clock = deps.clock ?? Date.now;
  const store = new BatchStore(deps.kv, logger);
  const leases = new BatchLeases(store, { me: nuid.next(), leaseMs: t.leaseMs ?? 10_000, clock });
  const halt = new AbortController();
  const step = createBatchWorker({
    ...deps,
    store,
    leases,
    clock,
    checkpointLines: t.checkpointLines ?? 500,
    publishWindow: t.publishWindow ?? 256,
    signal: halt.signal,
  });
  /** Every batch, from the KV watch: for listing and for finding work. */
  const known = new Map<string, BatchRecord>();
  /** Steps running on this instance, by batch. */
  const running = new Map<string, Promise<void>>();
  /** Batches this instance has worked on: the ones whose leases it hands over on stop. */
  const worked = new Set<string>();
  let ticker: NodeJS.Timeout | undefined;
  let watch: { stop(): void; done: Promise<void> } | undefined;
  let filer: OutcomeFiler | undefined;
  let stopped: Promise<void> | undefined;

  function schedule(id: string): void {
    if (running.has(id) || halt.signal.aborted) return;
    worked.add(id);
    const p = step(id)
      .catch((err: unknown) => logger.error({ batch: id, err: (err as Error).message }, "batch step failed; it will be retried"))
      .finally(() => running.delete(id));
    running.set(id, p);
  }

  async function own(caller: Caller, id: string): Promise<BatchEntry> {
    const got = BATCH_ID_PATTERN.test(id) ? await store.get(id) : undefined;
    if (!got || got.record.tenant !== caller.tenant) throw new GatewayError(404, `No batch found with id '${id}'.`, { code: "not_found", param: "batch_id" });
    return got;
  }

  async function create(caller: Caller, taskHeader: string | string[] | undefined, body: unknown, trace?: { readonly traceparent?: string | undefined; readonly tracestate?: string | undefined }): Promise<Batch> {
    const parsed = CreateBatchBodySchema.safeParse(body);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw new GatewayError(400, issue.message, { param: issue.path.length > 0 ? String(issue.path[0]) : null });
    }
    const b = parsed.data;
    const task = taskFor(caller, taskHeader, deps.catalog());
    const input = await files.get(caller.tenant, b.input_file_id).catch((err: unknown) => {
      throw err instanceof GatewayError ? new GatewayError(400, err.message, { param: "input_file_id", code: "invalid_input_file" }) : err;
    });
    if (input.purpose !== "batch") throw new GatewayError(400, `File ${input.id} has purpose "${input.purpose}"; a batch needs purpose "batch".`, { param: "input_file_id" });
    const id = `batch_${nuid.next()}`;
    const fresh = newBatchRecord({ id, inputFileId: input.id, metadata: b.metadata, tenant: caller.tenant, task }, clock());
    const traced = trace?.traceparent ? { ...fresh, trace: { traceparent: trace.traceparent, ...(trace.tracestate ? { tracestate: trace.tracestate } : {}) } } : fresh;
    const { record } = await store.create(id, traced);
    schedule(id);
    return record.batch;
  }

  async function cancel(caller: Caller, id: string): Promise<Batch> {
    for (let tries = 0; tries < 10; tries++) {
      const entry = await own(caller, id);
      const next = transition(entry.record, { type: "cancel" }, clock());
      if (!next.ok) throw new GatewayError(409, next.reason, { code: "batch_not_cancellable" });
      if (next.record === entry.record) return entry.record.batch;
      if (await store.update(id, next.record, entry.revision)) {
        schedule(id);
        return next.record.batch;
      }
    }
    throw new GatewayError(503, "The batch is changing too fast to cancel; try again.", { code: "busy" });
  }

  function list(caller: Caller, after: string | undefined, limit: number): BatchList {
    const mine = [...known.values()]
      .filter((r) => r.tenant === caller.tenant)
      .map((r) => r.batch)
      .sort((a, b) => b.created_at - a.created_at || (a.id < b.id ? 1 : -1));
    const start = after === undefined ? 0 : mine.findIndex((b) => b.id === after) + 1;
    const data = mine.slice(start, start + limit);
    return { object: "list", data, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null, has_more: start + limit < mine.length };
  }

  async function stop(): Promise<void> {
    halt.abort();
    clearInterval(ticker);
    watch?.stop();
    const finished = await within(Promise.allSettled([...running.values(), filer?.stop(), watch?.done]), t.stopTimeoutMs ?? 10_000);
    if (!finished) logger.warn({ batches: [...running.keys()] }, "batch steps still running at stop; their leases will lapse");
    // Hand our batches over at once instead of after the lease lapses.
    for (const id of worked) {
      const r = known.get(id);
      if (running.has(id) || (r && isTerminal(r.batch.status))) continue;
      await leases.release(id).catch((err: unknown) => logger.warn({ batch: id, err: (err as Error).message }, "could not hand a batch over; its lease will lapse"));
    }
  }

  return {
    create,
    async get(caller, id) {
      return (await own(caller, id)).record.batch;
    },
    list,
    cancel,
    async start() {
      filer = await startOutcomeFiler({ js: deps.js, logger, window: FILER_WINDOW, names: deps.names, fileResponse: deps.fileResponse });
      watch = await store.watch((id, record) => {
        if (record) known.set(id, record);
        else known.delete(id);
      });
      watch.done.catch((err: unknown) => logger.error({ err: (err as Error).message }, "batch watch stopped"));
      ticker = setInterval(() => {
        for (const [id, r] of known) {
          if (isTerminal(r.batch.status)) worked.delete(id);
          else if (!leases.heldElsewhere(r)) schedule(id);
        }
      }, t.tickMs ?? 500);
    },
    stop: () => (stopped ??= stop()),
  };
}

/** Whether `p` settled within `ms`. */
async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([p.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

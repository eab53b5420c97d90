/**
 * The batch lane's I/O (README, "Batch lane"): jobs the router sent to BATCH_QUEUE are grouped
 * per task and model, submitted as one provider batch, polled, and each line's answer becomes
 * its job's one outcome on `results.<task>` (or `dlq.<task>`), exactly as a live call's would.
 * A line that fails, expires or comes back invalid, and every line of a batch that fails or must
 * be given up for a deadline, goes back to `jobs.<task>` marked for the live tiers. The
 * decisions are the pure functions of `shared/routing/batch-plan.ts`; the answer is judged by
 * the same delivery state machine as a live call (`services/router/job.ts`).
 *
 * Safe to kill at any moment, and any number run at once (one per router process):
 * - a line is acked off the queue only once the record of the batch holding it is stored, so a
 *   process that dies while a group collects loses nothing (the lines come again to another);
 * - a record is `submitting` before the provider hears of it, so a submission cut off halfway
 *   is never repeated: once its lease lapses, its lines are served live instead;
 * - polls and the finish are claimed by compare-and-set on the record; results are published
 *   with `Nats-Msg-Id` = job id, so a finish taken over after a crash adds no second outcome.
 */
import { jetstream, jetstreamManager, type ConsumerMessages, type JetStreamClient, type JetStreamManager, type JsMsg } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import { headers as natsHeaders, nuid, type NatsConnection } from "@nats-io/transport-node";
import { bindContract } from "../../shared/acceptance/contract.ts";
import { isBatchFinal, type BatchLine, type BatchLineOutcome, type BatchStatus } from "../../shared/adapters/batch.ts";
import { ProviderTimeoutError } from "../../shared/adapters/errors.ts";
import type { Config } from "../../shared/config/schema.ts";
import type { Attempt, Job, Result } from "../../shared/contract/job.ts";
import { billedUsd } from "../../shared/routing/cost.ts";
import { cachedResult, cacheKey, policyVersion } from "../../shared/cache/result-cache.ts";
import { ATTEMPTS_HEADER, LIVE_HEADER, type Names } from "../../shared/contract/subjects.ts";
import type { Logger } from "../../shared/log.ts";
import { isWrongRevision } from "../../shared/nats/errors.ts";
import type { ModelCaller, ProviderLease } from "../../shared/providers/caller.ts";
import { abandonAt, groupLines, liveNeedMs, nextFlushAt, type BatchPolicy, type OpenGroup } from "../../shared/routing/batch-plan.ts";
import type { ModelInfo, TaskPolicy } from "../../shared/routing/catalog.ts";
import type { PlannedAttempt } from "../../shared/routing/planner.ts";
import { CallCancel } from "../../shared/adapters/http.ts";
import { mapLimit } from "../../shared/concurrency.ts";
import { buildDeadLetter, Delivery, type LiveView, type Moment } from "../router/job.ts";
import type { ResultCache } from "../router/result-cache.ts";
import type { RouterMetrics } from "../../shared/ops/router-metrics.ts";
import { customIdOf, parseBatchRecord, parseQueuedLine, queueKeyOf, type BatchRecord, type QueuedLine } from "./records.ts";

export interface BatcherDeps {
  readonly nc: NatsConnection;
  /** The config now in force (a reload changes prices, tasks and providers for new batches). */
  readonly config: () => Config;
  readonly caller: ModelCaller;
  readonly names: Names;
  readonly logger: Logger;
  readonly clock: () => number;
  readonly random: () => number;
  /** Where a served line's result is cached, for a task with `cache:`. */
  readonly resultCache: ResultCache;
  /** Where the lane's jobs, costs and batches are counted (the router's metrics); none without it. */
  readonly metrics?: RouterMetrics | undefined;
  /** Adds what a batch line billed to the budgets its job answers to (README, "Budgets"). */
  readonly recordSpend: (job: Job, costUsd: number) => void;
}

export interface Batcher {
  /** Creates (or, with `provision: check`, binds) the queue, its consumer and the records bucket, then starts collecting and polling. */
  start(): Promise<void>;
  /** Stops collecting (held lines go back to the queue for another batcher) and polling; a finish under way completes. */
  stop(): Promise<void>;
  /** Whether a delivery of this job put it on the queue already (its line is still there: limits retention, 3 days). */
  queued(task: string, jobId: string): Promise<boolean>;
}

/** How a provider batch ended (`switchyard_provider_batches_total`). */
type Ending = "completed" | "failed" | "refused" | "abandoned" | "interrupted";

/** A line held in an open group; acked once its batch's record is stored. */
interface Held {
  /** The latest delivery of the line (a redelivery of the same sequence replaces it). */
  m: JsMsg;
  readonly line: QueuedLine;
}

/** Held lines are renewed well within the consumer's ack_wait (BATCH_QUEUE_ACK_WAIT_MS, 60 s). */
const RENEW_EVERY_MS = 20_000;
/** A submission (an upload of up to 200 MB, then the create) that has not finished in this long never will: its lines go live. */
const SUBMIT_LEASE_MS = 10 * 60_000;
/** The time a finish may take before another batcher takes it over. */
const FINISH_LEASE_MS = 2 * 60_000;
/** Every batch API call: uploads and result files are large. */
const API_TIMEOUT_MS = 120_000;
/** How often open records are looked at; each is polled only at its own `next_poll_at`. */
const TICK_MS = 250;
/** A batch line has no per-call timeout of its own: the batch's window and the give-up time bound it. */
const LINE_TIMEOUT_MS = 86_400_000;
/** How long a stop waits for submissions and finishes under way before leaving them to the leases. */
const STOP_WAIT_MS = 3_000;
/** Nothing cools down a batch line: it is judged, not routed. */
const NO_COOLDOWN: LiveView = { cooldownUntil: () => 0 };

// Per config object (a reload makes a new one): read for every arriving line and every job, built once.
const batchPolicies = new WeakMap<Config, Map<string, BatchPolicy | undefined>>();
const liveNeeds = new WeakMap<TaskPolicy, number>();

/** A task's `batch:` section in milliseconds; undefined without one. */
export function batchPolicyOf(config: Config, task: string): BatchPolicy | undefined {
  let byTask = batchPolicies.get(config);
  if (byTask === undefined) {
    byTask = new Map(Object.entries(config.tasks).map(([name, t]) => [name, t.batch === undefined ? undefined : { minSlackMs: t.batch.min_slack, windowMs: t.batch.window, maxLines: t.batch.max_lines, pollIntervalMs: t.batch.poll_interval }]));
    batchPolicies.set(config, byTask);
  }
  return byTask.get(task);
}

export function createBatcher(deps: BatcherDeps): Batcher {
  const { nc, names, logger, clock } = deps;
  const js: JetStreamClient = jetstream(nc);
  let jsm: JetStreamManager | undefined;
  let kv: KV | undefined;
  let messages: ConsumerMessages | undefined;
  let stopped = false;
  const held = new Map<string, Held>();
  // Lines of a group being recorded: out of `held`, so a stop does not hand them back under a submission.
  const submitting = new Map<string, Held>();
  // Per task: the groups collecting lines (groupLines keeps one per provider and model).
  const open = new Map<string, OpenGroup[]>();
  const timers: NodeJS.Timeout[] = [];
  let ticking: Promise<void> | undefined;
  const running = new Set<Promise<unknown>>();
  // The open records as the bucket last said, by key, with the revision a claim must match.
  const openRecords = new Map<string, { record: BatchRecord; revision: number }>();
  let watcher: Awaited<ReturnType<KV["watch"]>> | undefined;

  const track = <T>(p: Promise<T>): Promise<T> => {
    running.add(p);
    void p.finally(() => running.delete(p)).catch(() => {});
    return p;
  };

  /** The queue, its consumer and the records bucket are the router's resources, created or checked at its start (`prepareNats`). */
  async function ensure(): Promise<void> {
    jsm = await jetstreamManager(nc, { checkAPI: false });
    kv = await new Kvm(jetstream(nc, { checkAPI: false })).open(names.providerBatchesBucket);
  }

  async function collect(): Promise<void> {
    const consumer = await js.consumers.get(names.batchQueueStream, names.batcherDurable);
    messages = await consumer.consume({ max_messages: 1000 });
    for await (const m of messages) {
      const line = parseQueuedLine(m.data);
      if (line === undefined) {
        // Only a router writes here: a line it cannot read would never read better.
        logger.error({ seq: m.seq, subject: m.subject }, "unreadable batch-lane line dropped from the queue");
        m.term();
        continue;
      }
      const already = held.get(line.job.id) ?? submitting.get(line.job.id);
      if (already !== undefined) {
        // The same line again (its hold lapsed): keep the newer handle, still unacked. Another copy
        // of the job (a second queueing): acked, the job being in hand already.
        if (already.m.seq === m.seq) already.m = m;
        else safely(() => m.ack());
        continue;
      }
      held.set(line.job.id, { m, line });
      arrive(line);
    }
  }

  function arrive(line: QueuedLine): void {
    const policy = batchPolicyOf(deps.config(), line.job.task);
    const [provider = "", model = ""] = splitId(line.model);
    const deadline = line.job.deadline === undefined ? Infinity : Date.parse(line.job.deadline);
    if (policy === undefined) {
      // The task lost its `batch:` section in a reload: the line goes to a batch of its own at once.
      void track(submit(line.job.task, { provider, model, openedAt: clock(), lines: [{ jobId: line.job.id, deadline }] }));
      return;
    }
    const g = groupLines(open.get(line.job.task) ?? [], [{ jobId: line.job.id, deadline, provider, model }], policy, clock());
    open.set(line.job.task, [...g.open]);
    for (const ready of g.ready) void track(submit(line.job.task, ready));
  }

  /** Submits the groups whose window has closed. */
  function flush(): void {
    const now = clock();
    for (const [task, groups] of open) {
      const policy = batchPolicyOf(deps.config(), task);
      if (policy === undefined || groups.length === 0) continue;
      const at = nextFlushAt(groups, policy);
      if (at === undefined || at > now) continue;
      const g = groupLines(groups, [], policy, now);
      open.set(task, [...g.open]);
      for (const ready of g.ready) void track(submit(task, ready));
    }
  }

  function renew(): void {
    for (const h of [...held.values(), ...submitting.values()]) safely(() => h.m.working());
  }

  /** Records the group, takes its lines off the queue, then submits it; a refusal sends every line live. */
  async function submit(task: string, group: OpenGroup): Promise<void> {
    let lines: Held[] = [];
    for (const { jobId } of group.lines) {
      const h = held.get(jobId);
      if (!h) continue;
      held.delete(jobId);
      submitting.set(jobId, h);
      lines.push(h);
    }
    if (lines.length === 0) return;
    const lease = deps.caller.lease();
    try {
      const config = lease.config;
      const policy = batchPolicyOf(config, task);
      const taskPolicy = lease.catalog.tasks.get(task);
      const need = taskPolicy === undefined ? 0 : liveNeedFor(config, taskPolicy);
      const now = clock();
      const id = nuid.next();
      const recordOf = (ls: readonly Held[]): BatchRecord => {
        const sameAs = duplicates(config, task, ls.map((h) => h.line), ls.map((h) => h.m.seq));
        return {
          id,
          task,
          model: `${group.provider}/${group.model}`,
          state: "submitting",
          lines: ls.map((h) => h.m.seq),
          ...(sameAs === undefined ? {} : { same_as: sameAs }),
          created_at: now,
          abandon_at: abandonAt(ls.map((h) => ({ jobId: h.line.job.id, deadline: h.line.job.deadline === undefined ? Infinity : Date.parse(h.line.job.deadline) })), need),
          next_poll_at: now + (policy?.pollIntervalMs ?? 60_000),
          lease_until: now + SUBMIT_LEASE_MS,
        };
      };
      let record = recordOf(lines);
      const bucket = kv!;
      let revision: number;
      try {
        revision = await bucket.create(`open.${id}`, JSON.stringify(record));
      } catch (err) {
        // Not recorded, not acked: the lines come back once their hold lapses, to be grouped again.
        logger.error({ err: (err as Error).message, task, lines: lines.length }, "provider batch not recorded; its lines go back to the queue");
        return;
      }
      // A line whose ack fails is no longer ours (its hold lapsed: another batcher may have it): out of this batch before it is submitted.
      const acked = await Promise.all(lines.map((h) => h.m.ackAck().catch(() => false)));
      if (acked.some((ok) => !ok)) {
        lines = lines.filter((_, i) => acked[i]);
        if (lines.length === 0) {
          await bucket.delete(`open.${id}`).catch(() => {});
          return;
        }
        record = recordOf(lines);
        try {
          revision = await bucket.update(`open.${id}`, JSON.stringify(record), revision);
        } catch (err) {
          logger.error({ err: (err as Error).message, task }, "provider batch record not narrowed to its acknowledged lines; left as an interrupted submission");
          return;
        }
      }
      await submitRecorded(lease, record, revision, lines);
    } finally {
      lease.release();
      for (const h of lines) submitting.delete(h.line.job.id);
      for (const { jobId } of group.lines) submitting.delete(jobId);
    }
  }

  /** Submits a recorded batch; a refusal sends every line live. */
  async function submitRecorded(lease: ProviderLease, record: BatchRecord, revision: number, lines: readonly Held[]): Promise<void> {
    const { id, task } = record;
    const bucket = kv!;
    const model = lease.catalog.models.get(record.model);
    const batchLines = model === undefined ? undefined : toBatchLines(lease, model, lines.map((h) => h.line), record.lines, record.same_as);
    if (model === undefined || batchLines === undefined) {
      await finishLive(record, revision, lines.map((h) => h.line), `the model ${record.model} can no longer take these jobs as a batch (config changed)`, "refused");
      return;
    }
    let status: BatchStatus;
    try {
      status = await lease.batchApi(model).submit(batchLines, API_TIMEOUT_MS);
    } catch (err) {
      const why = `the provider refused the batch: ${(err as Error).message}`;
      logger.warn({ task, model: record.model, lines: lines.length, err: (err as Error).message }, "provider batch refused; its jobs go to the live tiers");
      await finishLive(record, revision, lines.map((h) => h.line), why, "refused");
      return;
    }
    const { lease_until: _submitLease, ...submitted } = record;
    const running: BatchRecord = { ...submitted, state: "running", provider_batch_id: status.id, provider_state: status.state, counts: status.counts, submitted_at: clock() };
    try {
      await bucket.update(`open.${id}`, JSON.stringify(running), revision);
    } catch (err) {
      // Its lines go live as an interrupted submission: the provider's batch would be paid for nothing.
      logger.error({ err: (err as Error).message, batch: status.id }, "submitted provider batch not recorded as running; cancelled, its lines go live as an interrupted submission");
      await lease.batchApi(model).cancel(status.id, API_TIMEOUT_MS).catch(() => {});
      return;
    }
    logger.info({ task, model: record.model, lines: lines.length, batch: status.id }, "provider batch submitted");
  }

  /** Every open record whose poll is due, or whose submission or finish was abandoned by a crashed process. */
  async function tick(): Promise<void> {
    const bucket = kv!;
    for (const [key, { record, revision }] of openRecords) {
      if (stopped) return;
      const now = clock();
      try {
        if (record.state === "running" && (now >= record.next_poll_at || now >= record.abandon_at)) {
          const policy = batchPolicyOf(deps.config(), record.task);
          const claimed = { ...record, next_poll_at: now + (policy?.pollIntervalMs ?? 60_000) };
          const rev = await bucket.update(key, JSON.stringify(claimed), revision).catch((err: unknown) => (isWrongRevision(err) ? undefined : Promise.reject(err)));
          // Claimed: no other batcher polls it before next_poll_at, so the poll may run on its own.
          if (rev !== undefined) void track(poll(claimed, rev)).catch((err: unknown) => logger.warn({ err: (err as Error).message, batch: record.provider_batch_id }, "provider batch poll failed; tried again"));
        } else if (record.state === "submitting" && now >= Math.min(record.lease_until ?? 0, record.abandon_at)) {
          // A submitter still alive loses its compare-and-set to `running` and cancels what it submitted.
          void track(finish({ ...record, give_up: "interrupted" }, revision, undefined)).catch((err: unknown) => logger.warn({ err: (err as Error).message, batch: record.id }, "interrupted provider batch not handed back; taken up again when its lease lapses"));
        } else if (record.state === "finishing" && now >= (record.lease_until ?? 0)) {
          void track(finish(record, revision, undefined)).catch((err: unknown) => logger.warn({ err: (err as Error).message, batch: record.provider_batch_id }, "provider batch finish failed; taken up again when its lease lapses"));
        }
      } catch (err) {
        logger.warn({ err: (err as Error).message, batch: record.id }, "provider batch record not claimed; tried again at the next tick");
      }
    }
  }

  /** Runs a loop that should last the batcher's life again after it ends or fails, a second later, until stopped. */
  async function keepRunning(what: string, loop: () => Promise<void>): Promise<void> {
    while (!stopped) {
      try {
        await loop();
      } catch (err) {
        if (!stopped) logger.error({ err: (err as Error).message }, `${what} failed; restarted`);
      }
      if (!stopped) await new Promise((r) => setTimeout(r, 1_000).unref());
    }
  }

  /** Keeps `openRecords` in step with the bucket's `open.` entries: one watch, no listing per tick. */
  async function watchRecords(): Promise<void> {
    // A watch replays every open record first: a restarted one starts from nothing.
    openRecords.clear();
    watcher = await kv!.watch({ key: "open.>" });
    for await (const e of watcher) {
      if (e.operation !== "PUT") {
        openRecords.delete(e.key);
        continue;
      }
      const record = parseBatchRecord(e.string());
      if (record) openRecords.set(e.key, { record, revision: e.revision });
      else logger.error({ key: e.key }, "unreadable provider batch record left alone");
    }
  }

  async function poll(record: BatchRecord, revision: number): Promise<void> {
    const lease = deps.caller.lease();
    try {
      const model = lease.catalog.models.get(record.model);
      let status: BatchStatus | undefined;
      if (model !== undefined) {
        status = await lease.batchApi(model).poll(record.provider_batch_id!, API_TIMEOUT_MS).catch((err: unknown) => {
          logger.warn({ batch: record.provider_batch_id, err: (err as Error).message }, "provider batch poll failed; polled again at the next interval");
          return undefined;
        });
      }
      if (status !== undefined && isBatchFinal(status.state)) return await finish(record, revision, status);
      if (clock() >= record.abandon_at) {
        if (model !== undefined) {
          await lease.batchApi(model).cancel(record.provider_batch_id!, API_TIMEOUT_MS).catch((err: unknown) => {
            logger.warn({ batch: record.provider_batch_id, err: (err as Error).message }, "provider batch not cancelled; its answers will be ignored");
          });
        }
        return await finish(record, revision, "abandoned");
      }
      if (status !== undefined) {
        await kv!.update(`open.${record.id}`, JSON.stringify({ ...record, provider_state: status.state, counts: status.counts }), revision).catch(() => {});
      }
    } finally {
      lease.release();
    }
  }

  /**
   * Turns a final batch into one outcome per line: results read and judged, lines without a
   * usable answer sent live. `status` undefined: a finish taken over from a crashed batcher
   * (the batch is polled again for where its results are); `abandoned`: given up for a deadline.
   */
  async function finish(record: BatchRecord, revision: number, status: BatchStatus | "abandoned" | undefined): Promise<void> {
    const now = clock();
    const giveUp = status === "abandoned" ? "abandoned" : record.give_up;
    const claimed: BatchRecord = {
      ...record,
      state: "finishing",
      lease_until: now + FINISH_LEASE_MS,
      ...(giveUp === undefined ? {} : { give_up: giveUp }),
      ...(status !== undefined && status !== "abandoned" ? { provider_state: status.state, counts: status.counts } : {}),
    };
    let rev: number;
    try {
      rev = await kv!.update(`open.${record.id}`, JSON.stringify(claimed), revision);
    } catch (err) {
      if (isWrongRevision(err)) return;
      throw err;
    }
    const lines = await readLines(record);
    const lease = deps.caller.lease();
    try {
      const model = lease.catalog.models.get(record.model);
      if (giveUp === "interrupted") return await finishLive(claimed, rev, lines, "its submission was interrupted (the process submitting it stopped); the lines were not submitted again", "interrupted");
      if (giveUp === "abandoned" || model === undefined) {
        const why = model === undefined ? `the model ${record.model} was removed from the config` : "the provider batch was given up: it had not ended when the earliest deadline among its jobs came within the live path's need";
        return await finishLive(claimed, rev, lines, why, model === undefined ? "refused" : "abandoned");
      }
      const api = lease.batchApi(model);
      const final = status !== undefined && status !== "abandoned" ? status : await api.poll(record.provider_batch_id!, API_TIMEOUT_MS);
      // Only a final batch has results; a finish is only ever claimed for one (or for a batch given up, above).
      if (!isBatchFinal(final.state)) throw new Error(`provider batch ${final.id} is ${final.state}, not final`);
      if (final.state === "failed") return await finishLive(claimed, rev, lines, `the provider batch failed: ${final.failure ?? "no reason given"}`, "failed");
      const batchLines = toBatchLines(lease, model, lines, record.lines, record.same_as);
      if (batchLines === undefined) return await finishLive(claimed, rev, lines, `the task ${record.task} changed: its lines could not be read back`, "refused");
      const outcomes = await api.results(final, batchLines, API_TIMEOUT_MS);
      const bySeq = new Map(outcomes.map((o) => [o.customId, o]));
      // A copy (same_as) comes after its first, in a later chunk or after the firsts of its own.
      const answered = new Map<number, Result>();
      const { record: last, revision: lastRev } = await overLines(claimed, rev, lines, async (line, i) => {
        const seq = record.lines[i]!;
        const firstSeq = record.same_as?.[seq];
        if (firstSeq === undefined) {
          const ended = await serveLine(lease, model, record, line, bySeq.get(customIdOf(seq)));
          if (typeof ended === "object") answered.set(seq, ended);
          return ended === "live" ? "live" : "result";
        }
        return serveCopy(line, answered.get(firstSeq));
      }, (i) => record.same_as?.[record.lines[i]!] !== undefined);
      await close(last, lastRev, { at: clock(), results: last.tally?.results ?? 0, live: last.tally?.live ?? 0 }, "completed");
    } finally {
      lease.release();
    }
  }

  /** Sends every line live (no line answered) and closes the record; a batch given up is a `timeout` attempt for each job, any other ending `unavailable`. */
  async function finishLive(record: BatchRecord, revision: number, lines: readonly QueuedLine[], why: string, ending: Ending): Promise<void> {
    const now = clock();
    const { record: last, revision: lastRev } = await overLines(record, revision, lines, async (line) => {
      await toLive(line, [...line.earlier, batchAttempt(record, line, ending === "abandoned" ? "timeout" : "unavailable", why, now)], why);
      return "live";
    });
    await close(last, lastRev, { at: clock(), results: last.tally?.results ?? 0, live: last.tally?.live ?? 0, why }, ending);
  }

  /**
   * Runs `each` over the lines from where an earlier finisher stopped (`done`), 256 at a time,
   * storing the progress and renewing the lease after each chunk by compare-and-set: a finish
   * taken over after a crash neither repeats the lines already done nor races a live finisher,
   * which stops at its next chunk once the record has moved on without it. `later` lines of a
   * chunk run after the others (a copy after its first).
   */
  async function overLines(
    record: BatchRecord,
    revision: number,
    lines: readonly QueuedLine[],
    each: (line: QueuedLine, index: number) => Promise<"result" | "live">,
    later: (index: number) => boolean = () => false,
  ): Promise<{ record: BatchRecord; revision: number }> {
    let current = record;
    let rev = revision;
    const tally = { results: record.tally?.results ?? 0, live: record.tally?.live ?? 0 };
    for (let from = record.done ?? 0; from < lines.length; from += 256) {
      const chunk = [...Array(Math.min(256, lines.length - from)).keys()].map((k) => from + k);
      const run = async (i: number) => {
        if ((await each(lines[i]!, i)) === "result") tally.results++;
        else tally.live++;
      };
      await Promise.all(chunk.filter((i) => !later(i)).map(run));
      await Promise.all(chunk.filter((i) => later(i)).map(run));
      current = { ...current, done: from + chunk.length, tally: { ...tally }, lease_until: clock() + FINISH_LEASE_MS };
      rev = await kv!.update(`open.${record.id}`, JSON.stringify(current), rev);
    }
    return { record: current, revision: rev };
  }

  /** A copy of an earlier line of the batch: that line's answer as a cache hit, unless it has none or the copy's own deadline has passed. */
  async function serveCopy(line: QueuedLine, first: Result | undefined): Promise<"result" | "live"> {
    const now = clock();
    if (line.job.deadline !== undefined && now > Date.parse(line.job.deadline)) {
      const dl = buildDeadLetter(line.job, "deadline_exceeded", `The batch that answered an identical job ended after this job's deadline ${line.job.deadline}.`, line.earlier, now);
      await js.publish(names.dlqSubject(line.job.task), JSON.stringify(dl), { msgID: line.job.id });
      return "result";
    }
    if (first === undefined) {
      await toLive(line, [...line.earlier], "an identical job in the same provider batch got no answer to share here");
      return "live";
    }
    const copy = cachedResult(first, line.job, line.earlier, { startedAt: line.received_at, publishedAt: line.published_at, now });
    await js.publish(names.resultSubject(line.job.task), JSON.stringify(copy), { msgID: line.job.id });
    deps.metrics?.task(line.job.task, true).result.inc();
    deps.metrics?.batchLine(line.job.task, "result");
    return "result";
  }

  /** The line's answer as its job's outcome: the result published, a deadline dead letter, or the job sent live. */
  async function serveLine(lease: ProviderLease, model: ModelInfo, record: BatchRecord, line: QueuedLine, o: BatchLineOutcome | undefined): Promise<Result | "dead_letter" | "live"> {
    const config = lease.config;
    const policy = lease.catalog.tasks.get(line.job.task);
    const contract = policy === undefined ? undefined : bindContract(policy.contract, line.job.request);
    const now = clock();
    if (policy === undefined || contract === undefined || "kind" in contract || o === undefined) {
      await toLive(line, [...line.earlier], "the batch line could not be judged here");
      return "live";
    }
    const planned: PlannedAttempt = {
      model,
      tier: line.tier,
      expectedCostUsd: 0,
      inputPerMtok: line.input_per_mtok,
      outputPerMtok: line.output_per_mtok,
      cachedInputPerMtok: undefined,
      cacheWritePerMtok: undefined,
      reasoningPerMtok: undefined,
    };
    const delivery = new Delivery({
      job: line.job,
      policy,
      contract,
      plan: { kind: "attempts", attempts: [planned] },
      earlier: line.earlier,
      deliveryCount: 1,
      backoffMs: config.router.redelivery_backoff,
      timeoutOf: () => LINE_TIMEOUT_MS,
      startedAt: line.received_at,
      publishedAt: line.published_at,
      ackWaitMs: Infinity,
      random: deps.random,
    });
    const at: Moment = { now: record.submitted_at ?? record.created_at, renewedAt: now, stopping: false };
    const call = delivery.next(NO_COOLDOWN, at);
    if (call.kind !== "call") {
      await toLive(line, [...delivery.attempts], "the batch model may not answer this job again");
      return "live";
    }
    at.now = now;
    switch (o.kind) {
      case "completed":
        delivery.answered(o.completion, at);
        break;
      case "errored":
        delivery.failed(o.error, o.error.message, at);
        break;
      case "expired":
        delivery.failed(new ProviderTimeoutError("the provider batch expired before this line ran"), "the provider batch expired before this line ran", at);
        break;
      case "cancelled":
        delivery.failed(new ProviderTimeoutError("the provider batch was cancelled before this line ran"), "the provider batch was cancelled before this line ran", at);
        break;
    }
    const step = delivery.next(NO_COOLDOWN, at);
    const attempts = marked(delivery.attempts, line.earlier.length, record);
    const own = attempts.slice(line.earlier.length);
    deps.recordSpend(line.job, billedUsd(own));
    const t = deps.metrics?.task(line.job.task, true);
    if (t !== undefined) {
      const tenant = deps.metrics!.tenantOf(line.job.metadata);
      for (const a of own) if (a.usage !== undefined && a.cost_usd !== undefined) deps.metrics!.billed(t, model, tenant, a.cost_usd, a.usage);
    }
    if (step.kind === "result") {
      const result: Result = { ...step.result, attempts };
      await js.publish(names.resultSubject(line.job.task), JSON.stringify(result), { msgID: line.job.id });
      const cache = config.tasks[line.job.task]?.cache;
      if (cache !== undefined) await storeInCache(line, result, cache.ttl);
      t?.result.inc();
      deps.metrics?.batchLine(line.job.task, "result");
      return result;
    }
    if (step.kind === "dead_letter" && step.deadLetter.reason === "deadline_exceeded") {
      await js.publish(names.dlqSubject(line.job.task), JSON.stringify({ ...step.deadLetter, attempts }), { msgID: line.job.id });
      if (t !== undefined) deps.metrics!.deadLettered(t, "deadline_exceeded");
      return "dead_letter";
    }
    const last = attempts.at(-1);
    await toLive(line, attempts, `the batch line ended ${last?.outcome ?? "without an answer"}: ${last?.error ?? ""}`.trim());
    return "live";
  }

  async function storeInCache(line: QueuedLine, result: Result, ttlMs: number): Promise<void> {
    const task = deps.config().tasks[line.job.task];
    if (task === undefined) return;
    // Never wait on an identical job in flight elsewhere: a finish must not stall on the cache.
    const noWait = new CallCancel();
    noWait.cancel();
    const looked = await deps.resultCache.lookup(line.job, task, ttlMs, noWait);
    if (looked.kind !== "miss") return;
    try {
      await looked.claim.store(result);
    } finally {
      looked.claim.release();
    }
  }

  /** Back to `jobs.<task>` for the live tiers, with the batch attempt so the outcome lists and bills it. */
  async function toLive(line: QueuedLine, attempts: readonly Attempt[], why: string): Promise<void> {
    const h = natsHeaders();
    h.set(LIVE_HEADER, oneLine(why));
    if (attempts.length > 0) h.set(ATTEMPTS_HEADER, JSON.stringify(attempts));
    await js.publish(names.jobSubject(line.job.task), JSON.stringify(line.job), { msgID: `${line.job.id}:live`, headers: h });
    deps.metrics?.batchLine(line.job.task, "live");
  }

  /** Moves the record from `open.` to `done.`. */
  async function close(record: BatchRecord, revision: number, ended: NonNullable<BatchRecord["ended"]>, ending: Ending): Promise<void> {
    const { lease_until: _lease, ...rest } = record;
    const done: BatchRecord = { ...rest, state: "done", ended };
    const bucket = kv!;
    try {
      await bucket.update(`open.${record.id}`, JSON.stringify(done), revision);
    } catch (err) {
      if (isWrongRevision(err)) return;
      throw err;
    }
    await bucket.put(`done.${record.id}`, JSON.stringify(done));
    await bucket.delete(`open.${record.id}`);
    const [provider = "", name = ""] = splitId(record.model);
    deps.metrics?.providerBatch(record.task, { provider, name }, ending);
    logger.info({ task: record.task, model: record.model, batch: record.provider_batch_id, results: ended.results, live: ended.live, why: ended.why }, "provider batch finished");
  }

  async function readLines(record: BatchRecord): Promise<QueuedLine[]> {
    const out: QueuedLine[] = new Array(record.lines.length);
    await mapLimit(record.lines, 256, async (seq, i) => {
      const stored = await jsm!.streams.getMessage(names.batchQueueStream, { seq }).catch(() => null);
      const line = stored ? parseQueuedLine(stored.data) : undefined;
      if (!line) throw new Error(`line ${seq} of provider batch ${record.id} is no longer in ${names.batchQueueStream}`);
      out[i] = line;
    });
    return out;
  }

  return {
    async start() {
      await ensure();
      void keepRunning("provider batch records watch", watchRecords);
      void keepRunning("batch-lane queue consumer", collect);
      timers.push(setInterval(flush, 200).unref());
      timers.push(setInterval(renew, RENEW_EVERY_MS).unref());
      timers.push(
        setInterval(() => {
          if (ticking || stopped) return;
          ticking = tick()
            .catch((err: unknown) => logger.warn({ err: (err as Error).message }, "provider batch records not read; tried again"))
            .finally(() => (ticking = undefined));
        }, TICK_MS).unref(),
      );
    },
    async queued(task, jobId) {
      const subject = names.batchQueueSubject(task, queueKeyOf(jobId));
      return (await jsm!.direct.getMessage(names.batchQueueStream, { last_by_subj: subject })) !== null;
    },
    async stop() {
      stopped = true;
      for (const t of timers) clearInterval(t);
      watcher?.stop();
      await messages?.close().catch(() => {});
      // Held lines go back to the queue now rather than when their hold lapses.
      for (const { m } of held.values()) safely(() => m.nak());
      held.clear();
      await ticking;
      // A submission or finish cut off here is safe: the first goes live as interrupted, the second resumes from its progress elsewhere.
      await Promise.race([Promise.allSettled([...running]), new Promise((r) => setTimeout(r, STOP_WAIT_MS).unref())]);
    },
  };


}

/**
 * The live path's need for a task's jobs (`liveNeedMs`): its attempts, each at the slowest
 * timeout among its candidates' providers, plus a poll interval and the margin. The router
 * qualifies jobs with it, and the batcher gives a batch up by it.
 */
export function liveNeedFor(config: Config, policy: TaskPolicy): number {
  // A TaskPolicy belongs to one config's catalogue, so the figure is computed once per config.
  let need = liveNeeds.get(policy);
  if (need === undefined) {
    let timeoutMs = 0;
    for (const tier of policy.tiers) for (const c of tier.candidates) timeoutMs = Math.max(timeoutMs, config.providers[c.provider]?.timeout_ms ?? 0);
    need = liveNeedMs({ timeoutMs, attempts: policy.maxAttempts, pollIntervalMs: batchPolicyOf(config, policy.task)?.pollIntervalMs ?? 60_000 });
    liveNeeds.set(policy, need);
  }
  return need;
}

/** For a task with `cache:`, the lines identical to an earlier one of the group (by cache key): sequence → the first's sequence. */
function duplicates(config: Config, task: string, lines: readonly QueuedLine[], seqs: readonly number[]): Record<string, number> | undefined {
  const t = config.tasks[task];
  if (t?.cache === undefined) return undefined;
  const version = policyVersion(t);
  const first = new Map<string, number>();
  let out: Record<string, number> | undefined;
  for (const [i, l] of lines.entries()) {
    const key = cacheKey(l.job, version);
    const seen = first.get(key);
    if (seen === undefined) first.set(key, seqs[i]!);
    else (out ??= {})[String(seqs[i])] = seen;
  }
  return out;
}

/** The submitted lines: each job's request as the live call would send it, copies (`same_as`) left out. */
function toBatchLines(lease: ProviderLease, model: ModelInfo, lines: readonly QueuedLine[], seqs: readonly number[], sameAs: Readonly<Record<string, number>> | undefined): BatchLine[] | undefined {
  const out: BatchLine[] = [];
  for (const [i, l] of lines.entries()) {
    if (sameAs?.[seqs[i]!] !== undefined) continue;
    const policy = lease.catalog.tasks.get(l.job.task);
    if (policy === undefined) return undefined;
    const contract = bindContract(policy.contract, l.job.request);
    if ("kind" in contract) return undefined;
    out.push({ customId: customIdOf(seqs[i]!), request: contract.requestFor(model.structuredOutput) });
  }
  return out;
}

function batchAttempt(record: BatchRecord, line: QueuedLine, outcome: "timeout" | "unavailable", why: string, now: number): Attempt {
  const [provider = "", model = ""] = splitId(record.model);
  const a: Attempt = { provider, model, tier: line.tier, outcome, http_status: null, latency_ms: Math.max(0, now - (record.submitted_at ?? record.created_at)), error: why };
  return record.provider_batch_id === undefined ? a : { ...a, batch: record.provider_batch_id };
}

/** The attempts with the batch line's own (those after the `earlier` ones) naming its provider batch. */
function marked(attempts: readonly Attempt[], earlier: number, record: BatchRecord): Attempt[] {
  return attempts.map((a, i) => (i < earlier || record.provider_batch_id === undefined ? a : { ...a, batch: record.provider_batch_id }));
}

function splitId(id: string): [string, string] {
  const i = id.indexOf("/");
  return i < 0 ? [id, ""] : [id.slice(0, i), id.slice(i + 1)];
}

function oneLine(s: string): string {
  return s.replace(/[\r\n]+/g, " ").slice(0, 500);
}

/** Acks, naks and renewals on a connection that may be closing: a failure only means the hold lapses and the line comes again. */
function safely(f: () => void): void {
  try {
    f();
  } catch {
    // The connection is gone: JetStream redelivers after ack_wait.
  }
}

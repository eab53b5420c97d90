/**
 * The router worker: carries out the steps a job's delivery decides (`job.ts`), with I/O in
 * pieces of one job each — the consumer (pulls, slots, holds), the model caller
 * (`shared/providers`), the outcome store, the live-state watch. Any number of these run
 * against the same consumer, in one process or many.
 */
import { jetstream } from "@nats-io/jetstream";
import { headers as natsHeaders, nuid, type Msg, type NatsConnection } from "@nats-io/transport-node";
import { bindContract } from "../../shared/acceptance/contract.ts";
import { ProviderError } from "../../shared/adapters/errors.ts";
import { CallAbortedError, CallCancel } from "../../shared/adapters/http.ts";
import type { Completion } from "../../shared/adapters/types.ts";
import { routerLanes, type Config } from "../../shared/config/schema.ts";
import type { Attempt, AttemptOutcome, ChatRequest, DeadLetter, DlqReason, Job, Result } from "../../shared/contract/job.ts";
import type { AttemptEvent } from "../../shared/contract/live.ts";
import { ATTEMPTS_HEADER, INTERACTIVE_QUEUE, LIVE_HEADER, namesOf } from "../../shared/contract/subjects.ts";
import type { Logger } from "../../shared/log.ts";
import { openBuckets } from "../../shared/nats/buckets.ts";
import { atNextTurnEnd, deferredRan } from "../../shared/nats/turn-end.ts";
import type { RouterMetrics, TaskChildren } from "../../shared/ops/router-metrics.ts";
import { watchModelStates, type ModelWatch } from "../../shared/nats/model-watch.ts";
import { createModelCaller, type ProviderLease } from "../../shared/providers/caller.ts";
import { openLimitsBucket } from "../../shared/limits/bucket.ts";
import { createProviderLimits } from "../../shared/limits/provider-limits.ts";
import type { ModelInfo } from "../../shared/routing/catalog.ts";
import { LocalHealth } from "../../shared/routing/health.ts";
import { LiveState } from "../../shared/routing/live-state.ts";
import { costUsd } from "../../shared/routing/cost.ts";
import { plan } from "../../shared/routing/planner.ts";
import { adaptiveTimeoutMs } from "../../shared/routing/timeouts.ts";
import { createConsumer, type Hold } from "./consumer.ts";
import { createRequestServer, sleepUnlessCancelled, type RequestTurn } from "./interactive.ts";
import { intake } from "./intake.ts";
import { brokenStream, type RouterStream } from "./stream.ts";
import { beforePlanning, buildDeadLetter, Delivery, holdLapsed, type Moment, type Step } from "./job.ts";
import { afterRefusal, refusalMessage } from "../../shared/spend/budget.ts";
import { budgetField, createRouterBudgets, type Reservation } from "./budgets.ts";
import { createOutcomeStore, type KeptOutcome, type OutcomeKind } from "./outcome-store.ts";
import type { Tracing } from "../../shared/ops/tracing.ts";
import { JobTrace, originOf } from "./job-trace.ts";
import { createResultCache, type CacheClaim, type Lookup } from "./result-cache.ts";
import { cachedResult } from "../../shared/cache/result-cache.ts";
import { batchAttempt, batchPrices, qualifies } from "../../shared/routing/batch-plan.ts";
import type { PlannedAttempt } from "../../shared/routing/planner.ts";
import type { TaskPolicy } from "../../shared/routing/catalog.ts";
import { estimatePromptTokens } from "../../shared/tokens.ts";
import { batchPolicyOf, createBatcher, liveNeedFor, type Batcher } from "../batcher/batcher.ts";
import { carriedAttempts, queueKeyOf, type QueuedLine } from "../batcher/records.ts";

export interface RouterDeps {
  readonly nc: NatsConnection;
  readonly config: Config;
  readonly logger: Logger;
  readonly clock?: () => number;
  readonly random?: () => number;
  /** Where task pins (SWITCHYARD_PIN_<TASK>) are read. */
  readonly env?: NodeJS.ProcessEnv;
  /** Where to count jobs, attempts, costs and timings; none recorded without it. */
  readonly metrics?: RouterMetrics;
  /** Told when a lane's durable consumer goes missing or comes back (readiness). */
  readonly onConsumerMissing?: (lane: "interactive" | "batch", why: string | undefined) => void;
  /** Where job, attempt and publish spans go (`shared/ops/tracing.ts`); none made without it. */
  readonly tracing?: Tracing;
}

export interface RouterStats {
  received: number;
  succeeded: number;
  deadLettered: number;
  redelivered: number;
  readonly inFlight: number;
}

export interface Router {
  /** Consumes until `stop()`; resolves once the consume loop has ended. */
  run(): Promise<void>;
  /**
   * Stops pulling and lets in-flight jobs finish within `router.shutdown_grace`; then cuts off
   * the calls still running and hands their jobs back for redelivery, publishing nothing for
   * them. Resolves within the grace period plus about half a second.
   */
  stop(): Promise<void>;
  /** Routes new jobs by this config from now on (providers, models, aliases, tasks; `router` and `streams` need a restart). */
  reload(config: Config): void;
  readonly live: LiveState;
  readonly stats: Readonly<RouterStats>;
}

/** Jobs remembered by stream sequence, each kind at most this many: attempts awaiting redelivery (so the final outcome lists them all), outcomes stored. */
const HISTORY_LIMIT = 50_000;
/** After the grace period, how long cut-off jobs get to hand themselves back. */
const ABORT_SETTLE_MS = 500;

/**
 * One delivery of a job as the job logic sees it, whichever way it came: a JetStream hold, or
 * a fast-path request (`interactive.ts`). The job logic (`work`) reads only this.
 */
type Turn = Pick<Hold, "startedAt" | "renewedAt" | "cancel" | "lane" | "trace"> & { readonly stream?: RouterStream | undefined };

/** A job as it arrived, before intake. */
interface Arrival {
  /** Its subject as `<ns>.jobs.<task>`, whichever lane or path brought it. */
  readonly subject: string;
  readonly msgId: string | undefined;
  readonly data: Uint8Array;
  /** The id of a job that names none. */
  readonly newId: () => string;
  /** 1 on the first delivery. */
  readonly deliveryCount: number;
  /** When the job was sent (epoch ms), for its queue wait. */
  readonly publishedAt: number;
  /** Attempts of earlier deliveries this worker made. */
  readonly earlier: readonly Attempt[];
  /** Set on a job the batcher handed back (LIVE_HEADER): it is served live, never batched again. */
  readonly live?: string;
}

/** How a delivery of a job ended; the path that brought it carries this out (store and ack, or reply). */
type Ending =
  | { readonly kind: "result"; readonly result: Result; readonly providerMs: number }
  /** `task` as labelled in metrics (`other` for a subject no task has). */
  | { readonly kind: "dead_letter"; readonly subject: string; readonly deadLetter: DeadLetter; readonly task: string; readonly providerMs: number }
  | { readonly kind: "redeliver"; readonly delayMs: number; readonly attempts: readonly Attempt[] }
  | { readonly kind: "let_go"; readonly why: "hold_lapsed" | "stopping"; readonly id: string }
  /** The job goes to a provider batch (README, "Batch lane"): queued for the batcher, then acked. */
  | { readonly kind: "batch_line"; readonly line: QueuedLine }
  /** An earlier delivery queued the job for a provider batch and lost its ack: the batcher has it, so only ack. */
  | { readonly kind: "queued_before" };

export function createRouter({ nc, config, logger, clock = Date.now, random = Math.random, env = process.env, metrics, onConsumerMissing, tracing }: RouterDeps): Router {
  const js = jetstream(nc);
  // The deployment's names, fixed for the worker's life (a reload does not move it to another namespace).
  const names = namesOf(config);
  const { canonicalJobSubject, dlqSubject, resultSubject, telemetrySubject } = names;
  const live = new LiveState(new LocalHealth(), clock);
  const router = config.router;
  const caller = createModelCaller(config, { env });
  // Provider limits shared by every worker, and the Retry-After pauses any of them hears (shared/limits).
  const limits = createProviderLimits({
    nc,
    kv: () => openLimitsBucket(nc, config),
    config,
    pauseSubject: names.limitsPauseSubject,
    clock,
    logger,
    onPause: (p) => live.local.failed(p.m, p.p, "rate_limited", clock(), Math.max(0, p.until - clock())),
  });
  const stats: RouterStats = {
    received: 0,
    succeeded: 0,
    deadLettered: 0,
    redelivered: 0,
    get inFlight() {
      return consumer.holds.size + requests.turns.size;
    },
  };
  // Only this process's view: a redelivery that lands on another worker starts a fresh list.
  const history = new Map<number, Attempt[]>();
  // A job's ack or `working()` can be lost, and ack_wait then runs out under a delivery still
  // being worked on here: the next delivery of that job waits for it (`inHand`, by stream
  // sequence), and if it stored an outcome (`served`) only acks. Working both at once would pay
  // twice, and could give the job a result and a dead letter, two streams no duplicate window spans.
  const inHand = new Map<number, Promise<void>>();
  // Jobs (by stream sequence) the batch queue refused: served live on their next delivery here.
  const queueRefused = new Set<number>();
  const served = new Set<number>();
  let stopping = false;
  let watch: ModelWatch | undefined;

  const store = createOutcomeStore({ nc, js, logger, clock, ackWaitMs: router.ack_wait, stopping: () => stopping, names });
  const budgets = createRouterBudgets({ nc, config, logger, clock });
  const resultCache = createResultCache({ nc, config, logger, clock });
  const consumer = createConsumer({
    js,
    router,
    lanes: routerLanes(config),
    logger,
    clock,
    onMissing: onConsumerMissing,
    names,
    onCapacity: () => requests.resume(),
    handle: (hold) => {
      stats.received++;
      if (tracing !== undefined) hold.trace = new JobTrace(tracing, originOf(hold.m), hold.startedAt);
      const seq = hold.m.seq;
      const before = inHand.get(seq);
      const done = (before === undefined ? handle(hold) : before.then(() => handle(hold))).catch((err: unknown) => {
        // The outcome could not be stored (NATS down, a stream leader election): the job goes
        // back with the backoff its delivery count calls for, and is never dropped, since the
        // consumer sets no max_deliver (the delivery budget is enforced here, on intake).
        logger.error({ err: (err as Error).message, subject: hold.m.subject }, "job handling failed; it will be redelivered");
        const backoff = router.redelivery_backoff;
        nak(hold, backoff[Math.min(hold.m.info.deliveryCount, backoff.length) - 1]);
      });
      inHand.set(seq, done);
      const t = hold.trace;
      return done.finally(() => {
        if (inHand.get(seq) === done) inHand.delete(seq);
        t?.end();
      });
    },
  });

  // Fast-path requests take the interactive lane's slots, shared with the jobs it pulls.
  const requests = createRequestServer({
    nc,
    prefix: names.interactiveRequestPrefix,
    queue: INTERACTIVE_QUEUE,
    logger,
    clock,
    slots: { take: () => consumer.takeInteractive(), free: () => consumer.interactiveFree(), giveBack: () => consumer.giveBackInteractive() },
    serve: serveRequest,
  });

  /** The job's moment, brought up to date in place: one object per job, not one per step. */
  const moment = (hold: Turn, at: Moment): Moment => {
    at.now = clock();
    at.renewedAt = hold.renewedAt;
    at.stopping = hold.cancel.cancelled;
    return at;
  };

  /** This delivery's queue wait and, for a repeated delivery, the redelivery: counted once the task is known. */
  function delivered(turn: Turn, a: Pick<Arrival, "publishedAt" | "deliveryCount">, task: string, known: boolean): TaskChildren | undefined {
    if (!metrics) return undefined;
    const t = metrics.task(task, known);
    t.queueWait[turn.lane].observe(Math.max(0, turn.startedAt - a.publishedAt) / 1000);
    if (a.deliveryCount > 1) t.redeliveries.inc();
    return t;
  }

  async function handle(hold: Hold): Promise<void> {
    const { m } = hold;
    if (served.has(m.seq)) {
      // Its outcome is stored; only the ack went missing.
      m.ack();
      return;
    }
    const kept = store.takeKept(m.seq);
    if (kept) {
      if (kept.task !== undefined) delivered(hold, { deliveryCount: m.info.deliveryCount, publishedAt: m.info.timestampNanos / 1e6 }, kept.task, true);
      await finish(hold, kept);
      return;
    }
    const live = m.headers?.get(LIVE_HEADER) || (queueRefused.delete(m.seq) ? "the batch queue refused the job" : undefined);
    const earlier = history.get(m.seq) ?? (live === undefined ? [] : carriedAttempts(m.headers?.get(ATTEMPTS_HEADER)));
    history.delete(m.seq);
    const end = await work(
      {
        subject: canonicalJobSubject(m.subject),
        msgId: m.headers?.get("Nats-Msg-Id") || undefined,
        data: m.data,
        // The stream sequence, not a random id: every redelivery of the job must get the same one.
        newId: () => `jobs-${m.seq}`,
        deliveryCount: m.info.deliveryCount,
        publishedAt: m.info.timestampNanos / 1e6,
        earlier,
        ...(live === undefined ? {} : { live }),
      },
      hold,
    );
    switch (end.kind) {
      case "result": {
        const r = end.result;
        await finish(hold, { kind: "result", subject: resultSubject(r.task), payload: JSON.stringify(r), id: r.id, task: r.task }, end.providerMs);
        return;
      }
      case "dead_letter":
        return deadLetter(hold, end.subject, end.deadLetter, end.providerMs, end.task);
      case "redeliver":
        if (history.size >= HISTORY_LIMIT) history.delete(history.keys().next().value as number);
        history.set(m.seq, [...end.attempts]);
        stats.redelivered++;
        hold.trace?.outcome("redelivered");
        m.nak(end.delayMs);
        return;
      case "let_go":
        return letGo(hold, end.id, end.why);
      case "queued_before":
        hold.trace?.outcome("batched");
        m.ack();
        return;
      case "batch_line":
        // Deduplicated by job id, so a redelivery after a lost ack queues nothing twice.
        try {
          await js.publish(names.batchQueueSubject(end.line.job.task, queueKeyOf(end.line.job.id)), JSON.stringify(end.line), { msgID: end.line.job.id });
        } catch (err) {
          // The queue is full or unreachable: this job's next delivery here is served live.
          if (queueRefused.size >= HISTORY_LIMIT) queueRefused.delete(queueRefused.values().next().value as number);
          queueRefused.add(m.seq);
          throw err;
        }
        hold.trace?.outcome("batched");
        metrics?.batchLine(end.line.job.task, "queued");
        m.ack();
        return;
    }
  }

  /**
   * The job logic of one delivery, whichever way the job came: intake, planning, the calls the
   * delivery asks for, until it ends. Publishes nothing: the caller carries out the ending.
   */
  async function work(a: Arrival, turn: Turn): Promise<Ending> {
    const lease = caller.lease();
    let claim: CacheClaim | undefined;
    try {
      const got = intake(a.subject, a.msgId, a.data, {
        maxBytes: router.max_job_bytes,
        isKnownTask: (t) => lease.catalog.tasks.has(t),
        newId: a.newId,
        names,
      });
      if (got.kind === "reject") {
        const { id, task, reason, error, job, metadata } = got;
        const known = lease.catalog.tasks.has(task);
        delivered(turn, a, task, known);
        const deadLetter: DeadLetter = { id, task, status: "failed", reason, error, attempts: [], job, metadata, failed_at: new Date(clock()).toISOString() };
        return { kind: "dead_letter", subject: got.dlqSubject, deadLetter, task: known ? task : "other", providerMs: 0 };
      }
      const job = got.job;
      turn.trace?.identify(job.id, job.task);
      const t = delivered(turn, a, job.task, true);
      const policy = lease.catalog.tasks.get(job.task)!;
      const deadline = job.deadline === undefined ? undefined : Date.parse(job.deadline);
      const dead = (deadLetter: DeadLetter, providerMs: number): Ending => ({ kind: "dead_letter", subject: dlqSubject(job.task), deadLetter, task: job.task, providerMs });
      const early = beforePlanning(job, policy, a.earlier, a.deliveryCount, deadline, turn.startedAt);
      if (early) return dead(early, 0);
      // Result cache (README, "Result cache"): only a task with `cache:` touches the bucket.
      const taskConfig = lease.config.tasks[job.task]!;
      if (taskConfig.cache !== undefined) {
        const looked = await resultCache.lookup(job, taskConfig, taskConfig.cache.ttl, turn.cancel);
        if (looked.kind !== "cancelled") metrics?.cacheLookup(job.task, looked.kind === "hit");
        if (looked.kind !== "miss") return fromCache(looked, job, a, turn);
        claim = looked.claim;
      }
      const contract = bindContract(policy.contract, job.request);
      if ("kind" in contract) return dead(buildDeadLetter(job, "invalid_job", contract.message, a.earlier, clock()), 0);
      // A redelivery whose earlier delivery queued the job (and lost the ack) must not serve it a second time.
      if (a.deliveryCount > 1 && turn.lane === "batch" && a.live === undefined && (await batcher?.queued(job.task, job.id)) === true) return { kind: "queued_before" };
      const planned = plan({ policy, catalog: lease.catalog, view: live, job, now: turn.startedAt, random });
      // The batch lane (README, "Batch lane"): a job with slack waits for a provider batch at its batch price.
      if (taskConfig.batch !== undefined && batcher !== undefined && turn.lane === "batch" && a.live === undefined && job.routing?.batch !== false && planned.kind === "attempts") {
        const line = batchLine(lease, job, policy, planned.attempts, deadline, a, turn);
        if (line !== undefined && (await budgetsAdmit(job, line.planned, contract.requestFor(line.planned.model.structuredOutput)))) return { kind: "batch_line", line: line.queued };
      }
      // Time in provider calls, taken out of the job's router overhead.
      let providerMs = 0;
      const tenant = t === undefined ? "" : metrics!.tenantOf(job.metadata);

      const delivery = new Delivery({
        job,
        policy,
        contract,
        plan: planned,
        earlier: a.earlier,
        deliveryCount: a.deliveryCount,
        backoffMs: router.redelivery_backoff,
        timeoutOf: (model) => {
          const p = lease.config.providers[model.provider]!;
          return adaptiveTimeoutMs(p.timeout_ms, live.latency(model), p.adaptive_timeout);
        },
        // Nobody waits on the batch lane: a hedge there would only add cost.
        // Two calls racing could not share one stream to the caller (README, "Streaming").
        ...(policy.hedge !== undefined && turn.lane !== "batch" && turn.stream === undefined ? { hedgeAfterOf: hedgeAfterOf(policy.hedge.after), hedgeMaxExtraCostUsd: policy.hedge.maxExtraCostUsd } : {}),
        startedAt: turn.startedAt,
        publishedAt: a.publishedAt,
        ackWaitMs: router.ack_wait,
        random,
      });
      const at: Moment = { now: 0, renewedAt: 0, stopping: false };
      for (;;) {
        const step: Step = delivery.next(live, moment(turn, at));
        // Once the caller has part of an answer, no other model can take over (stream.ts).
        if (turn.stream?.committed && (step.kind === "call" || step.kind === "redeliver")) return dead(brokenStream(job, delivery.attempts, clock()), providerMs);
        switch (step.kind) {
          case "call": {
            // Budgets (README "Budgets"): the worst case reserved before the call; none apply, no KV touched.
            const applying = budgets.applying(job.task, job.metadata);
            let reservation: Reservation | undefined;
            if (applying.length > 0) {
              const r = await budgets.reserve(applying, step.planned, step.request);
              if (r.kind === "refused") {
                delivery.aborted();
                const now = clock();
                if (holdLapsed(now, turn.renewedAt, router.ack_wait)) return { kind: "let_go", why: "hold_lapsed", id: job.id };
                const next = afterRefusal(r.refusals, now, deadline);
                if (next.kind === "wait") return { kind: "redeliver", delayMs: next.delayMs, attempts: delivery.attempts };
                return dead({ ...buildDeadLetter(job, "budget_exceeded", refusalMessage(next.refusal), delivery.attempts, now), budget: budgetField(next.refusal) }, providerMs);
              }
              reservation = r.reservation;
            }
            providerMs += step.hedgeAt === undefined
              ? await call(lease, delivery, step, turn, job.task, at, t, tenant, reservation, turn.cancel)
              : await hedged(lease, delivery, step, turn, job, at, t, tenant, reservation);
            continue;
          }
          case "result":
            await claim?.store(step.result);
            return { kind: "result", result: step.result, providerMs };
          case "dead_letter":
            return dead(step.deadLetter, providerMs);
          case "redeliver":
            return { kind: "redeliver", delayMs: step.delayMs, attempts: delivery.attempts };
          case "let_go":
            return { kind: "let_go", why: step.why, id: job.id };
        }
      }
    } finally {
      claim?.release();
      lease.release();
    }
  }

  /** The job's line for a provider batch, when its deadline leaves the slack and a batched candidate is cheaper than live; else undefined. */
  function batchLine(lease: ProviderLease, job: Job, policy: TaskPolicy, attempts: readonly PlannedAttempt[], deadline: number | undefined, a: Arrival, turn: Turn): { queued: QueuedLine; planned: PlannedAttempt } | undefined {
    const q = qualifies({ deadline, wantsBatch: job.routing?.batch === true }, batchPolicyOf(lease.config, job.task)!, liveNeedFor(lease.config, policy), turn.startedAt);
    if (!q.batch) return undefined;
    const tokens = { prompt: estimatePromptTokens(job.request.messages), completion: job.request.max_completion_tokens ?? job.request.max_tokens ?? policy.expectedCompletionTokens };
    const chosen = batchAttempt(attempts, (p) => batchPrices({ ...lease.config.providers[p.model.provider]!.models[p.model.name]!, input_per_mtok: p.inputPerMtok, output_per_mtok: p.outputPerMtok }), tokens);
    if (chosen === undefined) return undefined;
    const queued: QueuedLine = {
      job,
      model: chosen.model.id,
      tier: chosen.tier,
      input_per_mtok: chosen.inputPerMtok,
      output_per_mtok: chosen.outputPerMtok,
      received_at: turn.startedAt,
      published_at: a.publishedAt,
      earlier: [...a.earlier],
    };
    return { queued, planned: chosen };
  }

  /**
   * A batch line holds no reservation through the hours it may take: the job goes to a batch
   * only if its budgets have room for its worst case now (the reservation is released at
   * once), and the batcher records what the line billed when it answers. Refused, the job
   * takes the live path, where the call's own reservation refuses it as budgets say.
   */
  async function budgetsAdmit(job: Job, planned: PlannedAttempt, request: ChatRequest): Promise<boolean> {
    const applying = budgets.applying(job.task, job.metadata);
    if (applying.length === 0) return true;
    const r = await budgets.reserve(applying, planned, request);
    if (r.kind === "refused") return false;
    r.reservation.release();
    return true;
  }

  /** A cache hit's ending: the stored answer as this job's result, unless the wait for an identical job outlasted the hold or a stop came. */
  function fromCache(looked: Exclude<Lookup, { kind: "miss" }>, job: Job, a: Arrival, turn: Turn): Ending {
    const now = clock();
    if (looked.kind === "cancelled" || turn.cancel.cancelled) return { kind: "let_go", why: "stopping", id: job.id };
    if (holdLapsed(now, turn.renewedAt, router.ack_wait)) return { kind: "let_go", why: "hold_lapsed", id: job.id };
    return { kind: "result", result: cachedResult(looked.stored, job, a.earlier, { startedAt: turn.startedAt, publishedAt: a.publishedAt, now }), providerMs: 0 };
  }

  /**
   * A fast-path request (`interactive.ts`): the same job logic, its ending replied to the
   * caller. A redelivery happens here, after its backoff, since no queue holds the job; a stop
   * that cuts the job off hands it back to the gateway, which may send it to another router.
   * The outcome is also recorded in RESULTS or DLQ, fire-and-forget (README, "Gateway"): the
   * caller has its answer already, and a lost record costs only the audit trail.
   */
  async function serveRequest(msg: Msg, task: string, turn: RequestTurn): Promise<void> {
    stats.received++;
    const newId = () => `req-${nuid.next()}`;
    if (tracing !== undefined) turn.trace = new JobTrace(tracing, { subject: msg.subject, headers: msg.headers, publishedAt: turn.startedAt, deliveryCount: 1, seq: undefined }, turn.startedAt);
    try {
      let earlier: readonly Attempt[] = [];
      for (let deliveryCount = 1; ; deliveryCount++) {
        const end = await work({ subject: names.jobSubject(task), msgId: undefined, data: msg.data, newId, deliveryCount, publishedAt: turn.startedAt, earlier }, turn);
        switch (end.kind) {
          case "result": {
            const r = end.result;
            answer(msg, turn, "result", resultSubject(r.task), JSON.stringify(r), r.id, r.task, undefined, end.providerMs);
            return;
          }
          case "dead_letter": {
            const dl = end.deadLetter;
            answer(msg, turn, "dead_letter", end.subject, JSON.stringify(dl), dl.id, end.task, dl.reason, end.providerMs);
            logger.warn({ id: dl.id, task: dl.task, reason: dl.reason, attempts: dl.attempts.length }, dl.error);
            return;
          }
          case "redeliver":
            stats.redelivered++;
            if (await sleepUnlessCancelled(turn.cancel, end.delayMs)) {
              requests.handBack(msg);
              return;
            }
            earlier = end.attempts;
            continue;
          case "let_go":
            turn.trace?.outcome(end.why);
            requests.handBack(msg);
            return;
          case "batch_line":
          case "queued_before":
            throw new Error("a fast-path request never takes the batch lane");
        }
      }
    } finally {
      turn.trace?.end();
    }
  }

  /** Replies to a fast-path request with its outcome, then records it (`router.record_interactive`) and counts it. */
  function answer(msg: Msg, turn: Turn, kind: OutcomeKind, subject: string, payload: string, id: string, task: string, reason: DlqReason | undefined, providerMs: number): void {
    requests.reply(msg, payload);
    if (router.record_interactive) {
      turn.trace?.publish(kind, subject, id, reason).end();
      const h = natsHeaders();
      h.set("Nats-Msg-Id", id);
      atNextTurnEnd(() => {
        try {
          nc.publish(subject, payload, { headers: h });
        } catch {
          // A closed connection: the caller has its answer; only the record is lost.
        }
      });
    }
    counted(kind, task, reason, turn.startedAt, providerMs);
  }

  /** When a call to a model is hedged (the task's `hedge.after`): after its live p95, none before there is one; or a fixed delay. */
  function hedgeAfterOf(after: "p95" | number): (model: ModelInfo) => number | undefined {
    return after === "p95" ? hedgeAfterP95 : () => after;
  }

  /** A model's live p95, none before there is one: made once, shared by every job hedged at `p95`. */
  function hedgeAfterP95(model: ModelInfo): number | undefined {
    const p95 = live.latency(model)?.p95Ms;
    return p95 === undefined || Number.isNaN(p95) ? undefined : p95;
  }

  /**
   * A call step with `hedgeAt`: the call, and, if it is still unanswered then, the delivery's
   * hedge beside it. Each call has its own cancel, so the loser is cut off without stopping
   * the job, while a stop (the turn's cancel) reaches both. Returns the time until both ended.
   */
  async function hedged(lease: ProviderLease, delivery: Delivery, step: Extract<Step, { kind: "call" }>, turn: Turn, job: Job, at: Moment, t: TaskChildren | undefined, tenant: string, reservation: Reservation | undefined): Promise<number> {
    const t0 = clock();
    const cancels = [new CallCancel(), new CallCancel()] as const;
    turn.cancel.attach(() => {
      for (const c of cancels) c.cancel();
    });
    if (turn.cancel.cancelled) for (const c of cancels) c.cancel();
    let timer: NodeJS.Timeout | undefined;
    try {
      const first = call(lease, delivery, step, turn, job.task, at, t, tenant, reservation, cancels[0]);
      const due = new Promise<true>((resolve) => (timer = setTimeout(() => resolve(true), Math.max(0, step.hedgeAt! - clock()))));
      if (!(await Promise.race([first.then(() => false), due]))) return clock() - t0;
      const second = delivery.hedge(live, moment(turn, at));
      if (second === undefined) {
        await first;
        return clock() - t0;
      }
      let secondReservation: Reservation | undefined;
      const applying = budgets.applying(job.task, job.metadata);
      if (applying.length > 0) {
        const r = await budgets.reserve(applying, second.planned, second.request);
        // A budget that cannot take the hedge only means no hedge: the first call goes on.
        if (r.kind === "refused") delivery.aborted(second.planned);
        else secondReservation = r.reservation;
        if (r.kind === "refused" || !delivery.holds(second.planned)) {
          secondReservation?.release();
          await first;
          return clock() - t0;
        }
      }
      // The first acceptable answer settles the delivery (no call left in flight): the other is cut off.
      const cutOff = (other: CallCancel) => () => {
        if (delivery.inFlight === 0) other.cancel();
      };
      await Promise.all([
        first.then(cutOff(cancels[1])),
        call(lease, delivery, second, turn, job.task, at, t, tenant, secondReservation, cancels[1]).then(cutOff(cancels[0])),
      ]);
      return clock() - t0;
    } finally {
      clearTimeout(timer);
      turn.cancel.attach(undefined);
    }
  }

  /**
   * Carries out a `call` step and reports what happened to the delivery, local health, the
   * pricing service and the metrics. Returns the call's duration in ms.
   */
  async function call(lease: ProviderLease, delivery: Delivery, step: Extract<Step, { kind: "call" }>, hold: Turn, task: string, at: Moment, t: TaskChildren | undefined, tenant: string, reservation: Reservation | undefined, cancel: CallCancel): Promise<number> {
    const model = step.planned.model;
    // Provider limits shared by every worker: waits for quota, or refuses by the task's `on_rate_limited`; a refusal fails the attempt below.
    const admitted = limits.admit(model, step.request, task, step.timeoutMs, cancel);
    // No limit on the model (the usual case): no await, so the call starts in this turn.
    const refused = admitted === undefined ? undefined : await admitted.then(() => undefined, (err: unknown) => err);
    const t0 = clock();
    const span = hold.trace?.attempt(model, step.planned.tier);
    let completion: Completion;
    try {
      if (refused !== undefined) throw refused;
      completion = await limits.during(step.request, lease.call(model, step.request, step.timeoutMs, cancel, hold.stream));
    } catch (err) {
      // No answer, no bill: the reservation is given back whole.
      reservation?.release();
      // A stop, or the loser of a hedge (the delivery recorded it when the other call won).
      if (err instanceof CallAbortedError || !delivery.holds(step.planned)) {
        span?.aborted();
        // A hedge's loser counts against the worker's own health only: a model that hangs
        // cools down after a few (no more hedging every job), while a healthy one loses a race
        // in maybe 1 call of 40 and so never five in a row. The pricing service hears nothing.
        if (!delivery.holds(step.planned) && !hold.cancel.cancelled) live.local.failed(model.id, model.provider, "timeout", clock());
        delivery.aborted(step.planned);
        return clock() - t0;
      }
      if (!(err instanceof ProviderError)) {
        span?.failed("error", null, err);
        throw err;
      }
      span?.failed(err.kind, err.status, err);
      const now = clock();
      live.local.failed(model.id, model.provider, err.kind, now, err.retryAfterMs);
      limits.failed(model, err, now);
      report(model, task, err.kind, err.status, now - t0, undefined, t0);
      metrics?.attempt(model, err.kind, now - t0);
      delivery.failed(err, err.message, moment(hold, at), step.planned);
      return now - t0;
    }
    // Every answer is billed, a rejected one too (the outcome table).
    const cost = costUsd(completion.usage, step.planned);
    reservation?.settle(cost);
    // A hedge's loser that answered before its abort landed: the job's outcome is already decided.
    if (!delivery.holds(step.planned)) {
      span?.aborted();
      return clock() - t0;
    }
    const outcome = delivery.answered(completion, moment(hold, at), step.planned);
    limits.used(step.request, completion.usage);
    const latency = clock() - t0;
    span?.answered(completion, outcome, cost);
    if (outcome === "ok") live.local.succeeded(model.id, latency);
    // An answer after the deadline says nothing new about the model.
    if (outcome !== "timeout") report(model, task, outcome, 200, latency, completion.usage, t0);
    if (t !== undefined) {
      metrics!.attempt(model, outcome, latency);
      metrics!.billed(t, model, tenant, cost, completion.usage);
    }
    return latency;
  }

  /** Stores the outcome; false when nothing was published (the hold lapsed, or a stop cut the job off and handed it back). */
  async function finish(hold: Hold, outcome: KeptOutcome, providerMs = 0): Promise<boolean> {
    if (await store.finish(hold, outcome)) {
      if (served.size >= HISTORY_LIMIT) served.delete(served.values().next().value as number);
      served.add(hold.m.seq);
      counted(outcome.kind, outcome.task, outcome.reason, hold.startedAt, providerMs);
      return true;
    }
    if (hold.cancel.cancelled) nak(hold);
    return false;
  }

  /** A job's outcome in the stats and metrics, once it is stored or replied. */
  function counted(kind: OutcomeKind, task: string | undefined, reason: DlqReason | undefined, startedAt: number, providerMs: number): void {
    stats[kind === "result" ? "succeeded" : "deadLettered"]++;
    if (metrics && task !== undefined) {
      const t = metrics.task(task, true);
      if (kind === "result") t.result.inc();
      else metrics.deadLettered(t, reason ?? "exhausted");
      t.overhead.observe(Math.max(0, clock() - startedAt - providerMs) / 1000);
    }
  }

  /** `task` is the job's task as labelled in metrics (`other` for a subject no task has). */
  async function deadLetter(hold: Hold, subject: string, dl: DeadLetter, providerMs: number, task: string): Promise<void> {
    // A redelivered job may have been served already, its ack lost on the way, and a job held
    // here past ack_wait may have been redelivered to another worker that served it (this
    // worker's working() lost): a dead letter now would give it two outcomes in two streams,
    // which no duplicate window catches.
    const maybeServed = hold.m.info.deliveryCount > 1 || clock() - hold.startedAt > router.ack_wait;
    if (maybeServed && dl.reason !== "invalid_job" && (await store.resultStored(dl.task, dl.id, hold.m.info.timestampNanos / 1e6))) {
      hold.m.ack();
      return;
    }
    if (await finish(hold, { kind: "dead_letter", subject, payload: JSON.stringify(dl), id: dl.id, task, reason: dl.reason }, providerMs)) {
      logger.warn({ id: dl.id, task: dl.task, reason: dl.reason, attempts: dl.attempts.length }, dl.error);
    }
  }

  function letGo(hold: Hold, id: string, why: "hold_lapsed" | "stopping"): void {
    hold.trace?.outcome(why);
    if (why === "stopping") nak(hold);
    else logger.info({ id, subject: hold.m.subject }, "held past ack_wait: leaving the job to its redelivery");
  }

  function nak(hold: Hold, delayMs?: number): void {
    try {
      hold.m.nak(delayMs);
    } catch {
      // The connection is gone: ack_wait redelivers it.
    }
  }

  /** Fire-and-forget on core NATS: telemetry lost while the pricing service is away costs nothing. */
  function report(model: ModelInfo, task: string, outcome: AttemptOutcome, status: number | null, latencyMs: number, usage: Completion["usage"] | undefined, at: number): void {
    const event: AttemptEvent = {
      m: model.id,
      t: task,
      outcome,
      status,
      latency_ms: latencyMs,
      prompt_tokens: usage?.prompt_tokens ?? 0,
      completion_tokens: usage?.completion_tokens ?? 0,
      at,
    };
    const payload = JSON.stringify(event);
    atNextTurnEnd(() => {
      try {
        nc.publish(`${telemetrySubject}.${model.provider}`, payload);
      } catch {
        // A closed connection: the job's own publish will fail and redeliver it.
      }
    });
  }

  /** Keeps `live` in step with the pricing service's KV entries, and says when it goes quiet. */
  async function watchLiveState(): Promise<void> {
    const { models } = await openBuckets(nc, config);
    watch = await watchModelStates(models, { state: (s) => live.apply(s), heartbeat: (at) => live.heartbeat(at) }, logger, clock);
    // Starting as if fresh makes the first check say so when no pricing service is running.
    let wasFresh = true;
    const check = setInterval(() => {
      const fresh = live.fresh();
      if (fresh === wasFresh) return;
      wasFresh = fresh;
      if (fresh) logger.info("pricing service heard: routing on live prices and health");
      else logger.warn({ last_heard: live.lastHeartbeat() ? new Date(live.lastHeartbeat()).toISOString() : null }, "pricing service silent: routing on last-known prices and this worker's own health checks");
    }, 1_000);
    check.unref();
    try {
      await watch.done;
    } finally {
      clearInterval(check);
    }
  }

  const removeInFlight = metrics?.addInFlight(() => {
    let interactive = requests.turns.size;
    for (const h of consumer.holds) if (h.lane === "interactive") interactive++;
    return { interactive, batch: consumer.holds.size + requests.turns.size - interactive };
  });

  // The batch lane runs in every router (README, "Batch lane"), with or without a task that has
  // `batch:` now: batches submitted under an earlier config still need finishing.
  let latest = config;
  let batcher: Batcher | undefined;
  async function startBatcher(): Promise<void> {
    if (batcher !== undefined || stopping) return;
    const b = createBatcher({ nc, config: () => latest, caller, names, logger, clock, random, resultCache, recordSpend: (job, usd) => budgets.record(budgets.applying(job.task, job.metadata), usd), metrics });
    batcher = b;
    await b.start().catch((err: unknown) => {
      batcher = undefined;
      logger.error({ err: (err as Error).message }, "batch lane not started (its stream, consumer or bucket); jobs are served live");
    });
  }

  async function run(): Promise<void> {
    void watchLiveState().catch((err: unknown) => logger.error({ err: (err as Error).message }, "live state watch failed; routing on configured prices and local health"));
    await resultCache.open();
    // Budgets must be known before the first job is served.
    await budgets.start();
    // Before the first pull, so a job with slack never misses the batch lane for want of it.
    await startBatcher();
    requests.start();
    await consumer.run();
  }

  async function stop(): Promise<void> {
    stopping = true;
    // Out of the queue group first: requests already on their way are still served.
    await requests.stop();
    consumer.stop();
    await Promise.all([consumer.idle(router.shutdown_grace), requests.idle(router.shutdown_grace)]);
    // Past the grace period: cut the calls off. Each job hands itself back (nak, or a handback
    // reply to the gateway) with nothing published, so another worker serves it and this one
    // cannot also publish a late result.
    for (const h of consumer.holds) h.cancel.cancel();
    for (const r of requests.turns) r.cancel.cancel();
    await Promise.all([consumer.idle(ABORT_SETTLE_MS), requests.idle(ABORT_SETTLE_MS)]);
    // The last replies, records and telemetry wait for a turn's end (turn-end.ts): out before the connection drains.
    await deferredRan();
    for (const h of consumer.holds) nak(h);
    consumer.close();
    await batcher?.stop();
    removeInFlight?.();
    watch?.stop();
    await limits.close();
    await budgets.stop();
    await caller.close();
  }

  function reload(next: Config): void {
    // Jobs running keep the setup they leased; its pools close when the last of them ends.
    caller.reload(next);
    latest = next;
    void startBatcher();
    limits.reload(next);
    budgets.reload(next);
    if (JSON.stringify(next.router) !== JSON.stringify(config.router) || JSON.stringify(next.streams) !== JSON.stringify(config.streams)) {
      logger.warn("config reloaded; changes to `router` and `streams` take effect at the next restart");
    }
  }

  return { run, stop, reload, stats, live };
}

/**
 * The router worker: carries out the steps a job's delivery decides (`job.ts`), with I/O in
 * pieces of one job each — the consumer (pulls, slots, holds), the model caller
 * (`shared/providers`), the outcome store, the live-state watch. Any number of these run
 * against the same consumer, in one process or many.
 */
import { jetstream } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { bindContract } from "../../shared/acceptance/contract.ts";
import { ProviderError } from "../../shared/adapters/errors.ts";
import { CallAbortedError } from "../../shared/adapters/http.ts";
import type { Completion } from "../../shared/adapters/types.ts";
import { routerLanes, type Config } from "../../shared/config/schema.ts";
import type { Attempt, AttemptOutcome, DeadLetter } from "../../shared/contract/job.ts";
import type { AttemptEvent } from "../../shared/contract/live.ts";
import { namesOf } from "../../shared/contract/subjects.ts";
import type { Logger } from "../../shared/log.ts";
import { openBuckets } from "../../shared/nats/buckets.ts";
import type { RouterMetrics, TaskChildren } from "../../shared/ops/router-metrics.ts";
import { watchModelStates, type ModelWatch } from "../../shared/nats/model-watch.ts";
import { createModelCaller, type ProviderLease } from "../../shared/providers/caller.ts";
import type { ModelInfo } from "../../shared/routing/catalog.ts";
import { LocalHealth } from "../../shared/routing/health.ts";
import { LiveState } from "../../shared/routing/live-state.ts";
import { costUsd } from "../../shared/routing/cost.ts";
import { plan } from "../../shared/routing/planner.ts";
import { createConsumer, type Hold } from "./consumer.ts";
import { intake } from "./intake.ts";
import { beforePlanning, buildDeadLetter, Delivery, type Moment, type Step } from "./job.ts";
import { createOutcomeStore, nextTurn, type KeptOutcome } from "./outcome-store.ts";
import type { Tracing } from "../../shared/ops/tracing.ts";
import { JobTrace } from "./job-trace.ts";

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

export function createRouter({ nc, config, logger, clock = Date.now, random = Math.random, env = process.env, metrics, onConsumerMissing, tracing }: RouterDeps): Router {
  const js = jetstream(nc);
  // The deployment's names, fixed for the worker's life (a reload does not move it to another namespace).
  const names = namesOf(config);
  const { canonicalJobSubject, dlqSubject, resultSubject, telemetrySubject } = names;
  const live = new LiveState(new LocalHealth(), clock);
  const router = config.router;
  const caller = createModelCaller(config, { env });
  const stats: RouterStats = {
    received: 0,
    succeeded: 0,
    deadLettered: 0,
    redelivered: 0,
    get inFlight() {
      return consumer.holds.size;
    },
  };
  // Only this process's view: a redelivery that lands on another worker starts a fresh list.
  const history = new Map<number, Attempt[]>();
  // A job's ack or `working()` can be lost, and ack_wait then runs out under a delivery still
  // being worked on here: the next delivery of that job waits for it (`inHand`, by stream
  // sequence), and if it stored an outcome (`served`) only acks. Working both at once would pay
  // twice, and could give the job a result and a dead letter, two streams no duplicate window spans.
  const inHand = new Map<number, Promise<void>>();
  const served = new Set<number>();
  let stopping = false;
  let watch: ModelWatch | undefined;

  const store = createOutcomeStore({ nc, js, logger, clock, ackWaitMs: router.ack_wait, stopping: () => stopping, names });
  const consumer = createConsumer({
    js,
    router,
    lanes: routerLanes(config),
    logger,
    clock,
    onMissing: onConsumerMissing,
    names,
    handle: (hold) => {
      stats.received++;
      if (tracing !== undefined) hold.trace = new JobTrace(tracing, hold.m, hold.startedAt);
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

  /** The job's moment, brought up to date in place: one object per job, not one per step. */
  const moment = (hold: Hold, at: Moment): Moment => {
    at.now = clock();
    at.renewedAt = hold.renewedAt;
    at.stopping = hold.cancel.cancelled;
    return at;
  };

  /** This delivery's queue wait and, for a repeated delivery, the redelivery: counted once the task is known. */
  function delivered(hold: Hold, task: string, known: boolean): TaskChildren | undefined {
    if (!metrics) return undefined;
    const t = metrics.task(task, known);
    t.queueWait[hold.lane].observe(Math.max(0, hold.startedAt - hold.m.info.timestampNanos / 1e6) / 1000);
    if (hold.m.info.deliveryCount > 1) t.redeliveries.inc();
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
      if (kept.task !== undefined) delivered(hold, kept.task, true);
      await finish(hold, kept);
      return;
    }
    const lease = caller.lease();
    try {
      const got = intake(canonicalJobSubject(m.subject), m.headers?.get("Nats-Msg-Id") || undefined, m.data, {
        maxBytes: router.max_job_bytes,
        isKnownTask: (t) => lease.catalog.tasks.has(t),
        // The stream sequence, not a random id: every redelivery of the job must get the same one.
        newId: () => `jobs-${m.seq}`,
        names,
      });
      if (got.kind === "reject") {
        const { id, task, reason, error, job, metadata } = got;
        const known = lease.catalog.tasks.has(task);
        delivered(hold, task, known);
        return deadLetter(hold, got.dlqSubject, { id, task, status: "failed", reason, error, attempts: [], job, metadata, failed_at: new Date(clock()).toISOString() }, 0, known ? task : "other");
      }
      const job = got.job;
      hold.trace?.identify(job.id, job.task);
      const t = delivered(hold, job.task, true);
      const policy = lease.catalog.tasks.get(job.task)!;
      const earlier = history.get(m.seq) ?? [];
      history.delete(m.seq);
      const deadline = job.deadline === undefined ? undefined : Date.parse(job.deadline);
      const early = beforePlanning(job, policy, earlier, m.info.deliveryCount, deadline, hold.startedAt);
      if (early) return deadLetter(hold, dlqSubject(job.task), early, 0, job.task);
      const contract = bindContract(policy.contract, job.request);
      if ("kind" in contract) return deadLetter(hold, dlqSubject(job.task), buildDeadLetter(job, "invalid_job", contract.message, earlier, clock()), 0, job.task);
      // Time in provider calls, taken out of the job's router overhead.
      let providerMs = 0;
      const tenant = t === undefined ? "" : metrics!.tenantOf(job.metadata);

      const delivery = new Delivery({
        job,
        policy,
        contract,
        plan: plan({ policy, catalog: lease.catalog, view: live, job, now: hold.startedAt, random }),
        earlier,
        deliveryCount: m.info.deliveryCount,
        backoffMs: router.redelivery_backoff,
        timeoutOf: (model) => lease.config.providers[model.provider]!.timeout_ms,
        startedAt: hold.startedAt,
        publishedAt: m.info.timestampNanos / 1e6,
        ackWaitMs: router.ack_wait,
        random,
      });
      const at: Moment = { now: 0, renewedAt: 0, stopping: false };
      for (;;) {
        const step: Step = delivery.next(live, moment(hold, at));
        switch (step.kind) {
          case "call":
            providerMs += await call(lease, delivery, step, hold, job.task, at, t, tenant);
            continue;
          case "result":
            await finish(hold, { kind: "result", subject: resultSubject(job.task), payload: JSON.stringify(step.result), id: job.id, task: job.task }, providerMs);
            return;
          case "dead_letter":
            return deadLetter(hold, dlqSubject(job.task), step.deadLetter, providerMs, job.task);
          case "redeliver":
            if (history.size >= HISTORY_LIMIT) history.delete(history.keys().next().value as number);
            history.set(m.seq, [...delivery.attempts]);
            stats.redelivered++;
            hold.trace?.outcome("redelivered");
            m.nak(step.delayMs);
            return;
          case "let_go":
            return letGo(hold, job.id, step.why);
        }
      }
    } finally {
      lease.release();
    }
  }

  /**
   * Carries out a `call` step and reports what happened to the delivery, local health, the
   * pricing service and the metrics. Returns the call's duration in ms.
   */
  async function call(lease: ProviderLease, delivery: Delivery, step: Extract<Step, { kind: "call" }>, hold: Hold, task: string, at: Moment, t: TaskChildren | undefined, tenant: string): Promise<number> {
    const model = step.planned.model;
    const t0 = clock();
    const span = hold.trace?.attempt(model, step.planned.tier);
    let completion: Completion;
    try {
      completion = await lease.call(model, step.request, step.timeoutMs, hold.cancel);
    } catch (err) {
      if (err instanceof CallAbortedError) {
        span?.aborted();
        delivery.aborted();
        return clock() - t0;
      }
      if (!(err instanceof ProviderError)) {
        span?.failed("error", null, err);
        throw err;
      }
      span?.failed(err.kind, err.status, err);
      const now = clock();
      live.local.failed(model.id, model.provider, err.kind, now, err.retryAfterMs);
      report(model, task, err.kind, err.status, now - t0, undefined, t0);
      metrics?.attempt(model, err.kind, now - t0);
      delivery.failed(err, err.message, moment(hold, at));
      return now - t0;
    }
    const outcome = delivery.answered(completion, moment(hold, at));
    const latency = clock() - t0;
    span?.answered(completion, outcome, costUsd(completion.usage, step.planned));
    if (outcome === "ok") live.local.succeeded(model.id, latency);
    // An answer after the deadline says nothing new about the model.
    if (outcome !== "timeout") report(model, task, outcome, 200, latency, completion.usage, t0);
    if (t !== undefined) {
      metrics!.attempt(model, outcome, latency);
      // Every answer is billed, a rejected one too (the outcome table).
      const u = completion.usage;
      metrics!.billed(t, model, tenant, costUsd(u, step.planned), u.prompt_tokens, u.completion_tokens);
    }
    return latency;
  }

  /** Stores the outcome; false when nothing was published (the hold lapsed, or a stop cut the job off and handed it back). */
  async function finish(hold: Hold, outcome: KeptOutcome, providerMs = 0): Promise<boolean> {
    if (await store.finish(hold, outcome)) {
      if (served.size >= HISTORY_LIMIT) served.delete(served.values().next().value as number);
      served.add(hold.m.seq);
      stats[outcome.kind === "result" ? "succeeded" : "deadLettered"]++;
      if (metrics && outcome.task !== undefined) {
        const t = metrics.task(outcome.task, true);
        if (outcome.kind === "result") t.result.inc();
        else metrics.deadLettered(t, outcome.reason ?? "exhausted");
        t.overhead.observe(Math.max(0, clock() - hold.startedAt - providerMs) / 1000);
      }
      return true;
    }
    if (hold.cancel.cancelled) nak(hold);
    return false;
  }

  /** `task` is the job's task as labelled in metrics (`other` for a subject no task has). */
  async function deadLetter(hold: Hold, subject: string, dl: DeadLetter, providerMs: number, task: string): Promise<void> {
    // A redelivered job may have been served already, its ack lost on the way: a dead letter
    // now would give it two outcomes in two streams, which no duplicate window catches.
    if (hold.m.info.deliveryCount > 1 && dl.reason !== "invalid_job" && (await store.resultStored(dl.task, dl.id, hold.m.info.timestampNanos / 1e6))) {
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
    void nextTurn().then(() => {
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
    let interactive = 0;
    for (const h of consumer.holds) if (h.lane === "interactive") interactive++;
    return { interactive, batch: consumer.holds.size - interactive };
  });

  async function run(): Promise<void> {
    void watchLiveState().catch((err: unknown) => logger.error({ err: (err as Error).message }, "live state watch failed; routing on configured prices and local health"));
    await consumer.run();
  }

  async function stop(): Promise<void> {
    stopping = true;
    consumer.stop();
    await consumer.idle(router.shutdown_grace);
    // Past the grace period: cut the calls off. Each job hands itself back (nak) with nothing
    // published, so the next worker serves it and this one cannot also publish a late result.
    for (const h of consumer.holds) h.cancel.cancel();
    await consumer.idle(ABORT_SETTLE_MS);
    for (const h of consumer.holds) nak(h);
    consumer.close();
    removeInFlight?.();
    watch?.stop();
    await caller.close();
  }

  function reload(next: Config): void {
    // Jobs running keep the setup they leased; its pools close when the last of them ends.
    caller.reload(next);
    if (JSON.stringify(next.router) !== JSON.stringify(config.router) || JSON.stringify(next.streams) !== JSON.stringify(config.streams)) {
      logger.warn("config reloaded; changes to `router` and `streams` take effect at the next restart");
    }
  }

  return { run, stop, reload, stats, live };
}

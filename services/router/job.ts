/**
 * One delivery of a job, as a pure state machine: from (job, plan, attempts so far, live view,
 * clock, deadline, hold) to the next step — call this candidate with this timeout, finish with
 * this result or dead letter, redeliver after this delay, or let go of the job. No I/O: the
 * worker (`worker.ts`) carries the steps out and reports back what the call did, so every
 * decision about a job is here and is tested with a fake clock (`test/job.test.ts`).
 */
import type { BadRequestError, ProviderError } from "../../shared/adapters/errors.ts";
import type { Completion } from "../../shared/adapters/types.ts";
import type { JobContract } from "../../shared/acceptance/contract.ts";
import type { Attempt, AttemptOutcome, ChatRequest, DeadLetter, DlqReason, Job, Result, Usage } from "../../shared/contract/job.ts";
import type { TaskPolicy } from "../../shared/routing/catalog.ts";
import { billedUsd, costBreakdown } from "../../shared/routing/cost.ts";
import { decideAfterFailure } from "../../shared/routing/decide.ts";
import { OUTCOMES, permanentFailureReason } from "../../shared/routing/outcomes.ts";
import type { Plan, PlannedAttempt } from "../../shared/routing/planner.ts";
import type { ModelInfo } from "../../shared/routing/catalog.ts";

export type Step =
  /**
   * Call the candidate; report back with `answered` or `failed`. With `hedgeAt` (epoch ms),
   * if the call is still in flight then, ask `hedge()` for a second call to race it.
   */
  | { readonly kind: "call"; readonly planned: PlannedAttempt; readonly request: ChatRequest; readonly timeoutMs: number; readonly hedgeAt?: number }
  | { readonly kind: "result"; readonly result: Result }
  | { readonly kind: "dead_letter"; readonly deadLetter: DeadLetter }
  /** Give the job back to JetStream, to come again after `delayMs`. */
  | { readonly kind: "redeliver"; readonly delayMs: number }
  /**
   * Publish nothing: this delivery no longer holds the job (its hold lapsed, so it has been
   * redelivered and that delivery decides), or the worker is stopping and the job goes back.
   */
  | { readonly kind: "let_go"; readonly why: "hold_lapsed" | "stopping" };

/** What the machine reads about candidates while the delivery runs (their state changes under it). */
export interface LiveView {
  cooldownUntil(model: ModelInfo): number;
}

export interface DeliveryInput {
  readonly job: Job;
  readonly policy: TaskPolicy;
  /** The task's contract bound to this job. */
  readonly contract: JobContract;
  readonly plan: Plan;
  /** Attempts of earlier deliveries of this job handled by this worker, in order. */
  readonly earlier: readonly Attempt[];
  /** 1 on the first delivery. */
  readonly deliveryCount: number;
  /** Delay before redelivery n is `backoff[n - 1]`; the last value repeats. */
  readonly backoffMs: readonly number[];
  /** Per-attempt timeout of a model's provider. */
  readonly timeoutOf: (model: ModelInfo) => number;
  /**
   * Hedging (the task's `hedge`, never on the batch lane): how long a call to this model may
   * go unanswered before the next candidate races it; undefined: no hedge for it.
   */
  readonly hedgeAfterOf?: (model: ModelInfo) => number | undefined;
  /** The most a hedge call may be expected to cost (its planned expected cost); none: any. */
  readonly hedgeMaxExtraCostUsd?: number;
  /** When this delivery reached the worker (epoch ms). */
  readonly startedAt: number;
  /** When the job was published (epoch ms), for `queued_ms`. */
  readonly publishedAt: number;
  /** How long JetStream waits for an ack or `working()` before redelivering. */
  readonly ackWaitMs: number;
  readonly random: () => number;
}

/** The moment-to-moment facts the worker owns: the clock, and when JetStream last heard of this job. */
export interface Moment {
  now: number;
  /** Delivery or the last `working()`. */
  renewedAt: number;
  stopping: boolean;
}

/**
 * The dead letter for a job, its reason and the attempts so far. The one builder: intake
 * rejections, deadlines and exhausted jobs all come through here.
 */
export function buildDeadLetter(job: Job, reason: DlqReason, error: string, attempts: readonly Attempt[], now: number): DeadLetter {
  return { id: job.id, task: job.task, status: "failed", reason, error, attempts: [...attempts], billed_usd: billedUsd(attempts), job, metadata: job.metadata ?? {}, failed_at: new Date(now).toISOString() };
}

/** A job whose deadline passed before it came, or whose delivery budget is spent, ends before any planning. */
export function beforePlanning(job: Job, policy: TaskPolicy, earlier: readonly Attempt[], deliveryCount: number, deadline: number | undefined, now: number): DeadLetter | undefined {
  if (deadline !== undefined && now >= deadline) {
    return buildDeadLetter(job, "deadline_exceeded", `The deadline ${job.deadline} had passed when the job was picked up.`, earlier, now);
  }
  if (deliveryCount > policy.maxDeliveries) {
    return buildDeadLetter(job, "exhausted", `Delivered ${deliveryCount} times without completing; its budget is ${policy.maxDeliveries}.`, earlier, now);
  }
  return undefined;
}

export class Delivery {
  readonly #in: DeliveryInput;
  readonly #deadline: number | undefined;
  readonly #attempts: Attempt[];
  /** A model that answered this job invalidly or refused it is not asked again (outcomes.ts). Made on first need: most jobs never fail. */
  #excluded: Set<string> | undefined;
  readonly #failures: AttemptOutcome[] = [];
  #cursor = 0;
  #calls = 0;
  #untried = 0;
  #eligible = 0;
  #minContextFailed = Infinity;
  #lastError: string | undefined;
  /** The calls in flight, between a `call` step and its report: two while a hedge races the first. */
  readonly #pending: { readonly planned: PlannedAttempt; readonly at: number }[] = [];
  /** Set once the delivery has a final step; `next` repeats it. */
  #final: Step | undefined;

  constructor(input: DeliveryInput) {
    this.#in = input;
    this.#deadline = input.job.deadline === undefined ? undefined : Date.parse(input.job.deadline);
    this.#attempts = input.earlier.length === 0 ? [] : [...input.earlier];
    for (const a of input.earlier) if (!OUTCOMES[a.outcome].retrySameModel) (this.#excluded ??= new Set()).add(`${a.provider}/${a.model}`);
  }

  /** Every attempt of the job so far, earlier deliveries' first. */
  get attempts(): readonly Attempt[] {
    return this.#attempts;
  }

  /** Calls in flight: reported neither by the worker nor cut off by a winning hedge. */
  get inFlight(): number {
    return this.#pending.length;
  }

  /** Whether this call is still in flight (a hedge's loser is not, once the other call won). */
  holds(planned: PlannedAttempt): boolean {
    return this.#pending.some((c) => c.planned === planned);
  }

  /** The next step at this moment. Call again after reporting a call's outcome. */
  next(view: LiveView, at: Moment): Step {
    if (this.#pending.length > 0) throw new Error("a call is in flight: report it with answered() or failed() first");
    if (this.#final) return this.#final;
    const { job, plan } = this.#in;
    if (at.stopping) return { kind: "let_go", why: "stopping" };
    if (plan.kind === "none") return this.#finish(buildDeadLetter(job, plan.reason, plan.error, this.#attempts, at.now), at);
    if (plan.kind === "attempts") {
      const call = this.#nextCall(view, at, undefined);
      if (call !== undefined) return call;
      // Every candidate left has failed this job for good on an earlier delivery.
      if (this.#eligible === 0) {
        const reason = permanentFailureReason(this.#attempts.map((a) => a.outcome));
        const last = this.#attempts.at(-1)?.error ?? "none";
        const error = reason === "invalid_output" ? `Every candidate answered with output that failed the check. Last error: ${last}` : `Every candidate refused the request. Last error: ${last}`;
        return this.#finish(buildDeadLetter(job, reason, error, this.#attempts, at.now), at);
      }
    }
    return this.#decide(at);
  }

  /**
   * The call in flight reached its `hedgeAt` unanswered: the next candidate, called alongside
   * it, or undefined when there is none to call now (none left, attempts used up, cooling
   * down, or over `hedgeMaxExtraCostUsd`). Whichever answers acceptably first wins.
   */
  hedge(view: LiveView, at: Moment): Extract<Step, { kind: "call" }> | undefined {
    if (this.#pending.length !== 1 || this.#final || at.stopping || this.#in.plan.kind !== "attempts") return undefined;
    return this.#nextCall(view, at, this.#in.hedgeMaxExtraCostUsd ?? Infinity);
  }

  /** The next candidate to call, advancing the plan; `maxCostUsd` (hedges) stops short of a dearer one, leaving it for failover. */
  #nextCall(view: LiveView, at: Moment, maxCostUsd: number | undefined): Extract<Step, { kind: "call" }> | undefined {
    const { policy } = this.#in;
    const attempts = (this.#in.plan as Extract<Plan, { kind: "attempts" }>).attempts;
    while (this.#cursor < attempts.length) {
      const p = attempts[this.#cursor++]!;
      if (this.#excluded?.has(p.model.id)) continue;
      if (maxCostUsd !== undefined && p.expectedCostUsd > maxCostUsd) {
        this.#cursor--;
        return undefined;
      }
      this.#eligible++;
      if (this.#calls >= policy.maxAttempts) {
        this.#untried++;
        continue;
      }
      // After a context-length refusal only a larger window can help.
      if (p.model.contextWindow <= this.#minContextFailed && this.#minContextFailed !== Infinity) continue;
      if (view.cooldownUntil(p.model) > at.now) {
        this.#untried++;
        continue;
      }
      let timeoutMs = this.#in.timeoutOf(p.model);
      if (this.#deadline !== undefined) timeoutMs = Math.min(timeoutMs, this.#deadline - at.now);
      if (timeoutMs <= 0) break;
      this.#calls++;
      // Only a lone call is hedged, and only if the hedge would start before its timeout.
      const after = this.#pending.length === 0 ? this.#in.hedgeAfterOf?.(p.model) : undefined;
      this.#pending.push({ planned: p, at: at.now });
      const request = this.#in.contract.requestFor(p.model.structuredOutput);
      if (after !== undefined && after < timeoutMs) return { kind: "call", planned: p, request, timeoutMs, hedgeAt: at.now + after };
      return { kind: "call", planned: p, request, timeoutMs };
    }
    return undefined;
  }

  #decide(at: Moment): Step {
    const { job, plan, policy } = this.#in;
    const decision = decideAfterFailure({
      failures: this.#failures,
      untried: this.#untried,
      lastError: this.#lastError,
      deliveryCount: this.#in.deliveryCount,
      maxDeliveries: policy.maxDeliveries,
      backoffMs: this.#in.backoffMs,
      readyAt: plan.kind === "wait" ? plan.until : 0,
      deadline: this.#deadline,
      now: at.now,
      random: this.#in.random,
    });
    if (decision.action === "redeliver") return (this.#final = { kind: "redeliver", delayMs: decision.delayMs });
    return this.#finish(buildDeadLetter(job, decision.reason, decision.error, this.#attempts, at.now), at);
  }

  /**
   * The provider answered. The answer is judged against the contract: one that passes ends the
   * delivery with a result (unless it came after the deadline); one that fails is an
   * `invalid_output` attempt and the next candidate tries. Returns the attempt's outcome.
   */
  answered(completion: Completion, at: Moment, call?: PlannedAttempt): AttemptOutcome {
    const { planned, at: t0 } = this.#take(call);
    const message = completion.response.choices[0]?.message;
    const judged = this.#in.contract.judge(message?.content ?? null);
    // Whatever becomes of the answer, the provider billed it (the outcome table's `billed`).
    const cost = costBreakdown(completion.usage, planned);
    const billed: Billed = { usage: completion.usage, cost_usd: cost.total };
    if (!judged.ok) {
      this.#record(planned, "invalid_output", 200, at.now - t0, judged.error, billed);
      return "invalid_output";
    }
    // The answer came, but too late (a busy machine can overrun the call's own timer).
    if (this.#deadline !== undefined && at.now > this.#deadline) {
      this.#attempts.push(attempt(planned, "timeout", 200, at.now - t0, "answered after the job's deadline", billed));
      this.#cutOff(planned, at);
      this.#finish(buildDeadLetter(this.#in.job, "deadline_exceeded", `The answer came after the deadline ${this.#in.job.deadline}.`, this.#attempts, at.now), at);
      return "timeout";
    }
    this.#attempts.push(attempt(planned, "ok", 200, at.now - t0, null, billed));
    this.#cutOff(planned, at);
    // A label that travelled wrapped as {"label": …} reaches the caller bare.
    const response = message && judged.content !== message.content
      ? { ...completion.response, choices: completion.response.choices.map((c, i) => (i === 0 ? { ...c, message: { ...c.message, content: judged.content } } : c)) }
      : completion.response;
    const { job } = this.#in;
    const result: Result = {
      id: job.id,
      task: job.task,
      status: "succeeded",
      provider: planned.model.provider,
      model: planned.model.name,
      response,
      ...(judged.output === undefined ? {} : { output: judged.output }),
      usage: completion.usage,
      ...(completion.usageEstimated ? { usage_estimated: true as const } : {}),
      cost_usd: cost.total,
      cost,
      billed_usd: billedUsd(this.#attempts),
      latency_ms: at.now - this.#in.startedAt,
      queued_ms: Math.max(0, this.#in.startedAt - this.#in.publishedAt),
      attempts: this.#attempts,
      metadata: job.metadata ?? {},
      completed_at: new Date(at.now).toISOString(),
    };
    this.#finish(result, at);
    return "ok";
  }

  /** The call failed; `error` is already safe to publish (no secrets). */
  failed(error: ProviderError, message: string, at: Moment, call?: PlannedAttempt): void {
    const { planned, at: t0 } = this.#take(call);
    this.#record(planned, error.kind, error.status, at.now - t0, message);
    if (error.kind === "bad_request" && (error as BadRequestError).contextLength) {
      this.#minContextFailed = Math.min(this.#minContextFailed, planned.model.contextWindow);
    }
  }

  /**
   * The call was cut off by a stop, or never made (a budget refused it): no attempt, nothing
   * learnt. A hedge's loser, already recorded when the other call won, is no longer held.
   */
  aborted(call?: PlannedAttempt): void {
    if (call !== undefined && !this.holds(call)) return;
    this.#take(call);
  }

  /**
   * The other call of a hedge lost: recorded as a `timeout` (no answer in the time this job
   * gave it; unbilled, since its answer never came) and no longer held. The worker aborts it.
   */
  #cutOff(winner: PlannedAttempt, at: Moment): void {
    for (const { planned, at: t0 } of this.#pending.splice(0)) {
      this.#attempts.push(attempt(planned, "timeout", null, at.now - t0, `cut off: the hedged call to ${winner.model.id} answered first`));
    }
  }

  #record(planned: PlannedAttempt, outcome: AttemptOutcome, status: number | null, latencyMs: number, error: string, billed?: Billed): void {
    this.#attempts.push(attempt(planned, outcome, status, latencyMs, error, billed));
    this.#failures.push(outcome);
    this.#lastError = error;
    if (!OUTCOMES[outcome].retrySameModel) (this.#excluded ??= new Set()).add(planned.model.id);
  }

  /** The call reported: `call` names it while two are in flight. */
  #take(call?: PlannedAttempt): { planned: PlannedAttempt; at: number } {
    const i = call === undefined ? (this.#pending.length === 1 ? 0 : -1) : this.#pending.findIndex((c) => c.planned === call);
    if (i < 0) throw new Error(this.#pending.length === 0 ? "no call in flight" : "which call? name it: two are in flight");
    return this.#pending.splice(i, 1)[0]!;
  }

  /**
   * The final step for an outcome, unless the hold has lapsed: then the job was redelivered,
   * and the delivery that holds it now decides (its outcome and ours could differ — a result
   * here, a deadline dead letter there — and no duplicate window spans RESULTS and DLQ).
   */
  #finish(outcome: Result | DeadLetter, at: Moment): Step {
    if (holdLapsed(at.now, at.renewedAt, this.#in.ackWaitMs)) return (this.#final = { kind: "let_go", why: "hold_lapsed" });
    return (this.#final = outcome.status === "succeeded" ? { kind: "result", result: outcome } : { kind: "dead_letter", deadLetter: outcome });
  }
}

/**
 * Whether JetStream has given up on this delivery: `ack_wait` passed without a renewal (a
 * stopped process, a long GC pause, a frozen VM), so the job has been redelivered. Renewing
 * now would not undo that.
 */
export function holdLapsed(now: number, renewedAt: number, ackWaitMs: number): boolean {
  return now - renewedAt > ackWaitMs;
}

/** An answered call's usage and what it cost; a call that got no answer was not billed and has none. */
interface Billed {
  readonly usage: Usage;
  readonly cost_usd: number;
}

function attempt(p: PlannedAttempt, outcome: AttemptOutcome, status: number | null, latencyMs: number, error: string | null, billed?: Billed): Attempt {
  const a: Attempt = { provider: p.model.provider, model: p.model.name, tier: p.tier, outcome, http_status: status, latency_ms: latencyMs, error };
  if (billed !== undefined) {
    a.usage = billed.usage;
    a.cost_usd = billed.cost_usd;
  }
  return a;
}

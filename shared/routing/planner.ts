/**
 * The routing planner: a pure function from (task policy, live state, job) to an ordered
 * list of attempts. No I/O, no clock, no randomness of its own: `now` and `random` come in.
 *
 * It runs for every job over every candidate, so the loop reads each candidate's state once
 * into a reused object and keeps only the best `max_attempts` candidates (a bounded
 * insertion, linear in the candidates) instead of sorting them all.
 *
 * A model demoted for the job's task (its answers miss the task's output contract: see
 * `services/pricing/quality.ts`) is skipped while any other candidate can take the job, now
 * or after a cooldown. When only demoted ones are left, they are planned all the same, in
 * the order they would have had: a stuck task is worse than a weak model. The demotion
 * lookup is fetched once per plan and is undefined while nothing is demoted for the task, so
 * the usual case costs one comparison per candidate; the second pass runs only when every
 * candidate left was demoted.
 */
import type { Job } from "../contract/job.ts";
import { estimatePromptTokens } from "../tokens.ts";
import type { Catalog, ModelInfo, TaskPolicy, TierPolicy } from "./catalog.ts";
import type { ModelReading, RoutingView } from "./health.ts";

export interface PlannedAttempt {
  readonly model: ModelInfo;
  readonly tier: number;
  readonly expectedCostUsd: number;
  /** Prices at planning time; the result's cost uses them, so a price change mid-call does not rewrite history. */
  readonly inputPerMtok: number;
  readonly outputPerMtok: number;
  /** The model's configured part prices (a live price sets input and output only): a `PlannedAttempt` is the call's `Prices`. */
  readonly cachedInputPerMtok: number | undefined;
  readonly cacheWritePerMtok: number | undefined;
  readonly reasoningPerMtok: number | undefined;
}

export type Plan =
  | { readonly kind: "attempts"; readonly attempts: readonly PlannedAttempt[] }
  /** Candidates exist but every one is cooling down: try again at `until`. */
  | { readonly kind: "wait"; readonly until: number }
  | { readonly kind: "none"; readonly reason: "no_route" | "budget_exceeded"; readonly error: string };

export interface PlanInput {
  readonly policy: TaskPolicy;
  readonly catalog: Pick<Catalog, "models" | "resolve">;
  readonly view: RoutingView;
  readonly job: Job;
  readonly now: number;
  /** Uniform in [0, 1); only the `weighted` strategy draws from it. */
  readonly random: () => number;
}

const SPARE = 2;

const JOB_STRATEGY = { cost: "cheapest", cheapest: "cheapest", latency: "fastest", fastest: "fastest", ordered: "ordered", weighted: "weighted" } as const;

/** One reading reused for every candidate: plan() is synchronous, so nothing else can touch it meanwhile. */
const r: ModelReading = { cooldownUntil: 0, latencyMs: NaN, inputPerMtok: 0, outputPerMtok: 0 };

export function plan({ policy, catalog, view, job, now, random }: PlanInput): Plan {
  const request = job.request;
  const routing = job.routing;
  let tiers: readonly TierPolicy[] = policy.tiers;
  if (request.model !== "auto") {
    const id = catalog.resolve(request.model);
    if (id === undefined) {
      return { kind: "none", reason: "no_route", error: `request.model "${request.model}" is neither "auto" nor a configured model or alias` };
    }
    if (policy.allowModels && !policy.allowModels.has(id)) {
      return { kind: "none", reason: "no_route", error: `request.model "${request.model}" is not among the models task "${policy.task}" allows (allow_models)` };
    }
    tiers = [{ index: 0, strategy: "ordered", candidates: [catalog.models.get(id)!], weights: undefined }];
  }

  const promptTokens = estimatePromptTokens(request.messages);
  const completionTokens = request.max_completion_tokens ?? request.max_tokens ?? policy.expectedCompletionTokens;
  const needed = promptTokens + completionTokens;
  const allow = routing?.allow_providers;
  const deny = routing?.deny_providers;
  const maxCost = routing?.max_cost_usd;
  const maxLatency = routing?.max_latency_ms ?? policy.maxLatencyMs;
  const override = routing?.strategy ? JOB_STRATEGY[routing.strategy] : undefined;

  const attempts: PlannedAttempt[] = [];
  let considered = 0;
  let overBudget = 0;
  let earliestReady = Infinity;
  let demoted = view.demotedFor?.(policy.task);
  let skippedDemoted = 0;
  // A little beyond max_attempts: the worker skips a planned candidate whose state changes
  // during the job (its own attempts cool a model or a provider down), and must not run short.
  const wanted = policy.maxAttempts + SPARE;
  for (;;) {
    for (const tier of tiers) {
      const room = wanted - attempts.length;
      if (room <= 0) break;
      const strategy = override ?? tier.strategy;
      const best = new Best(room);
      const candidates = tier.candidates;
      for (let i = 0; i < candidates.length; i++) {
        const model = candidates[i]!;
        if (allow !== undefined && !allow.includes(model.provider)) continue;
        if (deny !== undefined && deny.includes(model.provider)) continue;
        if (needed > model.contextWindow) continue;
        if (demoted !== undefined && demoted[model.ordinal] === 1) {
          skippedDemoted++;
          continue;
        }
        view.read(model, r);
        // NaN (never measured) compares false: an unmeasured model is not excluded.
        if (maxLatency !== undefined && r.latencyMs > maxLatency) continue;
        considered++;
        const cost = (promptTokens * r.inputPerMtok + completionTokens * r.outputPerMtok) / 1e6;
        if (maxCost !== undefined && cost > maxCost) {
          overBudget++;
          continue;
        }
        if (r.cooldownUntil > now) {
          if (r.cooldownUntil < earliestReady) earliestReady = r.cooldownUntil;
          continue;
        }
        let key: number;
        switch (strategy) {
          case "ordered":
            key = i;
            break;
          case "cheapest":
            key = cost;
            break;
          case "fastest":
            // An unmeasured model goes first, so it gets measured.
            key = Number.isNaN(r.latencyMs) ? 0 : r.latencyMs;
            break;
          case "weighted":
            // Efraimidis–Spirakis: the smallest keys are a weighted random draw without replacement.
            key = -Math.pow(random(), 1 / (tier.weights?.[i] ?? 1));
            break;
        }
        if (best.accepts(key)) {
          best.insert(key, {
            model,
            tier: tier.index,
            expectedCostUsd: cost,
            inputPerMtok: r.inputPerMtok,
            outputPerMtok: r.outputPerMtok,
            cachedInputPerMtok: model.cachedInputPerMtok,
            cacheWritePerMtok: model.cacheWritePerMtok,
            reasoningPerMtok: model.reasoningPerMtok,
          });
        }
        // In list order the first `room` are final: the rest of the tier cannot displace them.
        if (strategy === "ordered" && best.full()) break;
      }
      for (const a of best.items) attempts.push(a);
    }
    // Some non-demoted candidate can take the job (now, or once its cooldown ends), or no
    // demoted one was passed over: this plan stands.
    if (attempts.length > 0 || earliestReady !== Infinity || skippedDemoted === 0) break;
    // Every candidate left for this job is demoted for its task. A stuck task is worse than
    // a weak model: plan them anyway, in the order they would have had.
    demoted = undefined;
    skippedDemoted = 0;
    considered = 0;
    overBudget = 0;
  }

  if (attempts.length > 0) return { kind: "attempts", attempts };
  if (earliestReady !== Infinity) return { kind: "wait", until: earliestReady };
  if (considered > 0 && overBudget === considered) {
    return { kind: "none", reason: "budget_exceeded", error: `every candidate's expected cost exceeds routing.max_cost_usd (${maxCost})` };
  }
  return { kind: "none", reason: "no_route", error: `no candidate model of task "${policy.task}" fits this job (context window, allow/deny providers, latency, quality floor)` };
}

/** The `size` smallest keys seen, in ascending order (ties keep arrival order). */
class Best {
  readonly keys: number[] = [];
  readonly items: PlannedAttempt[] = [];
  readonly #size: number;

  constructor(size: number) {
    this.#size = size;
  }

  full(): boolean {
    return this.keys.length >= this.#size;
  }

  accepts(key: number): boolean {
    return this.keys.length < this.#size || key < this.keys[this.keys.length - 1]!;
  }

  insert(key: number, item: PlannedAttempt): void {
    let i = this.keys.length;
    while (i > 0 && this.keys[i - 1]! > key) i--;
    this.keys.splice(i, 0, key);
    this.items.splice(i, 0, item);
    if (this.keys.length > this.#size) {
      this.keys.pop();
      this.items.pop();
    }
  }
}

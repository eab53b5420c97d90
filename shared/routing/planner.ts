/**
 * The routing planner: a pure function from (task policy, live state, job) to an ordered
 * list of attempts. No I/O, no clock, no randomness of its own: `now` and `random` come in.
 */
import type { Job } from "../contract/job.ts";
import { estimatePromptTokens } from "../tokens.ts";
import type { Catalog, ModelInfo, TaskPolicy, TierPolicy } from "./catalog.ts";
import type { RoutingView } from "./health.ts";

export interface PlannedAttempt {
  readonly model: ModelInfo;
  readonly tier: number;
  readonly expectedCostUsd: number;
  /** Prices at planning time; the result's cost uses them, so a price change mid-call does not rewrite history. */
  readonly inputPerMtok: number;
  readonly outputPerMtok: number;
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

const JOB_STRATEGY = { cost: "cheapest", cheapest: "cheapest", latency: "fastest", fastest: "fastest", ordered: "ordered", weighted: "weighted" } as const;

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
    tiers = [{ index: 0, strategy: "ordered", models: [id], weights: undefined }];
  }

  const promptTokens = estimatePromptTokens(request.messages);
  const completionTokens = request.max_completion_tokens ?? request.max_tokens ?? policy.expectedCompletionTokens;
  const allow = routing?.allow_providers;
  const deny = routing?.deny_providers;
  const maxCost = routing?.max_cost_usd;
  const maxLatency = routing?.max_latency_ms ?? policy.maxLatencyMs;
  const minQuality = policy.minQuality;
  const strategyOverride = routing?.strategy ? JOB_STRATEGY[routing.strategy] : undefined;

  const attempts: PlannedAttempt[] = [];
  let considered = 0;
  let overBudget = 0;
  let earliestReady = Infinity;
  const seen = new Set<string>();
  for (const tier of tiers) {
    const eligible: Eligible[] = [];
    for (let i = 0; i < tier.models.length; i++) {
      const id = tier.models[i] as string;
      const model = catalog.models.get(id);
      if (model === undefined || seen.has(id)) continue;
      seen.add(id);
      if (allow && !allow.includes(model.provider)) continue;
      if (deny?.includes(model.provider)) continue;
      if (promptTokens + completionTokens > model.contextWindow) continue;
      if (minQuality !== undefined && (policy.quality.get(id) ?? 1) < minQuality) continue;
      const latencyMs = view.latencyMs(id);
      if (maxLatency !== undefined && latencyMs !== undefined && latencyMs > maxLatency) continue;
      considered++;
      const price = view.price(model);
      const expectedCostUsd = (promptTokens * price.inputPerMtok + completionTokens * price.outputPerMtok) / 1e6;
      if (maxCost !== undefined && expectedCostUsd > maxCost) {
        overBudget++;
        continue;
      }
      const until = view.cooldownUntil(id, model.provider);
      if (until > now) {
        earliestReady = Math.min(earliestReady, until);
        continue;
      }
      eligible.push({
        attempt: { model, tier: tier.index, expectedCostUsd, inputPerMtok: price.inputPerMtok, outputPerMtok: price.outputPerMtok },
        weight: tier.weights?.[i] ?? 1,
        latencyMs: latencyMs ?? 0,
      });
    }
    order(eligible, strategyOverride ?? tier.strategy, random);
    for (const e of eligible) attempts.push(e.attempt);
  }

  if (attempts.length > 0) return { kind: "attempts", attempts };
  if (earliestReady !== Infinity) return { kind: "wait", until: earliestReady };
  if (considered > 0 && overBudget === considered) {
    return { kind: "none", reason: "budget_exceeded", error: `every candidate's expected cost exceeds routing.max_cost_usd (${maxCost})` };
  }
  return { kind: "none", reason: "no_route", error: `no candidate model of task "${policy.task}" fits this job (context window, allow/deny providers, latency, quality floor)` };
}

interface Eligible {
  attempt: PlannedAttempt;
  weight: number;
  /** 0 when never observed, so an unmeasured model gets tried and measured. */
  latencyMs: number;
}

function order(eligible: Eligible[], strategy: TierPolicy["strategy"], random: () => number): void {
  switch (strategy) {
    case "ordered":
      return;
    case "cheapest":
      eligible.sort((a, b) => a.attempt.expectedCostUsd - b.attempt.expectedCostUsd);
      return;
    case "fastest":
      eligible.sort((a, b) => a.latencyMs - b.latencyMs);
      return;
    case "weighted": {
      // Efraimidis–Spirakis: a weighted random order without replacement, one draw per candidate.
      const keyed = eligible.map((e) => ({ e, key: Math.pow(random(), 1 / e.weight) }));
      keyed.sort((a, b) => b.key - a.key);
      keyed.forEach((k, i) => (eligible[i] = k.e));
      return;
    }
  }
}

/**
 * Health of one model from the attempts every worker reports: a sliding window, a state
 * machine with hysteresis, and a cooldown that doubles while probes keep failing. Pure:
 * time comes in as `now`.
 */
import type { AttemptOutcome } from "../../shared/contract/job.ts";
import type { HealthState } from "../../shared/contract/live.ts";
import { OUTCOMES } from "../../shared/routing/outcomes.ts";
import { percentile } from "../../shared/stats.ts";

export interface HealthPolicy {
  readonly windowMs: number;
  /** Below this many attempts in the window, rates do not change the state. */
  readonly minSamples: number;
  readonly degradedErrorRate: number;
  readonly downErrorRate: number;
  /** A degraded model is healthy again only below this rate: the gap is the hysteresis. */
  readonly recoverErrorRate: number;
  readonly degradedRateLimitRate: number;
  /** Consecutive failures that take a model down whatever the window says. */
  readonly downConsecutive: number;
  readonly cooldownMs: number;
  readonly maxCooldownMs: number;
  /** Oldest events are dropped beyond this many, bounding memory and percentile cost. */
  readonly maxEvents: number;
}

export const DEFAULT_HEALTH_POLICY: HealthPolicy = {
  windowMs: 30_000,
  minSamples: 8,
  degradedErrorRate: 0.2,
  downErrorRate: 0.5,
  recoverErrorRate: 0.1,
  degradedRateLimitRate: 0.5,
  downConsecutive: 5,
  cooldownMs: 2_000,
  maxCooldownMs: 300_000,
  maxEvents: 2_000,
};

export interface HealthSnapshot {
  readonly health: HealthState;
  readonly errorRate: number;
  readonly rateLimitRate: number;
  readonly latencyP50Ms: number | null;
  readonly latencyP95Ms: number | null;
  readonly samples: number;
  /** 0 when not cooling down. */
  readonly cooldownUntil: number;
}

type Kind = "ok" | "failure" | "rate_limited" | "neutral";

/**
 * Availability only, read from the one outcome table: an answer that missed a task's output
 * contract (`invalid_output`) or a refused request (`bad_request`) says nothing about whether
 * the model is up, so neither counts here. `provider_down` (401/403) is handled in `record`.
 */
function kindOf(outcome: AttemptOutcome): Kind {
  switch (OUTCOMES[outcome].health) {
    case "success":
      return "ok";
    case "rate_limited":
      return "rate_limited";
    case "failure":
    case "provider_down":
      return "failure";
    case "none":
      return "neutral";
  }
}

interface Event {
  readonly at: number;
  readonly kind: Exclude<Kind, "neutral">;
  readonly latencyMs: number;
}

export class ModelHealth {
  readonly #policy: HealthPolicy;
  #events: Event[] = [];
  #state: HealthState = "healthy";
  #consecutive = 0;
  #cooldownUntil = 0;
  #cooldownMs: number;

  constructor(policy: HealthPolicy = DEFAULT_HEALTH_POLICY) {
    this.#policy = policy;
    this.#cooldownMs = policy.cooldownMs;
  }

  get state(): HealthState {
    return this.#state;
  }

  /** True once a cooldown has run out and nothing has yet said whether the model is back. */
  needsProbe(now: number): boolean {
    return this.#state === "down" && now >= this.#cooldownUntil;
  }

  record(outcome: AttemptOutcome, latencyMs: number, at: number): void {
    if (OUTCOMES[outcome].health === "provider_down") {
      this.#goDown(at);
      return;
    }
    const kind = kindOf(outcome);
    // Neutral attempts never change the state; kept out of the window, a flood of them
    // (a badly prompted task) cannot push real evidence out past maxEvents.
    if (kind === "neutral") return;
    if (this.#state === "down") {
      // Attempts still in flight when the model went down say nothing new.
      if (at < this.#cooldownUntil) return;
      if (kind === "ok") {
        this.#state = "degraded";
        this.#consecutive = 0;
      } else if (kind === "failure") {
        this.#cooldownMs = Math.min(this.#policy.maxCooldownMs, this.#cooldownMs * 2);
        this.#goDown(at);
        return;
      }
    }
    this.#events.push({ at, kind, latencyMs });
    if (this.#events.length > this.#policy.maxEvents) this.#events.splice(0, this.#events.length - this.#policy.maxEvents);
    if (kind === "failure") this.#consecutive++;
    else if (kind === "ok") this.#consecutive = 0;
    if (this.#consecutive >= this.#policy.downConsecutive) this.#goDown(at);
  }

  snapshot(now: number): HealthSnapshot {
    const p = this.#policy;
    const from = now - p.windowMs;
    let drop = 0;
    while (drop < this.#events.length && this.#events[drop]!.at < from) drop++;
    if (drop > 0) this.#events.splice(0, drop);
    let failures = 0;
    let limited = 0;
    let counted = 0;
    const latencies: number[] = [];
    for (const e of this.#events) {
      counted++;
      if (e.kind === "failure") failures++;
      else if (e.kind === "rate_limited") limited++;
      else latencies.push(e.latencyMs);
    }
    const errorRate = counted ? failures / counted : 0;
    const rateLimitRate = counted ? limited / counted : 0;
    if (this.#state === "degraded" && counted === 0) {
      // No evidence left either way (traffic stopped, or went elsewhere): below minSamples
      // nothing else would ever re-evaluate the state, and a stale `degraded` would stick.
      // A `down` model is different: its cooldown and probe decide when it is back.
      this.#state = "healthy";
      this.#cooldownMs = p.cooldownMs;
    } else if (this.#state !== "down" && counted >= p.minSamples) {
      if (errorRate >= p.downErrorRate) this.#goDown(now);
      else if (this.#state === "healthy" && (errorRate >= p.degradedErrorRate || rateLimitRate >= p.degradedRateLimitRate)) this.#state = "degraded";
      else if (this.#state === "degraded" && errorRate <= p.recoverErrorRate && rateLimitRate < p.degradedRateLimitRate) {
        this.#state = "healthy";
        this.#cooldownMs = p.cooldownMs;
      }
    }
    latencies.sort((a, b) => a - b);
    const pct = (p: number) => (latencies.length ? percentile(latencies, p) : null);
    return {
      health: this.#state,
      errorRate,
      rateLimitRate,
      latencyP50Ms: pct(50),
      latencyP95Ms: pct(95),
      samples: counted,
      cooldownUntil: this.#state === "down" ? this.#cooldownUntil : 0,
    };
  }

  /** The answer to a probe made by the pricing service itself. */
  probed(ok: boolean, latencyMs: number, now: number): void {
    this.record(ok ? "ok" : "unavailable", latencyMs, now);
  }

  #goDown(now: number): void {
    this.#state = "down";
    this.#cooldownUntil = now + this.#cooldownMs;
    this.#consecutive = 0;
    // The failures that took it down must not count against it once it is back.
    this.#events = [];
  }
}

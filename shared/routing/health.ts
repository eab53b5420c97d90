/**
 * A worker's own view of model health: cooldowns it sets the moment a call fails, without
 * waiting for anyone else. State is kept in arrays indexed by each model's process-wide
 * ordinal, because the planner reads it for every candidate of every job.
 */
import type { FailureKind } from "../adapters/errors.ts";
import { modelOrdinal, type ModelInfo } from "./catalog.ts";
import { OUTCOMES } from "./outcomes.ts";

/** What the planner learns about one candidate; filled in place, so no allocation per candidate. */
export interface ModelReading {
  /** The time until which the model must not be called, or 0. */
  cooldownUntil: number;
  /** Typical (p95 when known) latency of a successful call; NaN before the first one. */
  latencyMs: number;
  inputPerMtok: number;
  outputPerMtok: number;
}

/** What the planner reads about models beyond the config: a worker's local health, or the live state. */
export interface RoutingView {
  read(model: ModelInfo, out: ModelReading): void;
  /**
   * The models demoted for `task` (their answers fall short of its output contract), as a
   * lookup by model ordinal (1 = demoted; reads past the end are not demoted), or undefined
   * when none is: the planner's fast path. Optional: a view without quality verdicts (a
   * worker's own health) demotes nothing.
   */
  demotedFor?(task: string): Uint8Array | undefined;
}

export interface LocalHealthOptions {
  /** Consecutive transient failures that cool a model down. */
  readonly failureThreshold: number;
  readonly cooldownMs: number;
  /** Cooldown of a whole provider after 401/403: its key or account is wrong. */
  readonly authCooldownMs: number;
  /** Cooldown after a 429 that named no Retry-After. */
  readonly rateLimitCooldownMs: number;
}

export const DEFAULT_LOCAL_HEALTH: LocalHealthOptions = {
  // Five in a row: a provider failing one call in six trips it once in ~8,000 calls, a dead one at once.
  failureThreshold: 5,
  cooldownMs: 2_000,
  authCooldownMs: 60_000,
  rateLimitCooldownMs: 1_000,
};

const LATENCY_WEIGHT = 0.1;

export class LocalHealth implements RoutingView {
  readonly #opts: LocalHealthOptions;
  readonly #failures: number[] = [];
  readonly #until: number[] = [];
  /** NaN until the first success. */
  readonly #latency: number[] = [];
  readonly #providerUntil = new Map<string, number>();

  constructor(opts: LocalHealthOptions = DEFAULT_LOCAL_HEALTH) {
    this.#opts = opts;
  }

  read(model: ModelInfo, out: ModelReading): void {
    out.cooldownUntil = this.#cooldown(model.ordinal, model.provider);
    out.latencyMs = this.#latency[model.ordinal] ?? NaN;
    out.inputPerMtok = model.inputPerMtok;
    out.outputPerMtok = model.outputPerMtok;
  }

  succeeded(modelId: string, latencyMs: number): void {
    const o = modelOrdinal(modelId);
    this.#failures[o] = 0;
    const prev = this.#latency[o];
    // An exponentially weighted mean: recent calls count most, one outlier does not swing it.
    this.#latency[o] = prev === undefined || Number.isNaN(prev) ? latencyMs : prev + LATENCY_WEIGHT * (latencyMs - prev);
  }

  failed(modelId: string, provider: string, kind: FailureKind, now: number, retryAfterMs?: number): void {
    const effect = OUTCOMES[kind].health;
    if (effect === "none" || effect === "success") return;
    if (effect === "provider_down") {
      this.#providerUntil.set(provider, now + this.#opts.authCooldownMs);
      return;
    }
    const o = modelOrdinal(modelId);
    if (effect === "rate_limited") {
      this.#extend(o, now + (retryAfterMs ?? this.#opts.rateLimitCooldownMs));
      return;
    }
    const n = (this.#failures[o] ?? 0) + 1;
    this.#failures[o] = n;
    if (n >= this.#opts.failureThreshold) {
      this.#failures[o] = 0;
      this.#extend(o, now + this.#opts.cooldownMs);
    }
  }

  #cooldown(ordinal: number, provider: string): number {
    const model = this.#until[ordinal] ?? 0;
    // Provider cooldowns are rare (bad keys): skip the lookup while there are none.
    return this.#providerUntil.size === 0 ? model : Math.max(model, this.#providerUntil.get(provider) ?? 0);
  }

  #extend(ordinal: number, until: number): void {
    if (until > (this.#until[ordinal] ?? 0)) this.#until[ordinal] = until;
  }
}

/**
 * A worker's own view of model health: cooldowns it sets the moment a call fails, without
 * waiting for anyone else. The planner reads it through `isAvailable`.
 */
import type { FailureKind } from "../adapters/errors.ts";
import type { ModelInfo } from "./catalog.ts";

/** What the planner reads about models beyond the config: a worker's local health, or the live state. */
export interface RoutingView {
  /** The time until which a model must not be called, or 0. */
  cooldownUntil(modelId: string, provider: string): number;
  /** Typical (p95 when known) latency of a successful call, or undefined before the first one. */
  latencyMs(modelId: string): number | undefined;
  /** The price in force. */
  price(model: ModelInfo): { readonly inputPerMtok: number; readonly outputPerMtok: number };
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
  readonly #failures = new Map<string, number>();
  readonly #modelUntil = new Map<string, number>();
  readonly #providerUntil = new Map<string, number>();
  readonly #latency = new Map<string, number>();

  constructor(opts: LocalHealthOptions = DEFAULT_LOCAL_HEALTH) {
    this.#opts = opts;
  }

  cooldownUntil(modelId: string, provider: string): number {
    return Math.max(this.#modelUntil.get(modelId) ?? 0, this.#providerUntil.get(provider) ?? 0);
  }

  latencyMs(modelId: string): number | undefined {
    return this.#latency.get(modelId);
  }

  price(model: ModelInfo) {
    return model;
  }

  succeeded(modelId: string, latencyMs: number): void {
    if (this.#failures.has(modelId)) this.#failures.delete(modelId);
    const prev = this.#latency.get(modelId);
    // An exponentially weighted mean: recent calls count most, one outlier does not swing it.
    this.#latency.set(modelId, prev === undefined ? latencyMs : prev + LATENCY_WEIGHT * (latencyMs - prev));
  }

  failed(modelId: string, provider: string, kind: FailureKind, now: number, retryAfterMs?: number): void {
    if (kind === "bad_request" || kind === "invalid_output") return;
    if (kind === "auth_failed") {
      this.#providerUntil.set(provider, now + this.#opts.authCooldownMs);
      return;
    }
    if (kind === "rate_limited") {
      this.#extend(modelId, now + (retryAfterMs ?? this.#opts.rateLimitCooldownMs));
      return;
    }
    const n = (this.#failures.get(modelId) ?? 0) + 1;
    this.#failures.set(modelId, n);
    if (n >= this.#opts.failureThreshold) {
      this.#failures.delete(modelId);
      this.#extend(modelId, now + this.#opts.cooldownMs);
    }
  }

  #extend(modelId: string, until: number) {
    if (until > (this.#modelUntil.get(modelId) ?? 0)) this.#modelUntil.set(modelId, until);
  }
}

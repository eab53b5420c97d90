/**
 * A worker's copy of the live state: the pricing service's KV entries (price, health,
 * latency) layered over the worker's own local health. While the pricing service is silent
 * the last-known prices stay in force but its health verdicts are not trusted (a `down`
 * that nobody will ever lift must not strand a model); local health carries on alone.
 */
import type { ModelState } from "../contract/live.ts";
import type { ModelInfo } from "./catalog.ts";
import type { LocalHealth, RoutingView } from "./health.ts";

/** Without a heartbeat for this long, the pricing service counts as gone. */
export const STALE_AFTER_MS = 5_000;
/** A model the pricing service holds down past its cooldown is waiting for a probe: look again soon. */
const PROBE_WAIT_MS = 1_000;

interface Live {
  readonly inputPerMtok: number;
  readonly outputPerMtok: number;
  readonly down: boolean;
  readonly cooldownUntil: number;
  readonly p95: number | null;
}

export class LiveState implements RoutingView {
  readonly local: LocalHealth;
  readonly #clock: () => number;
  readonly #models = new Map<string, Live>();
  #heartbeatAt = 0;

  constructor(local: LocalHealth, clock: () => number = Date.now) {
    this.local = local;
    this.#clock = clock;
  }

  apply(state: ModelState): void {
    this.#models.set(state.id, {
      inputPerMtok: state.input_per_mtok,
      outputPerMtok: state.output_per_mtok,
      down: state.health === "down",
      cooldownUntil: state.cooldown_until ? Date.parse(state.cooldown_until) : 0,
      p95: state.latency_p95_ms,
    });
  }

  heartbeat(at: number): void {
    this.#heartbeatAt = Math.max(this.#heartbeatAt, at);
  }

  /** True while the pricing service has been heard from recently. */
  fresh(now = this.#clock()): boolean {
    return now - this.#heartbeatAt < STALE_AFTER_MS;
  }

  lastHeartbeat(): number {
    return this.#heartbeatAt;
  }

  cooldownUntil(modelId: string, provider: string): number {
    const local = this.local.cooldownUntil(modelId, provider);
    const live = this.#models.get(modelId);
    if (!live?.down) return local;
    const now = this.#clock();
    if (!this.fresh(now)) return local;
    return Math.max(local, live.cooldownUntil > now ? live.cooldownUntil : now + PROBE_WAIT_MS);
  }

  latencyMs(modelId: string): number | undefined {
    return this.#models.get(modelId)?.p95 ?? this.local.latencyMs(modelId);
  }

  price(model: ModelInfo): { inputPerMtok: number; outputPerMtok: number } {
    return this.#models.get(model.id) ?? model;
  }
}

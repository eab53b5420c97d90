/**
 * A worker's copy of the live state: the pricing service's KV entries (price, health,
 * latency) layered over the worker's own local health. While the pricing service is silent
 * the last-known prices stay in force but its health verdicts are not trusted (a `down`
 * that nobody will ever lift must not strand a model); local health carries on alone.
 */
import type { ModelState } from "../contract/live.ts";
import { modelOrdinal, type ModelInfo } from "./catalog.ts";
import type { LocalHealth, ModelReading, RoutingView } from "./health.ts";

/** Without a heartbeat for this long, the pricing service counts as gone. */
export const STALE_AFTER_MS = 5_000;
/** A model the pricing service holds down past its cooldown is waiting for a probe: look again soon. */
const PROBE_WAIT_MS = 1_000;

interface Live {
  inputPerMtok: number;
  outputPerMtok: number;
  down: boolean;
  cooldownUntil: number;
  /** NaN when the pricing service has no latency yet. */
  p95: number;
}

export class LiveState implements RoutingView {
  readonly local: LocalHealth;
  readonly #clock: () => number;
  /** By model ordinal, as LocalHealth keeps its state. */
  readonly #models: (Live | undefined)[] = [];
  #heartbeatAt = 0;

  constructor(local: LocalHealth, clock: () => number = Date.now) {
    this.local = local;
    this.#clock = clock;
  }

  apply(state: ModelState): void {
    this.#models[modelOrdinal(state.id)] = {
      inputPerMtok: state.input_per_mtok,
      outputPerMtok: state.output_per_mtok,
      down: state.health === "down",
      cooldownUntil: state.cooldown_until ? Date.parse(state.cooldown_until) : 0,
      p95: state.latency_p95_ms ?? NaN,
    };
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

  read(model: ModelInfo, out: ModelReading): void {
    this.local.read(model, out);
    const live = this.#models[model.ordinal];
    if (live === undefined) return;
    out.inputPerMtok = live.inputPerMtok;
    out.outputPerMtok = live.outputPerMtok;
    if (!Number.isNaN(live.p95)) out.latencyMs = live.p95;
    if (live.down) {
      const now = this.#clock();
      if (this.fresh(now)) out.cooldownUntil = Math.max(out.cooldownUntil, live.cooldownUntil > now ? live.cooldownUntil : now + PROBE_WAIT_MS);
    }
  }

  cooldownUntil(model: ModelInfo): number {
    const r = reading();
    this.read(model, r);
    return r.cooldownUntil;
  }

  price(model: ModelInfo): { inputPerMtok: number; outputPerMtok: number } {
    const r = reading();
    this.read(model, r);
    return { inputPerMtok: r.inputPerMtok, outputPerMtok: r.outputPerMtok };
  }
}

function reading(): ModelReading {
  return { cooldownUntil: 0, latencyMs: NaN, inputPerMtok: 0, outputPerMtok: 0 };
}

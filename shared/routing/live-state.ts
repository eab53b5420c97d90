/**
 * A worker's copy of the live state: the pricing service's KV entries (price, health,
 * latency, per-task demotions) layered over the worker's own local health. While the pricing
 * service is silent the last-known prices stay in force but its health and quality verdicts
 * are not trusted (a `down` or a demotion that nobody will ever lift must not strand a
 * model); local health carries on alone.
 */
import type { ModelState } from "../contract/live.ts";
import { modelOrdinal, type ModelInfo } from "./catalog.ts";
import type { LocalHealth, ModelReading, RoutingView } from "./health.ts";
import type { LatencyStats } from "./timeouts.ts";

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
  /** Attempts in the pricing service's window behind `p95`. */
  samples: number;
}

export class LiveState implements RoutingView {
  readonly local: LocalHealth;
  readonly #clock: () => number;
  /** By model ordinal, as LocalHealth keeps its state. */
  readonly #models: (Live | undefined)[] = [];
  /** By model ordinal: the tasks the model is demoted for, as `a,b,` (empty when none), to spot a change cheaply. */
  readonly #demotedKeys: (string | undefined)[] = [];
  /** Task → a lookup by ordinal (1 = demoted), rebuilt when any model's demotions change; empty when none. */
  #demoted = new Map<string, Uint8Array>();
  #heartbeatAt = 0;

  constructor(local: LocalHealth, clock: () => number = Date.now) {
    this.local = local;
    this.#clock = clock;
  }

  apply(state: ModelState): void {
    const ordinal = modelOrdinal(state.id);
    this.#models[ordinal] = {
      inputPerMtok: state.input_per_mtok,
      outputPerMtok: state.output_per_mtok,
      down: state.health === "down",
      cooldownUntil: state.cooldown_until ? Date.parse(state.cooldown_until) : 0,
      p95: state.latency_p95_ms ?? NaN,
      samples: state.samples,
    };
    let key = "";
    if (state.quality !== undefined) for (const task in state.quality) if (state.quality[task]!.status === "demoted") key += `${task},`;
    if (key !== (this.#demotedKeys[ordinal] ?? "")) {
      this.#demotedKeys[ordinal] = key;
      this.#rebuildDemotions();
    }
  }

  /** Undefined while nothing is demoted for the task, or while the pricing service is silent (nobody would lift it). */
  demotedFor(task: string): Uint8Array | undefined {
    if (this.#demoted.size === 0) return undefined;
    const demoted = this.#demoted.get(task);
    return demoted !== undefined && this.fresh() ? demoted : undefined;
  }

  /** Demotions change rarely (a KV update that flips one), so the per-task lookups are rebuilt whole. */
  #rebuildDemotions(): void {
    const next = new Map<string, Uint8Array>();
    const size = this.#demotedKeys.length;
    for (let o = 0; o < size; o++) {
      const key = this.#demotedKeys[o];
      if (!key) continue;
      for (const task of key.split(",")) {
        if (task === "") continue;
        let lookup = next.get(task);
        if (lookup === undefined) next.set(task, (lookup = new Uint8Array(size)));
        lookup[o] = 1;
      }
    }
    this.#demoted = next;
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

  /** The pricing service's p95 over its window (adaptive timeouts, hedging); undefined before it sent any. */
  latency(model: ModelInfo): LatencyStats | undefined {
    const live = this.#models[model.ordinal];
    return live === undefined ? undefined : { p95Ms: live.p95, samples: live.samples };
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

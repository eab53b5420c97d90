/**
 * The pricing service's metrics, read at scrape time from what it last wrote to the KV bucket
 * (the leader's view: a follower exports only `switchyard_pricing_leader 0`, so a dashboard
 * summing over instances counts every model once).
 */
import { Gauge } from "./metrics.ts";
import type { Ops } from "./server.ts";

/** The part of the pricing service these read (structural, so shared/ does not import a service). */
export interface PricingView {
  isLeader(): boolean;
  written(): ReadonlyMap<
    string,
    {
      readonly provider: string;
      readonly model: string;
      readonly price: { readonly inputPerMtok: number; readonly outputPerMtok: number };
      readonly health: {
        readonly health: string;
        readonly errorRate: number;
        readonly rateLimitRate: number;
        readonly latencyP95Ms: number | null;
      };
      readonly quality: ReadonlyMap<string, { readonly passRate: number; readonly samples: number; readonly status: string }>;
    }
  >;
}

const HEALTH_STATES = ["healthy", "degraded", "down"] as const;

/** Registers the pricing gauges for `view` (one pricing service per process). */
export function registerPricingMetrics(ops: Pick<Ops, "metrics">, view: PricingView): void {
  const m = ops.metrics;
  m.add(new Gauge("switchyard_pricing_leader", "1 while this pricing service holds the leader lease (and writes model state), else 0.", [], (set) => set(view.isLeader() ? 1 : 0)));
  m.add(
    new Gauge("switchyard_model_health", "1 for the model's current health state (healthy, degraded, down), 0 for the others.", ["provider", "model", "state"], (set) => {
      for (const s of view.written().values()) for (const state of HEALTH_STATES) set(s.health.health === state ? 1 : 0, s.provider, s.model, state);
    }),
  );
  m.add(
    new Gauge("switchyard_model_error_rate", "Share of the model's calls in the health window that failed (5xx, timeouts, connection errors, malformed replies).", ["provider", "model"], (set) => {
      for (const s of view.written().values()) set(s.health.errorRate, s.provider, s.model);
    }),
  );
  m.add(
    new Gauge("switchyard_model_rate_limited_rate", "Share of the model's calls in the health window answered 429.", ["provider", "model"], (set) => {
      for (const s of view.written().values()) set(s.health.rateLimitRate, s.provider, s.model);
    }),
  );
  m.add(
    new Gauge("switchyard_model_latency_p95_seconds", "The model's p95 call latency in the health window (absent without samples).", ["provider", "model"], (set) => {
      for (const s of view.written().values()) if (s.health.latencyP95Ms !== null) set(s.health.latencyP95Ms / 1000, s.provider, s.model);
    }),
  );
  m.add(
    new Gauge("switchyard_model_price_usd_per_mtok", "The live price, USD per million tokens, by direction (input, output).", ["provider", "model", "direction"], (set) => {
      for (const s of view.written().values()) {
        set(s.price.inputPerMtok, s.provider, s.model, "input");
        set(s.price.outputPerMtok, s.provider, s.model, "output");
      }
    }),
  );
  m.add(
    new Gauge("switchyard_task_pass_rate", "The model's pass rate of the task's output check over the quality window (for tasks with an output contract).", ["task", "provider", "model"], (set) => {
      for (const s of view.written().values()) for (const [task, q] of s.quality) if (q.samples > 0) set(q.passRate, task, s.provider, s.model);
    }),
  );
  m.add(
    new Gauge("switchyard_task_model_demoted", "1 while the model is demoted for the task (its pass rate fell under the task's floor), else 0.", ["task", "provider", "model"], (set) => {
      for (const s of view.written().values()) for (const [task, q] of s.quality) set(q.status === "demoted" ? 1 : 0, task, s.provider, s.model);
    }),
  );
}

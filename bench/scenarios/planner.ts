/**
 * Scenario 5: plan() in this process on synthetic catalogs of 10, 200 and 2,000 candidates
 * (ten models per provider, one tier), with a live state like a busy worker's: the pricing
 * service's entry for every model (its price and p95 latency; one model in ten down), a
 * latency observed locally for every model, and one in ten locally cooling down too.
 */
import { ConfigSchema } from "../../shared/config/schema.ts";
import type { Job } from "../../shared/contract/job.ts";
import { buildCatalog } from "../../shared/routing/catalog.ts";
import { LocalHealth } from "../../shared/routing/health.ts";
import { LiveState } from "../../shared/routing/live-state.ts";
import { plan, type PlanInput } from "../../shared/routing/planner.ts";
import { jobRequest, TASK } from "../lib/jobs.ts";
import type { Profile } from "../lib/profile.ts";
import { ascending, percentile, spread, type Spread } from "../lib/stats.ts";

const CANDIDATES = [10, 200, 2_000] as const;
/** `ordered` skips the sort: the cost of filtering alone. */
const STRATEGIES = ["cheapest", "ordered", "weighted"] as const;
type Strategy = (typeof STRATEGIES)[number];

export interface PlannerFigures {
  readonly candidates: number;
  readonly strategy: Strategy;
  readonly decisionsPerSec: Spread;
  readonly p50Us: Spread;
  readonly p99Us: Spread;
  /** Mean time per decision divided by candidates: flat when the cost is linear. */
  readonly nsPerCandidate: Spread;
}

function plannerInput(n: number, strategy: Strategy): PlanInput {
  const providers: Record<string, unknown> = {};
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const p = `p${Math.floor(i / 10)}`;
    const models = ((providers[p] ??= { dialect: "openai", base_url: "http://127.0.0.1:9/v1", models: {} }) as { models: Record<string, unknown> }).models;
    // Prices and windows vary so the sort has real work; every window holds the bench job.
    models[`m${i}`] = { input_per_mtok: 0.05 + ((i * 7919) % 1000) / 100, output_per_mtok: 0.2 + ((i * 104729) % 1000) / 50, context_window: 16_384 + (i % 8) * 16_384 };
    ids.push(`${p}/m${i}`);
  }
  const tier = strategy === "weighted" ? { strategy, models: ids, weights: ids.map((_, i) => 1 + (i % 5)) } : { strategy, models: ids };
  const catalog = buildCatalog(ConfigSchema.parse({ providers, tasks: { [TASK]: { tiers: [tier] } } }));
  const now = Date.now();
  const at = new Date(now).toISOString();
  const local = new LocalHealth();
  // A fixed clock keeps the pricing service's heartbeat fresh however long the measurement runs.
  const view = new LiveState(local, () => now);
  view.heartbeat(now);
  for (const [i, id] of ids.entries()) {
    const model = catalog.models.get(id)!;
    local.succeeded(id, 50 + (i % 200));
    if (i % 10 === 9) for (let k = 0; k < 5; k++) local.failed(id, model.provider, "unavailable", now);
    const down = i % 10 === 4;
    view.apply({
      id,
      provider: model.provider,
      model: model.name,
      input_per_mtok: model.inputPerMtok * 0.9,
      output_per_mtok: model.outputPerMtok * 0.9,
      context_window: model.contextWindow,
      price_source: "config",
      price_updated_at: at,
      health: down ? "down" : "healthy",
      error_rate: down ? 1 : 0,
      rate_limit_rate: 0,
      latency_p50_ms: 40 + (i % 100),
      latency_p95_ms: 80 + (i % 300),
      samples: 100,
      cooldown_until: down ? new Date(now + 10_000).toISOString() : null,
      health_updated_at: at,
      updated_at: at,
    });
  }
  const job: Job = { id: "bench", task: TASK, request: jobRequest(1) };
  return { policy: catalog.tasks.get(TASK)!, catalog, view, job, now, random: Math.random };
}

function measure(inp: PlanInput, durationMs: number): { perSec: number; p50Us: number; p99Us: number } {
  let sink = 0;
  // Throughput untimed per call; the clock is read once per 64 decisions.
  let count = 0;
  const t0 = performance.now();
  let elapsed = 0;
  while (elapsed < durationMs) {
    for (let i = 0; i < 64; i++) {
      const p = plan(inp);
      sink += p.kind === "attempts" ? p.attempts.length : 0;
    }
    count += 64;
    elapsed = performance.now() - t0;
  }
  const perSec = (count / elapsed) * 1000;
  // Per-decision times, for the percentiles, from a second pass as long.
  const times: number[] = [];
  const t1 = performance.now();
  while (performance.now() - t1 < durationMs) {
    const a = performance.now();
    const p = plan(inp);
    times.push(performance.now() - a);
    sink += p.kind === "attempts" ? p.attempts.length : 0;
  }
  if (sink === 0) throw new Error("the planner produced no attempts");
  const sorted = ascending(times);
  return { perSec, p50Us: percentile(sorted, 50) * 1000, p99Us: percentile(sorted, 99) * 1000 };
}

export function plannerScale(profile: Profile): PlannerFigures[] {
  const out: PlannerFigures[] = [];
  for (const strategy of STRATEGIES) {
    for (const n of CANDIDATES) {
      const inp = plannerInput(n, strategy);
      measure(inp, profile.planner.durationMs / 2);
      const runs = Array.from({ length: profile.reps }, () => measure(inp, profile.planner.durationMs));
      out.push({
        candidates: n,
        strategy,
        decisionsPerSec: spread(runs.map((r) => r.perSec)),
        p50Us: spread(runs.map((r) => r.p50Us)),
        p99Us: spread(runs.map((r) => r.p99Us)),
        nsPerCandidate: spread(runs.map((r) => 1e9 / r.perSec / n)),
      });
      process.stderr.write(`  planner ${strategy} ${n}: ${Math.round(out.at(-1)!.decisionsPerSec.median)} decisions/s\n`);
    }
  }
  return out;
}

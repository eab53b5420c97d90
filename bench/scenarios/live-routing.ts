/**
 * Scenario 7 (the live-routing issue's figures): how fast a price change or an outage
 * reaches routing across two worker processes, and what the live routing saves over static
 * choices. Runs its own nats-server, the pricing service and two `switchyard router`
 * processes; the sim-provider runs in this process so its faults switch at an exact moment.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { jetstream, jetstreamManager, type JetStreamClient } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { parseConfig } from "../../shared/config/load.ts";
import type { Result } from "../../shared/contract/job.ts";
import { jobSubject, STREAMS } from "../../shared/contract/subjects.ts";
import { openBuckets } from "../../shared/nats/buckets.ts";
import { connectNats } from "../../shared/nats/connect.ts";
import { provision } from "../../shared/nats/provision.ts";
import { scan } from "../../shared/nats/read.ts";
import { startNatsServer } from "../../shared/nats/server-process.ts";
import { parseScenario } from "../../services/sim-provider/scenario.ts";
import { createSimProvider, type SimProvider } from "../../services/sim-provider/server.ts";
import { jobPayload, TASK } from "../lib/jobs.ts";
import { spawnCli, type Child } from "../lib/procs.ts";
import { ascending, percentile } from "../lib/stats.ts";

const PRICES = {
  budget: { input: 0.05, output: 0.2 },
  swift: { input: 0.15, output: 0.6 },
  swiftDropped: { input: 0.02, output: 0.08 },
  premium: { input: 2.5, output: 10 },
} as const;

function configYaml(simUrl: string): string {
  const provider = (name: string, model: string, upstream: string, p: { input: number; output: number }) => `
  ${name}:
    dialect: openai
    base_url: ${simUrl}/${name}/v1
    timeout_ms: 5000
    models:
      ${model}: { upstream: ${upstream}, input_per_mtok: ${p.input}, output_per_mtok: ${p.output}, context_window: 131072 }`;
  return `
router:
  max_in_flight: 1024
  ack_wait: 30s
  redelivery_backoff: [500ms, 1s]
providers:${provider("budget", "lite", "budget-lite-1", PRICES.budget)}${provider("swift", "mini", "swift-mini", PRICES.swift)}${provider("premium", "large", "premium-large", PRICES.premium)}
tasks:
  ${TASK}:
    expected_completion_tokens: 32
    tiers:
      - strategy: cheapest
        models: [budget/lite, swift/mini]
      - models: [premium/large]
`;
}

function scenarioYaml(budgetErrorRate: number): string {
  return `
seed: 11
providers:
  budget: { models: { budget-lite-1: { latency_ms: { min: 2, max: 10 }, errors: { rate_503: ${budgetErrorRate} } } } }
  swift: { models: { swift-mini: { latency_ms: { min: 2, max: 10 } } } }
  premium: { models: { premium-large: { latency_ms: { min: 2, max: 10 } } } }
`;
}

interface LiveStack {
  readonly js: JetStreamClient;
  readonly nc: NatsConnection;
  readonly sim: SimProvider;
  setPrice(id: string, p: { input: number; output: number } | null): Promise<void>;
  /** Publishes jobs at `rate` until `until()` says stop; `onTick(i)` runs before job i. Returns the count. */
  publish(runId: string, rate: number, total: number, onTick: (i: number) => Promise<void> | void): Promise<number>;
  results(runId: string, count: number): Promise<Result[]>;
  close(): Promise<void>;
}

async function startLiveStack(budgetErrorRate: number): Promise<LiveStack> {
  const dir = await mkdtemp(join(tmpdir(), "switchyard-bench-live-"));
  const nats = await startNatsServer();
  const sim = createSimProvider(parseScenario(scenarioYaml(budgetErrorRate), "live-scenario.yaml"));
  const simUrl = await sim.listen(0);
  const yaml = configYaml(simUrl);
  const config = parseConfig(yaml, "live-config.yaml", {});
  const file = join(dir, "switchyard.yaml");
  await writeFile(file, yaml);
  const nc = await connectNats(nats.url, "bench-live");
  await provision(await jetstreamManager(nc), config);
  const buckets = await openBuckets(nc, config);
  const env = { NATS_URL: nats.url, SWITCHYARD_CONFIG: file, LOG_LEVEL: "info" };
  const procs: Child[] = [spawnCli("pricing", ["pricing"], env), spawnCli("router-1", ["router"], env), spawnCli("router-2", ["router"], env)];
  // Watch for each line from the start: a line printed before its watcher is attached is missed.
  await Promise.all(procs.map((p, i) => p.waitFor(i === 0 ? /pricing service started/ : /router worker started/)));
  // Let the workers hear the pricing service's first heartbeat.
  await sleep(1_500);
  const js = jetstream(nc);
  return {
    js,
    nc,
    sim,
    async setPrice(id, p) {
      if (p === null) await buckets.prices.delete(id);
      else await buckets.prices.put(id, JSON.stringify({ input_per_mtok: p.input, output_per_mtok: p.output, set_at: new Date().toISOString() }));
    },
    async publish(runId, rate, total, onTick) {
      const pending: Promise<unknown>[] = [];
      const t0 = performance.now();
      for (let i = 0; i < total; i++) {
        await onTick(i);
        const id = `${runId}-${i}`;
        pending.push(js.publish(jobSubject(TASK), jobPayload(id, i), { msgID: id }));
        const ahead = ((i + 1) * 1000) / rate - (performance.now() - t0);
        if (ahead > 1) await sleep(ahead);
      }
      await Promise.all(pending);
      return total;
    },
    async results(runId, count) {
      const out: Result[] = [];
      const deadline = Date.now() + 60_000;
      while (out.length < count && Date.now() < deadline) {
        out.length = 0;
        const last = (await jetstreamManager(nc).then((m) => m.streams.info(STREAMS.results))).state.last_seq;
        for await (const m of scan(js, STREAMS.results, { lastSeq: last })) {
          const r = JSON.parse(Buffer.from(m.data).toString()) as Result;
          if (r.id.startsWith(`${runId}-`)) out.push(r);
        }
        if (out.length < count) await sleep(500);
      }
      return out;
    },
    async close() {
      await Promise.all(procs.map((p) => p.stop()));
      await nc.close();
      await sim.close();
      await nats.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** When the router started on a job: the result's completion minus its time in the router. */
const deliveredAt = (r: Result) => Date.parse(r.completed_at) - r.latency_ms;

export interface ConvergenceFigures {
  /** ms from the change until the last job routed the old way, per trial: every worker has switched. */
  readonly priceTrialsMs: number[];
  readonly outageTrialsMs: number[];
  /** ms from the end of an outage until the model serves again (cooldown, probe, KV update). */
  readonly recoveryTrialsMs: number[];
  readonly p50PriceMs: number;
  readonly p95PriceMs: number;
  readonly p50OutageMs: number;
  readonly p95OutageMs: number;
  readonly p50RecoveryMs: number;
  readonly p95RecoveryMs: number;
}

/**
 * Price changes flip the cheapest model back and forth; outages take it down and bring it
 * back. Each trial's figure is the time from the change until the last job any worker still
 * routed the old way (0 when the first job after the change already routed the new way).
 */
export async function convergence(priceTrials: number, outageTrials: number): Promise<ConvergenceFigures> {
  const stack = await startLiveStack(0);
  try {
    const rate = 300;
    const priceGapMs = 1_500;
    const outageMs = 2_000;
    const recoverMs = 5_000;
    const events: { kind: "price" | "outage" | "recover"; at: number; to: string }[] = [];
    const gaps = [...Array.from({ length: priceTrials }, () => priceGapMs), ...Array.from({ length: outageTrials }, () => [outageMs, recoverMs]).flat()];
    const totalMs = gaps.reduce((a, b) => a + b, 0) + 1_000;
    const total = Math.round((rate * totalMs) / 1000);
    let next = 1_000;
    let step = 0;
    const t0 = Date.now();
    const runId = `conv-${t0}`;
    await stack.publish(runId, rate, total, async () => {
      if (Date.now() - t0 < next || step >= gaps.length) return;
      if (step < priceTrials) {
        const toSwift = step % 2 === 0;
        events.push({ kind: "price", at: Date.now(), to: toSwift ? "swift" : "budget" });
        await stack.setPrice("swift/mini", toSwift ? PRICES.swiftDropped : null);
      } else if ((step - priceTrials) % 2 === 0) {
        events.push({ kind: "outage", at: Date.now(), to: "swift" });
        stack.sim.control("budget", "budget-lite-1", { outage: "503" });
      } else {
        events.push({ kind: "recover", at: Date.now(), to: "budget" });
        stack.sim.control("budget", "budget-lite-1", { outage: null });
      }
      next += gaps[step]!;
      step++;
    });
    const results = (await stack.results(runId, total)).sort((a, b) => deliveredAt(a) - deliveredAt(b));
    const priceTrialsMs: number[] = [];
    const outageTrialsMs: number[] = [];
    const recoveryTrialsMs: number[] = [];
    events.forEach((e, i) => {
      const end = events[i + 1]?.at ?? Infinity;
      const window = results.filter((r) => deliveredAt(r) >= e.at && deliveredAt(r) < end);
      if (e.kind === "recover") {
        const first = window.find((r) => r.provider === "budget");
        recoveryTrialsMs.push(first ? deliveredAt(first) - e.at : end - e.at);
        return;
      }
      // The first attempt shows where the planner sent the job, whatever failover followed.
      const stale = window.filter((r) => r.attempts[0]!.provider !== e.to);
      const ms = stale.length ? deliveredAt(stale[stale.length - 1]!) - e.at : 0;
      (e.kind === "price" ? priceTrialsMs : outageTrialsMs).push(ms);
    });
    const p = (xs: number[], q: number) => percentile(ascending(xs), q);
    return {
      priceTrialsMs,
      outageTrialsMs,
      recoveryTrialsMs,
      p50PriceMs: p(priceTrialsMs, 50),
      p95PriceMs: p(priceTrialsMs, 95),
      p50OutageMs: p(outageTrialsMs, 50),
      p95OutageMs: p(outageTrialsMs, 95),
      p50RecoveryMs: p(recoveryTrialsMs, 50),
      p95RecoveryMs: p(recoveryTrialsMs, 95),
    };
  } finally {
    await stack.close();
  }
}

export interface CostFigures {
  readonly jobs: number;
  readonly switchyard: { readonly costUsd: number; readonly successRate: number };
  readonly mostExpensive: { readonly costUsd: number; readonly successRate: number };
  readonly staticCheapest: { readonly costUsd: number; readonly successRate: number };
  readonly oracle: { readonly costUsd: number; readonly successRate: number };
  /** Switchyard's cost over the oracle's, minus 1. */
  readonly overOracle: number;
}

/**
 * A workload with a price drop (swift becomes cheapest at 30 %) and an outage of budget
 * (55 %–75 %), budget failing 3 % of calls throughout. Switchyard's bill (the results'
 * cost_usd) is compared with three policies priced on the same jobs' token usage:
 * (a) everything on the most expensive model (always up); (b) everything on the model that
 * was cheapest at the start (budget), no failover: its failed calls and the outage fail the
 * job; (c) the oracle, which sends each job to the cheapest model up at that moment.
 */
export async function costVsBaselines(jobs: number, rate: number): Promise<CostFigures> {
  const budgetErrorRate = 0.03;
  const stack = await startLiveStack(budgetErrorRate);
  try {
    const marks = { drop: Math.round(jobs * 0.3), outage: Math.round(jobs * 0.55), recover: Math.round(jobs * 0.75) };
    const at: Partial<Record<keyof typeof marks, number>> = {};
    const runId = `cost-${Date.now()}`;
    await stack.publish(runId, rate, jobs, async (i) => {
      if (i === marks.drop) {
        at.drop = Date.now();
        await stack.setPrice("swift/mini", PRICES.swiftDropped);
      } else if (i === marks.outage) {
        at.outage = Date.now();
        stack.sim.control("budget", "budget-lite-1", { outage: "503" });
      } else if (i === marks.recover) {
        at.recover = Date.now();
        stack.sim.control("budget", "budget-lite-1", { outage: null });
      }
    });
    const results = await stack.results(runId, jobs);
    const price = (p: { input: number; output: number }, r: Result) => (r.usage.prompt_tokens * p.input + r.usage.completion_tokens * p.output) / 1e6;
    const index = (r: Result) => Number(r.id.slice(r.id.lastIndexOf("-") + 1));
    let switchyard = 0;
    let premium = 0;
    let staticCost = 0;
    let staticOk = 0;
    let oracle = 0;
    for (const r of results) {
      const i = index(r);
      switchyard += r.cost_usd;
      premium += price(PRICES.premium, r);
      const dropped = i >= marks.drop;
      const budgetUp = i < marks.outage || i >= marks.recover;
      oracle += dropped ? price(PRICES.swiftDropped, r) : price(PRICES.budget, r);
      // Budget's own failures are drawn at the rate the sim fails it; the outage fails all.
      if (budgetUp && (i * 2654435761) % 1000 >= budgetErrorRate * 1000) {
        staticOk++;
        staticCost += price(PRICES.budget, r);
      }
    }
    return {
      jobs,
      switchyard: { costUsd: switchyard, successRate: results.length / jobs },
      mostExpensive: { costUsd: premium, successRate: results.length / jobs },
      staticCheapest: { costUsd: staticCost, successRate: staticOk / jobs },
      oracle: { costUsd: oracle, successRate: results.length / jobs },
      overOracle: switchyard / oracle - 1,
    };
  } finally {
    await stack.close();
  }
}

/**
 * The report of one bench run: a summary table (every figure with its target and verdict)
 * for stdout, and docs/BENCHMARKS.md with the machine, each scenario's details and method.
 */
import { readFileSync } from "node:fs";
import { DEFAULT_LOCAL_HEALTH } from "../shared/routing/health.ts";
import { jobSizeRange } from "./lib/jobs.ts";
import type { Profile } from "./lib/profile.ts";
import { spread, type Spread } from "./lib/stats.ts";
import type { FailoverFigures } from "./scenarios/failover.ts";
import type { BudgetsFigures } from "./scenarios/budgets.ts";
import type { HedgingRun } from "./scenarios/hedging.ts";
import type { ConvergenceFigures, CostFigures } from "./scenarios/live-routing.ts";
import type { LatencyFigures } from "./scenarios/latency.ts";
import type { MetricsFigures } from "./scenarios/metrics.ts";
import type { PlannerFigures } from "./scenarios/planner.ts";
import type { ProviderFigures } from "./scenarios/provider-limit.ts";
import type { SlowFigures } from "./scenarios/slow.ts";
import type { DrainFigures } from "./scenarios/throughput.ts";

export interface Stage {
  readonly name: string;
  readonly seconds: number;
  /** Seconds spent beforehand waiting for other processes to go quiet. */
  readonly waitedSeconds: number;
  /** CPU cores other processes on the machine used meanwhile, on average. */
  readonly otherCores: number;
  readonly stealCores: number;
}

export interface BenchRun {
  readonly profile: Profile;
  readonly date: string;
  readonly seconds: number;
  readonly machine: { cores: number; cpu: string; memoryGiB: number; kernel: string; node: string; natsServer: string };
  readonly code: { commit: string; uncommitted: string[] };
  readonly stages: readonly Stage[];
  /** Mean payload of a router result, which the limit (a) pipeline publishes too. */
  readonly resultBytes: number;
  readonly jetstream: DrainFigures;
  readonly provider: ProviderFigures;
  readonly e2e1: DrainFigures;
  readonly e2e2: DrainFigures;
  readonly latency: LatencyFigures;
  readonly slow: readonly SlowFigures[];
  readonly failover: readonly FailoverFigures[];
  readonly planner: readonly PlannerFigures[];
  readonly live: { readonly convergence: ConvergenceFigures; readonly cost: CostFigures };
  /** The gateway driver's table, as it printed it. */
  readonly gateway: string;
  /** Set when scenario 8 was run on its own (`--only gateway`). */
  readonly gatewayRun?: { readonly date: string; readonly code: { readonly commit: string; readonly uncommitted: readonly string[] } };
  /** Scenario 6 hedged (`--only hedging`); absent from reports before it was wired in. */
  readonly hedging?: HedgingFigures;
  readonly metrics: MetricsFigures;
  /** Absent from reports written before scenario 10 existed. */
  readonly budgets?: BudgetsFigures;
}

interface Row {
  readonly scenario: string;
  readonly figure: string;
  readonly value: Spread;
  readonly unit: string;
  readonly digits: number;
  readonly target?: string;
  readonly met?: boolean;
}

/** a ÷ b over medians; the range pairs the extremes, so it bounds every pairing of repetitions. */
function ratio(a: Spread, b: Spread, scale = 1): Spread {
  return { median: (scale * a.median) / b.median, min: (scale * a.min) / b.max, max: (scale * a.max) / b.min, runs: [] };
}

function minus(a: Spread, b: Spread): Spread {
  return { median: a.median - b.median, min: a.min - b.max, max: a.max - b.min, runs: [] };
}

function scaled(a: Spread, k: number): Spread {
  return { median: a.median * k, min: a.min * k, max: a.max * k, runs: a.runs.map((r) => r * k) };
}

/** Other processes busier than this make a scenario noisy: the bench waits for them to calm down, and the report names them. */
export const NOISY_CORES = 0.15;

const target = (text: string, met: boolean) => ({ target: text, met });

const fmt = (n: number, digits: number) =>
  Number.isFinite(n) ? n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits }) : "–";

function rows(run: BenchRun): Row[] {
  const { jetstream: a, provider: b, e2e1, e2e2, latency } = run;
  const out: Row[] = [
    { scenario: "1a", figure: "JetStream pipeline alone (fetch, publish result with msgID, await PubAck, ack)", value: a.jobsPerSec, unit: "jobs/s", digits: 0 },
    { scenario: "1b", figure: `provider path alone (adapter + undici Pool → sim-provider at 0 ms, ${b.concurrency} concurrent)`, value: b.callsPerSec, unit: "calls/s", digits: 0 },
  ];
  for (const [workers, e] of [
    [1, e2e1],
    [2, e2e2],
  ] as const) {
    const w = workers === 1 ? "1 worker" : "2 workers";
    const one = workers === 1;
    const toA = ratio(e.jobsPerSec, a.jobsPerSec, 100);
    out.push(
      { scenario: "2", figure: `end to end, ${w}, provider at 0 ms`, value: e.jobsPerSec, unit: "jobs/s", digits: 0, ...(one ? target("≥ 5,000", e.jobsPerSec.median >= 5_000) : {}) },
      { scenario: "2", figure: `${w}: share of limit (a)`, value: toA, unit: "%", digits: 0, ...(one ? target("≥ 50 %", toA.median >= 50) : {}) },
      { scenario: "2", figure: `${w}: share of limit (b)`, value: ratio(e.jobsPerSec, b.callsPerSec, 100), unit: "%", digits: 0 },
      { scenario: "2", figure: `${w}: router CPU per 1,000 jobs`, value: scaled(e.consumerCpuMsPer1k, 1 / 1000), unit: "CPU s", digits: 3, ...target("≤ 0.2", e.consumerCpuMsPer1k.median <= 200) },
    );
  }
  out.push(
    { scenario: "3", figure: `router overhead p50 (delivery → result stored − provider call), ${latency.rate} jobs/s`, value: latency.overheadP50, unit: "ms", digits: 2, ...target("< 1", latency.overheadP50.median < 1) },
    { scenario: "3", figure: "router overhead p99", value: latency.overheadP99, unit: "ms", digits: 2, ...target("< 5", latency.overheadP99.median < 5) },
  );
  for (const s of run.slow) {
    const l = `${fmt(s.latencyMs, 0)} ms provider`;
    // The targets are set for the 1,000 ms provider.
    const first = s === run.slow[0];
    out.push(
      { scenario: "4", figure: `${l}: jobs one worker holds in flight`, value: s.inFlight, unit: "jobs", digits: 0, ...(first ? target("≥ 10,000", s.inFlight.median >= 10_000) : {}) },
      { scenario: "4", figure: `${l}: throughput`, value: s.jobsPerSec, unit: "jobs/s", digits: 0 },
      { scenario: "4", figure: `${l}: throughput ÷ (in flight ÷ latency)`, value: scaled(s.littleRatio, 100), unit: "%", digits: 0, ...(first ? target("≥ 90 %", s.littleRatio.median >= 0.9) : {}) },
      { scenario: "4", figure: `${l}: RSS per in-flight job`, value: s.rssPerInFlightKiB, unit: "KiB", digits: 1, ...(first ? target("< 50", s.rssPerInFlightKiB.median < 50) : {}) },
    );
  }
  const cheapest = run.planner.filter((p) => p.strategy === "cheapest");
  for (const p of cheapest) {
    const at200 = p.candidates === 200;
    out.push(
      { scenario: "5", figure: `planner (cheapest), ${fmt(p.candidates, 0)} candidates: decisions/s`, value: p.decisionsPerSec, unit: "/s", digits: 0, ...(at200 ? target("≥ 100,000", p.decisionsPerSec.median >= 100_000) : {}) },
      { scenario: "5", figure: `planner (cheapest), ${fmt(p.candidates, 0)} candidates: p99 per decision`, value: p.p99Us, unit: "µs", digits: 1 },
    );
  }
  const per = (n: number) => cheapest.find((p) => p.candidates === n)!.nsPerCandidate;
  const growth = ratio(per(2_000), per(200));
  out.push({ scenario: "5", figure: "planner: time per candidate at 2,000 ÷ at 200 (1 = linear)", value: growth, unit: "×", digits: 2, ...target("≤ 1.5", growth.median <= 1.5) });
  const healthy = run.failover.find((f) => f.mode === "healthy")!;
  for (const f of run.failover) {
    if (f === healthy) continue;
    const what = f.mode === "503" ? "primary answers 503" : `primary hangs until the ${fmt(f.timeoutMs, 0)} ms timeout`;
    out.push(
      { scenario: "6", figure: `${what}: extra latency per job, mean`, value: minus(f.mean, healthy.mean), unit: "ms", digits: 2 },
      { scenario: "6", figure: `${what}: extra latency per job, p99`, value: minus(f.p99, healthy.p99), unit: "ms", digits: 2 },
      { scenario: "6", figure: `${what}: jobs that tried the primary first`, value: scaled(f.failedOverShare, 100), unit: "%", digits: 1 },
    );
  }
  // One run of several trials each: the spread is over the trials, not over repetitions.
  const one = (x: number): Spread => ({ median: x, min: x, max: x, runs: [x] });
  const trials = (xs: readonly number[], q: number): Spread => ({ median: q, min: Math.min(...xs), max: Math.max(...xs), runs: [...xs] });
  const { convergence: c, cost } = run.live;
  out.push(
    { scenario: "7", figure: "price change → every worker routes by it, p50 (2 workers)", value: trials(c.priceTrialsMs, c.p50PriceMs), unit: "ms", digits: 0 },
    { scenario: "7", figure: "price change → every worker routes by it, p95", value: trials(c.priceTrialsMs, c.p95PriceMs), unit: "ms", digits: 0, ...target("< 500", c.p95PriceMs < 500) },
    { scenario: "7", figure: "outage start → no worker routes to it first, p95", value: trials(c.outageTrialsMs, c.p95OutageMs), unit: "ms", digits: 0, ...target("< 500", c.p95OutageMs < 500) },
    { scenario: "7", figure: "outage end → traffic back (cooldown, probe), p95", value: trials(c.recoveryTrialsMs, c.p95RecoveryMs), unit: "ms", digits: 0 },
    { scenario: "7", figure: `cost, ${fmt(cost.jobs, 0)} jobs with a price drop and an outage: Switchyard over the oracle`, value: one(cost.overOracle * 100), unit: "%", digits: 1, ...target("≤ 5 %", cost.overOracle <= 0.05) },
  );
  const m = run.metrics;
  out.push(
    { scenario: "9", figure: "metrics on vs off: router CPU per job, (on − off) ÷ off of concurrent pairs", value: m.overheadPct, unit: "%", digits: 1, ...target("< 3 %", m.overheadPct.median < 3) },
    { scenario: "9", figure: "the same, both on (A/A): the figure's resolution", value: m.controlPct, unit: "%", digits: 1 },
    { scenario: "9", figure: "metrics recording per job, in process", value: one(m.recordingNsPerJob), unit: "ns", digits: 0 },
  );
  const bud = run.budgets;
  if (bud !== undefined) {
    const pairs = bud.throughput.pairs;
    out.push(
      { scenario: "10", figure: "budget reservation, one job at a time: p50", value: one(bud.sequential.p50Ms), unit: "ms", digits: 3, ...target("< 0.3", bud.sequential.p50Ms < 0.3) },
      { scenario: "10", figure: "budget reservation, one job at a time: p99", value: one(bud.sequential.p99Ms), unit: "ms", digits: 3 },
      { scenario: "10", figure: `budget reservation, ${fmt(bud.oneWorker.inFlight, 0)} jobs at once in one worker: p50`, value: one(bud.oneWorker.p50Ms), unit: "ms", digits: 3 },
      { scenario: "10", figure: `budget reservation, ${fmt(bud.oneWorker.inFlight, 0)} jobs at once in one worker: p99`, value: one(bud.oneWorker.p99Ms), unit: "ms", digits: 3 },
      { scenario: "10", figure: "router throughput with budgets off", value: spread(pairs.map((q) => q.off)), unit: "jobs/s", digits: 0 },
      { scenario: "10", figure: "router throughput with budgets on", value: spread(pairs.map((q) => q.on)), unit: "jobs/s", digits: 0 },
      { scenario: "10", figure: "router throughput, budgets on ÷ off, per pair of runs", value: bud.throughput.ratio, unit: "×", digits: 2 },
    );
  }
  return out;
}

const verdict = (r: Row) => (r.met === undefined ? "" : r.met ? "met" : "missed");
const range = (r: Row) => `${fmt(r.value.min, r.digits)}–${fmt(r.value.max, r.digits)}`;

export function renderText(run: BenchRun): string {
  const table = rows(run).map((r) => [r.scenario, r.figure, `${fmt(r.value.median, r.digits)} ${r.unit}`, range(r), r.target ?? "", verdict(r)]);
  const head = ["#", "figure", "median", "min–max", "target", "verdict"];
  const widths = head.map((h, i) => Math.max(h.length, ...table.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 2 || i === 3 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join("  ").trimEnd();
  const noisy = run.stages.filter((s) => s.otherCores > NOISY_CORES);
  return [
    "",
    `Switchyard bench (${run.profile.name}, median of ${run.profile.reps}) — ${run.machine.cores} cores, node ${run.machine.node}, ${run.machine.natsServer}`,
    "",
    line(head),
    line(widths.map((w) => "-".repeat(w))),
    ...table.map(line),
    ...(noisy.length > 0 ? ["", `other processes were busy during: ${noisy.map((s) => `${s.name} (${fmt(s.otherCores, 2)} cores)`).join("; ")}`] : []),
    "",
  ].join("\n");
}

const md = (cells: string[]) => `| ${cells.join(" | ")} |`;
const spreadCell = (s: Spread, digits: number) => `${fmt(s.median, digits)} (${fmt(s.min, digits)}–${fmt(s.max, digits)})`;

/** A scenario run on its own (`--only <name>`) names when, how and on what code it ran. */
function ranAt(name: string, f: { readonly date: string; readonly code?: { readonly commit: string; readonly uncommitted: readonly string[] } }): string {
  const code = f.code;
  const how = code ? ` by \`npm run bench -- --only ${name}\`, apart from the rest of this report, on commit ${code.commit}${code.uncommitted.length > 0 ? ` with uncommitted changes to ${code.uncommitted.join(", ")}` : ""}` : "";
  return `bench/scenarios/${name}.ts, run ${f.date.slice(0, 16).replace("T", " ")} UTC${how}.`;
}

export interface HedgingFigures {
  readonly date: string;
  /** Set when run on its own (`--only hedging`). */
  readonly code?: { readonly commit: string; readonly uncommitted: readonly string[] };
  readonly primaryP95Ms: number;
  readonly runs: readonly HedgingRun[];
}

function hedgingSection(h: HedgingFigures, p: Profile): string[] {
  return [
    "## 6b. Failover with hedging",
    "",
    ranAt("hedging", h),
    `Scenario 6 with the primary hanging until its ${fmt(p.failover.timeoutMs, 0)} ms timeout, on the interactive lane at ${fmt(p.failover.rate, 0)} jobs/s for`,
    `${fmt(p.failover.faultyMs / 1000, 1)} s, once without and once with the task's \`hedge\` (after the primary's p95 in the warm-up,`,
    `${fmt(h.primaryP95Ms, 2)} ms), one worker each. Slow: delivery → result stored over 2 × that p95.`,
    "",
    md(["hedge", "jobs", "slow (> 2 × p95)", "p50 ms", "p99 ms", "extra calls per job", "billed USD per 1,000 jobs"]),
    md(["---", "---:", "---:", "---:", "---:", "---:", "---:"]),
    ...h.runs.map((r) => md([r.hedge ? "on" : "off", fmt(r.jobs, 0), `${fmt(r.slowShare * 100, 1)} %`, fmt(r.p50, 2), fmt(r.p99, 2), fmt(r.extraCallsPerJob, 3), fmt(r.billedPer1k, 6)])),
    "",
  ];
}

function budgetsSection(b: BudgetsFigures): string[] {
  const c = (w: BudgetsFigures["oneWorker"]) => md([`${w.workers === 1 ? "one worker" : `${w.workers} workers`}, ${fmt(w.inFlight, 0)} at once`, fmt(w.p50Ms, 3), fmt(w.p99Ms, 3), fmt(w.reservationsPerSec, 0), fmt(w.clientCpuUsPerReservation, 1), fmt(w.kvWrites, 0)]);
  const t = b.throughput;
  return [
    "## 10. Budget reservations",
    "",
    ranAt("budgets", b),
    "Its own nats-server; in the bench process, a SpendLedger reserving and settling on one spend entry, as a router does",
    "around every call of a budgeted job. One at a time: the latency a reservation adds to a job (one compare-and-set round",
    "trip). Concurrently: reservations that arrive while a write is in flight go together in the next one, so each waits",
    "for that write and its own; three ledgers on one entry contend by compare-and-set, as three workers would.",
    "",
    md(["reservations", "p50 ms", "p99 ms", "reservations/s", "client CPU µs each", "KV writes"]),
    md(["---", "---:", "---:", "---:", "---:", "---:"]),
    md([`one at a time (${fmt(b.sequential.reservations, 0)})`, fmt(b.sequential.p50Ms, 3), fmt(b.sequential.p99Ms, 3), "", "", ""]),
    c(b.oneWorker),
    c(b.threeWorkers),
    "",
    `Throughput: one router worker in the bench process, the sim-provider at 0 ms, ${fmt(t.jobsPerRun, 0)} jobs a run; budgets off, and on with`,
    "every job under a tenant budget too large to refuse, so only the reservation differs. After one untimed run of",
    `each, pairs of runs, which goes first alternating. The on runs settled $${fmt(t.settledUsd, 6)} into the tenant's ledger.`,
    "",
    md(["pair", "off jobs/s", "on jobs/s", "on ÷ off"]),
    md(["---", "---:", "---:", "---:"]),
    ...t.pairs.map((q, i) => md([String(i + 1), fmt(q.off, 0), fmt(q.on, 0), fmt(q.on / q.off, 2)])),
    "",
  ];
}

export function renderMarkdown(run: BenchRun): string {
  const m = run.machine;
  const p = run.profile;
  const healthy = run.failover.find((f) => f.mode === "healthy")!;
  const out: string[] = [
    "# Benchmarks",
    "",
    `Generated by \`npm run bench\` (${p.name} profile) on ${run.date.slice(0, 10)}; it took ${Math.round(run.seconds)} s. Raw figures: [benchmarks.json](benchmarks.json).`,
    "",
    `Machine: ${m.cores} cores (${m.cpu}), ${m.memoryGiB} GiB, Linux ${m.kernel}; Node ${m.node}; ${m.natsServer} (file storage).`,
    `Code: commit ${run.code.commit}${run.code.uncommitted.length > 0 ? ` with uncommitted changes to ${run.code.uncommitted.join(", ")}` : ""}.`,
    "Everything runs on loopback on this one machine: nats-server, the sim-provider, each router worker and each",
    "limit driver in its own process, and the bench process publishing and measuring. Each figure is the",
    `median of ${p.reps} repetitions, min–max after it. CPU is read per process from /proc (user + system).`,
    "",
    "## Summary",
    "",
    md(["#", "figure", "median", "min–max", "target", "verdict"]),
    md(["---", "---", "---:", "---:", "---", "---"]),
    ...rows(run).map((r) => md([r.scenario, r.figure, `${fmt(r.value.median, r.digits)} ${r.unit}`, range(r), r.target ?? "", r.met === undefined ? "" : r.met ? "**met**" : "**missed**"])),
    "",
    "## Load from other processes",
    "",
    `The machine is shared. Before each scenario the bench waits (up to ${fmt(p.settleMs / 1000, 0)} s) until processes outside it use less`,
    `than ${NOISY_CORES} cores; what they used during the scenario is below (average cores; the figures above are worse by`,
    "about that share wherever it is not near zero). Kernel threads are not counted as other processes.",
    "",
    md(["scenario", "seconds", "waited before (s)", "other processes (cores)", "steal (cores)"]),
    md(["---", "---:", "---:", "---:", "---:"]),
    ...run.stages.map((s) => md([s.name, fmt(s.seconds, 0), fmt(s.waitedSeconds, 0), fmt(s.otherCores, 2), fmt(s.stealCores, 2)])),
    "",
    "## 1–2. Limits and end-to-end throughput",
    "",
    `A backlog of ${fmt(run.e2e1.jobs, 0)} moderation jobs (${jobSizeRange().join("–")} bytes: system prompt, one user message, JSON output requested, metadata) is published first; then the consumers start and drain it.`,
    "Throughput and CPU count from 10 % to 90 % of the results, so process start-up and the tail are left out.",
    `Limit (a) drains it with bench/workers/pipeline.ts: the router's pull loop, a ${fmt(run.resultBytes, 0)}-byte result (a real`,
    "result's size) published with msgID awaiting its PubAck, then the ack. Limit (b) is bench/workers/provider-calls.ts:",
    "the router's adapter and undici Pool client calling the sim-provider at 0 ms, no queue. Router config: max_in_flight",
    "1024, max_concurrency 256 (the defaults).",
    "",
    md(["run", "jobs/s", "consumer CPU s / 1,000 jobs", "nats-server CPU s / 1,000", "sim-provider CPU s / 1,000"]),
    md(["---", "---:", "---:", "---:", "---:"]),
    ...([
      ["limit (a): JetStream pipeline", run.jetstream],
      ["end to end, 1 worker", run.e2e1],
      ["end to end, 2 workers", run.e2e2],
    ] as const).map(([name, d]) =>
      md([name, spreadCell(d.jobsPerSec, 0), spreadCell(scaled(d.consumerCpuMsPer1k, 1e-3), 3), spreadCell(scaled(d.natsCpuMsPer1k, 1e-3), 3), spreadCell(scaled(d.simCpuMsPer1k, 1e-3), 3)]),
    ),
    md(["limit (b): provider path (calls)", spreadCell(run.provider.callsPerSec, 0), spreadCell(scaled(run.provider.callerCpuMsPer1k, 1e-3), 3), "–", spreadCell(scaled(run.provider.simCpuMsPer1k, 1e-3), 3)]),
    "",
    `Where one worker's CPU goes: of ${fmt(run.e2e1.consumerCpuMsPer1k.median / 1000, 3)} CPU s per 1,000 jobs, the JetStream work alone costs`,
    `${fmt(run.jetstream.consumerCpuMsPer1k.median / 1000, 3)} (limit (a)'s consumer) and the provider path alone ${fmt(run.provider.callerCpuMsPer1k.median / 1000, 3)} (limit (b)'s caller); the`,
    `remaining ${fmt((run.e2e1.consumerCpuMsPer1k.median - run.jetstream.consumerCpuMsPer1k.median - run.provider.callerCpuMsPer1k.median) / 1000, 3)} is the router's own work: validating the job, planning, checking the output,`,
    "building and serialising the result, telemetry, bookkeeping, and the garbage all of that leaves.",
    "",
    "## 7. Live routing: convergence and cost",
    "",
    "Two `switchyard router` processes and `switchyard pricing` on their own nats-server; the sim-provider in the bench",
    "process, so an outage starts at an exact moment. Moderation jobs at 300/s; the cheapest tier is [budget/lite, swift/mini].",
    `**Convergence**: ${run.live.convergence.priceTrialsMs.length} price changes flip the cheaper model back and forth (\`prices set\` through the`,
    "KV override bucket), then outages of budget start and end. Per trial: the time from the change until the *last* job",
    "any worker still routed the old way (its first attempt), i.e. until every worker has switched; for recovery, until",
    "budget serves again (a 2 s cooldown, a probe, a KV update).",
    "",
    md(["trial kind", "p50 (ms)", "p95 (ms)", "each trial (ms)"]),
    md(["---", "---:", "---:", "---"]),
    md(["price change", fmt(run.live.convergence.p50PriceMs, 0), fmt(run.live.convergence.p95PriceMs, 0), run.live.convergence.priceTrialsMs.join(", ")]),
    md(["outage start", fmt(run.live.convergence.p50OutageMs, 0), fmt(run.live.convergence.p95OutageMs, 0), run.live.convergence.outageTrialsMs.join(", ")]),
    md(["outage end (recovery)", fmt(run.live.convergence.p50RecoveryMs, 0), fmt(run.live.convergence.p95RecoveryMs, 0), run.live.convergence.recoveryTrialsMs.join(", ")]),
    "",
    `**Cost**: ${fmt(run.live.cost.jobs, 0)} jobs; budget fails 3 % of calls throughout, swift's price drops below budget's at 30 %, budget is down`,
    "from 55 % to 75 %. Switchyard's bill is the sum of the results' cost_usd; the baselines are priced on the same jobs' token",
    "usage: (a) everything on the most expensive model; (b) everything on the initially cheapest model (budget) with no",
    "failover, so its failures and the outage fail jobs (3 % drawn deterministically); (c) the oracle, the cheapest model up",
    "at each job's moment.",
    "",
    md(["policy", "cost (USD)", "success rate"]),
    md(["---", "---:", "---:"]),
    ...([
      ["Switchyard", run.live.cost.switchyard],
      ["(a) always the most expensive model", run.live.cost.mostExpensive],
      ["(b) static: the initially cheapest model", run.live.cost.staticCheapest],
      ["(c) oracle", run.live.cost.oracle],
    ] as const).map(([name, c]) => md([name, fmt(c.costUsd, 6), `${fmt(c.successRate * 100, 1)} %`])),
    "",
    `Switchyard costs ${fmt(run.live.cost.overOracle * 100, 1)} % more than the oracle: the jobs budget failed before the price drop were served by the`,
    "next-cheapest model, and the first jobs after each change still went the old way.",
    "",
    "## 8. Gateway",
    "",
    "bench/gateway-measure.ts: a nats-server, a sim-provider answering at once, one router worker and two gateways, one",
    "sending chat requests through the JetStream interactive lane and one over the core NATS fast path (`gateway.interactive:",
    "request`), each its own process, and the Portkey OSS gateway as a peer (installed into bench/out/peers on first use);",
    `the same chat request sent straight to the sim-provider and through each gateway with undici, ${fmt(p.gatewaySeconds, 0)} s per run.`,
    ...(run.gatewayRun === undefined ? [] : [ranAt("gateway", run.gatewayRun).replace("bench/scenarios/gateway.ts", "bench/gateway-measure.ts")]),
    "",
    "```",
    run.gateway.trimEnd(),
    "```",
    "",
    "## 9. Metrics overhead",
    "",
    ranAt("metrics", run.metrics),
    "In the bench process: the recording calls the router makes for a job served at its",
    `first attempt (queue wait, attempt, cost and tokens, result, overhead) cost ${fmt(run.metrics.recordingNsPerJob, 0)} ns of CPU per job over 5 M jobs,`,
    `and one render of /metrics with ${fmt(run.metrics.renderLines, 0)} lines (3 tasks × 6 models × 20 tenants) ${fmt(run.metrics.renderMs, 2)} ms.`,
    `End to end: two \`switchyard router\` processes drain equal backlogs (${fmt(run.metrics.jobs, 0)} jobs each) at the same time, each in its`,
    "own namespace on the one nats-server, so both see the same machine load and the same pulls; one has its ops",
    "endpoint on (metrics recorded, /metrics scraped every second, 15× the usual rate), the other none. Which namespace",
    "has metrics alternates between pairs; A/A pairs have metrics on in both. CPU from /proc over 10–90 % of each drain.",
    "",
    md(["pair", "off: CPU ms / job", "on: CPU ms / job", "on ÷ off − 1", "scrapes"]),
    md(["---", "---:", "---:", "---:", "---:"]),
    ...run.metrics.pairs.map((q, i) => md([String(i + 1), fmt(q.off, 4), fmt(q.on, 4), `${fmt(((q.on - q.off) / q.off) * 100, 1)} %`, fmt(q.scrapes, 0)])),
    md(["A/A", "", "", `${run.metrics.controlPct.runs.map((r) => `${fmt(r, 1)} %`).join(", ")}`, ""]),
    "",
    ...(run.budgets === undefined ? [] : budgetsSection(run.budgets)),
    ...(run.hedging === undefined ? [] : hedgingSection(run.hedging, p)),
    "## 3. Added latency",
    "",
    `One worker, provider at 0 ms, jobs published one at a time at ${run.latency.rate}/s for ${fmt(p.latency.durationMs / 1000, 0)} s (${fmt(run.latency.jobsPerRep, 0)} jobs) after a`,
    `${fmt(p.warmupMs / 1000, 1)} s warm-up. The worker is bench/workers/router.ts: the router as \`switchyard router\` wires it, but with a clock`,
    "that resolves microseconds (Date.now() resolves whole milliseconds) and agrees with nats-server's stored-message",
    "timestamps within about 0.05 ms. Per job: delivery = job stored + the result's queued_ms; **overhead = result stored",
    "− delivery − Σ attempts[].latency_ms** (the provider call as the router timed it), so it includes parsing,",
    "planning, serialising and publishing the result up to JetStream storing it. The router's own latency_ms − Σ",
    "attempts stops when the result object is built, before serialising and publishing.",
    "",
    md(["figure (ms)", "p50", "p99"]),
    md(["---", "---:", "---:"]),
    md(["overhead: delivery → result stored − provider call", spreadCell(run.latency.overheadP50, 3), spreadCell(run.latency.overheadP99, 3)]),
    md(["router's own latency_ms − provider call", spreadCell(run.latency.reportedP50, 3), spreadCell(run.latency.reportedP99, 3)]),
    md(["provider call (attempts[].latency_ms)", spreadCell(run.latency.providerP50, 3), spreadCell(run.latency.providerP99, 3)]),
    md(["end to end: job stored → result stored", spreadCell(run.latency.endToEndP50, 3), spreadCell(run.latency.endToEndP99, 3)]),
    "",
    `Router CPU at this rate: ${spreadCell(scaled(run.latency.routerCpuMsPer1k, 1e-3), 3)} CPU s per 1,000 jobs (per-job cost rises at low rates: nothing is batched).`,
    "",
    "## 4. Slow providers",
    "",
    `One \`switchyard router\` with max_in_flight ${fmt(run.slow[0]?.maxInFlight ?? NaN, 0)} (its batch lane, which bench jobs use, may then hold 10,000: by default a`,
    "quarter of the slots stay reserved for interactive jobs), max_ack_pending 20,000 and 10,000 connections to the provider;",
    "every call takes the given latency. The backlog is published first. In flight is the consumer's ack-pending count,",
    "sampled every 100 ms with the worker's RSS; in flight (mean) and throughput are taken while jobs still waited in the",
    "stream, after the first results. By Little's law throughput = in flight ÷ time in flight, so throughput ÷ (in flight ÷",
    "latency) = latency ÷ the mean time a job spent in the worker (its result's latency_ms), measured over every job.",
    "RSS per in-flight job = (peak RSS − RSS of an idle worker) ÷ peak in flight.",
    "",
    md(["provider latency", "jobs", "in flight (mean)", "peak in flight", "jobs/s", "time in worker ms", "÷ (in flight ÷ latency)", "RSS / in-flight job", "peak RSS", "router CPU s / 1,000"]),
    md(["---", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:"]),
    ...run.slow.map((s) =>
      md([
        `${fmt(s.latencyMs, 0)} ms`,
        fmt(s.jobs, 0),
        spreadCell(s.inFlight, 0),
        spreadCell(s.peakInFlight, 0),
        spreadCell(s.jobsPerSec, 0),
        spreadCell(s.timeInWorkerMs, 0),
        `${spreadCell(scaled(s.littleRatio, 100), 0)} %`,
        `${spreadCell(s.rssPerInFlightKiB, 1)} KiB`,
        `${spreadCell(s.peakRssMiB, 0)} MiB`,
        spreadCell(scaled(s.routerCpuMsPer1k, 1e-3), 3),
      ]),
    ),
    "",
    `An idle worker's RSS: ${fmt(run.slow[0]?.idleRssMiB ?? NaN, 0)} MiB.`,
    "",
    "## 5. Planner scale",
    "",
    "`plan()` in the bench process on a synthetic catalog (ten models per provider, all in one tier), with a live state",
    "like a busy worker's: a pricing-service entry per model (price, p95 latency, one in ten down), a local latency",
    "per model and one in ten locally cooling down. Decisions/s from an untimed loop; percentiles from timing each call.",
    "",
    md(["strategy", "candidates", "decisions/s", "p50 µs", "p99 µs", "ns per candidate"]),
    md(["---", "---:", "---:", "---:", "---:", "---:"]),
    ...run.planner.map((q) => md([q.strategy, fmt(q.candidates, 0), spreadCell(q.decisionsPerSec, 0), spreadCell(q.p50Us, 1), spreadCell(q.p99Us, 1), spreadCell(q.nsPerCandidate, 0)])),
    "",
    "## 6. Failover cost",
    "",
    `One worker (the microsecond clock, as in 3) at ${healthy.rate} jobs/s; the moderation tier tries budget/lite, then swift/mini,`,
    `both at 0 ms. After a healthy ${fmt(p.warmupMs / 1000, 1)} s warm-up, the primary stays healthy (${fmt(healthy.durationMs / 1000, 0)} s), answers every call 503, or`,
    `hangs every call until the worker's ${fmt(healthy.timeoutMs, 0)} ms timeout (${fmt(p.failover.faultyMs / 1000, 0)} s each). The worker cools a model down for`,
    `${fmt(DEFAULT_LOCAL_HEALTH.cooldownMs, 0)} ms after ${DEFAULT_LOCAL_HEALTH.failureThreshold} consecutive failures, then tries it again, so only some jobs pay for the fault.`,
    "Latency here is delivery → result stored, provider calls included, over every job of the run.",
    "",
    md(["primary", "mean ms", "p50 ms", "p99 ms", "jobs that tried the primary", "their p50 ms", "router CPU s / 1,000"]),
    md(["---", "---:", "---:", "---:", "---:", "---:", "---:"]),
    ...run.failover.map((f) =>
      md([f.mode, spreadCell(f.mean, 2), spreadCell(f.p50, 2), spreadCell(f.p99, 2), `${spreadCell(scaled(f.failedOverShare, 100), 1)} %`, spreadCell(f.failedOverP50, 2), spreadCell(scaled(f.routerCpuMsPer1k, 1e-3), 3)]),
    ),
    "",
    // Prose from profiling, kept beside the code that measures; it names the run it comes from.
    readFileSync(new URL("./analysis.md", import.meta.url), "utf8").trimEnd(),
    "",
    "## Reproduce",
    "",
    "```sh",
    "npm run bench                  # this report (a few minutes)",
    "npm run bench -- --quick       # smoke run, written to bench/out/",
    "npm run bench -- --only metrics  # scenario 9 alone, its figures updated in the last report",
    "npm run bench -- --only budgets  # scenario 10 alone, likewise",
    "npm run bench -- --only gateway  # scenario 8 (gateway paths and the Portkey peer) alone, likewise",
    "npm run bench -- --only hedging  # scenario 6 with hedging off and on, likewise",
    "npx tsx bench/compare.ts --tree before=<checkout> --tree now=.  # alternating router A/B runs with the JetStream-only limit",
    "npx tsx bench/batch-lane.ts [--jobs 10000]  # the batch lane's and the result cache's cost against live routing (issue 14)",
    "npm run bench -- --cpu-prof    # also V8 profiles of every router worker in bench/out/profiles/",
    "npx tsx bench/profile-summary.ts bench/out/profiles/<file>.cpuprofile",
    "```",
    "",
  ];
  return out.join("\n");
}


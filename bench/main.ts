/**
 * `npm run bench`: every scenario of docs/BENCHMARKS.md on loopback (its own nats-server,
 * sim-provider and router processes), a summary table on stdout, and the report plus raw
 * figures in docs/ (a `--quick` smoke run writes to bench/out/ instead, leaving the published
 * figures alone). `--cpu-prof` also writes a V8 CPU profile of every router worker into
 * bench/out/profiles (read them with bench/profile-summary.ts); profiling slows the workers,
 * so figures from such a run are not for publishing. `--only metrics` runs scenario 9 alone
 * (`--only budgets`, scenario 10; `--only gateway`, scenario 8 with its peer; `--only hedging`,
 * scenario 6 hedged) and puts its figures into the last report of the same profile, the other
 * figures left as they were.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, release, totalmem } from "node:os";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { findNatsServer } from "../shared/nats/server-process.ts";
import { FULL, QUICK } from "./lib/profile.ts";
import { machineCpuMs, treeAndKernelCpuMs } from "./lib/procs.ts";
import { startStack } from "./lib/stack.ts";
import { NOISY_CORES, renderMarkdown, renderText, type BenchRun, type Stage } from "./report.ts";
import { budgetsCost } from "./scenarios/budgets.ts";
import { FAILOVER_MODES, failover, type FailoverFigures } from "./scenarios/failover.ts";
import { hedging } from "./scenarios/hedging.ts";
import { convergence, costVsBaselines } from "./scenarios/live-routing.ts";
import { addedLatency } from "./scenarios/latency.ts";
import { metricsOverhead } from "./scenarios/metrics.ts";
import { plannerScale } from "./scenarios/planner.ts";
import { providerLimit } from "./scenarios/provider-limit.ts";
import { idleRouterRssKiB, slowProvider, type SlowFigures } from "./scenarios/slow.ts";
import { endToEnd, jetStreamLimit, resultBytes } from "./scenarios/throughput.ts";

const ONLY = ["metrics", "budgets", "gateway", "hedging"] as const;
const { values } = parseArgs({ options: { quick: { type: "boolean", default: false }, "cpu-prof": { type: "boolean", default: false }, only: { type: "string" } } });
if (values.only !== undefined && !(ONLY as readonly string[]).includes(values.only)) throw new Error(`--only: one of ${ONLY.join(", ")}, not "${values.only}"`);
const profile = values.quick ? QUICK : FULL;
const outDir = fileURLToPath(new URL(values.quick || values["cpu-prof"] ? "./out/" : "../docs/", import.meta.url));
const profileDir = fileURLToPath(new URL("./out/profiles/", import.meta.url));

const METRICS_STAGE = "9. metrics overhead";
const BUDGETS_STAGE = "10. budget reservations";
const GATEWAY_STAGE = "8. gateway";
const HEDGING_STAGE = "6. failover, primary hang, hedged";
const stages: Stage[] = [];
/**
 * Runs one scenario and records how much CPU the rest of the machine used meanwhile: other
 * processes on these two cores make every figure worse, and the report says when they did.
 */
async function stage<T>(name: string, run: () => Promise<T> | T): Promise<T> {
  process.stderr.write(`${name}\n`);
  const waitedSeconds = await settle();
  const t0 = performance.now();
  const m0 = machineCpuMs();
  const c0 = treeAndKernelCpuMs();
  const result = await run();
  const ms = performance.now() - t0;
  const m1 = machineCpuMs();
  const c1 = treeAndKernelCpuMs();
  const otherMs = m1.busy - m0.busy - (c1.own - c0.own) - (c1.kernel - c0.kernel);
  stages.push({ name, seconds: ms / 1000, waitedSeconds, otherCores: Math.max(0, otherMs / ms), stealCores: (m1.steal - m0.steal) / ms });
  return result;
}

/** Other processes' CPU (cores) over the next `ms`. */
async function otherLoad(ms: number): Promise<number> {
  const m0 = machineCpuMs();
  const c0 = treeAndKernelCpuMs();
  await sleep(ms);
  const c1 = treeAndKernelCpuMs();
  return (machineCpuMs().busy - m0.busy - (c1.own - c0.own) - (c1.kernel - c0.kernel)) / ms;
}

/** A shared machine: waits (at most the profile's settleMs) for other processes to leave the cores alone; returns the seconds waited. */
async function settle(): Promise<number> {
  const t0 = performance.now();
  while (performance.now() - t0 < profile.settleMs && (await otherLoad(1_000)) > NOISY_CORES) process.stderr.write("  waiting for other processes to go quiet\n");
  return (performance.now() - t0) / 1000;
}

/** The code measured: the commit, and which files under services/, shared/ and config/ differed from it. */
function codeState(): { commit: string; uncommitted: string[] } {
  const git = (...args: string[]) => execFileSync("git", args, { cwd: fileURLToPath(new URL("..", import.meta.url)), encoding: "utf8" });
  try {
    const uncommitted = git("status", "--porcelain", "--", "services", "shared", "config").split("\n").filter(Boolean).map((l) => l.slice(3));
    return { commit: git("rev-parse", "--short", "HEAD").trim(), uncommitted };
  } catch {
    return { commit: "unknown", uncommitted: [] };
  }
}

const suffix = values.quick ? "-quick" : "";
function writeReport(run: BenchRun, what: string): void {
  mkdirSync(outDir, { recursive: true });
  writeFileSync(`${outDir}benchmarks${suffix}.json`, `${JSON.stringify(run, null, 2)}\n`);
  writeFileSync(`${outDir}BENCHMARKS${suffix}.md`, renderMarkdown(run));
  process.stdout.write(renderText(run));
  process.stdout.write(`\nwrote ${what}\n`);
}

/** The gateway's own driver (bench/gateway-measure.ts): direct sim-provider calls against the same calls through each gateway path and the Portkey peer. */
function gatewayDriver(): string {
  return execFileSync(process.execPath, ["--import", "tsx", fileURLToPath(new URL("./gateway-measure.ts", import.meta.url)), "--seconds", String(profile.gatewaySeconds)], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "ignore"],
  });
}

if (values.only !== undefined) {
  const reportFile = `${outDir}benchmarks${suffix}.json`;
  if (!existsSync(reportFile)) throw new Error(`--only ${values.only} updates ${reportFile}, which a full run writes first`);
  const last = JSON.parse(readFileSync(reportFile, "utf8")) as BenchRun;
  let run: BenchRun;
  let name: string;
  if (values.only === "metrics") {
    name = METRICS_STAGE;
    const stack = await startStack();
    const metrics = await (async () => {
      try {
        return await stage(METRICS_STAGE, () => metricsOverhead(stack, profile));
      } finally {
        await stack.close();
      }
    })();
    run = { ...last, metrics: { ...metrics, code: codeState() } };
  } else if (values.only === "budgets") {
    name = BUDGETS_STAGE;
    const budgets = await stage(BUDGETS_STAGE, () => budgetsCost(profile));
    run = { ...last, budgets: { ...budgets, code: codeState() } };
  } else if (values.only === "gateway") {
    name = GATEWAY_STAGE;
    const date = new Date().toISOString();
    const gateway = await stage(GATEWAY_STAGE, gatewayDriver);
    run = { ...last, gateway, gatewayRun: { date, code: codeState() } };
  } else {
    name = HEDGING_STAGE;
    const date = new Date().toISOString();
    const stack = await startStack();
    const figures = await (async () => {
      try {
        return await stage(HEDGING_STAGE, () => hedging(stack, profile));
      } finally {
        await stack.close();
      }
    })();
    run = { ...last, hedging: { ...figures, date, code: codeState() } };
  }
  run = { ...run, stages: [...last.stages.filter((s) => s.name !== name), ...stages] };
  writeReport(run, `${reportFile} (${name} only)`);
  process.exit(0);
}

const started = Date.now();
if (values["cpu-prof"]) mkdirSync(profileDir, { recursive: true });
const stack = await startStack(values["cpu-prof"] ? { cpuProfDir: profileDir } : {});
const measured = await (async () => {
  try {
    const e2e1 = await stage("2. end to end, 1 worker", () => endToEnd(stack, profile, 1));
    const bytes = await resultBytes(stack);
    const e2e2 = await stage("2. end to end, 2 workers", () => endToEnd(stack, profile, 2));
    const jetstream = await stage("1a. JetStream pipeline limit", () => jetStreamLimit(stack, profile, bytes));
    const provider = await stage("1b. provider path limit", () => providerLimit(stack, profile));
    const latency = await stage("3. added latency", () => addedLatency(stack, profile));
    const idleRss = await idleRouterRssKiB(stack);
    const slow: SlowFigures[] = [];
    for (const s of profile.slow) slow.push(await stage(`4. slow provider, ${s.latencyMs} ms`, () => slowProvider(stack, profile, s.latencyMs, s.jobs, idleRss)));
    const failovers: FailoverFigures[] = [];
    for (const mode of FAILOVER_MODES) failovers.push(await stage(`6. failover, primary ${mode}`, () => failover(stack, profile, mode)));
    const hedgingDate = new Date().toISOString();
    const hedged = { ...(await stage(HEDGING_STAGE, () => hedging(stack, profile))), date: hedgingDate };
    const metrics = await stage(METRICS_STAGE, () => metricsOverhead(stack, profile));
    return { resultBytes: bytes, jetstream, provider, e2e1, e2e2, latency, slow, failover: failovers, hedging: hedged, metrics };
  } finally {
    await stack.close();
  }
})();
const live = {
  convergence: await stage("7. live routing: convergence", () => convergence(profile.live.priceTrials, profile.live.outageTrials)),
  cost: await stage("7. live routing: cost against baselines", () => costVsBaselines(profile.live.costJobs, profile.live.costRate)),
};
const gateway = await stage(GATEWAY_STAGE, gatewayDriver);
// In-process and last, with no other bench process left running.
const planner = await stage("5. planner scale", () => plannerScale(profile));
// In-process too (its own nats-server, a router worker in this process), after the planner so neither disturbs the other.
const budgets = await stage(BUDGETS_STAGE, () => budgetsCost(profile));

const run: BenchRun = {
  profile,
  date: new Date(started).toISOString(),
  seconds: (Date.now() - started) / 1000,
  machine: {
    cores: cpus().length,
    cpu: cpus()[0]?.model ?? "unknown",
    memoryGiB: Math.round(totalmem() / 1024 ** 3),
    kernel: release(),
    node: process.version,
    natsServer: execFileSync(findNatsServer(), ["--version"], { encoding: "utf8" }).trim(),
  },
  code: codeState(),
  stages,
  ...measured,
  planner,
  live,
  gateway,
  budgets,
};
writeReport(run, `${outDir}BENCHMARKS${suffix}.md and benchmarks${suffix}.json in ${Math.round(run.seconds)} s`);

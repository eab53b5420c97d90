/**
 * A/B runs of the router's throughput (scenario 2, one worker) between source trees, on one
 * stack, alternating so each tree sees the same machine load; the bare JetStream pipeline
 * (limit (a)) runs in every round too, awaiting its PubAcks as the router's outcome store does
 * and, as the router did before, with nats.js's js.publish, and once more with a plain provider
 * call per job (the router's floor: its NATS and HTTP work, none of its own), so each router
 * figure has its ratio to each from the same minute. Before each run it waits for other processes to
 * go quiet (`--settle-ms`, as bench/main.ts does). For a change or a regression hunt on this
 * noisy machine:
 *
 *   npx tsx bench/compare.ts --tree before=/tmp/old-checkout --tree now=. [--rounds 4] [--jobs 15000] [--cpu-prof <dir>]
 *     [--node-arg now=--max-semi-space-size=16] [--settle-ms 20000] [--no-pipeline]
 *
 * A tree is a checkout (its node_modules may be a link to this one's); its `bin/switchyard.js
 * router` runs on this checkout's stack and config. Prints every run, then per tree the median
 * and range of jobs/s, router CPU ms per job, and both as ratios to the pipeline of the same
 * round. `--cpu-prof` writes a V8 profile of every router run (read with bench/profile-summary.ts).
 */
import { mkdirSync } from "node:fs";
import { resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { STREAMS } from "../shared/contract/subjects.ts";
import { measureDrain } from "./lib/drain.ts";
import { machineCpuMs, spawnScript, spawnWorker, treeAndKernelCpuMs, type Child } from "./lib/procs.ts";
import { NOISY_CORES } from "./report.ts";
import { DEFAULT_ROUTER, PRIMARY, publishBacklog, startStack, streamCount } from "./lib/stack.ts";
import { spread } from "./lib/stats.ts";

const { values } = parseArgs({
  options: { tree: { type: "string", multiple: true, default: [] }, rounds: { type: "string", default: "4" }, jobs: { type: "string", default: "15000" }, "cpu-prof": { type: "string" }, "node-arg": { type: "string", multiple: true, default: [] }, "settle-ms": { type: "string", default: "20000" }, "no-pipeline": { type: "boolean", default: false } },
});
const trees = values.tree.map((t) => {
  const at = t.indexOf("=");
  if (at <= 0) throw new Error(`--tree label=path, not "${t}"`);
  return { label: t.slice(0, at), dir: resolve(t.slice(at + 1)) };
});
if (trees.length === 0) throw new Error("at least one --tree label=path");
/** `--node-arg label=<flag>`: a node flag for that tree's router (a V8 setting tried without a code change). */
const nodeArgsOf = (label: string) => values["node-arg"].filter((a) => a.startsWith(`${label}=`)).map((a) => a.slice(label.length + 1));
const rounds = Number(values.rounds);
const jobs = Number(values.jobs);
const profDir = values["cpu-prof"] === undefined ? undefined : resolve(values["cpu-prof"]);
if (profDir !== undefined) mkdirSync(profDir, { recursive: true });

const PIPELINE = "jetstream-only";
/** The same pipeline awaiting each PubAck with nats.js's js.publish, as the router did before its outcome store's own PubAck subscription. */
const PIPELINE_NATS_JS = "jetstream-only (js.publish)";
/** The pipeline with one provider call per job (the sim-provider's budget model): the router's floor. */
const PIPELINE_CALL = "jetstream + call";
const PIPELINES: readonly string[] = [PIPELINE, PIPELINE_NATS_JS, PIPELINE_CALL];
interface Run {
  readonly label: string;
  readonly round: number;
  readonly jobsPerSec: number;
  readonly cpuMsPerJob: number;
  readonly natsCpuMsPerJob: number;
}
const runs: Run[] = [];

/** Waits (at most --settle-ms) until processes outside this run use less than NOISY_CORES, as bench/main.ts does before each scenario. */
async function settle(): Promise<void> {
  const t0 = performance.now();
  while (performance.now() - t0 < Number(values["settle-ms"])) {
    const m0 = machineCpuMs();
    const c0 = treeAndKernelCpuMs();
    await sleep(1_000);
    const c1 = treeAndKernelCpuMs();
    const other = (machineCpuMs().busy - m0.busy - (c1.own - c0.own) - (c1.kernel - c0.kernel)) / 1_000;
    if (other <= NOISY_CORES) return;
  }
  process.stdout.write("  (other processes stayed busy: running anyway)\n");
}
const stack = await startStack();
try {
  // A result's size for the pipeline: what the first tree's router stores.
  let resultBytes = 0;
  const labels = [...(values["no-pipeline"] ? [] : PIPELINES), ...trees.map((t) => t.label)];
  for (let round = 0; round < rounds + 1; round++) {
    // Round 0 warms the machine up (page cache, nats-server) and is not counted; then the order rotates.
    const order = labels.map((_, i) => labels[(i + round) % labels.length]!);
    for (const label of order) {
      const pipeline = PIPELINES.includes(label);
      if (pipeline && resultBytes === 0) continue;
      const configFile = await stack.reset(DEFAULT_ROUTER);
      await publishBacklog(stack.js, `cmp-${round}-${label}`, jobs);
      await settle();
      let child: Child;
      if (pipeline) {
        const env = { NATS_URL: stack.natsUrl, MAX_IN_FLIGHT: String(DEFAULT_ROUTER.maxInFlight), RESULT_BYTES: String(resultBytes) };
        child = spawnWorker(label, "pipeline.ts", label === PIPELINE_NATS_JS ? { ...env, PUBACKS: "nats-js" } : label === PIPELINE_CALL ? { ...env, PROVIDER_URL: `${stack.simUrl}/${PRIMARY.provider}/v1` } : env);
      } else {
        const tree = trees.find((t) => t.label === label)!;
        const prof = profDir !== undefined && round > 0 ? ["--cpu-prof", `--cpu-prof-dir=${profDir}`, `--cpu-prof-name=${label}-${round}.cpuprofile`] : [];
        const nodeArgs = [...nodeArgsOf(label), ...prof];
        child = spawnScript(label, `${tree.dir}/bin/switchyard.js`, ["router"], { NATS_URL: stack.natsUrl, SWITCHYARD_CONFIG: configFile, LOG_LEVEL: "info" }, nodeArgs);
      }
      const [drain] = await Promise.all([measureDrain(stack.jsm, jobs, [child.pid, stack.nats.pid()!], 180_000), child.waitFor(pipeline ? /^ready$/ : /router worker started|"msg":/, 30_000).catch(() => undefined)]);
      await child.stop();
      const dead = await streamCount(stack.jsm, STREAMS.dlq);
      if (dead > 0) throw new Error(`${label}: ${dead} jobs were dead-lettered`);
      if (resultBytes === 0) {
        const m = await stack.jsm.streams.getMessage(STREAMS.results, { seq: 1 });
        resultBytes = m!.data.length;
      }
      const run = { label, round, jobsPerSec: drain.jobsPerSec, cpuMsPerJob: drain.cpuMsPerJob[0]!, natsCpuMsPerJob: drain.cpuMsPerJob[1]! };
      process.stdout.write(`${round === 0 ? "warm-up " : ""}round ${round} ${label.padEnd(16)} ${Math.round(run.jobsPerSec).toString().padStart(6)} jobs/s  ${run.cpuMsPerJob.toFixed(4)} CPU ms/job  nats ${run.natsCpuMsPerJob.toFixed(4)}\n`);
      if (round > 0) runs.push(run);
    }
  }
} finally {
  await stack.close();
}

const f = (n: number, d: number) => n.toFixed(d);
const show = (name: string, xs: number[], d: number) => {
  const s = spread(xs);
  return `${name} ${f(s.median, d)} (${f(s.min, d)}–${f(s.max, d)})`;
};
process.stdout.write(`\nmedians (min–max) over ${rounds} rounds of ${jobs} jobs:\n`);
for (const label of [PIPELINE, PIPELINE_NATS_JS, ...trees.map((t) => t.label)]) {
  const mine = runs.filter((r) => r.label === label);
  if (mine.length === 0) continue;
  const against = (pipeline: string) => {
    const ratios = mine.map((r) => {
      const p = runs.find((q) => q.label === pipeline && q.round === r.round)!;
      return { rate: r.jobsPerSec / p.jobsPerSec, cpu: r.cpuMsPerJob / p.cpuMsPerJob };
    });
    return `${show(`share of ${pipeline}`, ratios.map((r) => r.rate * 100), 0)} %; ${show(`CPU ÷ ${pipeline}`, ratios.map((r) => r.cpu), 2)}×`;
  };
  process.stdout.write(
    `${label.padEnd(16)} ${show("jobs/s", mine.map((r) => r.jobsPerSec), 0)}; ${show("CPU ms/job", mine.map((r) => r.cpuMsPerJob), 4)}; ${show("nats CPU ms/job", mine.map((r) => r.natsCpuMsPerJob), 4)}` +
      (label === PIPELINE || values["no-pipeline"] ? "\n" : PIPELINES.includes(label) ? `; ${against(PIPELINE)}\n` : `\n${PIPELINES.map((p) => `    ${against(p)}\n`).join("")}`),
  );
}
process.exit(0);

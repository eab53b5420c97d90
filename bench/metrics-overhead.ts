/**
 * What metrics cost the router, measured two ways (`npx tsx bench/metrics-overhead.ts`):
 *
 * - side by side (the figure; default): two `switchyard router` processes on the same durable
 *   consumer at the same time, one with its ops endpoint on (metrics recorded, /metrics
 *   scraped every second — 15× the usual scrape rate, so rendering counts too), one without.
 *   Both drain one backlog under the same machine load, which on this shared 2-core box
 *   varies more between runs than the effect being measured. Each one's CPU (from /proc,
 *   after start-up) is divided by the jobs it served: the metrics router counts its own
 *   (switchyard_jobs_total), the other served the rest.
 * - `--alternate`: one router per run, metrics off then on, in alternating order.
 * - `--control`: side by side with metrics on in both (an A/A run): how far apart two
 *   identical routers measure, i.e. the resolution of the side-by-side figure.
 *
 * First, in this process and deterministic: what recording costs per job (the calls the
 * worker makes for a job served at its first attempt, on warm children) and what one scrape
 * of a busy label set costs to render. The end-to-end runs can only bound what those add.
 *
 *   npx tsx bench/metrics-overhead.ts [--jobs 40000] [--reps 5] [--alternate]
 */
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { STREAMS } from "../shared/contract/subjects.ts";
import { measureDrain } from "./lib/drain.ts";
import { cpuMs } from "./lib/procs.ts";
import { DEFAULT_ROUTER, publishBacklog, startStack, streamCount, type Stack } from "./lib/stack.ts";
import { spread, type Spread } from "./lib/stats.ts";
import type { ModelInfo } from "../shared/routing/catalog.ts";
import { routerMetrics } from "../shared/ops/router-metrics.ts";
import { createOps } from "../shared/ops/server.ts";

const { values } = parseArgs({
  options: { jobs: { type: "string", default: "40000" }, reps: { type: "string", default: "5" }, alternate: { type: "boolean", default: false }, control: { type: "boolean", default: false } },
});
const jobs = Number(values.jobs);
const reps = Number(values.reps);
const SCRAPE_EVERY_MS = 1_000;
const METRICS_ON = { SWITCHYARD_OPS_LISTEN: "127.0.0.1:0" };

/** Scrapes `url` every second until `stop()`; `results()` reads the router's own count of results. */
function scraper(url: Promise<string>) {
  let on = true;
  let scrapes = 0;
  const loop = (async () => {
    const u = await url;
    while (on) {
      await (await fetch(u)).text();
      scrapes++;
      await sleep(SCRAPE_EVERY_MS);
    }
  })();
  return {
    async stop() {
      on = false;
      await loop;
      return scrapes;
    },
    async results(): Promise<number> {
      const text = await (await fetch(await url)).text();
      return Number(/^switchyard_jobs_total\{task="moderation",outcome="result"\} (\d+)$/m.exec(text)?.[1] ?? NaN);
    },
  };
}

async function waitForResults(stack: Stack, n: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while ((await streamCount(stack.jsm, STREAMS.results)) < n) {
    if (Date.now() > deadline) throw new Error(`fewer than ${n} results after ${timeoutMs} ms`);
    await sleep(50);
  }
}

async function sideBySide(stack: Stack, rep: number): Promise<{ off: number; on: number; scrapes: number; share: number }> {
  const configFile = await stack.reset(DEFAULT_ROUTER);
  const off = stack.spawnRouter(configFile, "router-off", { env: values.control ? METRICS_ON : {} });
  const on = stack.spawnRouter(configFile, "router-on", { env: METRICS_ON });
  const url = on.child.waitFor(/ops endpoint listening/).then((line) => (JSON.parse(line) as { url: string }).url);
  const offUrl = values.control ? off.child.waitFor(/ops endpoint listening/).then((line) => (JSON.parse(line) as { url: string }).url) : undefined;
  await Promise.all([off.ready, on.ready, url, offUrl]);
  // Start-up (module loading, JIT of start-up code) is not per-job work.
  await sleep(500);
  const cpu0 = [cpuMs(off.child.pid), cpuMs(on.child.pid)];
  const s = scraper(url);
  const s2 = offUrl ? scraper(offUrl) : undefined;
  await publishBacklog(stack.js, `side-${rep}`, jobs);
  await waitForResults(stack, jobs, 120_000);
  const scrapes = await s.stop();
  await s2?.stop();
  const onJobs = await s.results();
  const cpu1 = [cpuMs(off.child.pid), cpuMs(on.child.pid)];
  await Promise.all([off.child.stop(), on.child.stop()]);
  if ((await streamCount(stack.jsm, STREAMS.dlq)) > 0) throw new Error("jobs were dead-lettered");
  if (!(onJobs > 0 && onJobs < jobs)) throw new Error(`the metrics router served ${onJobs} of ${jobs} jobs`);
  return { off: (cpu1[0]! - cpu0[0]!) / (jobs - onJobs), on: (cpu1[1]! - cpu0[1]!) / onJobs, scrapes, share: onJobs / jobs };
}

async function alternate(stack: Stack, rep: number, mode: "off" | "on"): Promise<{ cpu: number; scrapes: number }> {
  const configFile = await stack.reset(DEFAULT_ROUTER);
  await publishBacklog(stack.js, `alt-${mode}-${rep}`, jobs);
  const { child, ready } = stack.spawnRouter(configFile, `router-${mode}`, { env: mode === "on" ? METRICS_ON : {} });
  const s = mode === "on" ? scraper(child.waitFor(/ops endpoint listening/).then((line) => (JSON.parse(line) as { url: string }).url)) : undefined;
  const [drain] = await Promise.all([measureDrain(stack.jsm, jobs, [child.pid], 120_000), ready]);
  const scrapes = (await s?.stop()) ?? 0;
  if (s && (await s.results()) !== jobs) throw new Error(`metrics counted ${await s.results()} results of ${jobs}`);
  await child.stop();
  if ((await streamCount(stack.jsm, STREAMS.dlq)) > 0) throw new Error("jobs were dead-lettered");
  return { cpu: drain.cpuMsPerJob[0]!, scrapes };
}

/** ns of CPU per simulated job, and ms per render of the resulting scrape (3 tasks × 6 models × 20 tenants). */
async function recordingCost(): Promise<{ nsPerJob: number; renderMs: number; lines: number }> {
  const ops = createOps();
  const m = routerMetrics(ops);
  const models = Array.from({ length: 6 }, (_, i) => ({ id: `p${i}/m${i}`, ordinal: 1000 + i, provider: `p${i}`, name: `m${i}` }) as unknown as ModelInfo);
  const tasks = ["moderation", "classification", "extraction"];
  const metadata = Array.from({ length: 20 }, (_, i) => ({ tenant: `tenant-${i}` }));
  const outcomes = ["ok", "ok", "ok", "ok", "ok", "ok", "ok", "unavailable", "rate_limited", "invalid_output"] as const;
  const job = (i: number) => {
    const t = m.task(tasks[i % 3]!, true);
    t.queueWait.batch.observe(0.0012);
    if (i % 50 === 0) t.redeliveries.inc();
    const tenant = m.tenantOf(metadata[i % 20]);
    const model = models[i % 6]!;
    m.attempt(model, outcomes[i % 10]!, 3);
    m.billed(t, model, tenant, 0.0000035, 26, 11);
    t.result.inc();
    t.overhead.observe(0.0004);
  };
  for (let i = 0; i < 1e6; i++) job(i);
  const n = 5e6;
  const c0 = process.cpuUsage();
  for (let i = 0; i < n; i++) job(i);
  const c = process.cpuUsage(c0);
  const r0 = performance.now();
  let text = "";
  for (let i = 0; i < 20; i++) text = await ops.render();
  return { nsPerJob: ((c.user + c.system) * 1000) / n, renderMs: (performance.now() - r0) / 20, lines: text.split("\n").length };
}

const cost = await recordingCost();
process.stdout.write(`recording: ${cost.nsPerJob.toFixed(0)} ns CPU per job; a scrape of ${cost.lines} lines renders in ${cost.renderMs.toFixed(2)} ms\n`);

const stack = await startStack();
const cpu: Record<"off" | "on", number[]> = { off: [], on: [] };
try {
  for (let rep = 0; rep < reps; rep++) {
    if (!values.alternate) {
      const r = await sideBySide(stack, rep);
      cpu.off.push(r.off);
      cpu.on.push(r.on);
      process.stderr.write(`  rep ${rep + 1}: off ${r.off.toFixed(4)}, on ${r.on.toFixed(4)} CPU ms/job (on served ${(r.share * 100).toFixed(0)} %, ${r.scrapes} scrapes)\n`);
      continue;
    }
    for (const mode of rep % 2 === 0 ? (["off", "on"] as const) : (["on", "off"] as const)) {
      const r = await alternate(stack, rep, mode);
      cpu[mode].push(r.cpu);
      process.stderr.write(`  rep ${rep + 1} metrics ${mode.padEnd(3)}: ${r.cpu.toFixed(4)} CPU ms/job${mode === "on" ? `, ${r.scrapes} scrapes` : ""}\n`);
    }
  }
} finally {
  await stack.close();
}

const off = spread(cpu.off);
const on = spread(cpu.on);
// Runs of one repetition share the machine's state (other load, stream sizes) more than runs apart.
const paired = spread(cpu.on.map((v, i) => ((v - cpu.off[i]!) / cpu.off[i]!) * 100));
const fmt = (s: Spread, digits = 4) => `${s.median.toFixed(digits)} (${s.min.toFixed(digits)} to ${s.max.toFixed(digits)})`;
process.stdout.write(
  `router CPU ms per job, ${values.alternate ? "alternating runs" : "two routers side by side"}, median (min to max) of ${reps} × ${jobs} jobs\n` +
    `  metrics ${values.control ? "on (A)" : "off:  "}: ${fmt(off)}\n` +
    `  metrics on${values.control ? " (B)" : ":   "}: ${fmt(on)}\n` +
    `  overhead:    ${fmt(paired, 1)} % CPU per job, per repetition (goal: under 3 %)\n`,
);

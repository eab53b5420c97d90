/**
 * Scenario 9: what Prometheus metrics cost the router.
 *
 * In the bench process, deterministic: the CPU the recording calls cost per job (the calls the
 * worker makes for a job served at its first attempt) and what one scrape of a busy label set
 * costs to render.
 *
 * End to end, as a ratio: two `switchyard router` processes drain equal backlogs at the same
 * time, each in its own namespace on the one nats-server, one with its ops endpoint on (metrics
 * recorded, /metrics scraped every second: 15× the usual rate, so rendering counts too), one
 * without. Running together, both see the same machine load, which on a shared box moves from
 * one run to the next by more than the effect measured; separate namespaces give each the same
 * backlog and the same pulls, where two routers on one consumer serve unequal shares at unequal
 * cost. Which namespace has metrics alternates between pairs. A/A pairs (metrics on in both)
 * show how far apart two identical routers measure: the resolution of the figure.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { names } from "../../shared/contract/subjects.ts";
import type { ModelInfo } from "../../shared/routing/catalog.ts";
import { routerMetrics } from "../../shared/ops/router-metrics.ts";
import { createOps } from "../../shared/ops/server.ts";
import { measureDrain } from "../lib/drain.ts";
import type { Profile } from "../lib/profile.ts";
import { DEFAULT_ROUTER, publishBacklog, streamCount, type Stack } from "../lib/stack.ts";
import { spread, type Spread } from "../lib/stats.ts";

export interface MetricsFigures {
  readonly date: string;
  /** CPU ns the recording calls cost per simulated job, in process. */
  readonly recordingNsPerJob: number;
  /** One render of /metrics with `renderLines` lines (3 tasks × 6 models × 20 tenants). */
  readonly renderMs: number;
  readonly renderLines: number;
  readonly jobs: number;
  /** Router CPU ms per job of each pair, metrics off and on. */
  readonly pairs: readonly { readonly off: number; readonly on: number; readonly scrapes: number }[];
  /** (on − off) ÷ off per pair, in %. */
  readonly overheadPct: Spread;
  /** The same over A/A pairs (metrics on in both): the figure's resolution. */
  readonly controlPct: Spread;
  /** The code measured, when this scenario ran apart from the rest of the report (`--only metrics`). */
  readonly code?: { readonly commit: string; readonly uncommitted: readonly string[] };
}

const SCRAPE_EVERY_MS = 1_000;
const NAMESPACES = ["metrics-a", "metrics-b"] as const;

/** Scrapes `url` every second until `stop()`, which returns the count; `results()` is the router's own count of results. */
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

/** Both routers' CPU ms per job over the middle of their drains; `metrics[i]` says whether router i records and is scraped. */
async function pair(stack: Stack, jobs: number, label: string, metrics: readonly [boolean, boolean]): Promise<{ cpu: [number, number]; scrapes: number }> {
  const configs = await Promise.all(NAMESPACES.map((ns) => stack.reset(DEFAULT_ROUTER, ns)));
  for (const ns of NAMESPACES) await publishBacklog(stack.js, `${label}-${ns}`, jobs, ns);
  const routers = NAMESPACES.map((ns, i) => stack.spawnRouter(configs[i]!, `router-${ns}`, { env: metrics[i] ? { SWITCHYARD_OPS_LISTEN: "127.0.0.1:0" } : {} }));
  const scrapers = routers.map((r, i) => (metrics[i] ? scraper(r.child.waitFor(/ops endpoint listening/).then((line) => (JSON.parse(line) as { url: string }).url)) : undefined));
  // Generous: on a machine shared with heavy work, two routers at once can drain at a few hundred jobs/s.
  const drains = await Promise.all(NAMESPACES.map((ns, i) => measureDrain(stack.jsm, jobs, [routers[i]!.child.pid], 600_000, names(ns).streams.results)));
  let scrapes = 0;
  for (const s of scrapers) {
    if (!s) continue;
    scrapes += await s.stop();
    const counted = await s.results();
    if (counted !== jobs) throw new Error(`metrics: a router's metrics counted ${counted} results of ${jobs}`);
  }
  await Promise.all(routers.map((r) => r.child.stop()));
  for (const ns of NAMESPACES) {
    const dead = await streamCount(stack.jsm, names(ns).streams.dlq);
    if (dead > 0) throw new Error(`metrics: ${dead} jobs were dead-lettered in ${ns}`);
  }
  return { cpu: [drains[0]!.cpuMsPerJob[0]!, drains[1]!.cpuMsPerJob[0]!], scrapes };
}

/** ns of CPU per simulated job, and ms per render of the resulting scrape. */
async function recordingCost(): Promise<{ nsPerJob: number; renderMs: number; lines: number }> {
  const ops = createOps();
  const m = routerMetrics(ops);
  const models = Array.from({ length: 6 }, (_, i) => ({ id: `p${i}/m${i}`, ordinal: 1000 + i, provider: `p${i}`, name: `m${i}` }) as unknown as ModelInfo);
  const tasks = ["moderation", "classification", "extraction"];
  const metadata = Array.from({ length: 20 }, (_, i) => ({ tenant: `tenant-${i}` }));
  const usage = { prompt_tokens: 26, completion_tokens: 11 };
  const outcomes = ["ok", "ok", "ok", "ok", "ok", "ok", "ok", "unavailable", "rate_limited", "invalid_output"] as const;
  const job = (i: number) => {
    const t = m.task(tasks[i % 3]!, true);
    t.queueWait.batch.observe(0.0012);
    if (i % 50 === 0) t.redeliveries.inc();
    const tenant = m.tenantOf(metadata[i % 20]);
    const model = models[i % 6]!;
    m.attempt(model, outcomes[i % 10]!, 3);
    m.billed(t, model, tenant, 0.0000035, usage);
    t.result.inc();
    t.overhead.observe(0.0004);
  };
  // Warm: every child bound and the loop optimised before timing.
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

export async function metricsOverhead(stack: Stack, profile: Profile): Promise<MetricsFigures> {
  const { jobs, reps, controlReps } = profile.metrics;
  const cost = await recordingCost();
  process.stderr.write(`  recording: ${cost.nsPerJob.toFixed(0)} ns per job; a ${cost.lines}-line scrape renders in ${cost.renderMs.toFixed(2)} ms\n`);
  const pairs: { off: number; on: number; scrapes: number }[] = [];
  const control: number[] = [];
  for (let rep = 0; rep < reps; rep++) {
    const onFirst = rep % 2 === 1;
    const r = await pair(stack, jobs, `metrics-${rep}`, [onFirst, !onFirst]);
    const [off, on] = onFirst ? [r.cpu[1], r.cpu[0]] : [r.cpu[0], r.cpu[1]];
    pairs.push({ off, on, scrapes: r.scrapes });
    process.stderr.write(`  pair ${rep + 1}: off ${off.toFixed(4)}, on ${on.toFixed(4)} CPU ms/job (${(((on - off) / off) * 100).toFixed(1)} %)\n`);
  }
  for (let rep = 0; rep < controlReps; rep++) {
    const r = await pair(stack, jobs, `metrics-aa-${rep}`, [true, true]);
    control.push(((r.cpu[1] - r.cpu[0]) / r.cpu[0]) * 100);
    process.stderr.write(`  A/A pair ${rep + 1}: ${r.cpu[0].toFixed(4)}, ${r.cpu[1].toFixed(4)} CPU ms/job (${control[rep]!.toFixed(1)} %)\n`);
  }
  return {
    date: new Date().toISOString(),
    recordingNsPerJob: cost.nsPerJob,
    renderMs: cost.renderMs,
    renderLines: cost.lines,
    jobs,
    pairs,
    overheadPct: spread(pairs.map((p) => ((p.on - p.off) / p.off) * 100)),
    controlPct: spread(control),
  };
}

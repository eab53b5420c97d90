/**
 * Scenario 3: the router's added latency per job at a moderate fixed rate, zero provider
 * latency, one worker with the sub-millisecond clock (bench/lib/timings.ts explains the sums).
 * A warm-up at the same rate comes first, so JIT compilation is not counted.
 */
import { STREAMS } from "../../shared/contract/subjects.ts";
import type { Profile } from "../lib/profile.ts";
import { cpuMs } from "../lib/procs.ts";
import { DEFAULT_ROUTER, publishAtRate, waitForCount, type Stack } from "../lib/stack.ts";
import { ascending, percentile, spread, type Spread } from "../lib/stats.ts";
import { jobTimings } from "../lib/timings.ts";

export interface LatencyFigures {
  readonly rate: number;
  readonly jobsPerRep: number;
  /** Delivery → result stored, minus the provider call (ms). */
  readonly overheadP50: Spread;
  readonly overheadP99: Spread;
  /** The router's own latency_ms minus the provider call (ms): up to the result being built, before serialising and publishing it. */
  readonly reportedP50: Spread;
  readonly reportedP99: Spread;
  /** The provider call as the router timed it (ms). */
  readonly providerP50: Spread;
  readonly providerP99: Spread;
  /** Job stored → result stored (ms). */
  readonly endToEndP50: Spread;
  readonly endToEndP99: Spread;
  readonly routerCpuMsPer1k: Spread;
}

export async function addedLatency(stack: Stack, profile: Profile): Promise<LatencyFigures> {
  const { rate, durationMs } = profile.latency;
  const runs: Record<string, number>[] = [];
  let jobsPerRep = 0;
  for (let rep = 0; rep < profile.reps; rep++) {
    const configFile = await stack.reset(DEFAULT_ROUTER);
    const router = stack.spawnRouter(configFile, "router", { timed: true });
    await router.ready;
    const warm = await publishAtRate(stack.js, `warm-${rep}`, rate, profile.warmupMs);
    await waitForCount(stack.jsm, STREAMS.results, warm, 30_000);
    const cpu0 = cpuMs(router.child.pid);
    const runId = `lat-${rep}`;
    jobsPerRep = await publishAtRate(stack.js, runId, rate, durationMs);
    await waitForCount(stack.jsm, STREAMS.results, warm + jobsPerRep, 30_000);
    const cpu = cpuMs(router.child.pid) - cpu0;
    await router.child.stop();
    const timings = await jobTimings(stack.js, warm + jobsPerRep, `${runId}-`);
    const pick = (f: (t: (typeof timings)[number]) => number) => ascending(timings.map(f));
    const overhead = pick((t) => t.overhead);
    const reported = pick((t) => t.overheadReported);
    const provider = pick((t) => t.provider);
    const e2e = pick((t) => t.endToEnd);
    runs.push({
      overheadP50: percentile(overhead, 50),
      overheadP99: percentile(overhead, 99),
      reportedP50: percentile(reported, 50),
      reportedP99: percentile(reported, 99),
      providerP50: percentile(provider, 50),
      providerP99: percentile(provider, 99),
      endToEndP50: percentile(e2e, 50),
      endToEndP99: percentile(e2e, 99),
      routerCpuMsPer1k: (cpu / jobsPerRep) * 1000,
    });
    process.stderr.write(`  latency rep ${rep + 1}: overhead p50 ${runs.at(-1)!.overheadP50!.toFixed(3)} ms, p99 ${runs.at(-1)!.overheadP99!.toFixed(3)} ms\n`);
  }
  const s = (k: string) => spread(runs.map((r) => r[k]!));
  return {
    rate,
    jobsPerRep,
    overheadP50: s("overheadP50"),
    overheadP99: s("overheadP99"),
    reportedP50: s("reportedP50"),
    reportedP99: s("reportedP99"),
    providerP50: s("providerP50"),
    providerP99: s("providerP99"),
    endToEndP50: s("endToEndP50"),
    endToEndP99: s("endToEndP99"),
    routerCpuMsPer1k: s("routerCpuMsPer1k"),
  };
}

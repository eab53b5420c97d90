/**
 * Scenario 6: what a failing primary costs each job. One worker (sub-millisecond clock) at a
 * fixed rate; the moderation tier tries budget/lite (the primary: cheapest) before swift/mini.
 * After a healthy warm-up the primary either stays healthy, answers every call 503,
 * or hangs every call until the worker's timeout. The worker's local health cools a model
 * down after consecutive failures, so only some jobs pay for the fault; the figures are over
 * every job of the run, plus the jobs that did try the primary.
 */
import { STREAMS } from "../../shared/contract/subjects.ts";
import type { Profile } from "../lib/profile.ts";
import { cpuMs } from "../lib/procs.ts";
import { DEFAULT_ROUTER, PRIMARY, publishAtRate, waitForCount, type Stack } from "../lib/stack.ts";
import { ascending, mean, percentile, spread, type Spread } from "../lib/stats.ts";
import { jobTimings } from "../lib/timings.ts";

export const FAILOVER_MODES = ["healthy", "503", "hang"] as const;
export type FailoverMode = (typeof FAILOVER_MODES)[number];

export interface FailoverFigures {
  readonly mode: FailoverMode;
  readonly rate: number;
  readonly durationMs: number;
  readonly timeoutMs: number;
  /** Delivery → result stored, over all jobs (ms). */
  readonly mean: Spread;
  readonly p50: Spread;
  readonly p99: Spread;
  /** Share of jobs that called the failing primary before being served by the fallback. */
  readonly failedOverShare: Spread;
  /** Median delivery → result stored of those jobs (ms). */
  readonly failedOverP50: Spread;
  readonly routerCpuMsPer1k: Spread;
}

export async function failover(stack: Stack, profile: Profile, mode: FailoverMode): Promise<FailoverFigures> {
  const { rate, healthyMs, faultyMs, timeoutMs } = profile.failover;
  const durationMs = mode === "healthy" ? healthyMs : faultyMs;
  const runs: Record<string, number>[] = [];
  for (let rep = 0; rep < profile.reps; rep++) {
    // Hanging calls hold their connection until the timeout: room for all of them.
    const configFile = await stack.reset({ ...DEFAULT_ROUTER, maxConcurrency: 2_048, primaryTimeoutMs: timeoutMs });
    await stack.simReset();
    const router = stack.spawnRouter(configFile, "router", { timed: true });
    await router.ready;
    const warm = await publishAtRate(stack.js, `warm-${rep}`, rate, profile.warmupMs);
    await waitForCount(stack.jsm, STREAMS.results, warm, 30_000);
    if (mode !== "healthy") await stack.simControl(PRIMARY, { outage: mode });
    const cpu0 = cpuMs(router.child.pid);
    const runId = `fo-${mode}-${rep}`;
    const jobs = await publishAtRate(stack.js, runId, rate, durationMs);
    await waitForCount(stack.jsm, STREAMS.results, warm + jobs, timeoutMs * 4 + 30_000);
    const cpu = cpuMs(router.child.pid) - cpu0;
    await router.child.stop();
    const timings = await jobTimings(stack.js, warm + jobs, `${runId}-`);
    const all = ascending(timings.map((t) => t.inRouter));
    const failedOver = ascending(timings.filter((t) => t.attempts.length > 1).map((t) => t.inRouter));
    runs.push({
      mean: mean(all),
      p50: percentile(all, 50),
      p99: percentile(all, 99),
      failedOverShare: failedOver.length / all.length,
      failedOverP50: failedOver.length > 0 ? percentile(failedOver, 50) : 0,
      routerCpuMsPer1k: (cpu / jobs) * 1000,
    });
    const r = runs.at(-1)!;
    process.stderr.write(`  failover ${mode} rep ${rep + 1}: mean ${r.mean!.toFixed(2)} ms, p99 ${r.p99!.toFixed(2)} ms, ${(100 * r.failedOverShare!).toFixed(1)} % failed over\n`);
  }
  await stack.simReset();
  const s = (k: string) => spread(runs.map((r) => r[k]!));
  return {
    mode,
    rate,
    durationMs,
    timeoutMs,
    mean: s("mean"),
    p50: s("p50"),
    p99: s("p99"),
    failedOverShare: s("failedOverShare"),
    failedOverP50: s("failedOverP50"),
    routerCpuMsPer1k: s("routerCpuMsPer1k"),
  };
}

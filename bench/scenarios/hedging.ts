/**
 * Scenario 6, hedged: the failover run with the primary hanging, on the interactive lane, once
 * without and once with the task's `hedge` (after the primary's p95, measured in the warm-up of
 * the same run), one worker each. Reports the share of jobs that waited more than 2× the
 * primary's p95 (the goal: ≤ 5 % with hedging), the calls beyond one per job, and what was billed.
 */
import { STREAMS } from "../../shared/contract/subjects.ts";
import type { Profile } from "../lib/profile.ts";
import { DEFAULT_ROUTER, PRIMARY, publishAtRate, waitForCount, type Stack } from "../lib/stack.ts";
import { ascending, percentile } from "../lib/stats.ts";
import { jobTimings, readStream } from "../lib/timings.ts";

export interface HedgingRun {
  readonly hedge: boolean;
  /** The hedge delay: the primary's p95 in the warm-up (ms). */
  readonly afterMs: number;
  readonly jobs: number;
  /** Share of jobs with delivery → result stored over 2× the primary's p95. */
  readonly slowShare: number;
  readonly p50: number;
  readonly p99: number;
  /** Provider calls beyond one per job, per job. */
  readonly extraCallsPerJob: number;
  /** Billed USD per 1,000 jobs (every answered attempt). */
  readonly billedPer1k: number;
}

export async function hedging(stack: Stack, profile: Profile): Promise<{ primaryP95Ms: number; runs: HedgingRun[] }> {
  const { rate, faultyMs, timeoutMs } = profile.failover;
  let primaryP95Ms = NaN;
  const runs: HedgingRun[] = [];
  for (const hedge of [false, true]) {
    const configFile = await stack.reset({ ...DEFAULT_ROUTER, maxConcurrency: 2_048, primaryTimeoutMs: timeoutMs, ...(hedge ? { hedgeAfterMs: primaryP95Ms } : {}) });
    await stack.simReset();
    const router = stack.spawnRouter(configFile, "router", { timed: true });
    await router.ready;
    const warmId = `hwarm-${hedge}`;
    const warm = await publishAtRate(stack.js, warmId, rate, profile.warmupMs, true);
    await waitForCount(stack.jsm, STREAMS.results, warm, 30_000);
    if (!hedge) {
      // The primary's p95 as the pricing service would see it: its answered calls in the warm-up.
      const ok = (await jobTimings(stack.js, warm, `${warmId}-`)).flatMap((t) => t.attempts.filter((a) => a.provider === PRIMARY.provider && a.outcome === "ok").map((a) => a.latency_ms));
      primaryP95Ms = percentile(ascending(ok), 95);
    }
    await stack.simControl(PRIMARY, { outage: "hang" });
    const runId = `hedge-${hedge}`;
    const jobs = await publishAtRate(stack.js, runId, rate, faultyMs, true);
    await waitForCount(stack.jsm, STREAMS.results, warm + jobs, timeoutMs * 4 + 30_000);
    await router.child.stop();
    const timings = await jobTimings(stack.js, warm + jobs, `${runId}-`);
    const waits = ascending(timings.map((t) => t.inRouter));
    let billed = 0;
    const decoder = new TextDecoder();
    for (const r of await readStream(stack.js, STREAMS.results, warm + jobs)) {
      const result = JSON.parse(decoder.decode(r.data)) as { id: string; billed_usd?: number };
      if (result.id.startsWith(`${runId}-`)) billed += result.billed_usd ?? 0;
    }
    const calls = timings.reduce((n, t) => n + t.attempts.length, 0);
    const run: HedgingRun = {
      hedge,
      afterMs: primaryP95Ms,
      jobs: timings.length,
      slowShare: waits.filter((w) => w > 2 * primaryP95Ms).length / waits.length,
      p50: percentile(waits, 50),
      p99: percentile(waits, 99),
      extraCallsPerJob: (calls - timings.length) / timings.length,
      billedPer1k: (billed / timings.length) * 1000,
    };
    runs.push(run);
    process.stderr.write(`  hedging ${hedge ? "on " : "off"}: ${run.jobs} jobs, ${(100 * run.slowShare).toFixed(1)} % over 2 × p95 (${(2 * primaryP95Ms).toFixed(1)} ms), p50 ${run.p50.toFixed(1)} ms, p99 ${run.p99.toFixed(1)} ms, ${run.extraCallsPerJob.toFixed(2)} extra calls/job, $${run.billedPer1k.toFixed(5)} billed per 1k jobs\n`);
  }
  await stack.simReset();
  return { primaryP95Ms, runs };
}

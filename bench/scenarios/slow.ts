/**
 * Scenario 4: one worker against a slow provider (every call takes `latencyMs`). The worker
 * may hold 10,000 jobs; the consumer's ack-pending count, sampled with the worker's RSS, says
 * how many it really holds. Throughput is taken while jobs were still waiting in the stream,
 * after the first results (the worker could have taken more if it wanted). By Little's law
 * throughput = in flight ÷ time in flight, so throughput ÷ (in flight ÷ latency) is latency ÷
 * the mean time a job spent in the worker (its result's latency_ms): 1 when the worker adds
 * nothing to the provider's latency. Measured per job, that holds through ramp-up and drain.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { STREAMS } from "../../shared/contract/subjects.ts";
import { laneSlots } from "../../services/router/lanes.ts";
import type { Profile } from "../lib/profile.ts";
import { cpuMs, rssKiB } from "../lib/procs.ts";
import { consumerState, PRIMARY, publishBacklog, streamCount, type RouterSettings, type Stack } from "../lib/stack.ts";
import { mean, spread, type Spread } from "../lib/stats.ts";
import { readStream } from "../lib/timings.ts";
import { DEFAULT_LANES } from "../../shared/config/lanes-schema.ts";

export interface SlowFigures {
  readonly latencyMs: number;
  readonly jobs: number;
  /** router.max_in_flight, sized so the batch lane may hold 10,000. */
  readonly maxInFlight: number;
  readonly peakInFlight: Spread;
  /** Mean in flight over the steady window. */
  readonly inFlight: Spread;
  readonly jobsPerSec: Spread;
  /** Throughput ÷ (in flight ÷ latency) = latency ÷ mean time in the worker; 1 is all Little's law allows. */
  readonly littleRatio: Spread;
  /** Mean delivery → result built, the result's latency_ms (ms). */
  readonly timeInWorkerMs: Spread;
  readonly rssPerInFlightKiB: Spread;
  readonly peakRssMiB: Spread;
  readonly idleRssMiB: number;
  readonly routerCpuMsPer1k: Spread;
}

/** Jobs the worker may hold: the target. */
const HOLD = 10_000;

/**
 * The smallest max_in_flight whose batch lane (bench jobs are batch jobs) may hold `jobs`:
 * by default a quarter of the slots stay reserved for interactive jobs (services/router/lanes.ts).
 */
function maxInFlightFor(jobs: number): number {
  const shares = DEFAULT_LANES;
  let max = jobs;
  while (max - laneSlots(max, shares).interactiveReserved < jobs) max++;
  return max;
}

const SLOW_ROUTER: RouterSettings = { maxInFlight: maxInFlightFor(HOLD), maxAckPending: 2 * HOLD, maxConcurrency: HOLD, primaryTimeoutMs: 30_000 };

interface Sample {
  readonly t: number;
  readonly inFlight: number;
  readonly undelivered: number;
  readonly done: number;
  readonly rss: number;
}

/** RSS of a worker that has started and consumed nothing: the base the per-job figure is measured from. */
export async function idleRouterRssKiB(stack: Stack): Promise<number> {
  const configFile = await stack.reset(SLOW_ROUTER);
  const router = stack.spawnRouter(configFile, "router-idle");
  await router.ready;
  await sleep(1_000);
  const rss = rssKiB(router.child.pid);
  await router.child.stop();
  return rss;
}

export async function slowProvider(stack: Stack, profile: Profile, latencyMs: number, jobs: number, idleRss: number): Promise<SlowFigures> {
  const runs: Record<string, number>[] = [];
  for (let rep = 0; rep < profile.reps; rep++) {
    const configFile = await stack.reset(SLOW_ROUTER);
    await stack.simControl(PRIMARY, { latency_ms: { min: latencyMs, max: latencyMs } });
    await publishBacklog(stack.js, `slow-${latencyMs}-${rep}`, jobs);
    const router = stack.spawnRouter(configFile, "router");
    const pid = router.child.pid;
    const cpu0 = cpuMs(pid);
    const samples: Sample[] = [];
    const t0 = performance.now();
    for (;;) {
      const [state, done] = await Promise.all([consumerState(stack.jsm), streamCount(stack.jsm, STREAMS.results)]);
      samples.push({ t: performance.now(), ...state, done, rss: rssKiB(pid) });
      if (done >= jobs) break;
      if (performance.now() - t0 > 120_000 + (jobs / 1000) * latencyMs) throw new Error(`slow ${latencyMs} ms: ${done} of ${jobs} results`);
      await sleep(100);
    }
    const cpu = cpuMs(pid) - cpu0;
    await router.child.stop();
    await stack.simReset();
    const decoder = new TextDecoder();
    const results = await readStream(stack.js, STREAMS.results, jobs);
    const timeInWorker = mean(results.map((r) => (JSON.parse(decoder.decode(r.data)) as { latency_ms: number }).latency_ms));

    const steady = samples.filter((s) => s.done > 0 && s.undelivered > 0);
    const first = steady[0] ?? samples[0]!;
    const last = steady.length > 1 ? steady[steady.length - 1]! : samples[samples.length - 1]!;
    const jobsPerSec = (last.done - first.done) / ((last.t - first.t) / 1000);
    const inFlight = mean((steady.length > 1 ? steady : samples).map((s) => s.inFlight));
    const peakInFlight = Math.max(...samples.map((s) => s.inFlight));
    const peakRss = Math.max(...samples.map((s) => s.rss));
    runs.push({
      peakInFlight,
      inFlight,
      jobsPerSec,
      littleRatio: latencyMs / timeInWorker,
      timeInWorkerMs: timeInWorker,
      rssPerInFlightKiB: (peakRss - idleRss) / peakInFlight,
      peakRssMiB: peakRss / 1024,
      routerCpuMsPer1k: (cpu / jobs) * 1000,
    });
    process.stderr.write(`  slow ${latencyMs} ms rep ${rep + 1}: ${Math.round(inFlight)} in flight (peak ${peakInFlight}), ${Math.round(jobsPerSec)} jobs/s\n`);
  }
  const s = (k: string) => spread(runs.map((r) => r[k]!));
  return {
    latencyMs,
    jobs,
    maxInFlight: SLOW_ROUTER.maxInFlight,
    peakInFlight: s("peakInFlight"),
    inFlight: s("inFlight"),
    jobsPerSec: s("jobsPerSec"),
    littleRatio: s("littleRatio"),
    timeInWorkerMs: s("timeInWorkerMs"),
    rssPerInFlightKiB: s("rssPerInFlightKiB"),
    peakRssMiB: s("peakRssMiB"),
    idleRssMiB: idleRss / 1024,
    routerCpuMsPer1k: s("routerCpuMsPer1k"),
  };
}

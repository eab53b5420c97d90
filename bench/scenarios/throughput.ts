/**
 * Scenario 1(a) and 2: a backlog of jobs drained by consumers in their own processes, at
 * zero provider latency. 1(a) drains it with the bare JetStream pipeline (bench/workers/
 * pipeline.ts), 2 with one or two `switchyard router` processes.
 */
import { STREAMS } from "../../shared/contract/subjects.ts";
import { measureDrain } from "../lib/drain.ts";
import type { Profile } from "../lib/profile.ts";
import { spawnWorker } from "../lib/procs.ts";
import { DEFAULT_ROUTER, publishBacklog, streamCount, type Spawned, type Stack } from "../lib/stack.ts";
import { spread, type Spread } from "../lib/stats.ts";

export interface DrainFigures {
  readonly jobsPerSec: Spread;
  /** CPU ms per 1,000 jobs of the consumer process(es), summed. */
  readonly consumerCpuMsPer1k: Spread;
  readonly natsCpuMsPer1k: Spread;
  readonly simCpuMsPer1k: Spread;
  readonly jobs: number;
}

async function drainRuns(stack: Stack, profile: Profile, label: string, spawnConsumers: (configFile: string) => Spawned[]): Promise<DrainFigures> {
  const runs: { rate: number; consumer: number; nats: number; sim: number }[] = [];
  for (let rep = 0; rep < profile.reps; rep++) {
    const configFile = await stack.reset(DEFAULT_ROUTER);
    await publishBacklog(stack.js, `${label}-${rep}`, profile.backlogJobs);
    const consumers = spawnConsumers(configFile);
    const pids = [...consumers.map((c) => c.child.pid), stack.nats.pid()!, stack.sim.pid];
    const [drain] = await Promise.all([measureDrain(stack.jsm, profile.backlogJobs, pids, 120_000), ...consumers.map((c) => c.ready)]);
    await Promise.all(consumers.map((c) => c.child.stop()));
    const dead = await streamCount(stack.jsm, STREAMS.dlq);
    if (dead > 0) throw new Error(`${label}: ${dead} jobs were dead-lettered`);
    const per1k = (i: number) => drain.cpuMsPerJob[i]! * 1000;
    runs.push({ rate: drain.jobsPerSec, consumer: consumers.reduce((sum, _, i) => sum + per1k(i), 0), nats: per1k(consumers.length), sim: per1k(consumers.length + 1) });
    process.stderr.write(`  ${label} rep ${rep + 1}: ${Math.round(drain.jobsPerSec)} jobs/s\n`);
  }
  return {
    jobsPerSec: spread(runs.map((r) => r.rate)),
    consumerCpuMsPer1k: spread(runs.map((r) => r.consumer)),
    natsCpuMsPer1k: spread(runs.map((r) => r.nats)),
    simCpuMsPer1k: spread(runs.map((r) => r.sim)),
    jobs: profile.backlogJobs,
  };
}

/** Scenario 2: `workers` router processes on one shared consumer. */
export function endToEnd(stack: Stack, profile: Profile, workers: number): Promise<DrainFigures> {
  return drainRuns(stack, profile, `e2e-${workers}w`, (configFile) =>
    Array.from({ length: workers }, (_, i) => stack.spawnRouter(configFile, `router-${i + 1}`)),
  );
}

/** Mean payload bytes of the results a router run left in RESULTS (the first few). */
export async function resultBytes(stack: Stack): Promise<number> {
  let total = 0;
  const n = 5;
  for (let seq = 1; seq <= n; seq++) total += (await stack.jsm.streams.getMessage(STREAMS.results, { seq }))!.data.length;
  return Math.round(total / n);
}

/** Limit (a): the bare JetStream pipeline, publishing results of `bytes` bytes. */
export function jetStreamLimit(stack: Stack, profile: Profile, bytes: number): Promise<DrainFigures> {
  return drainRuns(stack, profile, "limit-a", () => {
    const child = spawnWorker("pipeline", "pipeline.ts", {
      NATS_URL: stack.natsUrl,
      MAX_IN_FLIGHT: String(DEFAULT_ROUTER.maxInFlight),
      RESULT_BYTES: String(bytes),
    });
    return [{ child, ready: child.waitFor(/^ready$/) }];
  });
}

/**
 * Throughput of whatever consumes the JOBS backlog (router workers or the limit pipeline),
 * read from outside: the RESULTS stream's message count and each process's CPU, polled
 * together. Only the middle of the run counts (10 % to 90 % of the results), so process
 * start-up, JIT warm-up and the last stragglers do not dilute the figure.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { JetStreamManager } from "@nats-io/jetstream";
import { STREAMS } from "../../shared/contract/subjects.ts";
import { cpuMs } from "./procs.ts";
import { streamCount } from "./stack.ts";

export interface Drain {
  readonly jobsPerSec: number;
  /** CPU milliseconds per job in the window, per watched process (same order as given). */
  readonly cpuMsPerJob: number[];
  readonly windowJobs: number;
  readonly windowSeconds: number;
  /** From the first poll to the last result. */
  readonly totalSeconds: number;
}

interface Sample {
  readonly t: number;
  readonly done: number;
  readonly cpu: number[];
}

const POLL_MS = 50;

export async function measureDrain(jsm: JetStreamManager, jobs: number, pids: readonly number[], timeoutMs: number, resultsStream: string = STREAMS.results): Promise<Drain> {
  const samples: Sample[] = [];
  const t0 = performance.now();
  for (;;) {
    const done = await streamCount(jsm, resultsStream);
    samples.push({ t: performance.now(), done, cpu: pids.map(cpuMs) });
    if (done >= jobs) break;
    if (performance.now() - t0 > timeoutMs) throw new Error(`${done} of ${jobs} results after ${timeoutMs} ms`);
    await sleep(POLL_MS);
  }
  const first = samples.find((s) => s.done >= 0.1 * jobs) ?? samples[0]!;
  const lastInWindow = samples.findLast((s) => s.done <= 0.9 * jobs);
  const last = lastInWindow && lastInWindow.t > first.t ? lastInWindow : samples[samples.length - 1]!;
  const windowJobs = last.done - first.done;
  const windowSeconds = (last.t - first.t) / 1000;
  return {
    jobsPerSec: windowJobs / windowSeconds,
    cpuMsPerJob: pids.map((_, i) => (last.cpu[i]! - first.cpu[i]!) / windowJobs),
    windowJobs,
    windowSeconds,
    totalSeconds: (samples[samples.length - 1]!.t - t0) / 1000,
  };
}

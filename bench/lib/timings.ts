/**
 * Per-job timings of a run, joined from what JetStream stored and what the router wrote in
 * each result. nats-server stamps every stored message in nanoseconds, so
 *   job stored → result stored            = end to end, one clock (the server's)
 *   delivery   = job stored + queued_ms    (queued_ms: the router's clock at dispatch − job stored)
 *   delivery → result stored − Σ attempt latency_ms = the router's overhead, publish included
 *   latency_ms − Σ attempt latency_ms     = the router's own report, up to the result being built
 * The sub-millisecond figures need the router's clock of bench/workers/router.ts.
 */
import type { JetStreamClient } from "@nats-io/jetstream";
import { STREAMS } from "../../shared/contract/subjects.ts";

export interface JobTiming {
  readonly id: string;
  /** Job stored → result stored, ms. */
  readonly endToEnd: number;
  /** Delivery to the router → result stored, ms: what the router adds, provider calls included. */
  readonly inRouter: number;
  /** Delivery to the router → result stored, minus the provider calls, ms. */
  readonly overhead: number;
  /** The router's own latency_ms minus the provider calls, ms. */
  readonly overheadReported: number;
  /** Σ attempts[].latency_ms. */
  readonly provider: number;
  readonly attempts: readonly { provider: string; outcome: string; latency_ms: number }[];
}

interface ResultView {
  id: string;
  latency_ms: number;
  queued_ms: number;
  attempts: { provider: string; outcome: string; latency_ms: number }[];
}

/** Every message of a stream with its stored time (ms, microsecond precision), read with an ordered consumer. */
export async function readStream(js: JetStreamClient, stream: string, count: number): Promise<{ ms: number; data: Uint8Array }[]> {
  const out: { ms: number; data: Uint8Array }[] = [];
  if (count === 0) return out;
  const consumer = await js.consumers.get(stream);
  const messages = await consumer.consume({ max_messages: 2_000 });
  for await (const m of messages) {
    out.push({ ms: Number(m.timestampNanos / 1000n) / 1000, data: m.data });
    if (out.length >= count) break;
  }
  await messages.close();
  return out;
}

/** Timings of the jobs whose id starts with `prefix` (other jobs, such as a warm-up, are skipped). */
export async function jobTimings(js: JetStreamClient, jobs: number, prefix: string): Promise<JobTiming[]> {
  const decoder = new TextDecoder();
  const stored = new Map<string, number>();
  for (const j of await readStream(js, STREAMS.jobs, jobs)) stored.set((JSON.parse(decoder.decode(j.data)) as { id: string }).id, j.ms);
  const out: JobTiming[] = [];
  for (const r of await readStream(js, STREAMS.results, jobs)) {
    const result = JSON.parse(decoder.decode(r.data)) as ResultView;
    if (!result.id.startsWith(prefix)) continue;
    const jobMs = stored.get(result.id)!;
    const provider = result.attempts.reduce((sum, a) => sum + a.latency_ms, 0);
    const inRouter = r.ms - (jobMs + result.queued_ms);
    out.push({
      id: result.id,
      endToEnd: r.ms - jobMs,
      inRouter,
      overhead: inRouter - provider,
      overheadReported: result.latency_ms - provider,
      provider,
      attempts: result.attempts,
    });
  }
  return out;
}

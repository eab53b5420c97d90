/**
 * Scenario 1(b): the provider path with no queue — bench/workers/provider-calls.ts in its
 * own process against the sim-provider at zero latency, as calls/s.
 */
import type { Profile } from "../lib/profile.ts";
import { cpuMs, spawnWorker } from "../lib/procs.ts";
import { PRIMARY, type Stack } from "../lib/stack.ts";
import { spread, type Spread } from "../lib/stats.ts";

export interface ProviderFigures {
  readonly callsPerSec: Spread;
  /** CPU ms per 1,000 calls of the calling process and of the sim-provider. */
  readonly callerCpuMsPer1k: Spread;
  readonly simCpuMsPer1k: Spread;
  readonly concurrency: number;
}

export async function providerLimit(stack: Stack, profile: Profile): Promise<ProviderFigures> {
  const { warmupMs, durationMs, concurrency } = profile.providerCalls;
  const runs: { rate: number; caller: number; sim: number }[] = [];
  for (let rep = 0; rep < profile.reps; rep++) {
    const child = spawnWorker("provider-calls", "provider-calls.ts", {
      BASE_URL: `${stack.simUrl}/${PRIMARY.provider}/v1`,
      API_KEY: `sim-${PRIMARY.provider}-key`,
      UPSTREAM: PRIMARY.upstream,
      CONCURRENCY: String(concurrency),
      WARMUP_MS: String(warmupMs),
      DURATION_MS: String(durationMs),
    });
    await child.waitFor(/^measuring$/);
    const sim0 = cpuMs(stack.sim.pid);
    const line = await child.waitFor(/^\{/, warmupMs + durationMs + 30_000);
    const simMs = cpuMs(stack.sim.pid) - sim0;
    await child.exited;
    const r = JSON.parse(line) as { calls: number; seconds: number; cpuMs: number };
    runs.push({ rate: r.calls / r.seconds, caller: (r.cpuMs / r.calls) * 1000, sim: (simMs / r.calls) * 1000 });
    process.stderr.write(`  limit-b rep ${rep + 1}: ${Math.round(r.calls / r.seconds)} calls/s\n`);
  }
  return {
    callsPerSec: spread(runs.map((r) => r.rate)),
    callerCpuMsPer1k: spread(runs.map((r) => r.caller)),
    simCpuMsPer1k: spread(runs.map((r) => r.sim)),
    concurrency,
  };
}

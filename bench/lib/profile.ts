/** How long and how often each scenario runs: `full` for the published figures, `quick` for a smoke run. */
export interface Profile {
  readonly name: "full" | "quick";
  /** Repetitions of every measured run; each figure is their median, with min and max. */
  readonly reps: number;
  /** Before each scenario, wait up to this long for other processes on the machine to go quiet. */
  readonly settleMs: number;
  /** Scenarios 3 and 6: seconds of jobs at the run's rate before measuring, so JIT compilation is not counted. */
  readonly warmupMs: number;
  /** Jobs published before the consumers start, for throughput runs (limit (a), end-to-end). */
  readonly backlogJobs: number;
  /** Limit (b): warm-up and measured seconds of provider calls. */
  readonly providerCalls: { readonly warmupMs: number; readonly durationMs: number; readonly concurrency: number };
  /** Scenario 3: a fixed publish rate, well below capacity. */
  readonly latency: { readonly rate: number; readonly durationMs: number };
  /** Scenario 4: provider latency and jobs per run. */
  readonly slow: readonly { readonly latencyMs: number; readonly jobs: number }[];
  readonly planner: { readonly durationMs: number };
  /** Scenario 6: fixed rate; a faulty run covers one primary timeout plus one 5 s cooldown. */
  readonly failover: { readonly rate: number; readonly healthyMs: number; readonly faultyMs: number; readonly timeoutMs: number };
  /** Scenario 7: price-change and outage trials with two workers; the cost run's jobs and rate. */
  readonly live: { readonly priceTrials: number; readonly outageTrials: number; readonly costJobs: number; readonly costRate: number };
  /** Scenario 8: seconds per gateway measurement run. */
  readonly gatewaySeconds: number;
  /** Scenario 9: jobs per router per run, off/on pairs and A/A (on/on) pairs. */
  readonly metrics: { readonly jobs: number; readonly reps: number; readonly controlReps: number };
  /** Scenario 10: reservations one at a time and concurrently; jobs per throughput run and off/on pairs of runs. */
  readonly budgets: { readonly sequential: number; readonly concurrent: number; readonly jobs: number; readonly pairs: number };
}

export const FULL: Profile = {
  name: "full",
  reps: 3,
  settleMs: 20_000,
  warmupMs: 1_000,
  backlogJobs: 15_000,
  providerCalls: { warmupMs: 1_000, durationMs: 3_000, concurrency: 256 },
  latency: { rate: 500, durationMs: 6_000 },
  slow: [
    { latencyMs: 1_000, jobs: 20_000 },
    { latencyMs: 5_000, jobs: 20_000 },
  ],
  planner: { durationMs: 300 },
  failover: { rate: 200, healthyMs: 2_000, faultyMs: 5_000, timeoutMs: 1_000 },
  live: { priceTrials: 20, outageTrials: 5, costJobs: 10_000, costRate: 500 },
  gatewaySeconds: 5,
  metrics: { jobs: 20_000, reps: 6, controlReps: 2 },
  budgets: { sequential: 2_000, concurrent: 20_000, jobs: 5_000, pairs: 4 },
};

export const QUICK: Profile = {
  name: "quick",
  reps: 1,
  settleMs: 0,
  warmupMs: 300,
  backlogJobs: 2_000,
  providerCalls: { warmupMs: 300, durationMs: 700, concurrency: 256 },
  latency: { rate: 500, durationMs: 1_500 },
  slow: [{ latencyMs: 1_000, jobs: 4_000 }],
  planner: { durationMs: 100 },
  failover: { rate: 200, healthyMs: 1_000, faultyMs: 1_500, timeoutMs: 500 },
  live: { priceTrials: 4, outageTrials: 1, costJobs: 1_500, costRate: 500 },
  gatewaySeconds: 1,
  metrics: { jobs: 2_000, reps: 2, controlReps: 1 },
  budgets: { sequential: 500, concurrent: 5_000, jobs: 1_500, pairs: 2 },
};

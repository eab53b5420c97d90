/**
 * Scenario 10, the cost of a budget reservation (README "Budgets"): its own nats-server, in
 * the bench process. A SpendLedger (shared/spend/ledger-kv.ts) reserving and settling on one
 * spend entry, as a router does around every call of a budgeted job:
 *
 * - one job at a time: the latency a reservation adds when nothing else runs (one KV read on
 *   the first, then one compare-and-set per reservation) — the goal is a p50 under 0.3 ms;
 * - `CONCURRENCY` jobs at once in one worker: reservations gather into group commits, so each
 *   waits for the write in flight plus its own; reservations per second and CPU per one;
 * - the same in three ledgers (three workers) on the same entry, contending by compare-and-set;
 * - throughput, budgets on against off in the same run: one router worker in this process, the
 *   sim-provider at zero latency, pairs of runs, which of the two goes first alternating from
 *   pair to pair so neither gains from the machine warming or tiring; with budgets on, every
 *   job answers to a tenant budget too large to refuse, so only the reservation differs. One
 *   untimed run of each goes first.
 */
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { startRouter } from "../../services/router/main.ts";
import { parseScenario } from "../../services/sim-provider/scenario.ts";
import { createSimProvider } from "../../services/sim-provider/server.ts";
import { parseConfig } from "../../shared/config/load.ts";
import { SPEND_BUCKETS, STREAMS } from "../../shared/contract/subjects.ts";
import { createLogger } from "../../shared/log.ts";
import { startNatsServer } from "../../shared/nats/server-process.ts";
import { provision } from "../../shared/nats/provision.ts";
import { SpendEntrySchema, spendKey } from "../../shared/spend/budget.ts";
import { SpendLedger } from "../../shared/spend/ledger-kv.ts";
import { percentile } from "../../shared/stats.ts";
import type { Profile } from "../lib/profile.ts";
import { spread, type Spread } from "../lib/stats.ts";

/** Jobs in flight per worker in the concurrent runs: the router's default max_concurrency. */
const CONCURRENCY = 256;
/** What each reservation asks and settles: far below the limit, so none is refused. */
const COST = 1e-6;

export interface ConcurrentFigures {
  readonly workers: number;
  readonly inFlight: number;
  readonly reservationsPerSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly clientCpuUsPerReservation: number;
  /** The spend entry's revision afterwards: KV writes for all the reservations and settlements. */
  readonly kvWrites: number;
}

export interface BudgetsFigures {
  readonly date: string;
  /** Set by `npm run bench -- --only budgets`, which runs this apart from the rest of the report. */
  readonly code?: { readonly commit: string; readonly uncommitted: readonly string[] };
  readonly sequential: { readonly reservations: number; readonly p50Ms: number; readonly p99Ms: number };
  readonly oneWorker: ConcurrentFigures;
  readonly threeWorkers: ConcurrentFigures;
  readonly throughput: {
    readonly jobsPerRun: number;
    /** Jobs/s of each pair, in the order the pairs ran. */
    readonly pairs: readonly { readonly off: number; readonly on: number }[];
    /** on ÷ off of each pair. */
    readonly ratio: Spread;
    /** The tenant's settled spend after the runs: proof the "on" runs reserved and settled. */
    readonly settledUsd: number;
  };
}

export async function budgetsCost(profile: Profile): Promise<BudgetsFigures> {
  const { sequential: SEQUENTIAL, concurrent: CONCURRENT } = profile.budgets;
  const date = new Date().toISOString();
  const server = await startNatsServer();
  const nc = await connect({ servers: server.url });
  try {
    const kv = await new Kvm(nc).create("bench-spend", { history: 1 });
    const ledger = (worker: string) => new SpendLedger({ kv, worker, ttlMs: 10_000 });

    // One at a time: reserve (awaited: the call waits for it), then settle (not awaited by the job).
    const one = ledger("solo");
    const seq: number[] = [];
    for (let i = 0; i < SEQUENTIAL; i++) {
      const t0 = performance.now();
      const a = await one.reserve("solo.key", COST, 1e9);
      seq.push(performance.now() - t0);
      if (a.granted) one.settle("solo.key", COST, COST);
      // Let the settlement's write go first, as the provider call's time would.
      await one.flush();
    }
    one.close();

    const concurrent = async (workers: number, key: string): Promise<ConcurrentFigures> => {
      const ledgers = Array.from({ length: workers }, (_, i) => ledger(`w${i}`));
      const lat: number[] = [];
      let next = 0;
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      await Promise.all(
        Array.from({ length: CONCURRENCY * workers }, async (_, slot) => {
          const l = ledgers[slot % workers]!;
          while (next < CONCURRENT) {
            next++;
            const s = performance.now();
            const a = await l.reserve(key, COST, 1e9);
            lat.push(performance.now() - s);
            if (a.granted) l.settle(key, COST, COST);
          }
        }),
      );
      await Promise.all(ledgers.map((l) => l.flush()));
      const seconds = (performance.now() - t0) / 1000;
      const cpu = process.cpuUsage(cpu0);
      for (const l of ledgers) l.close();
      lat.sort((a, b) => a - b);
      return {
        workers,
        inFlight: CONCURRENCY * workers,
        reservationsPerSec: CONCURRENT / seconds,
        p50Ms: percentile(lat, 50),
        p99Ms: percentile(lat, 99),
        clientCpuUsPerReservation: (cpu.user + cpu.system) / CONCURRENT,
        kvWrites: (await kv.get(key))?.revision ?? 0,
      };
    };

    seq.sort((a, b) => a - b);
    const sequential = { reservations: SEQUENTIAL, p50Ms: percentile(seq, 50), p99Ms: percentile(seq, 99) };
    const oneWorker = await concurrent(1, "one.key");
    const threeWorkers = await concurrent(3, "three.key");
    const throughput = await onAgainstOff(nc, server.url, profile);
    return { date, sequential, oneWorker, threeWorkers, throughput };
  } finally {
    await nc.close();
    await server.stop();
  }
}

/** Jobs/s of one in-process router worker, budgets off and on, in pairs. */
async function onAgainstOff(nc: NatsConnection, url: string, profile: Profile): Promise<BudgetsFigures["throughput"]> {
  const { jobs, pairs: PAIRS } = profile.budgets;
  const sim = createSimProvider(parseScenario("providers: { budget: { models: { lite: {} } } }\n", "bench-scenario.yaml"));
  const simUrl = await sim.listen(0);
  const yaml = (budgets: boolean) => `
router: { max_in_flight: 512 }
providers:
  budget:
    dialect: openai
    base_url: ${simUrl}/budget/v1
    models: { lite: { upstream: lite, input_per_mtok: 0.05, output_per_mtok: 0.2, context_window: 16000 } }
tasks:
  bench: { tiers: [{ models: [budget/lite] }] }
${budgets ? "budgets: { tenants: { acme: { day_usd: 1000000000 } } }" : ""}
`;
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  await provision(jsm, parseConfig(yaml(false), "bench.yaml", {}));
  const logger = createLogger("bench-budgets", "silent");
  const run = async (on: boolean, tag: string): Promise<number> => {
    const router = await startRouter({ natsUrl: url, config: parseConfig(yaml(on), "bench.yaml", {}), logger });
    try {
      const t0 = performance.now();
      const pending = [];
      for (let i = 0; i < jobs; i++) {
        const id = `${tag}-${i}`;
        pending.push(js.publish("jobs.bench", JSON.stringify({ id, request: { messages: [{ role: "user", content: "hello there" }], max_tokens: 8 }, metadata: { tenant: "acme" } }), { msgID: id }));
        if (pending.length >= 512) await Promise.all(pending.splice(0));
      }
      await Promise.all(pending);
      for (;;) {
        const c = await jsm.consumers.info(STREAMS.jobs, "router");
        if (c.num_pending + c.num_ack_pending === 0) break;
        await sleep(20);
      }
      return jobs / ((performance.now() - t0) / 1000);
    } finally {
      await router.stop();
    }
  };
  const pairs: { off: number; on: number }[] = [];
  try {
    // Untimed, one of each first: the first runs would otherwise count JIT compilation and the ledger's first read.
    await run(false, "warm-off");
    await run(true, "warm-on");
    for (let p = 0; p < PAIRS; p++) {
      const onFirst = p % 2 === 1;
      const first = await run(onFirst, `p${p}a`);
      const second = await run(!onFirst, `p${p}b`);
      pairs.push(onFirst ? { on: first, off: second } : { off: first, on: second });
    }
    const e = await (await new Kvm(nc).open(SPEND_BUCKETS.spend)).get(spendKey({ scope: "tenant", name: "acme", window: "day" }, Date.now()));
    const settledUsd = e ? SpendEntrySchema.parse(e.json()).spent_usd : 0;
    return { jobsPerRun: jobs, pairs, ratio: spread(pairs.map((q) => q.on / q.off)), settledUsd };
  } finally {
    await sim.close();
  }
}

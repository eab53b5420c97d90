/**
 * The cost of a budget reservation (README "Budgets"): `npx tsx bench/budgets.ts`. Its own
 * nats-server; a SpendLedger (shared/spend/ledger-kv.ts) reserving and settling on one spend
 * entry, as a router does around every call of a budgeted job. Three figures:
 *
 * - one job at a time: the added latency of a reservation when nothing else runs (one KV
 *   read on the first, then one compare-and-set per reservation) — the goal is a p50
 *   under 0.3 ms;
 * - `CONCURRENCY` jobs at once in one worker: reservations gather into group commits, so each
 *   waits for the write in flight plus its own; reservations per second and CPU per one;
 * - the same in three ledgers (three workers) on the same entry, contending by compare-and-set;
 * - throughput, budgets on against off in the same run: one router worker in this process, the
 *   sim-provider at zero latency, `JOBS` jobs per run, runs alternating off/on; with budgets on,
 *   every job answers to a tenant budget too large to refuse, so only the reservation differs.
 *
 * Not yet a stage of `npm run bench` (bench/main.ts): it prints its figures as JSON.
 */
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { connect } from "@nats-io/transport-node";
import { startRouter } from "../services/router/main.ts";
import { parseScenario } from "../services/sim-provider/scenario.ts";
import { createSimProvider } from "../services/sim-provider/server.ts";
import { parseConfig } from "../shared/config/load.ts";
import { STREAMS } from "../shared/contract/subjects.ts";
import { createLogger } from "../shared/log.ts";
import { provision } from "../shared/nats/provision.ts";
import { percentile } from "../shared/stats.ts";
import { startNatsServer } from "../shared/nats/server-process.ts";
import { SpendLedger } from "../shared/spend/ledger-kv.ts";
import { SpendEntrySchema, spendKey } from "../shared/spend/budget.ts";

const SEQUENTIAL = Number(process.env.SEQUENTIAL ?? 2_000);
const CONCURRENT = Number(process.env.CONCURRENT ?? 20_000);
const CONCURRENCY = Number(process.env.CONCURRENCY ?? 256);
const COST = 1e-6;
const JOBS = Number(process.env.JOBS ?? 5_000);
const RUNS = Number(process.env.RUNS ?? 2);

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

  const concurrent = async (workers: number, key: string) => {
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
    const entry = await kv.get(key);
    return {
      workers,
      in_flight: CONCURRENCY * workers,
      reservations_per_s: Math.round(CONCURRENT / seconds),
      p50_ms: round(percentile(lat, 50)),
      p99_ms: round(percentile(lat, 99)),
      client_cpu_us_per_reservation: round(((cpu.user + cpu.system) / CONCURRENT)),
      kv_writes: entry?.revision,
    };
  };

  seq.sort((a, b) => a - b);
  const out = {
    sequential: { reservations: SEQUENTIAL, p50_ms: round(percentile(seq, 50)), p99_ms: round(percentile(seq, 99)) },
    one_worker: await concurrent(1, "one.key"),
    three_workers: await concurrent(3, "three.key"),
    throughput_jobs_per_s: await throughput(server.url),
  };
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
} finally {
  await nc.close();
  await server.stop();
}

/** Jobs/s of one in-process router worker, budgets off and on, alternating, `RUNS` of each. */
async function throughput(url: string): Promise<{ off: number[]; on: number[]; settled_usd_with_budgets_on: number }> {
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
  const out = { off: [] as number[], on: [] as number[], settled_usd_with_budgets_on: 0 };
  try {
    for (let run = 0; run < RUNS * 2; run++) {
      const on = run % 2 === 1;
      const router = await startRouter({ natsUrl: url, config: parseConfig(yaml(on), "bench.yaml", {}), logger });
      const t0 = performance.now();
      const pending = [];
      for (let i = 0; i < JOBS; i++) {
        const id = `r${run}-${i}`;
        pending.push(js.publish("jobs.bench", JSON.stringify({ id, request: { messages: [{ role: "user", content: "hello there" }], max_tokens: 8 }, metadata: { tenant: "acme" } }), { msgID: id }));
        if (pending.length >= 512) await Promise.all(pending.splice(0));
      }
      await Promise.all(pending);
      for (;;) {
        const c = await jsm.consumers.info(STREAMS.jobs, "router");
        if (c.num_pending + c.num_ack_pending === 0) break;
        await sleep(20);
      }
      (on ? out.on : out.off).push(Math.round(JOBS / ((performance.now() - t0) / 1000)));
      await router.stop();
    }
    // Proof the "on" runs reserved and settled: the tenant's spend entry holds their cost.
    const e = await (await new Kvm(nc).open("switchyard-spend")).get(spendKey({ scope: "tenant", name: "acme", window: "day" }, Date.now()));
    out.settled_usd_with_budgets_on = e ? SpendEntrySchema.parse(e.json()).spent_usd : 0;
  } finally {
    await sim.close();
  }
  return out;
}

function round(n: number): number {
  return Math.round(n * 1000) / 1000;
}

import { setTimeout as sleep } from "node:timers/promises";
import { DeliverPolicy, jetstream, type JetStreamClient } from "@nats-io/jetstream";
import { nuid } from "@nats-io/transport-node";
import type { DeadLetter, Result } from "../../../shared/contract/job.ts";
import { namesOf, type Names } from "../../../shared/contract/subjects.ts";
import { createLogger } from "../../../shared/log.ts";
import { openBuckets } from "../../../shared/nats/buckets.ts";
import { connectNats } from "../../../shared/nats/connect.ts";
import { buildCatalog } from "../../../shared/routing/catalog.ts";
import { costUsd, type Prices } from "../../../shared/routing/cost.ts";
import { ModelStateSchema } from "../../../shared/contract/live.ts";
import { parseJsonOrUndefined } from "../../../shared/json.ts";
import type { KV } from "@nats-io/kv";
import { boundedWindow } from "../../../shared/concurrency.ts";
import { percentile } from "../../../shared/stats.ts";
import { interruption, intFlag, parse } from "../args.ts";
import { backlogJobs, demoJobs } from "../demo-jobs.ts";
import { startLocalStack } from "../local-stack.ts";
import { progress } from "../progress.ts";
import { percent, table } from "../table.ts";
import type { Command } from "./types.ts";
import { summaryOf } from "./catalog.ts";

export const demoCommand: Command = {
  name: "demo",
  summary: summaryOf("demo"),
  usage: `switchyard demo [--jobs-per-task 600] [--workers 2] [--rate 100] [--timeout 120] [--backlog 300]

Starts a local nats-server (or uses NATS_URL), the sim-provider with three providers at
different prices (one flaky) and router workers; publishes moderation and classification
jobs (a third in users' own words, with no labels or format given) plus a few broken ones at --rate jobs/s (100), and while they run drops swift's price,
then takes budget down and brings it back; waits until every job has ended as a result or a dead letter;
prints where the jobs went, what they cost and lost = published − results − dead letters.
Then a nightly backlog (--backlog jobs, 0 to skip) due in 24 h goes through the providers'
batch APIs, and its bill is set against what the same answers cost live.
Exits 0 when nothing was lost. Ctrl-C (or SIGTERM) stops it early: the stack stops and the
temporary NATS store is removed (exit 130); a second Ctrl-C quits at once.`,
  async run(argv) {
    const { values } = parse("demo", argv, { "jobs-per-task": { type: "string" }, workers: { type: "string" }, timeout: { type: "string" }, rate: { type: "string" }, backlog: { type: "string" } });
    const perTask = intFlag("demo", "jobs-per-task", values["jobs-per-task"], 600);
    const rate = intFlag("demo", "rate", values.rate, 100);
    const timeoutMs = intFlag("demo", "timeout", values.timeout, 120) * 1000;
    const workers = Math.max(1, intFlag("demo", "workers", values.workers, 2));
    const backlogSize = intFlag("demo", "backlog", values.backlog, 300);
    const logger = createLogger("demo", process.env.LOG_LEVEL ?? "error");
    const out = process.stdout;
    // Ctrl-C ends the run early, but through the finally blocks below: stopping the stack
    // stops the nats-server and removes its temporary store.
    const interrupt = interruption();
    const { signal } = interrupt;
    const interrupted = new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
    try {
      out.write("Starting Switchyard: nats-server, sim-provider (budget: cheap and flaky; swift; premium: 50x the price), router workers…\n");
      const stack = await startLocalStack({ simPort: 0, workers, logger });
      try {
        if (signal.aborted) return stopped();
        const nc = await connectNats(stack.nats, "switchyard-demo");
        const stops: (() => void)[] = [];
        try {
          const js = jetstream(nc);
          const runId = `demo-${nuid.next().slice(-8).toLowerCase()}`;
          const names = namesOf(stack.config);
          const jobs = demoJobs(runId, perTask, names.jobSubject);
          const startTime = new Date(Date.now() - 1000);
          const t0 = Date.now();
          const collected = collect(js, runId, startTime, jobs.length, names);
          stops.push(collected.stop);

          // The market moves while the batch runs: a price drop, then an outage and its end.
          const { prices, models: modelStates } = await openBuckets(nc, stack.config);
          const events: DemoEvent[] = [
            { at: 0.25, name: "swift/mini price drop to $0.02/$0.08", run: () => prices.put("swift/mini", JSON.stringify({ input_per_mtok: 0.02, output_per_mtok: 0.08, set_at: new Date().toISOString() })) },
            { at: 0.45, name: "budget outage (every call 503)", run: () => stack.sim.control("budget", "budget-lite-1", { outage: "503" }) },
            { at: 0.57, name: "budget recovered", run: () => stack.sim.control("budget", "budget-lite-1", { outage: null }) },
          ];
          const phaseOf = new Map<string, number>();
          let phase = 0;
          const pub = progress("published", jobs.length);
          const pending = boundedWindow(256);
          let published = 0;
          for (const [i, j] of jobs.entries()) {
            if (signal.aborted) return stopped();
            while (phase < events.length && i >= events[phase]!.at * jobs.length) {
              await events[phase]!.run();
              phase++;
            }
            phaseOf.set(j.msgId, phase);
            await pending.add(js.publish(j.subject, j.payload, { msgID: j.msgId }).then(() => pub.update(++published)));
            const ahead = ((i + 1) / rate) * 1000 - (Date.now() - t0);
            if (ahead > 1) await sleep(ahead, undefined, { signal }).catch(() => {});
          }
          await Promise.race([pending.drain(), interrupted]);
          if (signal.aborted) return stopped();
          pub.finish();

          await untilEnded(collected, jobs.length, timeoutMs, interrupted, stops);
          if (signal.aborted) return stopped();
          const elapsed = (Date.now() - t0) / 1000;
          const catalog = buildCatalog(stack.config);
          reportPhases(out, ["steady", ...events.map((e) => e.name)], collected.results, phaseOf);
          const lost = report(out, { published, elapsedS: elapsed, results: collected.results, deadLetters: collected.deadLetters, catalog });
          if (backlogSize === 0) return lost === 0 ? 0 : 1;

          // The night's backlog: the same kind of work with a day to spare goes through provider batches.
          out.write(`\nA nightly backlog: ${backlogSize} moderation jobs due in 24 h, through the providers' batch APIs (turnaround scaled to seconds in the sim)…\n`);
          const backlogId = `${runId}-night`;
          const night = backlogJobs(backlogId, backlogSize, new Date(Date.now() + 86_400_000), names.jobSubject);
          const nightCollected = collect(js, backlogId, new Date(Date.now() - 1000), night.length, names);
          stops.push(nightCollected.stop);
          await Promise.all(night.map((j) => js.publish(j.subject, j.payload, { msgID: j.msgId })));
          await untilEnded(nightCollected, night.length, timeoutMs, interrupted, stops);
          if (signal.aborted) return stopped();
          const nightLost = reportBacklog(out, { published: night.length, results: nightCollected.results, deadLetters: nightCollected.deadLetters, livePrices: await livePricesOf(catalog, modelStates) });
          return lost === 0 && nightLost === 0 ? 0 : 1;
        } finally {
          for (const stop of stops) stop();
          await nc.drain().catch(() => {});
        }
      } finally {
        await stack.stop();
      }
    } finally {
      interrupt.dispose();
    }
  },
};

/** Shows the jobs ending on a progress bar until all have, the time is up, or Ctrl-C. */
async function untilEnded(collected: ReturnType<typeof collect>, total: number, timeoutMs: number, interrupted: Promise<void>, stops: (() => void)[]): Promise<void> {
  const ended = () => collected.results.length + collected.deadLetters.length;
  const bar = progress("ended", total);
  const timer = setInterval(() => bar.update(ended()), 100);
  stops.push(() => clearInterval(timer));
  const finished = await Promise.race([
    collected.done.then(() => true),
    new Promise<boolean>((r) => setTimeout(() => r(false), timeoutMs).unref()),
    interrupted.then(() => false),
  ]);
  clearInterval(timer);
  bar.update(ended());
  bar.finish(finished ? "" : "timed out");
}

/** What the demo says when Ctrl-C cut it short; 130, as a shell reports a SIGINT. */
function stopped(): number {
  process.stderr.write("\ninterrupted: stopping the stack and removing its temporary store…\n");
  return 130;
}

interface DemoEvent {
  /** Fraction of the jobs published before it happens. */
  readonly at: number;
  readonly name: string;
  run(): unknown;
}

/** Which model served the jobs published in each phase: the traffic shift, and its reversal. */
function reportPhases(out: NodeJS.WriteStream, phases: string[], results: Result[], phaseOf: ReadonlyMap<string, number>): void {
  const models = [...new Set(results.map((r) => `${r.provider}/${r.model}`))].sort();
  const counts = phases.map(() => new Map<string, number>());
  for (const r of results) {
    const c = counts[phaseOf.get(r.id) ?? 0]!;
    const key = `${r.provider}/${r.model}`;
    c.set(key, (c.get(key) ?? 0) + 1);
  }
  out.write("\nTraffic by phase (jobs published in the phase, by the model that served them)\n");
  out.write(
    table(
      ["phase", ...models],
      phases.map((name, i) => {
        const c = counts[i]!;
        const total = [...c.values()].reduce((a, b) => a + b, 0) || 1;
        return [name, ...models.map((m) => `${c.get(m) ?? 0} (${percent((c.get(m) ?? 0) / total, 0)})`)];
      }),
    ),
  );
}

function collect(js: JetStreamClient, runId: string, since: Date, expected: number, n: Names) {
  const results: Result[] = [];
  const deadLetters: DeadLetter[] = [];
  const stops: (() => void)[] = [];
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  const follow = async <T extends { id: string }>(stream: string, into: T[]) => {
    const consumer = await js.consumers.get(stream, { deliver_policy: DeliverPolicy.StartTime, opt_start_time: since.toISOString() });
    const messages = await consumer.consume();
    stops.push(() => void messages.stop());
    for await (const m of messages) {
      const v = m.json<T>();
      if (!v.id.startsWith(`${runId}-`)) continue;
      into.push(v);
      if (results.length + deadLetters.length >= expected) resolveDone();
    }
  };
  void follow(n.streams.results, results);
  void follow(n.streams.dlq, deadLetters);
  return { results, deadLetters, done, stop: () => stops.forEach((s) => s()) };
}

function report(
  out: NodeJS.WriteStream,
  r: { published: number; elapsedS: number; results: Result[]; deadLetters: DeadLetter[]; catalog: ReturnType<typeof buildCatalog> },
): number {
  const perModel = new Map<string, { jobs: number; cost: number }>();
  const outcomes = new Map<string, number>();
  let failovers = 0;
  let escalations = 0;
  let cost = 0;
  for (const res of r.results) {
    const key = `${res.provider}/${res.model}`;
    const m = perModel.get(key) ?? { jobs: 0, cost: 0 };
    m.jobs++;
    m.cost += res.cost_usd;
    perModel.set(key, m);
    cost += res.cost_usd;
    if (res.attempts.length > 1) failovers++;
    if (res.attempts.some((a) => a.outcome === "invalid_output")) escalations++;
    for (const a of res.attempts) outcomes.set(a.outcome, (outcomes.get(a.outcome) ?? 0) + 1);
  }
  for (const d of r.deadLetters) for (const a of d.attempts) outcomes.set(a.outcome, (outcomes.get(a.outcome) ?? 0) + 1);
  // The bill had every served job gone to the one model that would have cost the most for this workload.
  let worst = { id: "", cost: 0 };
  for (const model of r.catalog.models.values()) {
    const c = r.results.reduce((s, res) => s + costUsd(res.usage, model), 0);
    if (c > worst.cost) worst = { id: model.id, cost: c };
  }
  const reasons = new Map<string, number>();
  for (const d of r.deadLetters) reasons.set(d.reason, (reasons.get(d.reason) ?? 0) + 1);
  const latency = r.results.map((x) => x.latency_ms).sort((a, b) => a - b);
  const queued = r.results.map((x) => x.queued_ms).sort((a, b) => a - b);
  const lost = r.published - r.results.length - r.deadLetters.length;

  out.write("\nWhere the jobs went\n");
  out.write(
    table(
      ["model", "jobs", "share", "cost (USD)"],
      [...perModel.entries()]
        .sort((a, b) => b[1].jobs - a[1].jobs)
        .map(([id, m]) => [id, String(m.jobs), percent(m.jobs / Math.max(1, r.results.length)), m.cost.toFixed(6)]),
    ),
  );
  out.write("\nSummary\n");
  const rows: [string, string][] = [
    ["published", String(r.published)],
    ["succeeded (results)", String(r.results.length)],
    ["failovers (served after >1 attempt)", String(failovers)],
    ["escalations (an invalid answer, then the next model)", String(escalations)],
    ["attempts by outcome", [...outcomes.entries()].map(([k, v]) => `${k} ${v}`).join(", ")],
    ["dead letters", `${r.deadLetters.length}${reasons.size ? ` (${[...reasons.entries()].map(([k, v]) => `${k} ${v}`).join(", ")})` : ""}`],
    ["total cost", `$${cost.toFixed(6)}`],
    [`all on ${worst.id} (most expensive)`, `$${worst.cost.toFixed(6)}${worst.cost > 0 ? `  (saved ${percent(1 - cost / worst.cost)})` : ""}`],
    ["latency p50 / p95 (delivery → result)", `${ms(percentile(latency, 50))} / ${ms(percentile(latency, 95))}`],
    ["queued p50 / p95 (publish → delivery)", `${ms(percentile(queued, 50))} / ${ms(percentile(queued, 95))}`],
    ["wall time", `${r.elapsedS.toFixed(1)} s (${(r.published / r.elapsedS).toFixed(0)} jobs/s)`],
    ["lost = published − results − dead letters", String(lost)],
  ];
  out.write(table(["", ""], rows).split("\n").slice(2).join("\n"));
  return lost;
}

/**
 * The backlog's bill against live routing: a result served by a batch line is set against its
 * usage at the same model's live prices (the one cost formula); one served live after its
 * line failed cost the same either way. Returns what was lost.
 */
function reportBacklog(out: NodeJS.WriteStream, r: { published: number; results: Result[]; deadLetters: DeadLetter[]; livePrices: ReadonlyMap<string, Prices> }): number {
  let billed = 0;
  let live = 0;
  let batched = 0;
  const batches = new Set<string>();
  for (const res of r.results) {
    const line = res.attempts.at(-1)?.batch;
    billed += res.billed_usd ?? res.cost_usd;
    const prices = r.livePrices.get(`${res.provider}/${res.model}`);
    if (line !== undefined && prices !== undefined) {
      batched++;
      batches.add(line);
      live += costUsd(res.usage, prices);
    } else {
      live += res.billed_usd ?? res.cost_usd;
    }
  }
  const lost = r.published - r.results.length - r.deadLetters.length;
  const rows: [string, string][] = [
    ["published", String(r.published)],
    ["served by a provider batch", `${batched} (in ${batches.size} batch${batches.size === 1 ? "" : "es"})`],
    ["served live (a line failed, or no batch was cheaper)", String(r.results.length - batched)],
    ["dead letters", String(r.deadLetters.length)],
    ["billed", `$${billed.toFixed(6)}`],
    ["the same answers at live prices", `$${live.toFixed(6)}${live > 0 ? `  (saved ${percent(1 - billed / live)})` : ""}`],
    ["lost = published − results − dead letters", String(lost)],
  ];
  out.write(table(["", ""], rows).split("\n").slice(2).join("\n"));
  return lost;
}

/** Each model's live price as the routers route on it: the pricing service's entry (the demo's price drop included), else the config's. */
async function livePricesOf(catalog: ReturnType<typeof buildCatalog>, states: KV): Promise<Map<string, Prices>> {
  const out = new Map<string, Prices>();
  for (const m of catalog.models.values()) {
    const e = await states.get(m.id).catch(() => null);
    const state = e && e.operation === "PUT" ? ModelStateSchema.safeParse(parseJsonOrUndefined(e.string())) : undefined;
    out.set(m.id, state?.success ? { ...m, inputPerMtok: state.data.input_per_mtok, outputPerMtok: state.data.output_per_mtok } : m);
  }
  return out;
}

/** A percentile in whole milliseconds; "–" when there was nothing to measure. */
function ms(x: number): string {
  return Number.isNaN(x) ? "–" : `${x.toFixed(0)} ms`;
}

/**
 * The batch lane's cost figures (issue: "Half price when the deadline allows"), alone:
 * `npx tsx bench/batch-lane.ts [--jobs 10000]`. Prints JSON.
 *
 * The same N moderation jobs, in words not shaped for the sim, three times on a fresh
 * nats-server and sim-provider (batch turnaround scaled from hours to seconds; every 20th
 * provider batch fails whole, one line in fifty fails):
 * 1. live: the task has no `batch:`, every job is a live call — the baseline;
 * 2. batch: a 24 h deadline on every job, the task with `batch:` and a result cache;
 * 3. re-run: the same jobs under new ids the next "night", 10 % of them changed.
 * Cost is what the providers billed (`billed_usd` summed over the results: failed lines and
 * the live calls that replaced them included). Success is results ÷ jobs, with no dead letter.
 */
import { jetstreamManager, type JetStreamClient } from "@nats-io/jetstream";
import { parse, stringify } from "yaml";
import { parseConfig } from "../shared/config/load.ts";
import type { DeadLetter, Result } from "../shared/contract/job.ts";
import { jobSubject, STREAMS } from "../shared/contract/subjects.ts";
import { createLogger } from "../shared/log.ts";
import { connectNats } from "../shared/nats/connect.ts";
import { provision } from "../shared/nats/provision.ts";
import { scan } from "../shared/nats/read.ts";
import { startNatsServer } from "../shared/nats/server-process.ts";
import { startRouter } from "../services/router/main.ts";
import { parseScenario } from "../services/sim-provider/scenario.ts";
import { createSimProvider } from "../services/sim-provider/server.ts";

const arg = (name: string) => process.argv[process.argv.indexOf(name) + 1];
const N = process.argv.includes("--jobs") ? Number(arg("--jobs")) : 10_000;
const DAY = 86_400_000;

const SCENARIO = `
seed: 5
providers:
  budget:
    batch: { turnaround_ms: 3000, line_error_rate: 0.02, fail_every: 20 }
    models:
      budget-lite: { latency_ms: { min: 1, max: 3 } }
  swift:
    batch: { turnaround_ms: 3000 }
    models:
      swift-mini: { latency_ms: { min: 1, max: 3 } }
`;

function configYaml(simUrl: string, batch: boolean): string {
  const cfg = {
    router: { max_in_flight: 512, ack_wait: "30s" },
    providers: {
      budget: { dialect: "openai", base_url: `${simUrl}/budget/v1`, timeout_ms: "5s", max_concurrency: 128, models: { lite: { upstream: "budget-lite", input_per_mtok: 0.1, output_per_mtok: 0.4, context_window: 16000, batch_discount: 0.5 } } },
      swift: { dialect: "openai", base_url: `${simUrl}/swift/v1`, timeout_ms: "5s", max_concurrency: 128, models: { mini: { upstream: "swift-mini", input_per_mtok: 0.15, output_per_mtok: 0.6, context_window: 128000, batch_discount: 0.5 } } },
    },
    tasks: {
      moderation: {
        expected_completion_tokens: 32,
        tiers: [{ strategy: "cheapest", models: ["budget/lite", "swift/mini"] }],
        ...(batch ? { batch: { min_slack: "2h", window: "1s", max_lines: 500, poll_interval: "250ms" }, cache: { ttl: "2d" } } : {}),
      },
    },
  };
  return stringify(parse(stringify(cfg)));
}

const TOPICS = ["the refund never arrived", "the courier left the parcel in the rain", "great soup, rude waiter", "the app logs me out every hour", "my neighbour's dog barks all night"];
function job(id: string, i: number, deadline: string | undefined, changed: boolean) {
  return {
    id,
    request: {
      messages: [
        { role: "system", content: "Flag the message if it is abusive, threatening or spam. Reply in JSON." },
        { role: "user", content: `Ticket ${i}: ${TOPICS[i % TOPICS.length]} (case ${Math.floor(i / TOPICS.length)})${changed ? " — updated with a new complaint tonight" : ""}.` },
      ],
      response_format: { type: "json_object" },
    },
    ...(deadline ? { deadline } : {}),
    metadata: { i },
  };
}

interface RunFigures {
  readonly jobs: number;
  readonly results: number;
  readonly deadLetters: number;
  readonly billedUsd: number;
  readonly servedByBatch: number;
  readonly servedFromCache: number;
  readonly servedLiveAfterBatch: number;
  readonly providerBatches: number;
  /** Results by the model that answered, and how many needed more than one attempt. */
  readonly byModel: Record<string, number>;
  readonly retried: number;
  /** Mean tokens of the answering calls. */
  /** Results whose cost is not their usage at the configured price (live, or half of it through a batch): should be 0. */
  readonly pricedAtConfig: number;
  readonly meanPromptTokens: number;
  readonly meanCompletionTokens: number;
  readonly seconds: number;
}

async function publish(js: JetStreamClient, jobs: ReturnType<typeof job>[]): Promise<void> {
  const pending: Promise<unknown>[] = [];
  for (const j of jobs) {
    pending.push(js.publish(jobSubject("moderation"), JSON.stringify(j), { msgID: j.id }));
    if (pending.length >= 512) await Promise.all(pending.splice(0));
  }
  await Promise.all(pending);
}

async function collect(js: JetStreamClient, prefix: string, n: number, timeoutMs: number): Promise<{ results: Result[]; deadLetters: DeadLetter[] }> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const results: Result[] = [];
    const deadLetters: DeadLetter[] = [];
    for await (const m of scan(js, STREAMS.results)) {
      const r = JSON.parse(new TextDecoder().decode(m.data)) as Result;
      if (r.id.startsWith(prefix)) results.push(r);
    }
    for await (const m of scan(js, STREAMS.dlq)) {
      const d = JSON.parse(new TextDecoder().decode(m.data)) as DeadLetter;
      if (d.id.startsWith(prefix)) deadLetters.push(d);
    }
    if (results.length + deadLetters.length >= n || Date.now() > until) return { results, deadLetters };
    await new Promise((r) => setTimeout(r, 500));
  }
}

async function runOnce(label: string, batch: boolean, nights: { prefix: string; deadline: boolean; changedEvery: number }[]): Promise<RunFigures[]> {
  const server = await startNatsServer();
  const sim = createSimProvider(parseScenario(SCENARIO, "batch-lane-scenario.yaml"));
  const simUrl = await sim.listen(0);
  const config = parseConfig(configYaml(simUrl, batch), `${label}.yaml`, {});
  const nc = await connectNats(server.url, "bench-batch-lane");
  await provision(await jetstreamManager(nc), config);
  const router = await startRouter({ natsUrl: server.url, config, logger: createLogger("bench-router", process.env.LOG_LEVEL ?? "warn") });
  const js = (await jetstreamManager(nc)).jetstream();
  const out: RunFigures[] = [];
  try {
    for (const night of nights) {
      const t0 = Date.now();
      const batchesBefore = Object.values(sim.stats().batches).reduce((s, b) => s + b.batches, 0);
      const deadline = night.deadline ? new Date(Date.now() + DAY).toISOString() : undefined;
      await publish(js, Array.from({ length: N }, (_, i) => job(`${night.prefix}-${i}`, i, deadline, night.changedEvery > 0 && i % night.changedEvery === 0)));
      const { results, deadLetters } = await collect(js, `${night.prefix}-`, N, 300_000);
      out.push({
        jobs: N,
        results: results.length,
        deadLetters: deadLetters.length,
        billedUsd: results.reduce((s, r) => s + (r.billed_usd ?? r.cost_usd), 0) + deadLetters.reduce((s, d) => s + (d.billed_usd ?? 0), 0),
        servedByBatch: results.filter((r) => r.attempts.at(-1)?.batch !== undefined).length,
        servedFromCache: results.filter((r) => r.cached === true).length,
        servedLiveAfterBatch: results.filter((r) => r.attempts.at(-1)?.batch === undefined && r.attempts.some((a) => a.batch !== undefined)).length,
        providerBatches: Object.values(sim.stats().batches).reduce((s, b) => s + b.batches, 0) - batchesBefore,
        byModel: results.reduce<Record<string, number>>((m, r) => ({ ...m, [`${r.provider}/${r.model}`]: (m[`${r.provider}/${r.model}`] ?? 0) + 1 }), {}),
        retried: results.filter((r) => r.attempts.length > 1).length,
        pricedAtConfig: results.filter((r) => !r.cached && Math.abs(r.cost_usd - (r.usage.prompt_tokens * 0.1 + r.usage.completion_tokens * 0.4) / 1e6 * (r.attempts.at(-1)?.batch ? 0.5 : 1)) > 1e-12).length,
        meanPromptTokens: results.reduce((s, r) => s + r.usage.prompt_tokens, 0) / Math.max(1, results.filter((r) => !r.cached).length),
        meanCompletionTokens: results.reduce((s, r) => s + r.usage.completion_tokens, 0) / Math.max(1, results.filter((r) => !r.cached).length),
        seconds: (Date.now() - t0) / 1000,
      });
    }
  } finally {
    await router.stop();
    await nc.close();
    await sim.close();
    await server.stop({ clean: true });
  }
  return out;
}

const [live] = await runOnce("live", false, [{ prefix: "live", deadline: false, changedEvery: 0 }]);
const [first, rerun] = await runOnce("batch", true, [
  { prefix: "night1", deadline: true, changedEvery: 0 },
  { prefix: "night2", deadline: true, changedEvery: 10 },
]);
const ratio = (a: number, b: number) => Math.round((a / b) * 10_000) / 100;
process.stdout.write(
  `${JSON.stringify(
    {
      jobs: N,
      live,
      batch: first,
      rerun,
      batchCostPctOfLive: ratio(first!.billedUsd, live!.billedUsd),
      rerunCostPctOfFirst: ratio(rerun!.billedUsd, first!.billedUsd),
      batchSuccessPct: ratio(first!.results, N),
      rerunSuccessPct: ratio(rerun!.results, N),
    },
    null,
    2,
  )}\n`,
);
process.exit(0);

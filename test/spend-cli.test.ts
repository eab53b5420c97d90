/**
 * The cost ledger end to end: a real nats-server, a router worker, the sim-provider speaking
 * OpenAI (a model whose answers always fail the output check, billed all the same) and Gemini
 * (a model reporting cached and thinking tokens), then `switchyard spend` as its own process
 * summing what the RESULTS and DLQ streams say was billed.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DeadLetterSchema, ResultSchema, type Attempt, type DeadLetter, type Result } from "../shared/contract/job.ts";
import { STREAMS } from "../shared/contract/subjects.ts";
import { SpendLedger, type SpendGroup } from "../services/cli/commands/spend-ledger.ts";
import { readStream } from "./harness/nats.ts";
import { spawnCli } from "./harness/processes.ts";
import { startStack, type TestStack } from "./harness/stack.ts";

const SCENARIO = `
seed: 3
providers:
  cheap:
    models:
      cheap-a: { latency_ms: { min: 1, max: 3 }, disobey_rate: 1 }
  think:
    models:
      think-b: { latency_ms: { min: 1, max: 3 }, usage_details: { cached_tokens: 8, reasoning_tokens: 40 } }
`;

/** USD per million tokens. think/b prices reasoning above its output, so a mispriced thought shows. */
const A = { input: 0.5, output: 1 };
const B = { input: 1, cached: 0.25, output: 4, reasoning: 8 };

const configYaml = (simUrl: string) => `
streams:
  duplicate_window: 2m
router:
  ack_wait: 5s
  max_deliveries: 3
  redelivery_backoff: [200ms, 400ms]
  shutdown_grace: 5s
providers:
  cheap:
    dialect: openai
    base_url: ${simUrl}/cheap/v1
    timeout_ms: 2s
    models:
      a: { upstream: cheap-a, input_per_mtok: ${A.input}, output_per_mtok: ${A.output}, context_window: 16000 }
  think:
    dialect: gemini
    base_url: ${simUrl}/think/v1beta
    timeout_ms: 2s
    models:
      b: { upstream: think-b, input_per_mtok: ${B.input}, cached_input_per_mtok: ${B.cached}, output_per_mtok: ${B.output}, reasoning_per_mtok: ${B.reasoning}, context_window: 100000 }
tasks:
  # cheap/a answers first and fails the check; think/b serves.
  triage:
    tiers:
      - models: [cheap/a]
      - models: [think/b]
    output: { labels: [billing, shipping, other] }
  # cheap/a alone: every job is dead-lettered invalid_output, its one answer billed.
  strict:
    tiers:
      - models: [cheap/a]
    output: { labels: [billing, shipping, other] }
`;

let stack: TestStack;
let results: Result[];
let deadLetters: DeadLetter[];

const job = (id: string, tenant: string) => ({
  id,
  request: { messages: [{ role: "user", content: `I was charged twice for order ${id}, please help.` }] },
  metadata: { tenant, key: `key-${tenant}` },
});

beforeAll(async () => {
  stack = await startStack({ routers: 1, scenario: SCENARIO, configYaml });
  await stack.publishJobs("triage", [job("t1", "acme"), job("t2", "globex"), job("t3", "acme"), job("t4", "globex")]);
  await stack.publishJobs("strict", [job("s1", "acme"), job("s2", "globex")]);
  results = (await readStream<Result>(stack.nats.js, STREAMS.results, { count: 4 })).map((r) => ResultSchema.parse(r));
  deadLetters = (await readStream<DeadLetter>(stack.nats.js, STREAMS.dlq, { count: 2 })).map((d) => DeadLetterSchema.parse(d));
}, 60_000);
afterAll(async () => {
  await stack?.close();
});

/** The config's prices applied by hand to an attempt's reported usage. */
function priced(a: Attempt): number {
  const u = a.usage!;
  if (a.provider === "cheap") return (u.prompt_tokens * A.input + u.completion_tokens * A.output) / 1e6;
  const cached = u.prompt_tokens_details?.cached_tokens ?? 0;
  const reasoning = u.completion_tokens_details?.reasoning_tokens ?? 0;
  return ((u.prompt_tokens - cached) * B.input + cached * B.cached + (u.completion_tokens - reasoning) * B.output + reasoning * B.reasoning) / 1e6;
}

describe("billed across attempts, on a real stack", () => {
  it("a job served after a failed-but-billed attempt: billed_usd holds both, cost_usd the answering call", () => {
    expect(results.map((r) => r.id).sort()).toEqual(["t1", "t2", "t3", "t4"]);
    for (const r of results) {
      expect(r.attempts.map((a) => [`${a.provider}/${a.model}`, a.outcome])).toEqual([["cheap/a", "invalid_output"], ["think/b", "ok"]]);
      const [failed, served] = r.attempts as [Attempt, Attempt];
      // The sim's Gemini dialect reported 8 cached prompt tokens and 40 thinking tokens.
      expect(served.usage).toMatchObject({ prompt_tokens_details: { cached_tokens: 8 }, completion_tokens_details: { reasoning_tokens: 40 } });
      expect(r.usage).toEqual(served.usage);
      expect(failed.cost_usd).toBeCloseTo(priced(failed), 15);
      expect(served.cost_usd).toBeCloseTo(priced(served), 15);
      expect(r.cost_usd).toBe(served.cost_usd);
      expect(r.cost?.total).toBe(r.cost_usd);
      expect(r.cost?.reasoning).toBeCloseTo((40 * B.reasoning) / 1e6, 15);
      expect(r.cost?.cached_input).toBeCloseTo((8 * B.cached) / 1e6, 15);
      expect(r.billed_usd).toBeCloseTo(priced(failed) + priced(served), 15);
      expect(r.billed_usd!).toBeGreaterThan(r.cost_usd);
    }
  });

  it("a dead letter carries the billed cost of the answers that failed the check", () => {
    expect(deadLetters.map((d) => [d.id, d.reason]).sort()).toEqual([["s1", "invalid_output"], ["s2", "invalid_output"]]);
    for (const d of deadLetters) {
      expect(d.attempts).toHaveLength(1);
      expect(d.attempts[0]!.cost_usd).toBeCloseTo(priced(d.attempts[0]!), 15);
      expect(d.billed_usd).toBe(d.attempts[0]!.cost_usd);
    }
  });
});

interface SpendReport {
  by: string;
  groups: SpendGroup[];
  total: SpendGroup;
}

async function spend(...args: string[]): Promise<string> {
  const cli = spawnCli(["spend", ...args], { NATS_URL: stack.nats.url });
  const code = await cli.exited;
  expect(code, cli.output()).toBe(0);
  return cli.output();
}

const sum = (xs: readonly number[]) => xs.reduce((s, x) => s + x, 0);
const billedOf = (records: readonly (Result | DeadLetter)[]) => sum(records.map((r) => r.billed_usd!));

describe("switchyard spend", () => {
  it("--by task sums the billed cost and tokens of results and dead letters", async () => {
    const r = JSON.parse(await spend("--by", "task", "--json")) as SpendReport;
    expect(r.by).toBe("task");
    const triage = r.groups.find((g) => g.key === "triage")!;
    const strict = r.groups.find((g) => g.key === "strict")!;
    expect(r.groups).toHaveLength(2);
    expect(triage).toMatchObject({ jobs: 4, results: 4, dead_letters: 0, calls: 8 });
    expect(strict).toMatchObject({ jobs: 2, results: 0, dead_letters: 2, calls: 2 });
    expect(triage.billed_usd).toBeCloseTo(billedOf(results), 15);
    expect(strict.billed_usd).toBeCloseTo(billedOf(deadLetters), 15);
    const attempts = results.flatMap((x) => x.attempts);
    expect(triage.tokens).toEqual({
      prompt: sum(attempts.map((a) => a.usage!.prompt_tokens)),
      cached: 4 * 8,
      cache_write: 0,
      completion: sum(attempts.map((a) => a.usage!.completion_tokens)),
      reasoning: 4 * 40,
    });
    expect(r.total).toMatchObject({ jobs: 6, calls: 10 });
    expect(r.total.billed_usd).toBeCloseTo(billedOf(results) + billedOf(deadLetters), 15);
  });

  it("--by tenant groups by metadata.tenant, --by key by the gateway key's name", async () => {
    const byTenant = JSON.parse(await spend("--by", "tenant", "--json")) as SpendReport;
    const all = [...results, ...deadLetters];
    for (const tenant of ["acme", "globex"]) {
      const mine = all.filter((x) => x.metadata.tenant === tenant);
      const g = byTenant.groups.find((x) => x.key === tenant)!;
      expect(g).toMatchObject({ jobs: 3, results: 2, dead_letters: 1, calls: 5 });
      expect(g.billed_usd).toBeCloseTo(billedOf(mine), 15);
    }
    const byKey = JSON.parse(await spend("--by", "key", "--json")) as SpendReport;
    expect(byKey.groups.map((g) => [g.key, g.jobs]).sort()).toEqual([["key-acme", 3], ["key-globex", 3]]);
  });

  it("--by model counts every billed call against the model that made it, in a table", async () => {
    const text = await spend("--by", "model");
    const row = (name: string) => text.split("\n").find((l) => l.startsWith(`${name} `))?.trim().split(/\s+/);
    // model, jobs, dead_letters, calls, …
    expect(row("cheap/a")?.slice(1, 4)).toEqual(["6", "2", "6"]);
    expect(row("think/b")?.slice(1, 4)).toEqual(["4", "0", "4"]);
    expect(row("total")?.slice(1, 4)).toEqual(["10", "2", "10"]);
  });

  it("--until before the jobs counts nothing; an unknown grouping is a usage error", async () => {
    const r = JSON.parse(await spend("--since", "2020-01-01T00:00:00Z", "--until", "2020-01-02T00:00:00Z", "--json")) as SpendReport;
    expect(r.groups).toEqual([]);
    expect(r.total.billed_usd).toBe(0);
    const bad = spawnCli(["spend", "--by", "planet"], { NATS_URL: stack.nats.url });
    expect(await bad.exited).not.toBe(0);
    expect(bad.output()).toMatch(/--by must be one of tenant, task, model, key/);
  });
});

describe("the ledger of outcomes written before attempts carried their cost", () => {
  it("counts such a result's own cost_usd and usage, and nothing for such a dead letter or a foreign message", () => {
    const ledger = new SpendLedger("tenant");
    const usage = { prompt_tokens: 26, completion_tokens: 11, total_tokens: 37 };
    const attempts = [{ provider: "budget", model: "lite", tier: 0, outcome: "ok", http_status: 200, latency_ms: 9, error: null }];
    ledger.add({ id: "old", task: "moderation", status: "succeeded", provider: "budget", model: "lite", usage, cost_usd: 0.0000035, attempts, metadata: { tenant: "acme" } });
    ledger.add({ id: "old-dl", task: "moderation", status: "failed", reason: "exhausted", attempts: [{ ...attempts[0], outcome: "unavailable" }], metadata: { tenant: "acme" } });
    ledger.add({ hello: "world" });
    const { groups } = ledger.report();
    expect(groups).toEqual([
      { key: "acme", jobs: 2, results: 1, dead_letters: 1, calls: 1, billed_usd: 0.0000035, tokens: { prompt: 26, cached: 0, cache_write: 0, completion: 11, reasoning: 0 } },
    ]);
  });
});

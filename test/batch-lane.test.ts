/**
 * The batch lane (README, "Batch lane"), end to end on a real stack: nats-server, the
 * sim-provider's batch APIs (turnaround scaled down to seconds), router workers in this process.
 * Jobs whose deadline leaves slack go through provider batches at the batch price and come out
 * as one result each; lines that fail, batches that fail, and batches that cannot finish before
 * a deadline fall back to the live tiers in time; a router stopped mid-batch leaves the batch
 * to the next one, which resumes polling and never submits the lines again.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Kvm } from "@nats-io/kv";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { parse, stringify } from "yaml";
import { ResultSchema, type DeadLetter, type Result } from "../shared/contract/job.ts";
import { names, STREAMS } from "../shared/contract/subjects.ts";
import { createBatcher } from "../services/batcher/batcher.ts";
import { createResultCache } from "../services/router/result-cache.ts";
import { createModelCaller } from "../shared/providers/caller.ts";
import { costUsd } from "../shared/routing/cost.ts";
import { createLogger } from "../shared/log.ts";
import { createOps, startOpsServer, type Ops, type OpsServer } from "../shared/ops/server.ts";
import { startRouter } from "../services/router/main.ts";
import { readAll } from "./harness/nats.ts";
import { parseScrape, sample } from "./harness/scrape.ts";
import { spawnCli } from "./harness/processes.ts";
import { startStack, TEST_SCENARIO, testConfigYaml, type TestStack } from "./harness/stack.ts";

const DAY = 86_400_000;
/** Live prices of the test config's models (testConfigYaml). */
const LIVE = { "budget/lite": { inputPerMtok: 0.05, outputPerMtok: 0.2 }, "swift/mini": { inputPerMtok: 0.15, outputPerMtok: 0.6 }, "premium/large": { inputPerMtok: 2.5, outputPerMtok: 10 } } as const;

/** The harness's three providers, budget's batch APIs scripted by `budgetBatch`. */
const scenario = (budgetBatch: string): string => TEST_SCENARIO.replace("  budget:\n", `  budget:\n    batch: ${budgetBatch}\n`);

/** The test config with a batch lane on `moderation`, and half-price batches on every model. */
function batchYaml(simUrl: string): string {
  const cfg = parse(testConfigYaml(simUrl)) as { providers: Record<string, { models: Record<string, Record<string, unknown>> }>; tasks: Record<string, Record<string, unknown>> };
  for (const p of Object.values(cfg.providers)) for (const m of Object.values(p.models)) m.batch_discount = 0.5;
  cfg.tasks.moderation!.batch = { min_slack: "1h", window: "300ms", max_lines: 20, poll_interval: "100ms" };
  (cfg as Record<string, unknown>).budgets = { tenants: { acme: { day_usd: 100 } } };
  return stringify(cfg);
}

/** A moderation job in words of our own, not the sim's patterns. */
const job = (id: string, i: number, extra: Record<string, unknown> = {}) => ({
  id,
  request: {
    messages: [
      { role: "system", content: "Decide whether the customer review below breaks the community rules. Answer with JSON." },
      { role: "user", content: `Review ${i}: the delivery took ${i % 9} days and the box was ${i % 2 ? "dented" : "fine"}; staff were ${i % 3 ? "helpful" : "rude"}.` },
    ],
    response_format: { type: "json_object" },
  },
  metadata: { i },
  ...extra,
});

async function outcomes(stack: TestStack, ids: ReadonlySet<string>, timeoutMs: number): Promise<{ results: Map<string, Result>; deadLetters: DeadLetter[]; resultCount: number }> {
  let out = { results: new Map<string, Result>(), deadLetters: [] as DeadLetter[], resultCount: 0 };
  await vi.waitFor(
    async () => {
      const all = (await readAll<Result>(stack.nats.js, STREAMS.results, { subject: "results.moderation" })).filter((r) => ids.has(r.id));
      const dls = (await readAll<DeadLetter>(stack.nats.js, STREAMS.dlq, { subject: "dlq.moderation" })).filter((d) => ids.has(d.id));
      out = { results: new Map(all.map((r) => [r.id, r])), deadLetters: dls, resultCount: all.length };
      expect(out.results.size + dls.length).toBe(ids.size);
    },
    { timeout: timeoutMs, interval: 200 },
  );
  return out;
}

describe("the batch lane", () => {
  let stack: TestStack;
  let ops: Ops;
  let server: OpsServer;

  beforeAll(async () => {
    // Every third batch fails whole; one line in ten fails; a batch takes 1.5 s.
    stack = await startStack({ routers: 0, scenario: scenario("{ turnaround_ms: 1500, line_error_rate: 0.1, fail_every: 3 }"), configYaml: batchYaml });
    ops = createOps();
    const logger = createLogger("test-batch-lane", process.env.LOG_LEVEL ?? "silent");
    server = await startOpsServer(ops, "127.0.0.1:0", logger);
    stack.routers.push(await startRouter({ natsUrl: stack.nats.url, config: stack.config, logger, ops }));
  }, 30_000);

  afterAll(async () => {
    await server?.close();
    await stack?.close();
  });

  it("serves 60 jobs with a day's slack through provider batches at half price, one result each, falling back live for a failed batch and failed lines", async () => {
    const deadline = new Date(Date.now() + DAY).toISOString();
    const jobs = Array.from({ length: 60 }, (_, i) => job(`night-${i}`, i, { deadline, metadata: { i, tenant: "acme" } }));
    await stack.publishJobs("moderation", jobs);
    const { results, deadLetters, resultCount } = await outcomes(stack, new Set(jobs.map((j) => j.id)), 40_000);
    expect(deadLetters).toEqual([]);
    expect(resultCount).toBe(60);

    // Three batches of 20 (max_lines), each line submitted once.
    expect(stack.sim.stats().batches.budget).toEqual({ batches: 3, lines: 60 });
    let batched = 0;
    let fellBack = 0;
    let batchFailed = 0;
    for (const r of results.values()) {
      ResultSchema.parse(r);
      const last = r.attempts.at(-1)!;
      expect(last.outcome).toBe("ok");
      if (last.batch !== undefined) {
        batched++;
        expect(r.attempts).toHaveLength(1);
        expect(`${r.provider}/${r.model}`).toBe("budget/lite");
        // Priced at the batch price: half what the same usage costs live.
        expect(r.cost_usd).toBeCloseTo(costUsd(r.usage, LIVE["budget/lite"]) / 2, 12);
        expect(r.billed_usd).toBeCloseTo(r.cost_usd, 12);
      } else {
        fellBack++;
        const first = r.attempts[0]!;
        expect(first.batch).toMatch(/^batch_sim/);
        expect(["unavailable", "timeout"]).toContain(first.outcome);
        if (/provider batch failed/.test(first.error ?? "")) batchFailed++;
      }
    }
    expect(batchFailed).toBe(20);
    expect(batched + fellBack).toBe(60);
    // The two batches that ran: about one line in ten failed and went live.
    expect(fellBack - batchFailed).toBeGreaterThan(0);
    expect(fellBack - batchFailed).toBeLessThan(12);

    // What a dashboard scrapes: the lane's jobs, its batches, and the batch lines' cost.
    const scraped = parseScrape(await (await fetch(`${server.url}/metrics`)).text());
    const m = (name: string, labels: Record<string, string>) => sample(scraped, name, labels) ?? 0;
    expect(m("switchyard_batch_lines_total", { task: "moderation", outcome: "queued" })).toBe(60);
    expect(m("switchyard_batch_lines_total", { task: "moderation", outcome: "result" })).toBe(batched);
    expect(m("switchyard_batch_lines_total", { task: "moderation", outcome: "live" })).toBe(fellBack);
    expect(m("switchyard_provider_batches_total", { task: "moderation", provider: "budget", model: "lite", ending: "completed" })).toBe(2);
    expect(m("switchyard_provider_batches_total", { task: "moderation", provider: "budget", model: "lite", ending: "failed" })).toBe(1);
    expect(m("switchyard_jobs_total", { task: "moderation", outcome: "result" })).toBe(60);
    const batchCost = [...results.values()].filter((r) => r.attempts.at(-1)!.batch !== undefined).reduce((s, r) => s + r.cost_usd, 0);
    expect(m("switchyard_cost_usd_total", { task: "moderation", provider: "budget", model: "lite", tenant: "acme" })).toBeGreaterThanOrEqual(batchCost - 1e-12);

    // What the batch lines and their live fallbacks billed is in the tenant's budget, as `switchyard budgets` shows it.
    const billed = [...results.values()].reduce((s, r) => s + r.billed_usd!, 0);
    await vi.waitFor(async () => {
      const configFile = join(mkdtempSync(join(tmpdir(), "batch-lane-")), "switchyard.yaml");
      writeFileSync(configFile, stack.configYaml);
      const p = spawnCli(["budgets", "--json"], { NATS_URL: stack.nats.url, SWITCHYARD_CONFIG: configFile });
      expect(await p.exited).toBe(0);
      const { budgets } = JSON.parse(p.output()) as { budgets: { scope: string; name: string; spent_usd: number; reserved_usd: number }[] };
      const acme = budgets.find((b) => b.scope === "tenant" && b.name === "acme")!;
      expect(acme.reserved_usd).toBe(0);
      expect(acme.spent_usd).toBeCloseTo(billed, 12);
    }, { timeout: 10_000, interval: 500 });
  }, 60_000);

  it("serves a job without a deadline, or one asking to stay live, at once through the live tiers", async () => {
    const jobs = [job("live-1", 1), job("live-2", 2, { deadline: new Date(Date.now() + DAY).toISOString(), routing: { batch: false } })];
    const before = stack.sim.stats().batches.budget?.lines ?? 0;
    await stack.publishJobs("moderation", jobs);
    const { results } = await outcomes(stack, new Set(jobs.map((j) => j.id)), 10_000);
    for (const r of results.values()) expect(r.attempts.every((a) => a.batch === undefined)).toBe(true);
    expect(stack.sim.stats().batches.budget?.lines ?? 0).toBe(before);
    // What a redelivered job reads back before being served: whether an earlier delivery queued it.
    const caller = createModelCaller(stack.config);
    const batcher = createBatcher({ nc: stack.nats.nc, config: () => stack.config, caller, names: names(), logger: createLogger("test-batcher", "silent"), clock: Date.now, random: Math.random, resultCache: createResultCache({ nc: stack.nats.nc, config: stack.config, logger: createLogger("test-batcher", "silent"), clock: Date.now }), recordSpend: () => {} });
    await batcher.start();
    try {
      expect(await batcher.queued("moderation", "live-1")).toBe(false);
      expect(await batcher.queued("moderation", "night-0")).toBe(true);
    } finally {
      await batcher.stop();
      await caller.close();
    }
  }, 20_000);

  it("a router stopped while its batch runs leaves it to the next router, which resumes polling and never submits the lines again", async () => {
    const before = stack.sim.stats().batches.budget ?? { batches: 0, lines: 0 };
    const deadline = new Date(Date.now() + DAY).toISOString();
    const jobs = Array.from({ length: 20 }, (_, i) => job(`resume-${i}`, 100 + i, { deadline }));
    await stack.publishJobs("moderation", jobs);
    await vi.waitFor(() => expect(stack.sim.stats().batches.budget?.batches).toBe(before.batches + 1), { timeout: 10_000, interval: 20 });
    await stack.routers[0]!.stop();
    stack.routers.splice(0, 1);
    await stack.addRouter();
    const { results, deadLetters } = await outcomes(stack, new Set(jobs.map((j) => j.id)), 30_000);
    expect(deadLetters).toEqual([]);
    expect(results.size).toBe(20);
    expect(stack.sim.stats().batches.budget).toEqual({ batches: before.batches + 1, lines: before.lines + 20 });
  }, 60_000);
});

describe("a batch that cannot finish before a deadline", () => {
  let stack: TestStack;

  beforeAll(async () => {
    // Batches take ten minutes: far past the deadlines below.
    stack = await startStack({ scenario: scenario("{ turnaround_ms: 600000 }"), configYaml: batchYaml });
  }, 30_000);

  afterAll(async () => {
    await stack?.close();
  });

  it("is given up in time: its jobs are served live before their deadline, the batch attempt listed", async () => {
    // Slack under min_slack, so only a job asking for the batch lane takes it; enough to fall back live.
    const deadline = Date.now() + 45_000;
    const jobs = Array.from({ length: 5 }, (_, i) => job(`tight-${i}`, i, { deadline: new Date(deadline).toISOString(), routing: { batch: true } }));
    await stack.publishJobs("moderation", jobs);
    await vi.waitFor(() => expect(stack.sim.stats().batches.budget?.batches).toBe(1), { timeout: 10_000, interval: 20 });
    // What an operator sees meanwhile: `switchyard batches`.
    const env = { NATS_URL: stack.nats.url };
    await vi.waitFor(async () => {
      // Open until it is given up a few seconds from now; on a busy machine the CLI may first see it after.
      const p = spawnCli(["batches", "--all", "--json"], env);
      expect(await p.exited).toBe(0);
      const listed = JSON.parse(p.output()) as { state: string; model: string; lines: number[]; provider_batch_id?: string }[];
      expect(listed).toHaveLength(1);
      expect(listed[0]).toMatchObject({ model: "budget/lite", provider_batch_id: expect.stringMatching(/^batch_sim/) });
      expect(["running", "finishing", "done"]).toContain(listed[0]!.state);
      expect(listed[0]!.lines).toHaveLength(5);
    }, { timeout: 20_000, interval: 500 });

    const { results, deadLetters } = await outcomes(stack, new Set(jobs.map((j) => j.id)), 30_000);
    expect(deadLetters).toEqual([]);
    expect(stack.sim.stats().batches.budget).toEqual({ batches: 1, lines: 5 });
    await vi.waitFor(async () => {
      const p = spawnCli(["batches", "--all"], env);
      expect(await p.exited).toBe(0);
      expect(p.output()).toMatch(/budget\/lite\s+done\s+batch_sim\S*\s+\S+\s+5\b.*0 results, 5 live: the provider batch was given up/);
    }, { timeout: 10_000, interval: 500 });
    for (const r of results.values()) {
      expect(Date.parse(r.completed_at)).toBeLessThan(deadline);
      expect(r.attempts[0]).toMatchObject({ provider: "budget", model: "lite", outcome: "timeout", http_status: null });
      expect(r.attempts[0]!.error).toMatch(/given up/);
      expect(r.attempts.at(-1)!.outcome).toBe("ok");
      expect(r.attempts.at(-1)!.batch).toBeUndefined();
    }
  }, 60_000);
});

describe("the batch lane through Anthropic's Message Batches and Gemini's batch mode", () => {
  let stack: TestStack;
  const yaml = (simUrl: string) => `
streams: { duplicate_window: 2m }
router: { ack_wait: 5s, max_deliveries: 3, redelivery_backoff: [200ms, 400ms], shutdown_grace: 5s }
providers:
  claude:
    dialect: anthropic
    base_url: ${simUrl}/claude/v1
    timeout_ms: 2s
    models:
      haiku: { upstream: claude-haiku, input_per_mtok: 0.8, output_per_mtok: 4, context_window: 200000, batch_discount: 0.5 }
  gem:
    dialect: gemini
    base_url: ${simUrl}/gem/v1beta
    timeout_ms: 2s
    models:
      flash: { upstream: gem-flash, input_per_mtok: 0.1, output_per_mtok: 0.4, context_window: 1000000, batch_input_per_mtok: 0.05, batch_output_per_mtok: 0.2 }
tasks:
${["claude", "gem"]
  .map(
    (p) => `  ${p}-extraction:
    batch: { min_slack: 1h, window: 300ms, poll_interval: 100ms }
    tiers: [{ models: [${p === "claude" ? "claude/haiku" : "gem/flash"}] }]
    output:
      format: json
      json_schema: { type: object, required: [order_number, city], properties: { order_number: { type: string }, city: { type: string } }, additionalProperties: false }`,
  )
  .join("\n")}
`;

  beforeAll(async () => {
    const scenario = `
seed: 3
providers:
  claude: { batch: { turnaround_ms: 500 }, models: { claude-haiku: { latency_ms: { min: 1, max: 5 } } } }
  gem: { batch: { turnaround_ms: 500 }, models: { gem-flash: { latency_ms: { min: 1, max: 5 } } } }
`;
    stack = await startStack({ scenario, configYaml: yaml });
  }, 30_000);

  afterAll(async () => {
    await stack?.close();
  });

  it("serves each job from its line, the task's schema sent in the dialect's own form and checked, at the batch price", async () => {
    const deadline = new Date(Date.now() + DAY).toISOString();
    const cities = ["Lisbon", "Oslo", "Quito", "Hanoi", "Perth"];
    for (const [task, provider, idPattern, prices] of [
      ["claude-extraction", "claude", /^msgbatch_sim/, { inputPerMtok: 0.4, outputPerMtok: 2 }],
      ["gem-extraction", "gem", /^batches\/sim/, { inputPerMtok: 0.05, outputPerMtok: 0.2 }],
    ] as const) {
      const jobs = cities.map((city, i) => ({ id: `${provider}-${i}`, deadline, request: { messages: [{ role: "user", content: `Order ${1000 + i} should ship to ${city}; give me the order number and the city.` }] } }));
      await stack.publishJobs(task, jobs);
      let results: Result[] = [];
      await vi.waitFor(
        async () => {
          results = (await readAll<Result>(stack.nats.js, STREAMS.results, { subject: `results.${task}` })).filter((r) => r.id.startsWith(`${provider}-`));
          expect(results).toHaveLength(cities.length);
        },
        { timeout: 20_000, interval: 200 },
      );
      for (const r of results) {
        expect(r.attempts).toHaveLength(1);
        expect(r.attempts[0]!.batch).toMatch(idPattern);
        expect(r.output).toMatchObject({ order_number: expect.any(String), city: expect.any(String) });
        expect(r.cost_usd).toBeCloseTo(costUsd(r.usage, prices), 12);
      }
      expect(stack.sim.stats().batches[provider]).toEqual({ batches: 1, lines: cities.length });
    }
  }, 60_000);
});

describe("identical jobs in one provider batch, for a task with a result cache", () => {
  let stack: TestStack;

  beforeAll(async () => {
    stack = await startStack({
      scenario: scenario("{ turnaround_ms: 300 }"),
      configYaml: (simUrl) => {
        const cfg = parse(batchYaml(simUrl)) as { tasks: Record<string, Record<string, unknown>>; budgets?: unknown };
        cfg.tasks.moderation!.cache = { ttl: "1h" };
        return stringify(cfg);
      },
    });
  }, 30_000);

  afterAll(async () => {
    await stack?.close();
  });

  it("are submitted once; each copy is served as a cache hit of the first, at no cost", async () => {
    const deadline = new Date(Date.now() + DAY).toISOString();
    // Four reviews, each reported three times.
    const jobs = Array.from({ length: 12 }, (_, i) => job(`dup-${i}`, i % 4, { deadline }));
    await stack.publishJobs("moderation", jobs);
    const { results, deadLetters } = await outcomes(stack, new Set(jobs.map((j) => j.id)), 20_000);
    expect(deadLetters).toEqual([]);
    expect(stack.sim.stats().batches.budget).toEqual({ batches: 1, lines: 4 });
    const paid = [...results.values()].filter((r) => r.cached === undefined);
    const copies = [...results.values()].filter((r) => r.cached === true);
    expect(paid).toHaveLength(4);
    expect(copies).toHaveLength(8);
    for (const r of paid) expect(r.attempts.at(-1)!.batch).toMatch(/^batch_sim/);
    for (const r of copies) {
      const first = results.get(r.cached_from!.id)!;
      expect(first.cached).toBeUndefined();
      expect(first.metadata).toEqual({ i: r.metadata.i });
      expect(r.response).toEqual(first.response);
      expect(r).toMatchObject({ cost_usd: 0, billed_usd: 0 });
    }
  }, 30_000);
});

describe("a provider batch whose submission was cut off by a crash", () => {
  let stack: TestStack;

  beforeAll(async () => {
    stack = await startStack({ routers: 0, scenario: scenario("{ turnaround_ms: 300 }"), configYaml: batchYaml });
  }, 30_000);

  afterAll(async () => {
    await stack?.close();
  });

  it("is never submitted again: once its lease lapses its jobs are served live, the interruption listed", async () => {
    const deadline = new Date(Date.now() + DAY).toISOString();
    const jobs = [0, 1, 2].map((i) => ({ ...job(`cut-${i}`, i, { deadline }), task: "moderation" }));
    // What a router leaves when it dies between storing the record and submitting: the lines queued and acked, the record `submitting`.
    const seqs: number[] = [];
    for (const j of jobs) {
      const line = { job: j, model: "budget/lite", tier: 0, input_per_mtok: 0.025, output_per_mtok: 0.1, received_at: Date.now(), published_at: Date.now(), earlier: [] };
      seqs.push((await stack.nats.js.publish(`batchq.moderation`, JSON.stringify(line), { msgID: j.id })).seq);
    }
    const consumer = await stack.nats.js.consumers.get("BATCH_QUEUE", "batcher");
    const taken = await consumer.fetch({ max_messages: 3, expires: 2_000 });
    for await (const m of taken) m.ack();
    const kv = await new Kvm(stack.nats.nc).open("switchyard-provider-batches");
    const now = Date.now();
    await kv.create("open.crashed", JSON.stringify({ id: "crashed", task: "moderation", model: "budget/lite", state: "submitting", lines: seqs, created_at: now, abandon_at: now + DAY, next_poll_at: now, lease_until: now + 600_000 }));

    // A router started after the lease (its clock eleven minutes on).
    const logger = createLogger("test-batch-lane", process.env.LOG_LEVEL ?? "silent");
    stack.routers.push(await startRouter({ natsUrl: stack.nats.url, config: stack.config, logger, clock: () => Date.now() + 11 * 60_000 }));
    const { results, deadLetters } = await outcomes(stack, new Set(jobs.map((j) => j.id)), 20_000);
    expect(deadLetters).toEqual([]);
    expect(stack.sim.stats().batches.budget).toBeUndefined();
    for (const r of results.values()) {
      expect(r.attempts[0]).toMatchObject({ provider: "budget", model: "lite", outcome: "unavailable", http_status: null });
      expect(r.attempts[0]!.error).toMatch(/submission was interrupted/);
      expect(r.attempts.at(-1)).toMatchObject({ outcome: "ok" });
      expect(r.attempts.at(-1)!.batch).toBeUndefined();
    }
    await vi.waitFor(async () => expect(await kv.get("open.crashed").then((e) => e?.operation ?? "none")).not.toBe("PUT"), { timeout: 5_000 });
    expect(JSON.parse((await kv.get("done.crashed"))!.string())).toMatchObject({ state: "done", ended: { results: 0, live: 3 } });
  }, 60_000);
});

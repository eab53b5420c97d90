/**
 * Budgets on a real stack (README "Budgets"): real nats-server, the sim-provider as an HTTP
 * server, router workers as their own processes. Three workers and 2,000 concurrent jobs
 * against one tenant budget; a worker killed while holding a reservation; the CLI setting a
 * budget at run time; the gateway's 429 `insufficient_quota` through the official SDK, for a
 * tenant's budget and for an API key's.
 *
 * The jobs are built so that a call's real cost equals its worst case (the sim counts prompt
 * tokens with the same estimate, and its reply is longer than `max_tokens`, so it is cut at
 * exactly that many tokens): then how many jobs a budget admits is known to the job, which
 * is what shows that no job was refused while the budget had room.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import OpenAI from "openai";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { parseConfig } from "../shared/config/load.ts";
import { DeadLetterSchema, type DeadLetter, type Result } from "../shared/contract/job.ts";
import { SPEND_BUCKETS, STREAMS } from "../shared/contract/subjects.ts";
import { provision } from "../shared/nats/provision.ts";
import { spendKey, SpendEntrySchema, worstCaseUsd, type SpendEntry } from "../shared/spend/budget.ts";
import { estimatePromptTokens } from "../shared/tokens.ts";
import { parseScenario } from "../services/sim-provider/scenario.ts";
import { createSimProvider, type SimProvider } from "../services/sim-provider/server.ts";
import { KEYS, startGatewayStack, type GatewayStack } from "./harness/gateway.ts";
import { jobsSettled, readAll, startTestNats, type TestNats } from "./harness/nats.ts";
import { spawnCli, type CliProcess } from "./harness/processes.ts";
import { TEST_SCENARIO, testConfigYaml } from "./harness/stack.ts";

const MAX_TOKENS = 8;
const MESSAGES = [{ role: "user", content: "Tell me everything about spending budgets for language model calls." }];
/** The cheapest candidate of `moderation` in the test config: budget/lite, $0.05 in, $0.20 out. */
const WORST = worstCaseUsd(estimatePromptTokens(MESSAGES), MAX_TOKENS, { inputPerMtok: 0.05, outputPerMtok: 0.2 });
const job = (id: string, tenant: string) => ({ id, request: { messages: MESSAGES, max_tokens: MAX_TOKENS }, metadata: { tenant } });

const dir = mkdtempSync(join(tmpdir(), "sy-budgets-"));
let nats: TestNats;
let sim: SimProvider;
let spend: KV;
const procs: CliProcess[] = [];

/** A budget room for 700 jobs and half of another. */
const ACME_JOBS = 700;
const ACME_LIMIT = WORST * (ACME_JOBS + 0.5);
/** Room for one job, not two. */
const CRASH_LIMIT = WORST * 1.5;

/**
 * `ttl`: how long reservations stand unrenewed. The crash test's worker gets a short one (below
 * its ack_wait), so the killed worker's hold has lapsed when the job comes again; the load test's
 * the default, since a worker's renewals can lag by seconds on this loaded machine, and a live
 * worker's hold that lapses lets others overspend.
 */
function configYaml(simUrl: string, ttl?: number): string {
  // A generous provider timeout: on a loaded machine a call can take seconds, and a timed-out
  // call falls over to a dearer candidate, which would blur the counts asserted below.
  return `${testConfigYaml(simUrl, { ack_wait: "8s", max_in_flight: "128" }, { providerTimeout: "60s" })}budgets:
${ttl === undefined ? "" : `  reservation_ttl_ms: ${ttl}\n`}  tenants:
    acme: { day_usd: ${ACME_LIMIT} }
    crash: { day_usd: ${CRASH_LIMIT} }
`;
}

let env: Record<string, string>;
let shortTtlConfig: string;

async function router(configFile = env.SWITCHYARD_CONFIG!): Promise<CliProcess> {
  const p = spawnCli(["router"], { ...env, SWITCHYARD_CONFIG: configFile, LOG_LEVEL: "info" });
  procs.push(p);
  // Generous: on a loaded machine a process can take many seconds to load and connect.
  await vi.waitFor(() => expect(p.output()).toContain("router worker started"), { timeout: 90_000, interval: 100 });
  return p;
}

/** Stops the workers a test started, whether it passed or not, so none serves the next test's jobs. */
async function stopAll(): Promise<void> {
  const running = procs.splice(0);
  for (const p of running) p.child.kill("SIGKILL");
  await Promise.all(running.map((p) => p.exited));
}

async function entryOf(tenant: string): Promise<SpendEntry | undefined> {
  const e = await spend.get(spendKey({ scope: "tenant", name: tenant, window: "day" }, Date.now()));
  return e && e.operation === "PUT" ? SpendEntrySchema.parse(e.json()) : undefined;
}

const outcomesOf = async (tenant: string) => ({
  results: (await readAll<Result>(nats.js, STREAMS.results)).filter((r) => r.metadata.tenant === tenant),
  deadLetters: (await readAll<DeadLetter>(nats.js, STREAMS.dlq)).filter((d) => d.metadata.tenant === tenant),
});

beforeAll(async () => {
  nats = await startTestNats({ ownServer: true });
  sim = createSimProvider(parseScenario(TEST_SCENARIO, "test-scenario.yaml"));
  const simUrl = await sim.listen(0);
  const file = join(dir, "switchyard.yaml");
  const yaml = configYaml(simUrl);
  writeFileSync(file, yaml);
  const config = parseConfig(yaml, file, {});
  await provision(await jetstreamManager(nats.nc), config);
  env = { NATS_URL: nats.url, SWITCHYARD_CONFIG: file };
  shortTtlConfig = join(dir, "short-ttl.yaml");
  writeFileSync(shortTtlConfig, configYaml(simUrl, 1000));
  spend = await new Kvm(nats.nc).create(SPEND_BUCKETS.spend, { history: 1 });
});

afterEach(stopAll);

afterAll(async () => {
  await stopAll();
  await sim?.close();
  await nats?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("three workers, 2,000 concurrent jobs, one tenant budget", () => {
  it("admits exactly the jobs the budget has room for and dead-letters the rest as budget_exceeded, naming it", async () => {
    const workers = await Promise.all([router(), router(), router()]);
    const pending = [];
    for (let i = 0; i < 2000; i++) pending.push(nats.js.publish("jobs.moderation", JSON.stringify(job(`acme-${i}`, "acme")), { msgID: `acme-${i}` }));
    await Promise.all(pending);
    await jobsSettled(nats.jsm, 240_000);
    // Settlements are written just after the call; the last ones may still be on their way.
    await vi.waitFor(async () => expect((await entryOf("acme"))?.holds).toEqual({}), { timeout: 10_000, interval: 100 });

    const { results, deadLetters } = await outcomesOf("acme");
    expect(results.length + deadLetters.length).toBe(2000);
    // Every call cost its worst case exactly (the premise of the counts below).
    for (const r of results) {
      expect(r.usage.completion_tokens).toBe(MAX_TOKENS);
      expect(r.cost_usd).toBeCloseTo(WORST, 15);
    }
    const entry = (await entryOf("acme"))!;
    const settled = results.reduce((s, r) => s + r.cost_usd, 0);
    expect(entry.spent_usd).toBeCloseTo(settled, 12);
    const overspend = entry.spent_usd - ACME_LIMIT;
    console.log(`budget $${ACME_LIMIT.toPrecision(6)} (${ACME_JOBS}.5 worst cases of $${WORST.toPrecision(4)}): ${results.length} served, ${deadLetters.length} refused, settled $${entry.spent_usd.toPrecision(6)}, overspend ${(overspend / WORST).toFixed(3)} worst cases`);
    // Never over the budget: with reservations at the worst case, overspend can only come from a
    // call costing more than its worst case. Bound asked for: at most one worst case per worker.
    expect(overspend).toBeLessThanOrEqual(workers.length * WORST);
    expect(entry.spent_usd).toBeLessThanOrEqual(ACME_LIMIT + 1e-12);
    // No job refused while the budget had room: every reservation settled at its worst case, so
    // each refusal left the budget less than one job short, and exactly 700 were admitted.
    expect(results.length).toBe(ACME_JOBS);
    for (const dl of deadLetters) {
      expect(DeadLetterSchema.safeParse(dl).success).toBe(true);
      expect(dl.reason).toBe("budget_exceeded");
      expect(dl.attempts).toEqual([]);
      expect(dl.error).toMatch(/^Budget tenant "acme" per day \(\d{4}-\d\d-\d\d\) is exhausted/);
      const b = dl.budget!;
      expect(b).toMatchObject({ scope: "tenant", name: "acme", window: "day", limit_usd: ACME_LIMIT });
      expect(b.needed_usd).toBeCloseTo(WORST, 15);
      // The ledger the refusal saw: within a worst case of the limit.
      expect(b.spent_usd + b.reserved_usd + b.needed_usd).toBeGreaterThan(ACME_LIMIT);
      expect(b.spent_usd + b.reserved_usd).toBeLessThanOrEqual(ACME_LIMIT + 1e-12);
    }
  }, 300_000);
});

describe("a worker killed while it holds a reservation", () => {
  it("its reservation lapses, and the job, redelivered to another worker, is served within the budget", async () => {
    // Every candidate slow, so the first worker is still in the call when it is killed.
    for (const [p, m] of [["budget", "budget-lite"], ["swift", "swift-mini"], ["premium", "premium-large"]] as const) sim.control(p, m, { latency_ms: { min: 60_000, max: 60_000 } });
    const a = await router(shortTtlConfig);
    await nats.js.publish("jobs.moderation", JSON.stringify(job("crash-1", "crash")), { msgID: "crash-1" });
    await vi.waitFor(async () => expect(Object.values((await entryOf("crash"))?.holds ?? {}).map((h) => h.usd)).toEqual([WORST]), { timeout: 10_000, interval: 50 });
    a.child.kill("SIGKILL");
    await a.exited;
    sim.reset();
    // The dead worker's hold still stands in the entry; the budget has room for one job only.
    expect(Object.keys((await entryOf("crash"))!.holds)).toHaveLength(1);
    await router(shortTtlConfig);
    await jobsSettled(nats.jsm, 120_000);
    const { results, deadLetters } = await outcomesOf("crash");
    expect(deadLetters).toEqual([]);
    expect(results.map((r) => r.id)).toEqual(["crash-1"]);
    await vi.waitFor(async () => expect((await entryOf("crash"))?.holds).toEqual({}), { timeout: 10_000, interval: 100 });
    expect((await entryOf("crash"))!.spent_usd).toBeCloseTo(WORST, 15);
  }, 200_000);
});

describe("switchyard budgets, as a process", () => {
  const cli = async (args: string[]) => {
    const p = spawnCli(["budgets", ...args], env);
    return { code: await p.exited, out: p.output() };
  };

  it("set stores a run-time budget that list shows beside the config's, with this window's spend; rm removes it", async () => {
    expect(await cli(["set", "tenant", "Initech Corp.", "--day", "2.5", "--month", "40", "--on-exhausted", "wait"])).toEqual({
      code: 0,
      out: 'tenant Initech Corp. per day: $2.5 (on exhausted: wait)\ntenant Initech Corp. per month: $40 (on exhausted: wait)\n',
    });
    const listed = await cli(["list", "--json"]);
    expect(listed.code).toBe(0);
    const { budgets } = JSON.parse(listed.out) as { budgets: Record<string, unknown>[] };
    expect(budgets).toEqual([
      expect.objectContaining({ scope: "tenant", name: "acme", window: "day", limit_usd: ACME_LIMIT, source: "config", reserved_usd: 0 }),
      expect.objectContaining({ scope: "tenant", name: "crash", window: "day", limit_usd: CRASH_LIMIT, source: "config" }),
      expect.objectContaining({ scope: "tenant", name: "Initech Corp.", window: "day", limit_usd: 2.5, on_exhausted: "wait", source: "runtime", spent_usd: 0, reserved_usd: 0, left_usd: 2.5 }),
      expect.objectContaining({ scope: "tenant", name: "Initech Corp.", window: "month", limit_usd: 40, source: "runtime" }),
    ]);
    expect((budgets[0]!.spent_usd as number) + (budgets[0]!.left_usd as number)).toBeCloseTo(ACME_LIMIT, 12);
    const table = await cli([]);
    expect(table.out).toMatch(/^budget\s+window\s+period\s+limit\s+spent\s+reserved\s+left\s+on exhausted\s+source\n/);
    expect(table.out).toMatch(/tenant Initech Corp\.\s+day\s+\d{4}-\d\d-\d\d\s+\$2\.5\s+\$0\s+\$0\s+\$2\.5\s+wait\s+runtime/);
    expect(await cli(["rm", "tenant", "Initech Corp.", "--window", "day"])).toEqual({ code: 0, out: "tenant Initech Corp. per day: removed\n" });
    const after = JSON.parse((await cli(["--json"])).out) as { budgets: { name: string; window: string }[] };
    expect(after.budgets.filter((b) => b.name === "Initech Corp.").map((b) => b.window)).toEqual(["month"]);
  }, 60_000);

  it("a budget set at run time applies to a running worker at once", async () => {
    await router();
    expect((await cli(["set", "tenant", "latecomer", "--day", String(WORST * 0.5)])).code).toBe(0);
    // The worker learns of it through its watch; a job published after that is refused.
    await vi.waitFor(
      async () => {
        const id = `late-${Date.now()}`;
        await nats.js.publish("jobs.moderation", JSON.stringify(job(id, "latecomer")), { msgID: id });
        await jobsSettled(nats.jsm, 10_000);
        const { deadLetters } = await outcomesOf("latecomer");
        expect(deadLetters.map((d) => d.id)).toContain(id);
      },
      { timeout: 10_000, interval: 200 },
    );
    const { deadLetters } = await outcomesOf("latecomer");
    expect(deadLetters.at(-1)).toMatchObject({ reason: "budget_exceeded", budget: { scope: "tenant", name: "latecomer", limit_usd: WORST * 0.5 } });
  }, 150_000);

  it("under on_exhausted: wait, a job whose deadline comes before the next window is dead-lettered at once", async () => {
    await router();
    expect((await cli(["set", "tenant", "patient", "--day", String(WORST * 0.5), "--on-exhausted", "wait"])).code).toBe(0);
    await vi.waitFor(
      async () => {
        const id = `patient-${Date.now()}`;
        await nats.js.publish("jobs.moderation", JSON.stringify({ ...job(id, "patient"), deadline: new Date(Date.now() + 60_000).toISOString() }), { msgID: id });
        await jobsSettled(nats.jsm, 10_000);
        expect((await outcomesOf("patient")).deadLetters.map((d) => d.id)).toContain(id);
      },
      { timeout: 20_000, interval: 200 },
    );
    expect((await outcomesOf("patient")).deadLetters.at(-1)).toMatchObject({ reason: "budget_exceeded", budget: { name: "patient" } });
  }, 150_000);

  it("set and rm take an API key's budget by the key's name", async () => {
    expect(await cli(["set", "key", "acme-batch", "--day", "1"])).toEqual({ code: 0, out: "key acme-batch per day: $1 (on exhausted: reject)\n" });
    const { budgets } = JSON.parse((await cli(["--json"])).out) as { budgets: Record<string, unknown>[] };
    expect(budgets.filter((b) => b.scope === "key")).toEqual([expect.objectContaining({ name: "acme-batch", window: "day", limit_usd: 1, source: "runtime", left_usd: 1 })]);
    expect(await cli(["rm", "key", "acme-batch"])).toEqual({ code: 0, out: "key acme-batch per day: removed\n" });
  }, 60_000);

  it("a bad command line is refused, naming what is wrong", async () => {
    const r = await cli(["set", "tenant", "x"]);
    expect(r.code).not.toBe(0);
    expect(r.out).toContain("budgets set: give --day <USD>, --month <USD> or both");
  });
});

describe("the gateway, for a tenant or an API key whose budget is spent", () => {
  let gs: GatewayStack;
  beforeAll(async () => {
    // Tenant globex has no budget; its API key (named globex too, under gateway.keys) has.
    gs = await startGatewayStack({ extra: () => ({ budgets: { tenants: { acme: { day_usd: 1e-12 } }, keys: { globex: { day_usd: 1e-12 } } } }) });
  });
  afterAll(() => gs?.close());

  const dlqCount = async () => (await readAll<DeadLetter>(gs.stack.nats.js, STREAMS.dlq)).filter((d) => d.reason === "budget_exceeded").length;

  it("answers 429 insufficient_quota, in OpenAI's shape, through the official SDK", async () => {
    const err = await gs
      .client()
      .chat.completions.create({ model: "auto", messages: [{ role: "user", content: "hello" }], max_tokens: 8 })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(err).toBeInstanceOf(OpenAI.RateLimitError);
    const e = err as InstanceType<typeof OpenAI.RateLimitError>;
    expect(e.status).toBe(429);
    expect(e.code).toBe("insufficient_quota");
    expect(e.type).toBe("insufficient_quota");
    expect(e.message).toMatch(/Budget tenant "acme" per day .* is exhausted/);
    expect(e.headers.get("x-should-retry")).toBe("false");
  });

  it("an API key's budget refuses its requests with the same 429, the dead letter naming the key", async () => {
    const err = await gs
      .client(KEYS.globex)
      .chat.completions.create({ model: "auto", messages: [{ role: "user", content: "hello" }], max_tokens: 8 })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(err).toBeInstanceOf(OpenAI.RateLimitError);
    const e = err as InstanceType<typeof OpenAI.RateLimitError>;
    expect(e.code).toBe("insufficient_quota");
    expect(e.message).toMatch(/Budget key "globex" per day .* is exhausted/);
    await jobsSettled(gs.stack.nats.jsm, 10_000);
    const refused = (await readAll<DeadLetter>(gs.stack.nats.js, STREAMS.dlq)).filter((d) => d.metadata.key === "globex");
    expect(refused.map((d) => d.budget)).toEqual([expect.objectContaining({ scope: "key", name: "globex", window: "day", limit_usd: 1e-12 })]);
  });

  it("with the SDK's default retries, the same answer after one request: a spent budget is not retried", async () => {
    const before = await dlqCount();
    const client = gs.client(undefined, { maxRetries: 2 });
    const err = await client.chat.completions.create({ model: "auto", messages: [{ role: "user", content: "hello" }], max_tokens: 8 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(OpenAI.RateLimitError);
    expect((err as InstanceType<typeof OpenAI.RateLimitError>).code).toBe("insufficient_quota");
    await jobsSettled(gs.stack.nats.jsm, 10_000);
    expect((await dlqCount()) - before).toBe(1);
  });

  it("the raw body is exactly OpenAI's error object", async () => {
    const res = await fetch(`${gs.gateway.url}/chat/completions`, {
      method: "POST",
      headers: { authorization: "Bearer sk-acme-test-key", "content-type": "application/json" },
      body: JSON.stringify({ model: "auto", messages: [{ role: "user", content: "hello" }], max_tokens: 8 }),
    });
    expect(res.status).toBe(429);
    const body = (await res.json()) as { error: Record<string, unknown> };
    expect(Object.keys(body)).toEqual(["error"]);
    expect(body.error).toEqual({ message: expect.stringContaining("is exhausted"), type: "insufficient_quota", param: null, code: "insufficient_quota" });
  });
});

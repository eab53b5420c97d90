/**
 * Metrics as Prometheus scrapes them: a router serving jobs through a provider outage, then
 * GET /metrics on its ops endpoint, and the counters read back by name and labels.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { STREAMS } from "../shared/contract/subjects.ts";
import { createLogger } from "../shared/log.ts";
import { Counter, Histogram, MetricSet } from "../shared/ops/metrics.ts";
import { RouterMetrics } from "../shared/ops/router-metrics.ts";
import { createOps, startOpsServer, type Ops, type OpsServer } from "../shared/ops/server.ts";
import { startPricing, type RunningPricing } from "../services/pricing/main.ts";
import { startRouter, type RunningRouter } from "../services/router/main.ts";
import { jobsSettled, readAll } from "./harness/nats.ts";
import { parseScrape, sample } from "./harness/scrape.ts";
import { moderationJob, startStack, type TestStack } from "./harness/stack.ts";

describe("metric families", () => {
  it("render counters and cumulative histogram buckets in the text format", () => {
    const set = new MetricSet();
    const c = set.add(new Counter("t_total", "a counter", ["a"]));
    const h = set.add(new Histogram("t_seconds", "a histogram", ["a"], [0.1, 1]));
    c.labels('x"y').inc(2);
    const child = h.labels("x");
    for (const v of [0.05, 0.5, 0.7, 5]) child.observe(v);
    const s = parseScrape(set.render());
    expect(sample(s, "t_total", { a: 'x\\"y' })).toBe(2);
    expect(sample(s, "t_seconds_bucket", { le: "0.1" })).toBe(1);
    expect(sample(s, "t_seconds_bucket", { le: "1" })).toBe(3);
    expect(sample(s, "t_seconds_bucket", { le: "+Inf" })).toBe(4);
    expect(sample(s, "t_seconds_count")).toBe(4);
    expect(sample(s, "t_seconds_sum")).toBeCloseTo(6.25);
  });

  it("give the first tenants their own label and every later one `other`", () => {
    const m = new RouterMetrics({ metrics: new MetricSet() }, { tenantLimit: 2 });
    expect([m.tenantOf({ tenant: "a" }), m.tenantOf({ tenant: "b" }), m.tenantOf({ tenant: "c" }), m.tenantOf({ tenant: "a" })]).toEqual(["a", "b", "other", "a"]);
    expect(m.tenantOf(undefined)).toBe("none");
    expect(m.tenantOf({ tenant: 42 })).toBe("other");
  });
});

describe("a router's /metrics after serving jobs through a budget outage", () => {
  let stack: TestStack;
  let ops: Ops;
  let server: OpsServer;
  let router: RunningRouter;
  let pricing: RunningPricing;
  const JOBS = 20;

  beforeAll(async () => {
    stack = await startStack({ routers: 0 });
    ops = createOps();
    const logger = createLogger("test-ops", process.env.LOG_LEVEL ?? "silent");
    server = await startOpsServer(ops, "127.0.0.1:0", logger);
    // In one process with the router, as `switchyard up` runs them: one scrape shows both.
    pricing = await startPricing({ natsUrl: stack.nats.url, config: stack.config, logger, ops });
    router = await startRouter({ natsUrl: stack.nats.url, config: stack.config, logger, ops });
    // Every budget call fails with 503: the jobs fail over to swift within their first delivery.
    stack.sim.control("budget", "budget-lite", { outage: "503" });
    await stack.publishJobs(
      "moderation",
      Array.from({ length: JOBS }, (_, i) => moderationJob(i, { metadata: i % 2 === 0 ? { tenant: "acme" } : { n: i } })),
    );
    // A subject no task has: a dead letter, labelled task "other".
    await stack.publishJobs("nosuchtask", [{ id: "stray-1", request: { messages: [{ role: "user", content: "hi" }] } }]);
    await jobsSettled(stack.nats.jsm);
  });

  afterAll(async () => {
    await router?.stop();
    await pricing?.stop();
    await server?.close();
    await stack?.close();
  });

  it("counts results and dead letters by task, outcome and reason", async () => {
    expect((await readAll(stack.nats.js, STREAMS.results)).length).toBe(JOBS);
    const s = parseScrape(await (await fetch(`${server.url}/metrics`)).text());
    expect(sample(s, "switchyard_jobs_total", { task: "moderation", outcome: "result" })).toBe(JOBS);
    expect(sample(s, "switchyard_jobs_total", { task: "other", outcome: "dead_letter" })).toBe(1);
    expect(sample(s, "switchyard_dead_letters_total", { task: "other", reason: "no_route" })).toBe(1);
    expect(sample(s, "switchyard_dead_letters_total", { task: "moderation", reason: "exhausted" })).toBe(0);
  });

  it("counts attempts by provider, model and outcome, with their durations", async () => {
    const s = parseScrape(await (await fetch(`${server.url}/metrics`)).text());
    const unavailable = sample(s, "switchyard_attempts_total", { provider: "budget", model: "lite", outcome: "unavailable" });
    expect(unavailable).toBeGreaterThan(0);
    expect(sample(s, "switchyard_attempts_total", { provider: "swift", model: "mini", outcome: "ok" })).toBe(JOBS);
    expect(sample(s, "switchyard_provider_call_duration_seconds_count", { provider: "budget", model: "lite", outcome: "unavailable" })).toBe(unavailable);
    expect(sample(s, "switchyard_attempts_total", { provider: "budget", model: "lite", outcome: "ok" })).toBeUndefined();
  });

  it("counts cost and tokens by task, model and tenant, and times queue wait and router overhead", async () => {
    const s = parseScrape(await (await fetch(`${server.url}/metrics`)).text());
    const swift = { task: "moderation", provider: "swift", model: "mini" };
    expect(sample(s, "switchyard_cost_usd_total", { ...swift, tenant: "acme" })).toBeGreaterThan(0);
    expect(sample(s, "switchyard_cost_usd_total", { ...swift, tenant: "none" })).toBeGreaterThan(0);
    expect(sample(s, "switchyard_tokens_total", { ...swift, tenant: "acme", kind: "input" })).toBeGreaterThan(0);
    expect(sample(s, "switchyard_tokens_total", { ...swift, tenant: "acme", kind: "output" })).toBeGreaterThan(0);
    expect(sample(s, "switchyard_queue_wait_seconds_count", { task: "moderation", lane: "batch" })).toBe(JOBS);
    expect(sample(s, "switchyard_router_overhead_seconds_count", { task: "moderation" })).toBe(JOBS);
    expect(sample(s, "switchyard_redeliveries_total", { task: "moderation" })).toBe(0);
    expect(sample(s, "switchyard_jobs_in_flight", { lane: "batch" })).toBe(0);
    // The process metrics ride along.
    expect(sample(s, "process_cpu_seconds_total")).toBeGreaterThan(0);
  });

  it("never puts a job id in a label", async () => {
    const text = await (await fetch(`${server.url}/metrics`)).text();
    expect(text).not.toMatch(/mod-\d|stray-1|nosuchtask/);
  });

  it("exports the pricing leader's view: leadership, model health and live prices", async () => {
    const deadline = Date.now() + 10_000;
    let s = parseScrape(await (await fetch(`${server.url}/metrics`)).text());
    // The budget outage reaches the pricing service as telemetry; its next write says down.
    while (sample(s, "switchyard_model_health", { provider: "budget", model: "lite", state: "down" }) !== 1 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      s = parseScrape(await (await fetch(`${server.url}/metrics`)).text());
    }
    expect(sample(s, "switchyard_pricing_leader")).toBe(1);
    expect(sample(s, "switchyard_model_health", { provider: "budget", model: "lite", state: "down" })).toBe(1);
    expect(sample(s, "switchyard_model_health", { provider: "budget", model: "lite", state: "healthy" })).toBe(0);
    expect(sample(s, "switchyard_model_health", { provider: "swift", model: "mini", state: "healthy" })).toBe(1);
    expect(sample(s, "switchyard_model_error_rate", { provider: "budget", model: "lite" })).toBeTypeOf("number");
    expect(sample(s, "switchyard_model_price_usd_per_mtok", { provider: "budget", model: "lite", direction: "input" })).toBe(0.05);
  });
});

/**
 * Provider limits shared by every router worker (README "Provider limits"): three worker
 * processes against one model limited to 600 rpm, a provider that counts every request it gets
 * and answers 429 past 105 in any 10 s; the Retry-After of a 429 pausing the model at every
 * worker at once (and how fast); `on_rate_limited: next` going to the next candidate.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { createServer, request as httpRequest, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import { parseConfig } from "../shared/config/load.ts";
import type { DeadLetter, Result } from "../shared/contract/job.ts";
import { STREAMS } from "../shared/contract/subjects.ts";
import { provision } from "../shared/nats/provision.ts";
import { buildCatalog } from "../shared/routing/catalog.ts";
import { parseScenario } from "../services/sim-provider/scenario.ts";
import { createSimProvider, type SimProvider } from "../services/sim-provider/server.ts";
import { readAll, startTestNats, type TestNats } from "./harness/nats.ts";
import { printed, spawnCli, type CliProcess } from "./harness/processes.ts";
import { moderationJob, startStack, testConfigYaml, TEST_SCENARIO, type TestStack } from "./harness/stack.ts";

/**
 * A provider's own rate limit in front of the sim-provider: a real HTTP proxy that records when
 * every request arrived and answers 429 (OpenAI's shape, Retry-After 1) to any that would make
 * more than `maxPer10s` in the last 10 s, forwarding the rest.
 */
async function startLimitedProxy(
  target: () => string,
  maxPer10s: number,
): Promise<{ url: string; arrivals: number[]; refused: () => number; mostAtOnce: () => number; close(): Promise<void> }> {
  const arrivals: number[] = [];
  let refused = 0;
  let atOnce = 0;
  let mostAtOnce = 0;
  const server: Server = createServer((req, res) => {
    const upstream = new URL(target());
    const now = performance.now();
    let recent = 0;
    for (let i = arrivals.length - 1; i >= 0 && now - arrivals[i]! < 10_000; i--) recent++;
    arrivals.push(now);
    if (recent >= maxPer10s) {
      refused++;
      req.resume();
      res.writeHead(429, { "content-type": "application/json", "retry-after": "1" });
      res.end(JSON.stringify({ error: { message: "Rate limit reached for requests", type: "requests", param: null, code: "rate_limit_exceeded" } }));
      return;
    }
    mostAtOnce = Math.max(mostAtOnce, ++atOnce);
    res.once("close", () => atOnce--);
    const out = httpRequest({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    out.on("error", () => res.destroy());
    req.pipe(out);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    arrivals,
    refused: () => refused,
    mostAtOnce: () => mostAtOnce,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}

/** The most arrivals in any window of `ms` (sliding). */
function busiest(times: readonly number[], ms: number): number {
  let most = 0;
  for (let a = 0, b = 0; b < times.length; b++) {
    while (times[b]! - times[a]! >= ms) a++;
    most = Math.max(most, b - a + 1);
  }
  return most;
}

describe("three worker processes sharing a 600 rpm limit", () => {
  let nats: TestNats | undefined;
  let sim: SimProvider | undefined;
  let proxy: Awaited<ReturnType<typeof startLimitedProxy>> | undefined;
  const procs: CliProcess[] = [];

  afterAll(async () => {
    for (const p of procs) p.child.kill("SIGKILL");
    await Promise.all(procs.map((p) => p.exited));
    await proxy?.close();
    await sim?.close();
    await nats?.close();
  });

  it("never send the provider more than the limit + 5 % in any 10 s, and get no 429", async () => {
    nats = await startTestNats({ ownServer: true });
    sim = createSimProvider(parseScenario(TEST_SCENARIO, "limits.yaml"));
    const simUrl = await sim.listen(0);
    // 600 rpm is 100 per 10 s: the proxy refuses the 106th.
    proxy = await startLimitedProxy(() => simUrl, 105);
    const yaml = `
streams: { duplicate_window: 2m }
router: { max_in_flight: 128, ack_wait: 5s, max_deliveries: 3, redelivery_backoff: [1s, 2s] }
providers:
  budget:
    dialect: openai
    base_url: ${proxy.url}/budget/v1
    timeout_ms: 60s
    models:
      lite:
        upstream: budget-lite
        input_per_mtok: 0.05
        output_per_mtok: 0.20
        context_window: 16000
        limits: { rpm: 600 }
tasks:
  limited:
    tiers:
      - models: [budget/lite]
`;
    const dir = mkdtempSync(join(tmpdir(), "sy-limits-"));
    writeFileSync(join(dir, "switchyard.yaml"), yaml);
    await provision(await jetstreamManager(nats.nc), parseConfig(yaml, "limits.yaml", {}));
    const env = { NATS_URL: nats.url, SWITCHYARD_CONFIG: join(dir, "switchyard.yaml"), LOG_LEVEL: "info" };
    for (let i = 0; i < 3; i++) procs.push(spawnCli(["router"], env));
    await Promise.all(procs.map((p) => printed(p, /router worker started/)));

    // 250 jobs at once: about 25 s of the limit, so the busiest 10 s is one in full flow.
    const jobs = 250;
    for (let i = 0; i < jobs; i++) await nats.js.publish("jobs.limited", JSON.stringify({ id: `lim-${i}`, request: { messages: [{ role: "user", content: `job ${i}` }], max_tokens: 8 } }), { msgID: `lim-${i}` });
    await vi.waitFor(
      async () => {
        const done = (await nats!.jsm.streams.info(STREAMS.results)).state.messages + (await nats!.jsm.streams.info(STREAMS.dlq)).state.messages;
        expect(done).toBe(jobs);
      },
      { timeout: 90_000, interval: 500 },
    );

    const results = await readAll<Result>(nats.js, STREAMS.results);
    const deadLetters = await readAll<DeadLetter>(nats.js, STREAMS.dlq);
    const most = busiest(proxy.arrivals, 10_000);
    const span = (proxy.arrivals.at(-1)! - proxy.arrivals[0]!) / 1000;
    console.log(`600 rpm across 3 worker processes: ${proxy.arrivals.length} requests in ${span.toFixed(1)} s (${((proxy.arrivals.length / span) * 60).toFixed(0)} rpm), busiest 10 s window ${most} (limit 100), 429s ${proxy.refused()}`);
    expect(deadLetters).toEqual([]);
    expect(results).toHaveLength(jobs);
    expect(proxy.refused()).toBe(0);
    expect(results.flatMap((r) => r.attempts).filter((a) => a.http_status === 429)).toEqual([]);
    expect(most).toBeLessThanOrEqual(105);
    // The limit was used, not starved: its busiest 10 s carried at least 90 % of it.
    expect(most).toBeGreaterThanOrEqual(90);

    // Then the provider answers 429 with Retry-After 5 s: the worker that gets it pauses the model at the others.
    sim.control("budget", "budget-lite", { errors: { rate_429: 1, retry_after_s: 5 } });
    const pauses = nats.nc.subscribe("switchyard.pause.>", { max: 1 });
    const before = proxy.arrivals.length;
    await nats.js.publish("jobs.limited", JSON.stringify({ id: "lim-429", request: { messages: [{ role: "user", content: "job 429" }], max_tokens: 8 } }), { msgID: "lim-429" });
    let heard = 0;
    for await (const m of pauses) {
      const pause = m.json<{ m: string; until: number; at: number }>();
      heard = Date.now();
      console.log(`429 → pause heard by another process over NATS: ${heard - pause.at} ms; model ${pause.m} paused until +${pause.until - pause.at} ms`);
      expect(pause.m).toBe("budget/lite");
    }
    // The job comes back after its 1 s backoff, to any of the three workers: while the pause lasts, none calls the model again.
    await new Promise((r) => setTimeout(r, 4_000));
    expect(proxy.arrivals.length - before).toBe(1);
    sim.control("budget", "budget-lite", { errors: { rate_429: 0 } });
    await vi.waitFor(async () => expect((await readAll<Result>(nats!.js, STREAMS.results)).some((r) => r.id === "lim-429")).toBe(true), { timeout: 30_000, interval: 200 });
  }, 150_000);
});

describe("a 429 with Retry-After", () => {
  let stack: TestStack | undefined;
  afterEach(async () => {
    await stack?.close();
    stack = undefined;
  });

  it("pauses the model at every worker, measured from the 429 to the pause at another worker", async () => {
    stack = await startStack({ routers: 3 });
    stack.sim.control("budget", "budget-lite", { errors: { rate_429: 1, retry_after_s: 5 } });
    const model = buildCatalog(stack.config, {}).models.get("budget/lite")!;
    // When each worker's own health learns of a rate limit on the model: its own 429, or a pause heard from another worker.
    const learnt: { worker: number; at: number; wall: number }[] = [];
    stack.routers.forEach((r, worker) => {
      const local = r.router.live.local;
      const failed = local.failed.bind(local);
      local.failed = (id, provider, kind, now, retryAfterMs) => {
        if (id === model.id && kind === "rate_limited") learnt.push({ worker, at: performance.now(), wall: Date.now() });
        failed(id, provider, kind, now, retryAfterMs);
      };
    });
    await stack.publishJobs("moderation", [moderationJob(1)]);
    await vi.waitFor(() => expect(new Set(learnt.map((l) => l.worker)).size).toBe(3), { timeout: 10_000, interval: 5 });
    const [first, ...others] = learnt;
    const lag = Math.max(...others.filter((l) => l.worker !== first!.worker).map((l) => l.at - first!.at));
    console.log(`429 → pause at the other workers: ${others.map((l) => `${(l.at - first!.at).toFixed(2)} ms (worker ${l.worker})`).join(", ")} after worker ${first!.worker}`);
    expect(lag).toBeGreaterThanOrEqual(0);
    // Every worker now skips the model for the Retry-After (5 s), counted from the 429.
    for (const r of stack.routers) expect(r.router.live.cooldownUntil(model)).toBeGreaterThanOrEqual(first!.wall + 4_000);
  });
});

describe("on_rate_limited: next", () => {
  let stack: TestStack | undefined;
  afterEach(async () => {
    await stack?.close();
    stack = undefined;
  });

  it("sends a job whose first candidate's limit is used up to the next candidate at once", async () => {
    stack = await startStack({
      routers: 1,
      configYaml: (simUrl) =>
        testConfigYaml(simUrl)
          .replace("      lite: { upstream: budget-lite, input_per_mtok: 0.05, output_per_mtok: 0.20, context_window: 16000 }", "      lite: { upstream: budget-lite, input_per_mtok: 0.05, output_per_mtok: 0.20, context_window: 16000, limits: { rpm: 1 } }")
          .replace("  moderation:\n", "  moderation:\n    on_rate_limited: next\n"),
    });
    expect(stack.config.providers.budget!.models.lite!.limits).toEqual({ rpm: 1 });
    await stack.publishJobs("moderation", [0, 1, 2].map((i) => moderationJob(i)));
    await vi.waitFor(async () => expect((await stack!.nats.jsm.streams.info(STREAMS.results)).state.messages).toBe(3), { timeout: 15_000, interval: 50 });
    const results = await readAll<Result>(stack.nats.js, STREAMS.results);
    // One request a minute: the cheapest model serves one job, the next candidate the others.
    expect(stack.sim.stats().models["budget/budget-lite"]!.requests).toBe(1);
    expect(results.filter((r) => r.provider === "budget")).toHaveLength(1);
    expect(results.filter((r) => r.provider === "swift")).toHaveLength(2);
    // A refusal by the shared limit, if a job met one, is an attempt with no HTTP status: the provider was never asked.
    for (const a of results.flatMap((r) => r.attempts).filter((a) => a.outcome === "rate_limited")) expect(a.http_status).toBeNull();
  });
});

describe("a concurrency cap across workers", () => {
  let stack: TestStack | undefined;
  let proxy: Awaited<ReturnType<typeof startLimitedProxy>> | undefined;
  afterEach(async () => {
    await stack?.close();
    await proxy?.close();
    stack = undefined;
  });

  it("keeps three workers' calls to a model at most its max_concurrency at once, every job served", async () => {
    let simUrl = "";
    proxy = await startLimitedProxy(() => simUrl, Infinity);
    const proxyUrl = proxy.url;
    stack = await startStack({
      routers: 3,
      scenario: TEST_SCENARIO.replace("budget-lite: { latency_ms: { min: 1, max: 5 } }", "budget-lite: { latency_ms: { min: 150, max: 150 } }"),
      configYaml: (url) => {
        simUrl = url;
        return testConfigYaml(url, {}, { providerTimeout: "10s" })
          .replace(`base_url: ${url}/budget/v1`, `base_url: ${proxyUrl}/budget/v1`)
          .replace("      lite: { upstream: budget-lite, input_per_mtok: 0.05, output_per_mtok: 0.20, context_window: 16000 }", "      lite: { upstream: budget-lite, input_per_mtok: 0.05, output_per_mtok: 0.20, context_window: 16000, limits: { max_concurrency: 2 } }")
          .replace("      - strategy: cheapest\n        models: [budget/lite, swift/mini]\n      - models: [premium/large]\n", "      - models: [budget/lite]\n");
      },
    });
    const jobs = 12;
    await stack.publishJobs("moderation", Array.from({ length: jobs }, (_, i) => moderationJob(i)));
    await vi.waitFor(async () => expect((await stack!.nats.jsm.streams.info(STREAMS.results)).state.messages).toBe(jobs), { timeout: 30_000, interval: 50 });
    const results = await readAll<Result>(stack.nats.js, STREAMS.results);
    console.log(`max_concurrency 2 across 3 workers: ${jobs} jobs, at most ${proxy.mostAtOnce()} calls at once at the provider`);
    expect(results.every((r) => r.provider === "budget")).toBe(true);
    expect(proxy.arrivals).toHaveLength(jobs);
    expect(proxy.mostAtOnce()).toBeLessThanOrEqual(2);
  });
});

import { writeFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { parseConfig } from "../shared/config/load.ts";
import type { Result } from "../shared/contract/job.ts";
import { HeartbeatSchema, ModelStateSchema } from "../shared/contract/live.ts";
import { HEARTBEAT_KEY, LEASE_KEY, STREAMS } from "../shared/contract/subjects.ts";
import { createLogger } from "../shared/log.ts";
import { LEASE_TTL_MS, openBuckets } from "../shared/nats/buckets.ts";
import { buildCatalog } from "../shared/routing/catalog.ts";
import { connectNats } from "../shared/nats/connect.ts";
import { startPricing, type RunningPricing } from "../services/pricing/main.ts";
import { createPricingService } from "../services/pricing/service.ts";
import { startRouter } from "../services/router/main.ts";
import { readStream } from "./harness/nats.ts";
import { spawnCli } from "./harness/processes.ts";
import { moderationJob, startStack, testConfigYaml, type TestStack } from "./harness/stack.ts";

let stack: TestStack;
let pricing: RunningPricing;
let seq = 0;
const logger = createLogger("test", "silent");

beforeAll(async () => {
  stack = await startStack({ routers: 2 });
  pricing = await startPricing({ natsUrl: stack.nats.url, config: stack.config, logger });
  await vi.waitFor(() => expect(stack.routers.every((r) => r.router.live.fresh())).toBe(true), { timeout: 5_000 });
});
afterAll(async () => {
  await pricing?.stop();
  await stack?.close();
});
beforeEach(() => stack.sim.reset());

/** Publishes n jobs and returns their results, in completion order. */
async function serve(n: number, extra: Record<string, unknown> = {}): Promise<Result[]> {
  const tag = `lr${++seq}`;
  const before = (await stack.nats.jsm.streams.info(STREAMS.results)).state.messages;
  await stack.publishJobs("moderation", Array.from({ length: n }, (_, i) => ({ ...moderationJob(i, extra), id: `${tag}-${i}` })));
  const all = await readStream<Result>(stack.nats.js, STREAMS.results, { count: before + n });
  return all.filter((r) => r.id.startsWith(`${tag}-`));
}

const providersOf = (rs: Result[]) => rs.map((r) => r.provider);
const swift = () => buildCatalog(stack.config).models.get("swift/mini")!;
const budget = () => buildCatalog(stack.config).models.get("budget/lite")!;

describe("live routing through the pricing service", () => {
  it("a price change reaches every worker and changes the next routing decision", async () => {
    expect(new Set(providersOf(await serve(10)))).toEqual(new Set(["budget"]));
    const t0 = Date.now();
    const { prices } = await openBuckets(stack.nats.nc, stack.config);
    await prices.put("swift/mini", JSON.stringify({ input_per_mtok: 0.001, output_per_mtok: 0.001, set_at: new Date().toISOString() }));
    // Waits longer than the bound asserted next, so that a slow propagation fails there, with its time.
    await vi.waitFor(() => expect(stack.routers.map((r) => r.router.live.price(swift()).inputPerMtok)).toEqual([0.001, 0.001]), { timeout: 10_000, interval: 10 });
    const converged = Date.now() - t0;
    // The pricing service writes a price change at once, and workers watch the bucket (README, "Workers").
    expect(converged).toBeLessThan(1_000);
    const after = await serve(20);
    expect(new Set(providersOf(after))).toEqual(new Set(["swift"]));
    // The cost is the price in force when the job was routed.
    expect(after[0]!.cost_usd).toBeCloseTo((after[0]!.usage.prompt_tokens * 0.001 + after[0]!.usage.completion_tokens * 0.001) / 1e6, 12);
    await prices.delete("swift/mini");
    await vi.waitFor(() => expect(stack.routers.map((r) => r.router.live.price(swift()).inputPerMtok)).toEqual([0.15, 0.15]), { timeout: 3_000 });
  });

  it("an outage moves traffic to the next candidate; recovery (probed) brings it back", async () => {
    stack.sim.control("budget", "budget-lite", { outage: "503" });
    const during = await serve(40);
    expect(during.filter((r) => r.provider === "swift").length).toBeGreaterThanOrEqual(35);
    const { models } = await openBuckets(stack.nats.nc, stack.config);
    await vi.waitFor(async () => expect(ModelStateSchema.parse((await models.get("budget/lite"))!.json()).health).toBe("down"), { timeout: 3_000 });
    // While down, no worker sends budget a single call.
    const calls = stack.sim.stats().models["budget/budget-lite"]!.requests;
    await serve(20);
    expect(stack.sim.stats().models["budget/budget-lite"]!.requests - calls).toBeLessThanOrEqual(1);
    stack.sim.control("budget", "budget-lite", { outage: null });
    await vi.waitFor(async () => expect(ModelStateSchema.parse((await models.get("budget/lite"))!.json()).health).not.toBe("down"), { timeout: 15_000, interval: 100 });
    // Every worker has heard it (and has no cooldown of its own left) before the next batch is routed.
    await vi.waitFor(() => expect(stack.routers.every((r) => r.router.live.cooldownUntil(budget()) <= Date.now())).toBe(true), { timeout: 5_000, interval: 10 });
    const back = await serve(20);
    expect(back.filter((r) => r.provider === "budget").length).toBeGreaterThanOrEqual(18);
  });

  it("the pricing service killed mid-batch: routing goes on, nothing is lost, and a new one takes over", async () => {
    await pricing.stop();
    const dir = mkdtempSync(join(tmpdir(), "sy-pricing-"));
    writeFileSync(join(dir, "switchyard.yaml"), stack.configYaml);
    const child = spawnCli(["pricing"], { NATS_URL: stack.nats.url, SWITCHYARD_CONFIG: join(dir, "switchyard.yaml") });
    const { models } = await openBuckets(stack.nats.nc, stack.config);
    await vi.waitFor(async () => expect(HeartbeatSchema.parse((await models.get(HEARTBEAT_KEY))!.json()).leader).not.toBe(pricing.service.id), { timeout: 5_000, interval: 100 });

    const tag = `lr${++seq}`;
    const before = (await stack.nats.jsm.streams.info(STREAMS.results)).state.messages;
    const publishing = stack.publishJobs("moderation", Array.from({ length: 300 }, (_, i) => ({ ...moderationJob(i), id: `${tag}-${i}` })));
    child.child.kill("SIGKILL");
    await publishing;
    const results = (await readStream<Result>(stack.nats.js, STREAMS.results, { count: before + 300 })).filter((r) => r.id.startsWith(`${tag}-`));
    expect(new Set(results.map((r) => r.id)).size).toBe(300);
    await vi.waitFor(() => expect(stack.routers.every((r) => !r.router.live.fresh())).toBe(true), { timeout: 8_000 });
    // The killed leader never released its lease: the new one waits for it to lapse, then writes.
    pricing = await startPricing({ natsUrl: stack.nats.url, config: stack.config, logger });
    await vi.waitFor(() => expect(stack.routers.every((r) => r.router.live.fresh())).toBe(true), { timeout: 8_000 });
  });

  it("two pricing services at once: one writes, the other takes over when it goes", async () => {
    const nc = await connectNats(stack.nats.url, "second-pricing");
    const second = createPricingService({ nc, config: stack.config, logger });
    const { lease } = await openBuckets(stack.nats.nc, stack.config);
    const renewals = await lease.watch({ key: LEASE_KEY, include: "updates" });
    // start() makes its first bid for the lease before it resolves.
    await second.start();
    const t0 = Date.now();
    expect(second.isLeader()).toBe(false);
    // The lease lapses LEASE_TTL_MS after its last renewal, and the second bids every second: it
    // would have taken over by now had the holder let the lease go. Every renewal seen is the holder's.
    const holders: string[] = [];
    for await (const e of renewals) {
      holders.push(e.string());
      expect(second.isLeader()).toBe(false);
      if (Date.now() - t0 > LEASE_TTL_MS) break;
    }
    renewals.stop();
    expect(new Set(holders)).toEqual(new Set([pricing.service.id]));
    expect(pricing.service.isLeader()).toBe(true);
    expect(second.isLeader()).toBe(false);
    await pricing.stop();
    await vi.waitFor(() => expect(second.isLeader()).toBe(true), { timeout: 5_000 });
    await second.stop();
    await nc.drain();
    pricing = await startPricing({ natsUrl: stack.nats.url, config: stack.config, logger });
    await vi.waitFor(() => expect(pricing.service.isLeader()).toBe(true), { timeout: 5_000 });
  });
});

describe("config reload", () => {
  it("an edit applies without a restart; an invalid edit is rejected and the old config stays", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sy-reload-"));
    const file = join(dir, "switchyard.yaml");
    const yaml = testConfigYaml(stack.simUrl);
    writeFileSync(file, yaml);
    for (const r of stack.routers) await r.stop();
    stack.routers.length = 0;
    // The worker's log says when it has read an edit, applied or rejected: the test waits for that, not for a time.
    const logged: string[] = [];
    const seen = (msg: string) => logged.filter((l) => (JSON.parse(l) as { msg: string }).msg === msg).length;
    const watched = pino({ level: "info" }, { write: (line: string) => void logged.push(line) });
    const running = await startRouter({ natsUrl: stack.nats.url, config: parseConfig(yaml, file, {}), logger: watched, configFile: file });
    stack.routers.push(running);
    expect(new Set(providersOf(await serve(5)))).toEqual(new Set(["budget"]));

    writeFileSync(file, yaml.replace("models: [budget/lite, swift/mini]", "models: [budget/lite, swift/mini]\n      - { strategy: cheapest, models: [nowhere/x] }"));
    await vi.waitFor(() => expect(seen("config edit rejected; the config in force stays")).toBe(1), { timeout: 5_000, interval: 20 });
    expect(new Set(providersOf(await serve(5)))).toEqual(new Set(["budget"]));

    writeFileSync(file, yaml.replace("models: [budget/lite, swift/mini]", "models: [premium/large]"));
    await vi.waitFor(() => expect(seen("config reloaded")).toBe(1), { timeout: 5_000, interval: 20 });
    expect(new Set(providersOf(await serve(3)))).toEqual(new Set(["premium"]));
  });
});

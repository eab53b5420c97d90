/**
 * Bugs the chaos suite found, each reduced to the smallest real reproduction (real
 * nats-server, real sim-provider, real router code; processes where the fault needs one).
 * They fail until the code they name is fixed; the report in docs/RELIABILITY.md lists them.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { jetstreamManager } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { createProviderClient } from "../shared/adapters/http.ts";
import { ProviderTimeoutError } from "../shared/adapters/errors.ts";
import { parseConfig } from "../shared/config/load.ts";
import { STREAMS } from "../shared/contract/subjects.ts";
import { provision } from "../shared/nats/provision.ts";
import { parseScenario } from "../services/sim-provider/scenario.ts";
import { createSimProvider, type SimProvider } from "../services/sim-provider/server.ts";
import { scan } from "../shared/nats/read.ts";
import { startAckProxy } from "./chaos/ack-proxy.ts";
import { startTestNats, type TestNats } from "./harness/nats.ts";
import { spawnCli, type CliProcess } from "./harness/processes.ts";
import { moderationJob, startStack, testConfigYaml, type TestStack } from "./harness/stack.ts";

const call = (model: string) => ({
  path: "/chat/completions",
  headers: { "content-type": "application/json" },
  body: JSON.stringify({ model, messages: [{ role: "user", content: "hi" }] }),
});

describe("the per-attempt timeout (shared/adapters/http.ts)", () => {
  let sim: SimProvider;
  let url: string;
  beforeAll(async () => {
    sim = createSimProvider(
      parseScenario(
        `providers:
  p:
    models:
      slow-head: { latency_ms: { min: 900, max: 900 } }
      slow-body: { errors: { rate_slow_body: 1 }, slow_body_ms: 3000 }
`,
        "timeouts.yaml",
      ),
    );
    url = await sim.listen(0);
  });
  afterAll(() => sim.close());

  it("fires on time: a 300 ms timeout ends a call whose answer takes 900 ms", async () => {
    // undici's headersTimeout runs on its coarse "fast timers" (about 1 s resolution), so the
    // 900 ms answer arrives before a 300 ms timeout fires: results come after their deadline.
    const client = createProviderClient({ base_url: `${url}/p/v1`, max_concurrency: 2 });
    const t0 = Date.now();
    await expect(client.send(call("slow-head"), 300)).rejects.toBeInstanceOf(ProviderTimeoutError);
    expect(Date.now() - t0).toBeLessThan(450);
    await client.close();
  });

  it("bounds the whole call: a body dripped over 3 s fails a 1 s timeout", async () => {
    // bodyTimeout is the longest gap between two body chunks, not a limit on the body: a
    // provider that keeps dripping holds the call (and the job, past its deadline) for as long as it likes.
    const client = createProviderClient({ base_url: `${url}/p/v1`, max_concurrency: 2 });
    const t0 = Date.now();
    await expect(client.send(call("slow-body"), 1_000)).rejects.toBeInstanceOf(ProviderTimeoutError);
    expect(Date.now() - t0).toBeLessThan(1_300);
    await client.close();
  });
});

describe("hostile job ids and nesting (services/router/worker.ts, intake.ts)", () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startStack({ routers: 1 });
  });
  afterAll(() => stack?.close());

  const outcomesOf = async (id: string) => {
    const out: string[] = [];
    for (const stream of [STREAMS.results, STREAMS.dlq]) {
      const info = await stack.nats.jsm.streams.info(stream);
      if (info.state.messages === 0) continue;
      for await (const m of scan(stack.nats.js, stream, { lastSeq: info.state.last_seq, headersOnly: true })) if (m.msgId === id) out.push(stream);
    }
    return out;
  };

  it("a job whose metadata nests 10,000 levels deep ends as one dead letter, not lost", async () => {
    // JSON.parse accepts it, JSON.stringify of the result or dead letter overflows the stack:
    // handle() throws, the job is nak'ed until max_deliver and then never delivered again.
    const json = JSON.stringify(moderationJob(0)).replace(/}$/, `,"metadata":{"deep":${"[".repeat(10_000)}${"]".repeat(10_000)}}}`).replace('"id":"mod-0"', '"id":"deep-1"');
    await stack.nats.js.publish("jobs.moderation", json, { msgID: "deep-1" });
    await vi.waitFor(async () => expect(await outcomesOf("deep-1")).toEqual([STREAMS.dlq]), { timeout: 10_000, interval: 250 });
  });

  it("a job id with a line break ends as one dead letter, not lost", async () => {
    // The id is valid per the contract (1–128 characters), but it cannot be a Nats-Msg-Id
    // header: publishing the result or dead letter throws, and the job is dropped as above.
    await stack.nats.js.publish("jobs.moderation", JSON.stringify({ ...moderationJob(1), id: "line\nbreak" }), { msgID: "line-break" });
    const ids = async () => {
      const out: string[] = [];
      const info = await stack.nats.jsm.streams.info(STREAMS.dlq);
      if (info.state.messages > 0) for await (const m of scan(stack.nats.js, STREAMS.dlq, { lastSeq: info.state.last_seq })) out.push(JSON.parse(Buffer.from(m.data).toString()).id as string);
      return out;
    };
    await vi.waitFor(async () => expect((await ids()).filter((id) => id.includes("break"))).toHaveLength(1), { timeout: 10_000, interval: 250 });
  });
});

describe("RESULTS and DLQ unavailable for a few seconds (services/router/worker.ts, dispatch)", () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startStack({ routers: 1, ownServer: true });
  });
  afterAll(() => stack?.close());

  it("a job whose result cannot be stored for 2 s is served once the streams are back, not lost", async () => {
    // What a stream-leader election looks like to the router (the 3-node chaos scenario):
    // publishing the result fails at once ("no responders"), dispatch() naks with
    // redelivery_backoff[0] whatever the delivery count, every delivery fails the same way,
    // the dead letter on the last one fails too, and after max_deliver JetStream drops the job.
    await stack.nats.jsm.streams.delete(STREAMS.results);
    await stack.nats.jsm.streams.delete(STREAMS.dlq);
    await stack.nats.js.publish("jobs.moderation", JSON.stringify(moderationJob(0, { id: "outage-1" })), { msgID: "outage-1" });
    await sleep(2_000);
    await provision(stack.nats.jsm, stack.config);
    await vi.waitFor(async () => expect((await stack.nats.jsm.streams.info(STREAMS.results)).state.messages).toBe(1), { timeout: 15_000, interval: 250 });
  });
});

describe("a worker paused past ack_wait (SIGSTOP, as a long GC pause or a frozen VM would), or its ack lost", () => {
  let nats: TestNats;
  let sim: SimProvider;
  let env: Record<string, string>;
  const procs: CliProcess[] = [];

  beforeAll(async () => {
    nats = await startTestNats({ ownServer: true });
    sim = createSimProvider(
      parseScenario(
        `providers:
  budget: { models: { budget-lite: { latency_ms: { min: 600, max: 600 } } } }
  swift: { models: { swift-mini: { latency_ms: { min: 600, max: 600 } } } }
  premium: { models: { premium-large: { latency_ms: { min: 600, max: 600 } } } }
`,
        "paused.yaml",
      ),
    );
    const simUrl = await sim.listen(0);
    const yaml = testConfigYaml(simUrl, { ack_wait: "1s", max_in_flight: "8" });
    const dir = mkdtempSync(join(tmpdir(), "sy-paused-"));
    writeFileSync(join(dir, "switchyard.yaml"), yaml);
    await provision(await jetstreamManager(nats.nc), parseConfig(yaml, "paused.yaml", {}));
    env = { NATS_URL: nats.url, SWITCHYARD_CONFIG: join(dir, "switchyard.yaml"), LOG_LEVEL: "info" };
  });
  afterAll(async () => {
    for (const p of procs) p.child.kill("SIGKILL");
    await Promise.all(procs.map((p) => p.exited));
    await sim?.close();
    await nats?.close();
  });

  async function router(natsUrl = nats.url): Promise<CliProcess> {
    const p = spawnCli(["router"], { ...env, NATS_URL: natsUrl });
    procs.push(p);
    await vi.waitFor(() => expect(p.output()).toContain("router worker started"), { timeout: 20_000, interval: 50 });
    return p;
  }
  const budgetCalls = () => sim.stats().models["budget/budget-lite"]?.requests ?? 0;
  const count = async (stream: string) => (await nats.jsm.streams.info(stream)).state.messages;

  it("a job published without any id is served once, not once per delivery", async () => {
    // The fallback id is a fresh nuid per delivery (worker.ts, `newId: () => nuid.next()`), so
    // the redelivered copy's result is not recognised as a duplicate.
    sim.reset();
    const before = (await count(STREAMS.results)) + (await count(STREAMS.dlq));
    const a = await router();
    nats.nc.publish("jobs.moderation", JSON.stringify({ request: moderationJob(0).request }));
    await vi.waitFor(() => expect(budgetCalls()).toBe(1), { timeout: 10_000, interval: 10 });
    a.child.kill("SIGSTOP");
    const b = await router();
    await vi.waitFor(async () => expect(await count(STREAMS.results)).toBeGreaterThan(before), { timeout: 10_000, interval: 50 });
    a.child.kill("SIGCONT");
    await sleep(3_000);
    expect((await count(STREAMS.results)) + (await count(STREAMS.dlq)) - before).toBe(1);
    for (const p of [a, b]) p.child.kill("SIGKILL");
  });

  it("a job another worker served is not also dead-lettered by the paused one when it wakes after the deadline", async () => {
    // The woken worker's attempt times out, the deadline has passed, so it publishes a
    // dead letter: the id is then in RESULTS and in DLQ, two streams no duplicate window spans.
    sim.reset();
    sim.control("budget", "budget-lite", { outage: "hang", hang_ms: 60_000 });
    const a = await router();
    const deadline = Date.now() + 5_000;
    await nats.js.publish("jobs.moderation", JSON.stringify(moderationJob(0, { id: "paused-1", deadline: new Date(deadline).toISOString() })), { msgID: "paused-1" });
    await vi.waitFor(() => expect(budgetCalls()).toBe(1), { timeout: 10_000, interval: 10 });
    const results = await count(STREAMS.results);
    a.child.kill("SIGSTOP");
    sim.control("budget", "budget-lite", { outage: null });
    const b = await router();
    await vi.waitFor(async () => expect(await count(STREAMS.results)).toBe(results + 1), { timeout: 10_000, interval: 50 });
    await sleep(deadline + 500 - Date.now());
    a.child.kill("SIGCONT");
    // undici's timer counts its own ticks, not the clock: the woken call times out about 2 s later.
    await sleep(5_000);
    const dls: string[] = [];
    const info = await nats.jsm.streams.info(STREAMS.dlq);
    if (info.state.messages > 0) for await (const m of scan(nats.js, STREAMS.dlq, { lastSeq: info.state.last_seq, headersOnly: true })) if (m.msgId) dls.push(m.msgId);
    expect(dls).not.toContain("paused-1");
    for (const p of [a, b]) p.child.kill("SIGKILL");
  });
  it("a result whose ack was lost is not also dead-lettered when the redelivery comes after the deadline", async () => {
    // The first delivery stores the result, but its ack never reaches the server (as when a
    // worker dies right after publishing, or the server dies before it stored the ack).
    // JetStream redelivers after ack_wait; by then the deadline has passed, and the redelivery
    // publishes deadline_exceeded into DLQ although RESULTS holds the job.
    sim.reset();
    const proxy = await startAckProxy(Number(new URL(nats.url).port));
    try {
      const a = await router(proxy.url);
      proxy.dropAcks(true);
      const deadline = Date.now() + 1_500;
      const before = await count(STREAMS.results);
      await nats.js.publish("jobs.moderation", JSON.stringify(moderationJob(0, { id: "lostack-1", deadline: new Date(deadline).toISOString() })), { msgID: "lostack-1" });
      await vi.waitFor(async () => expect(await count(STREAMS.results)).toBe(before + 1), { timeout: 10_000, interval: 50 });
      await sleep(deadline + 1_500 - Date.now());
      proxy.dropAcks(false);
      await sleep(1_500);
      expect(proxy.dropped()).toBeGreaterThan(0);
      const dls: string[] = [];
      const info = await nats.jsm.streams.info(STREAMS.dlq);
      if (info.state.messages > 0) for await (const m of scan(nats.js, STREAMS.dlq, { lastSeq: info.state.last_seq, headersOnly: true })) if (m.msgId) dls.push(m.msgId);
      if (dls.includes("lostack-1")) console.log("DEBUG", a.output());
      expect(dls).not.toContain("lostack-1");
      a.child.kill("SIGKILL");
    } finally {
      await proxy.close();
    }
  });
});

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
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { createProviderClient } from "../shared/adapters/http.ts";
import { ProviderTimeoutError } from "../shared/adapters/errors.ts";
import { parseConfig } from "../shared/config/load.ts";
import { AttemptEventSchema } from "../shared/contract/live.ts";
import { STREAMS, TELEMETRY_SUBJECT } from "../shared/contract/subjects.ts";
import { provision } from "../shared/nats/provision.ts";
import { parseScenario } from "../services/sim-provider/scenario.ts";
import { createSimProvider, type SimProvider } from "../services/sim-provider/server.ts";
import { startAckProxy } from "./chaos/ack-proxy.ts";
import { jobsSettled, readAll, readMsgIds, startTestNats, type TestNats } from "./harness/nats.ts";
import { spawnCli, type CliProcess } from "./harness/processes.ts";
import { moderationJob, startStack, testConfigYaml, type TestStack } from "./harness/stack.ts";

const call = (model: string) => ({
  path: "/chat/completions",
  headers: { "content-type": "application/json" },
  body: JSON.stringify({ model, messages: [{ role: "user", content: "hi" }] }),
});

/** `p`, or a rejection saying what did not happen within `ms`. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(what)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

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
    for (const stream of [STREAMS.results, STREAMS.dlq]) for (const msgId of await readMsgIds(stack.nats.js, stream)) if (msgId === id) out.push(stream);
    return out;
  };

  it("a job whose metadata nests 10,000 levels deep ends as one dead letter, not lost", async () => {
    // JSON.parse accepts it, JSON.stringify of the result or dead letter overflows the stack:
    // handle() throws, the job is nak'ed until max_deliver and then never delivered again.
    const json = JSON.stringify(moderationJob(0)).replace(/}$/, `,"metadata":{"deep":${"[".repeat(10_000)}${"]".repeat(10_000)}}}`).replace('"id":"mod-0"', '"id":"deep-1"');
    await stack.nats.js.publish("jobs.moderation", json, { msgID: "deep-1" });
    // Acknowledged means its outcome is stored: then it must be exactly one dead letter (a job
    // never acknowledged times this out, naming the backlog).
    await jobsSettled(stack.nats.jsm, 10_000);
    expect(await outcomesOf("deep-1")).toEqual([STREAMS.dlq]);
  });

  it("a job id with a line break ends as one dead letter, not lost", async () => {
    // The id is valid per the contract (1–128 characters), but it cannot be a Nats-Msg-Id
    // header: publishing the result or dead letter throws, and the job is dropped as above.
    await stack.nats.js.publish("jobs.moderation", JSON.stringify({ ...moderationJob(1), id: "line\nbreak" }), { msgID: "line-break" });
    await jobsSettled(stack.nats.jsm, 10_000);
    const ids = async (stream: string) => (await readAll<{ id: string }>(stack.nats.js, stream)).map((o) => o.id).filter((id) => id.includes("break"));
    expect(await ids(STREAMS.dlq)).toHaveLength(1);
    expect(await ids(STREAMS.results)).toEqual([]);
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
    await jobsSettled(stack.nats.jsm, 15_000);
    expect((await stack.nats.jsm.streams.info(STREAMS.results)).state.messages).toBe(1);
    expect((await stack.nats.jsm.streams.info(STREAMS.dlq)).state.messages).toBe(0);
  });
});

describe("a worker paused past ack_wait (SIGSTOP, as a long GC pause or a frozen VM would), or its ack lost", () => {
  let nats: TestNats;
  let sim: SimProvider;
  let env: Record<string, string>;
  /** The router processes of the running test: ended after it, so none serves (or wakes up in) the next. */
  let procs: CliProcess[] = [];

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
  beforeEach(() => sim.reset());
  afterEach(async () => {
    for (const p of procs) p.child.kill("SIGKILL");
    await Promise.all(procs.map((p) => p.exited));
    procs = [];
  });
  afterAll(async () => {
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
  /** SIGTERM: the worker finishes what it holds (within shutdown_grace) and exits; after that it can publish nothing. */
  const stopped = async (p: CliProcess) => {
    p.child.kill("SIGTERM");
    return p.exited;
  };
  const dlqIds = async () => (await readAll<{ id: string }>(nats.js, STREAMS.dlq)).map((d) => d.id);

  it("a job published without any id is served once, not once per delivery", async () => {
    // The fallback id is a fresh nuid per delivery (worker.ts, `newId: () => nuid.next()`), so
    // the redelivered copy's result is not recognised as a duplicate.
    const before = (await count(STREAMS.results)) + (await count(STREAMS.dlq));
    const a = await router();
    nats.nc.publish("jobs.moderation", JSON.stringify({ request: moderationJob(0).request }));
    await vi.waitFor(() => expect(budgetCalls()).toBe(1), { timeout: 10_000, interval: 10 });
    a.child.kill("SIGSTOP");
    const b = await router();
    await vi.waitFor(async () => expect(await count(STREAMS.results)).toBeGreaterThan(before), { timeout: 10_000, interval: 50 });
    a.child.kill("SIGCONT");
    // The woken worker still holds its delivery, its answer waiting in the socket: once it has
    // stopped (finishing what it holds first), whatever it was going to publish is published.
    expect(await stopped(a)).toBe(0);
    expect(await stopped(b)).toBe(0);
    expect((await count(STREAMS.results)) + (await count(STREAMS.dlq)) - before).toBe(1);
  });

  it("a job another worker served is not also dead-lettered by the paused one when it wakes after the deadline", async () => {
    // The woken worker's attempt times out, the deadline has passed, so it publishes a
    // dead letter: the id is then in RESULTS and in DLQ, two streams no duplicate window spans.
    sim.control("budget", "budget-lite", { outage: "hang", hang_ms: 60_000 });
    const a = await router();
    const deadline = Date.now() + 5_000;
    await nats.js.publish("jobs.moderation", JSON.stringify(moderationJob(0, { id: "paused-1", deadline: new Date(deadline).toISOString() })), { msgID: "paused-1" });
    await vi.waitFor(() => expect(budgetCalls()).toBe(1), { timeout: 10_000, interval: 10 });
    const results = await count(STREAMS.results);
    a.child.kill("SIGSTOP");
    sim.control("budget", "budget-lite", { outage: null });
    await router();
    await vi.waitFor(async () => expect(await count(STREAMS.results)).toBe(results + 1), { timeout: 10_000, interval: 50 });
    // The premise, not a wait for absence: the paused worker wakes after the job's deadline.
    await sleep(deadline + 500 - Date.now());
    // The woken call's end is reported as telemetry (b's call succeeded, so a failed budget
    // attempt is a's); undici's timer counts its own ticks, not the clock, so it times out about 2 s after the wake.
    const telemetry = nats.nc.subscribe(`${TELEMETRY_SUBJECT}.budget`);
    const wokenCallEnded = (async () => {
      for await (const m of telemetry) if (AttemptEventSchema.parse(m.json()).outcome !== "ok") return;
    })();
    await nats.nc.flush();
    a.child.kill("SIGCONT");
    await within(wokenCallEnded, 15_000, "the woken worker's call never ended");
    telemetry.unsubscribe();
    // The call ended on its own, before the stop: the worker has decided, and its exit ends any publish.
    expect(await stopped(a)).toBe(0);
    expect(await dlqIds()).not.toContain("paused-1");
  });

  it("a result whose ack was lost is not also dead-lettered when the redelivery comes after the deadline", async () => {
    // The first delivery stores the result, but its ack never reaches the server (as when a
    // worker dies right after publishing, or the server dies before it stored the ack).
    // JetStream redelivers after ack_wait; by then the deadline has passed, and the redelivery
    // publishes deadline_exceeded into DLQ although RESULTS holds the job.
    const proxy = await startAckProxy(Number(new URL(nats.url).port));
    try {
      const a = await router(proxy.url);
      proxy.dropAcks(true);
      // Past ack_wait (1 s), with room for a slow first call on a loaded machine.
      const deadline = Date.now() + 3_000;
      const before = await count(STREAMS.results);
      await nats.js.publish("jobs.moderation", JSON.stringify(moderationJob(0, { id: "lostack-1", deadline: new Date(deadline).toISOString() })), { msgID: "lostack-1" });
      await vi.waitFor(async () => expect(await count(STREAMS.results)).toBe(before + 1), { timeout: 10_000, interval: 50 });
      // The premise: acks stay lost until well past the deadline.
      await sleep(deadline + 1_500 - Date.now());
      proxy.dropAcks(false);
      expect(proxy.dropped()).toBeGreaterThan(0);
      // Every ack so far was dropped: the job settles only by an ack sent now, from a delivery
      // that came after the deadline. The worker's exit then ends any publish still under way.
      await jobsSettled(nats.jsm, 10_000);
      expect(await stopped(a)).toBe(0);
      expect(await dlqIds()).not.toContain("lostack-1");
    } finally {
      await proxy.close();
    }
  });

  it("a delivery that arrives while the worker is still on the job (its working() lost) waits for it: one call, one outcome", async () => {
    // The heartbeat's working() never reaches the server, so ack_wait runs out under a call
    // still running and the job comes back to the same worker. Worked at once, the two
    // deliveries would call twice, and a dead letter from one could follow a result from the other.
    const proxy = await startAckProxy(Number(new URL(nats.url).port));
    try {
      sim.control("budget", "budget-lite", { latency_ms: { min: 1_600, max: 1_600 } });
      const a = await router(proxy.url);
      proxy.dropAcks(true);
      const before = await count(STREAMS.results);
      await nats.js.publish("jobs.moderation", JSON.stringify(moderationJob(0, { id: "overlap-1" })), { msgID: "overlap-1" });
      await vi.waitFor(async () => expect(await count(STREAMS.results)).toBe(before + 1), { timeout: 10_000, interval: 50 });
      // The premise: the job was delivered again while its first call ran (ack_wait 1 s, call 1.6 s).
      const info = await nats.jsm.consumers.info(STREAMS.jobs, "router");
      expect(info.num_redelivered).toBeGreaterThan(0);
      proxy.dropAcks(false);
      await jobsSettled(nats.jsm, 10_000);
      expect(await stopped(a)).toBe(0);
      expect(budgetCalls()).toBe(1);
      expect(await count(STREAMS.results)).toBe(before + 1);
      expect(await dlqIds()).not.toContain("overlap-1");
    } finally {
      await proxy.close();
    }
  });
});

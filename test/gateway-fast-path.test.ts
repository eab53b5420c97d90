/**
 * The interactive fast path (`gateway.interactive: request`): chat requests reach the routers
 * as core NATS requests to their queue group, with no JetStream on the way, through the
 * official OpenAI SDK with its default settings (retries on). Same planner, failover and
 * output checks as the queue; no router → 503; a router stopping under a request finishes it
 * or hands it back to another router.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { parse, stringify } from "yaml";
import { ResultSchema } from "../shared/contract/job.ts";
import { INTERACTIVE_QUEUE, INTERACTIVE_REQUEST_SUBJECT, STREAMS } from "../shared/contract/subjects.ts";
import { scan } from "../shared/nats/read.ts";
import { KEYS, startGatewayStack, type GatewayStack } from "./harness/gateway.ts";
import { spawnCli, type CliProcess } from "./harness/processes.ts";

/** The SDK as a user constructs it: default retries and timeout. */
const sdk = (gs: GatewayStack) => new OpenAI({ apiKey: KEYS.acme, baseURL: gs.gateway.url });
const messages = (text: string) => [
  { role: "system" as const, content: "You are a content moderation classifier. Answer with JSON." },
  { role: "user" as const, content: text },
];
const stored = async (gs: GatewayStack, stream: string) => (await gs.stack.nats.jsm.streams.info(stream)).state.messages;
const calls = (gs: GatewayStack, model?: string) => Object.entries(gs.stack.sim.stats().models).reduce((n, [id, m]) => (model === undefined || id === model ? n + m.requests : n), 0);

describe("served over the fast path", () => {
  let gs: GatewayStack;
  beforeAll(async () => {
    gs = await startGatewayStack({
      gateway: { interactive: "request" },
      extra: () => ({
        tasks: { picky: { tiers: [{ strategy: "cheapest", models: ["budget/lite", "swift/mini"] }, { models: ["premium/large"] }], output: { forbidden_patterns: ["/[a-z]/i"] } } },
      }),
    });
  });
  afterAll(async () => {
    await gs?.close();
  });
  beforeEach(() => gs.stack.sim.reset());

  it("a chat completion is answered with nothing put in JOBS; its result is recorded in RESULTS", async () => {
    const jobs0 = await stored(gs, STREAMS.jobs);
    const { data, response, request_id } = await sdk(gs).chat.completions.create({ model: "auto", messages: messages("I will kill you"), response_format: { type: "json_object" } }).withResponse();
    expect(JSON.parse(data.choices[0]!.message.content!)).toMatchObject({ flagged: true, categories: ["violence"] });
    expect(response.headers.get("x-switchyard-model")).toBe("budget/lite");
    expect(response.headers.get("x-switchyard-attempts")).toBe("1");
    const plain = await sdk(gs).chat.completions.create({ model: "gpt-4o-mini", messages: messages("have a nice day") });
    expect(plain.object).toBe("chat.completion");
    expect(await stored(gs, STREAMS.jobs)).toBe(jobs0);
    // Recorded after the reply, without waiting for the store: it arrives shortly after.
    await vi.waitFor(async () => {
      const recorded = [];
      for await (const m of scan(gs.stack.nats.js, STREAMS.results)) if (m.msgId === request_id) recorded.push(ResultSchema.parse(JSON.parse(new TextDecoder().decode(m.data))));
      expect(recorded).toHaveLength(1);
      expect(recorded[0]!.metadata).toEqual({ tenant: "acme", key: "acme" });
    });
  });

  it("stream: true is served from the same request and adds up to the same answer", async () => {
    const jobs0 = await stored(gs, STREAMS.jobs);
    const stream = await sdk(gs).chat.completions.create({ model: "auto", messages: messages("buy now, free money"), stream: true });
    let content = "";
    for await (const chunk of stream) for (const c of chunk.choices) content += c.delta.content ?? "";
    expect(JSON.parse(content)).toMatchObject({ flagged: true });
    expect(await stored(gs, STREAMS.jobs)).toBe(jobs0);
  });

  it("no candidate's answer passes the output check → 422 invalid_output, one call per candidate, not retried", async () => {
    const err = await sdk(gs)
      .chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "Describe the sea in one word." }] }, { headers: { "x-switchyard-task": "picky" } })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.UnprocessableEntityError);
    expect(err).toMatchObject({ status: 422, code: "invalid_output" });
    expect(calls(gs)).toBe(3);
  });

  it("the primary failing, the request fails over to the next candidate and the attempts say so", async () => {
    gs.stack.sim.control("budget", "budget-lite", { outage: "503" });
    const { data, response } = await sdk(gs).chat.completions.create({ model: "auto", messages: messages("have a nice day") }).withResponse();
    expect(JSON.parse(data.choices[0]!.message.content!)).toMatchObject({ flagged: false });
    expect(response.headers.get("x-switchyard-model")).toBe("swift/mini");
    expect(response.headers.get("x-switchyard-attempts")).toBe("2");
    expect(calls(gs, "budget/budget-lite")).toBe(1);
  });
});

describe("routers coming and going", () => {
  let gs: GatewayStack;
  let dir: string;
  const spawned: CliProcess[] = [];
  beforeAll(async () => {
    gs = await startGatewayStack({ routers: 0, ownServer: true, gateway: { interactive: "request" } });
    dir = mkdtempSync(join(tmpdir(), "sy-fast-path-"));
  });
  afterAll(async () => {
    for (const p of spawned) p.child.kill("SIGKILL");
    await gs?.close();
  });
  beforeEach(() => gs.stack.sim.reset());

  /** Routers in the fast path's queue group, as the server counts their subscriptions. */
  async function groupSize(): Promise<number> {
    const res = await fetch(`http://127.0.0.1:${gs.stack.nats.server!.httpPort}/subsz?subs=1&limit=1000`);
    const body = (await res.json()) as { subscriptions_list?: { subject: string; qgroup?: string }[] };
    return (body.subscriptions_list ?? []).filter((s) => s.subject === `${INTERACTIVE_REQUEST_SUBJECT}.*` && s.qgroup === INTERACTIVE_QUEUE).length;
  }

  /** A router process with these `router:` settings; resolves once it serves the fast path. */
  async function router(settings: Record<string, unknown>): Promise<CliProcess> {
    const cfg = parse(gs.stack.configYaml) as Record<string, Record<string, unknown>>;
    cfg.router = { ...cfg.router, ...settings };
    const file = join(dir, `router-${spawned.length}.yaml`);
    writeFileSync(file, stringify(cfg));
    const before = await groupSize();
    const p = spawnCli(["router"], { NATS_URL: gs.stack.nats.url, SWITCHYARD_CONFIG: file });
    spawned.push(p);
    await vi.waitFor(async () => expect(await groupSize()).toBe(before + 1), { timeout: 20_000 });
    return p;
  }

  it("no router running → 503 no_router_available, and nothing is queued", async () => {
    const jobs0 = await stored(gs, STREAMS.jobs);
    const err = await sdk(gs).chat.completions.create({ model: "auto", messages: messages("anyone there?") }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.InternalServerError);
    expect(err).toMatchObject({ status: 503, code: "no_router_available" });
    expect(await stored(gs, STREAMS.jobs)).toBe(jobs0);
    expect(calls(gs)).toBe(0);
  });

  it("a router whose interactive slots are all taken leaves the group: the next request is answered 503 at once; it rejoins when one frees", async () => {
    // Two slots: one kept for batch jobs, one for interactive work.
    const r = await router({ max_in_flight: 2 });
    gs.stack.sim.control("budget", "budget-lite", { latency_ms: { min: 1_000, max: 1_000 } });
    const first = sdk(gs).chat.completions.create({ model: "auto", messages: messages("have a nice day") }).withResponse();
    await vi.waitFor(() => expect(calls(gs, "budget/budget-lite")).toBe(1));
    await vi.waitFor(async () => expect(await groupSize()).toBe(0));
    // No retries here: the SDK's would land after the first request has finished.
    const busy = await new OpenAI({ apiKey: KEYS.acme, baseURL: gs.gateway.url, maxRetries: 0 }).chat.completions.create({ model: "auto", messages: messages("me too") }).catch((e: unknown) => e);
    expect(busy).toMatchObject({ status: 503, code: "no_router_available" });
    expect((await first).response.headers.get("x-switchyard-model")).toBe("budget/lite");
    await vi.waitFor(async () => expect(await groupSize()).toBe(1));
    gs.stack.sim.reset();
    const next = await sdk(gs).chat.completions.create({ model: "auto", messages: messages("and now?") });
    expect(next.object).toBe("chat.completion");
    r.child.kill("SIGTERM");
    expect(await r.exited).toBe(0);
  });

  it("SIGTERM while a request is being served: the router leaves the group, finishes the request, and exits 0", async () => {
    const r = await router({ shutdown_grace: "5s" });
    gs.stack.sim.control("budget", "budget-lite", { latency_ms: { min: 800, max: 800 } });
    const answer = sdk(gs).chat.completions.create({ model: "auto", messages: messages("have a nice day") }).withResponse();
    await vi.waitFor(() => expect(calls(gs, "budget/budget-lite")).toBe(1));
    r.child.kill("SIGTERM");
    await vi.waitFor(async () => expect(await groupSize()).toBe(0));
    const { data, response } = await answer;
    expect(JSON.parse(data.choices[0]!.message.content!)).toMatchObject({ flagged: false });
    expect(response.headers.get("x-switchyard-attempts")).toBe("1");
    expect(await r.exited).toBe(0);
  });

  it("SIGTERM past the grace period: the call is cut off, the request handed back and served by another router", async () => {
    const first = await router({ shutdown_grace: "200ms" });
    // Just under the providers' 2 s timeout: time for a second router to join while the first call runs.
    gs.stack.sim.control("budget", "budget-lite", { latency_ms: { min: 1_800, max: 1_800 } });
    const answer = sdk(gs).chat.completions.create({ model: "auto", messages: messages("have a nice day") }).withResponse();
    await vi.waitFor(() => expect(calls(gs, "budget/budget-lite")).toBe(1));
    // In this process, so it joins the group at once (a spawned one takes seconds to start).
    const second = await gs.stack.addRouter();
    await vi.waitFor(async () => expect(await groupSize()).toBe(2));
    first.child.kill("SIGTERM");
    const { data, response } = await answer;
    expect(JSON.parse(data.choices[0]!.message.content!)).toMatchObject({ flagged: false });
    // The cut-off call is no attempt of the job: the second router's call is its only one.
    expect(response.headers.get("x-switchyard-attempts")).toBe("1");
    expect(calls(gs, "budget/budget-lite")).toBe(2);
    expect(await first.exited).toBe(0);
    await second.stop();
  });
});

/**
 * Streaming that starts at the first token (README, "Streaming"), through the gateway's fast
 * path with the official OpenAI SDK at its default settings: a real nats-server, router and
 * sim-provider streaming each dialect's own framing. The order of events is asserted, never
 * timings: the sim counts the streams it still holds open, so a chunk that reaches the client
 * while that count is 1 reached it before the provider had finished.
 */
import OpenAI from "openai";
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { KEYS, startGatewayStack, startStreamStack, type GatewayStack } from "./harness/gateway.ts";

/** The SDK as a user constructs it: default retries and timeout. */
const sdk = (gs: GatewayStack) => new OpenAI({ apiKey: KEYS.acme, baseURL: gs.gateway.url });
const ask = [{ role: "user" as const, content: "Tell me, in a few words, what the weather is like in Lisbon in spring." }];
const TASK = { headers: { "x-switchyard-task": "chat" } };

/** A stream's text pieces, and the error that ended it if one did. */
async function readAll(stream: AsyncIterable<OpenAI.Chat.Completions.ChatCompletionChunk>): Promise<{ pieces: string[]; error: unknown }> {
  const pieces: string[] = [];
  try {
    for await (const chunk of stream) for (const c of chunk.choices) if (c.delta.content) pieces.push(c.delta.content);
  } catch (error) {
    return { pieces, error };
  }
  return { pieces, error: undefined };
}

describe("streaming through the fast path", () => {
  let gs: GatewayStack;
  const sim = () => gs.stack.sim;
  const model = (id: string) => sim().stats().models[id]!;

  beforeAll(async () => {
    gs = await startStreamStack({
      chat: { tiers: [{ models: ["budget/lite"] }, { models: ["swift/mini"] }] },
      "via-anthropic": { tiers: [{ models: ["claude/mini"] }] },
      "via-gemini": { tiers: [{ models: ["gem/mini"] }] },
      dripping: { tiers: [{ models: ["premium/large"] }] },
      checked: { tiers: [{ models: ["budget/lite"] }], output: { max_chars: 10_000 } },
      hedged: { tiers: [{ models: ["budget/lite"] }, { models: ["swift/mini"] }], hedge: { after: "50ms", max_extra_cost_usd: 1 } },
    });
  });
  afterAll(async () => {
    await gs?.close();
  });
  beforeEach(() => sim().reset());

  it("the first chunk reaches the client while the provider still holds its answer open; the chunks add up to the unstreamed answer", async () => {
    const plain = await sdk(gs).chat.completions.create({ model: "auto", messages: ask }, TASK);
    sim().reset();
    const stream = await sdk(gs).chat.completions.create({ model: "auto", messages: ask, stream: true, stream_options: { include_usage: true } }, TASK);
    let content = "";
    const openAtFirstToken: number[] = [];
    const finishes: (string | null)[] = [];
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) {
      expect(chunk.object).toBe("chat.completion.chunk");
      for (const c of chunk.choices) {
        if (c.delta.content && content === "") openAtFirstToken.push(model("budget/budget-lite").streaming);
        content += c.delta.content ?? "";
        if (c.finish_reason) finishes.push(c.finish_reason);
      }
      if (chunk.usage) usage = chunk.usage;
    }
    expect(openAtFirstToken).toEqual([1]);
    expect(content).toBe(plain.choices[0]!.message.content);
    expect(finishes).toEqual(["stop"]);
    expect(usage).toEqual(plain.usage);
    expect(model("budget/budget-lite")).toMatchObject({ streamed: 1, streaming: 0 });
  });

  it("a provider failing before the first token falls over invisibly: one clean stream from the next model", async () => {
    sim().control("budget", "budget-lite", { outage: "503" });
    const stream = await sdk(gs).chat.completions.create({ model: "auto", messages: ask, stream: true }, TASK);
    let content = "";
    const models = new Set<string>();
    for await (const chunk of stream) {
      models.add(chunk.model);
      for (const c of chunk.choices) content += c.delta.content ?? "";
    }
    expect([...models]).toEqual(["swift/mini"]);
    expect(content).toMatch(/\S/);
    expect(model("budget/budget-lite").responses).toEqual({ 503: 1 });
    expect(model("swift/swift-mini")).toMatchObject({ streamed: 1 });
  });

  it("an error event after the stream opened but before the first token also falls over invisibly", async () => {
    sim().control("budget", "budget-lite", { stream_fail_after_tokens: 0 });
    const stream = await sdk(gs).chat.completions.create({ model: "auto", messages: ask, stream: true }, TASK);
    const models = new Set<string>();
    let content = "";
    for await (const chunk of stream) {
      models.add(chunk.model);
      for (const c of chunk.choices) content += c.delta.content ?? "";
    }
    expect([...models]).toEqual(["swift/mini"]);
    expect(content).toMatch(/\S/);
    expect(model("budget/budget-lite")).toMatchObject({ streamed: 1, streaming: 0 });
  });

  it("a failure after the first token ends the stream with an error event the SDK raises; no other model is asked", async () => {
    sim().control("budget", "budget-lite", { stream_fail_after_tokens: 3 });
    const stream = await sdk(gs).chat.completions.create({ model: "auto", messages: ask, stream: true }, TASK);
    const { pieces, error } = await readAll(stream);
    expect(pieces).toHaveLength(3);
    expect(error).toBeInstanceOf(OpenAI.APIError);
    expect((error as InstanceType<typeof OpenAI.APIError>).message).toMatch(/broke off after it had begun streaming/);
    expect(model("swift/swift-mini").requests).toBe(0);
  });

  it("an error event read together with the tokens before it still ends the stream with the provider's error", async () => {
    // Tokens 1 ms apart (STREAM_SCENARIO's premium model): the ones after the first, and the error, arrive while the router
    // is gathering and are read as one piece. A model of its own, so its failure cools down nothing the other tests use.
    sim().control("premium", "premium-large", { stream_fail_after_tokens: 3 });
    const stream = await sdk(gs).chat.completions.create({ model: "auto", messages: ask, stream: true }, { headers: { "x-switchyard-task": "dripping" } });
    const { pieces, error } = await readAll(stream);
    expect(pieces.join("")).toMatch(/\S/);
    expect(error).toBeInstanceOf(OpenAI.APIError);
    expect((error as InstanceType<typeof OpenAI.APIError>).message).toMatch(/The server had an error while processing your request/);
  });

  it("the client going away cuts the provider's call off", async () => {
    sim().control("budget", "budget-lite", { stream_token_delay_ms: 600_000 });
    const stream = await sdk(gs).chat.completions.create({ model: "auto", messages: ask, stream: true }, TASK);
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta.content) break;
    }
    // Breaking out of the iterator aborts the HTTP request. The provider's stream would stay open for ten
    // minutes, and the call's own timeout is the request's 20 s deadline: only the cancel closes it sooner.
    await vi.waitFor(() => expect(model("budget/budget-lite")).toMatchObject({ streamed: 1, streaming: 0 }), { timeout: 10_000 });
  });

  it.each(["via-anthropic", "via-gemini"])("%s: the provider's own event stream reaches the client as OpenAI chunks", async (task) => {
    const plain = await sdk(gs).chat.completions.create({ model: "auto", messages: ask }, { headers: { "x-switchyard-task": task } });
    const stream = await sdk(gs).chat.completions.create({ model: "auto", messages: ask, stream: true, stream_options: { include_usage: true } }, { headers: { "x-switchyard-task": task } });
    let content = "";
    let chunks = 0;
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) {
      chunks++;
      for (const c of chunk.choices) content += c.delta.content ?? "";
      if (chunk.usage) usage = chunk.usage;
    }
    expect(content).toBe(plain.choices[0]!.message.content);
    expect(chunks).toBeGreaterThan(4);
    expect(usage).toEqual(plain.usage);
  });

  it("a streamed request is never hedged: two racing calls could not share one stream", async () => {
    // Unstreamed, the slow primary is hedged after 50 ms; streamed, it is waited for.
    sim().control("budget", "budget-lite", { latency_ms: { min: 300, max: 300 } });
    await sdk(gs).chat.completions.create({ model: "auto", messages: ask }, { headers: { "x-switchyard-task": "hedged" } });
    expect(model("swift/swift-mini").requests).toBe(1);
    sim().reset();
    sim().control("budget", "budget-lite", { latency_ms: { min: 300, max: 300 } });
    const stream = await sdk(gs).chat.completions.create({ model: "auto", messages: ask, stream: true }, { headers: { "x-switchyard-task": "hedged" } });
    const models = new Set<string>();
    for await (const chunk of stream) models.add(chunk.model);
    expect([...models]).toEqual(["budget/lite"]);
    expect(model("swift/swift-mini").requests).toBe(0);
  });

  it("a task whose output is checked streams only once the whole answer passed: the same framing, from the finished job", async () => {
    const stream = await sdk(gs).chat.completions.create({ model: "auto", messages: ask, stream: true }, { headers: { "x-switchyard-task": "checked" } });
    let content = "";
    for await (const chunk of stream) for (const c of chunk.choices) content += c.delta.content ?? "";
    expect(content).toMatch(/\S/);
    // Called unstreamed: the check needs the whole answer before the caller sees any of it.
    expect(model("budget/budget-lite")).toMatchObject({ requests: 1, streamed: 0 });
  });
});

describe("streaming with no router running", () => {
  let gs: GatewayStack;
  beforeAll(async () => {
    gs = await startGatewayStack({ routers: 0, gateway: { interactive: "request" } });
  });
  afterAll(async () => {
    await gs?.close();
  });

  it("is answered 503 no_router_available at once, as an unstreamed request is", async () => {
    const err = await gs.client().chat.completions.create({ model: "auto", messages: ask, stream: true }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.InternalServerError);
    expect(err).toMatchObject({ status: 503, code: "no_router_available" });
  });
});

/**
 * The Responses API streamed from the first token (README, "Responses API" and "Streaming"),
 * through the gateway's fast path with the official OpenAI SDK at its default settings: a real
 * nats-server, router and sim-provider. As in stream-gateway.test.ts, the order of events is
 * asserted, never timings: the sim counts the streams it still holds open, so a delta that
 * reaches the client while that count is 1 reached it before the provider had finished.
 */
import { createOpenAI } from "@ai-sdk/openai";
import { streamText } from "ai";
import OpenAI from "openai";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { completedResponse, LiveResponseEvents, newResponse, type ResponseEcho, type ResponseObject } from "../services/gateway/responses-schema.ts";
import type { Result } from "../shared/contract/job.ts";
import { KEYS, startStreamStack, type GatewayStack } from "./harness/gateway.ts";

const input = "Tell me, in a few words, what the weather is like in Lisbon in spring.";
const tools: OpenAI.Responses.Tool[] = [
  { type: "function", name: "get_weather", description: "Current weather in a city", parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"], additionalProperties: false }, strict: true },
];

describe("the Responses API streamed through the fast path", () => {
  let gs: GatewayStack;
  /** The SDK as a user constructs it: default retries and timeout. */
  let client: OpenAI;
  const model = (id: string) => gs.stack.sim.stats().models[id]!;

  beforeAll(async () => {
    gs = await startStreamStack({
      chat: { tiers: [{ models: ["budget/lite"] }, { models: ["claude/mini"] }] },
    });
    client = new OpenAI({ apiKey: KEYS.acme, baseURL: gs.gateway.url });
  });
  afterAll(async () => {
    await gs?.close();
  });
  beforeEach(() => gs.stack.sim.reset());

  it("the first text delta reaches the client while the provider still holds its answer open; the events add up to the unstreamed response", async () => {
    const plain = await client.responses.create({ model: "chat", input });
    gs.stack.sim.reset();
    const stream = await client.responses.create({ model: "chat", input, stream: true });
    const types: string[] = [];
    let text = "";
    const openAtFirstDelta: number[] = [];
    let completed: OpenAI.Responses.Response | undefined;
    for await (const event of stream) {
      types.push(event.type);
      expect(event.sequence_number).toBe(types.length - 1);
      if (event.type === "response.output_text.delta") {
        if (text === "") openAtFirstDelta.push(model("budget/budget-lite").streaming);
        text += event.delta;
      }
      if (event.type === "response.completed") completed = event.response;
    }
    expect(openAtFirstDelta).toEqual([1]);
    expect(types.slice(0, 4)).toEqual(["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"]);
    expect(types.slice(-4)).toEqual(["response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed"]);
    expect(types.filter((t) => t === "response.output_text.delta").length).toBeGreaterThan(1);
    expect(text).toBe(plain.output_text);
    expect(completed!.model).toBe("budget/lite");
    expect(completed!.usage).toEqual(plain.usage);
    expect(model("budget/budget-lite")).toMatchObject({ streamed: 1, streaming: 0 });

    // Stored as an unstreamed one is, and the SDK's own helper (which checks the events' order and ids) assembles the same.
    expect((await client.responses.retrieve(completed!.id)).output).toEqual(completed!.output);
    const final = await client.responses.stream({ model: "chat", input }).finalResponse();
    expect(final.output_text).toBe(plain.output_text);
  });

  it("a provider failing before the first token falls over invisibly: one clean stream from the next model", async () => {
    gs.stack.sim.control("budget", "budget-lite", { stream_fail_after_tokens: 0 });
    const stream = await client.responses.create({ model: "chat", input, stream: true });
    const models = new Set<string>();
    let text = "";
    for await (const event of stream) {
      if (event.type === "response.created" || event.type === "response.completed") models.add(event.response.model);
      if (event.type === "response.output_text.delta") text += event.delta;
    }
    expect([...models]).toEqual(["claude/mini"]);
    expect(text).toMatch(/\S/);
    expect(model("swift/swift-mini")).toMatchObject({ streamed: 1 });
  });

  it("a failure after the first token ends the stream with response.failed, the text so far kept, and an error the SDK raises; no other model is asked", async () => {
    gs.stack.sim.control("budget", "budget-lite", { stream_fail_after_tokens: 3 });
    const stream = await client.responses.create({ model: "chat", input, stream: true });
    let text = "";
    let failed: OpenAI.Responses.Response | undefined;
    const types: string[] = [];
    let error: unknown;
    try {
      for await (const event of stream) {
        types.push(event.type);
        if (event.type === "response.output_text.delta") text += event.delta;
        if (event.type === "response.failed") failed = event.response;
      }
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(OpenAI.APIError);
    expect((error as InstanceType<typeof OpenAI.APIError>).message).toMatch(/broke off after it had begun streaming/);
    expect(types.at(-1)).toBe("response.failed");
    expect(failed!.status).toBe("failed");
    expect(failed!.error).toMatchObject({ code: "upstream_unavailable", message: expect.stringMatching(/broke off after it had begun streaming/) });
    expect(failed!.output).toEqual([expect.objectContaining({ type: "message", status: "incomplete", content: [expect.objectContaining({ text })] })]);
    expect(model("swift/swift-mini").requests).toBe(0);
  });

  it("the Vercel AI SDK's streamText reports a failure after the first token as an error", async () => {
    gs.stack.sim.control("budget", "budget-lite", { stream_fail_after_tokens: 3 });
    const errors: unknown[] = [];
    const result = streamText({ model: createOpenAI({ baseURL: gs.gateway.url, apiKey: KEYS.acme })("chat"), prompt: input, onError: ({ error }) => void errors.push(error) });
    let text = "";
    for await (const delta of result.textStream) text += delta;
    expect(text).toMatch(/\S/);
    // The SDK hands the error event on as it came.
    expect(errors).toEqual([expect.objectContaining({ type: "error", error: expect.objectContaining({ code: "upstream_unavailable", message: expect.stringMatching(/broke off/) }) })]);
  });

  it("a forced tool call streams as a function_call item whose argument deltas add up to the unstreamed call", async () => {
    const plain = await client.responses.create({ model: "chat", input: "What's the weather like in Lisbon right now?", tools, tool_choice: "required" });
    const stream = await client.responses.create({ model: "chat", input: "What's the weather like in Lisbon right now?", tools, tool_choice: "required", stream: true });
    let args = "";
    let completed: OpenAI.Responses.Response | undefined;
    for await (const event of stream) {
      if (event.type === "response.function_call_arguments.delta") args += event.delta;
      if (event.type === "response.completed") completed = event.response;
    }
    const call = (r: OpenAI.Responses.Response) => r.output.find((o) => o.type === "function_call") as OpenAI.Responses.ResponseFunctionToolCall;
    expect(call(completed!)).toMatchObject({ name: "get_weather", arguments: call(plain).arguments, status: "completed" });
    expect(args).toBe(call(plain).arguments);
    expect(model("budget/budget-lite")).toMatchObject({ streamed: 1 });
  });

  it("the Vercel AI SDK's streamText (its default provider speaks the Responses API) reads the live stream", async () => {
    const plain = await client.responses.create({ model: "chat", input });
    gs.stack.sim.reset();
    const result = streamText({ model: createOpenAI({ baseURL: gs.gateway.url, apiKey: KEYS.acme })("chat"), prompt: input });
    let text = "";
    const openAtFirstDelta: number[] = [];
    for await (const delta of result.textStream) {
      if (text === "") openAtFirstDelta.push(model("budget/budget-lite").streaming);
      text += delta;
    }
    expect(openAtFirstDelta).toEqual([1]);
    expect(text).toBe(plain.output_text);
    expect((await result.usage).outputTokens).toBe(plain.usage!.output_tokens);
  });

  it("a JSON text.format is streamed only once the whole answer passed its check", async () => {
    const stream = await client.responses.create({ model: "chat", input, stream: true, text: { format: { type: "json_object" } } });
    let text = "";
    for await (const event of stream) if (event.type === "response.output_text.delta") text += event.delta;
    expect(JSON.parse(text)).toBeTypeOf("object");
    expect(model("budget/budget-lite")).toMatchObject({ requests: 1, streamed: 0 });
  });
});

describe("the live events, pure (LiveResponseEvents)", () => {
  const echo: ResponseEcho = { instructions: null, max_output_tokens: null, temperature: null, top_p: null, text: { format: { type: "text" } }, tools: [], tool_choice: "auto", parallel_tool_calls: true, metadata: {}, background: false };
  const shell: ResponseObject = newResponse("resp_abc", 0, "auto", echo, "in_progress");
  const usage = { prompt_tokens: 12, completion_tokens: 7, total_tokens: 19 };
  const call = { id: "call_1", type: "function", function: { name: "f", arguments: '{"a":1}' } };
  const result = (message: Record<string, unknown>): Result => ({
    id: "resp_abc", task: "chat", status: "succeeded", provider: "cheap", model: "a",
    response: { id: "x", object: "chat.completion", created: 1, model: "a", choices: [{ index: 0, message: { role: "assistant", ...message }, finish_reason: "stop" }], usage } as Result["response"],
    usage, cost_usd: 0, latency_ms: 1, queued_ms: 0, attempts: [], metadata: {}, completed_at: "2026-12-02T10:00:05.000Z",
  });

  it("numbers output items in the order their first piece came, and the finished response keeps that order", () => {
    const live = new LiveResponseEvents(shell);
    const events = [
      ...live.start("cheap/a"),
      ...live.push([{ tool_calls: [{ index: 0, id: "call_1", type: "function", function: { name: "f", arguments: '{"a"' } }] }]),
      ...live.push([{ tool_calls: [{ index: 0, function: { arguments: ":1}" } }] }, { content: "Done." }]),
    ];
    const { events: closing, response } = live.end(completedResponse(shell, result({ content: "Done.", tool_calls: [call] })));
    const all = [...events, ...closing];
    expect(all.map((e) => e.sequence_number)).toEqual(all.map((_, i) => i));
    expect(all.filter((e) => e.type === "response.output_item.added").map((e) => [e.output_index, (e.item as { type: string }).type])).toEqual([[0, "function_call"], [1, "message"]]);
    expect(response.output.map((o) => o.type)).toEqual(["function_call", "message"]);
    expect(all.at(-1)).toMatchObject({ type: "response.completed", response: { output: response.output } });
    expect(all.find((e) => e.type === "response.function_call_arguments.done")).toMatchObject({ output_index: 0, arguments: '{"a":1}' });
  });
});

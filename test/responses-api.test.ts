/**
 * The Responses API (`POST /v1/responses`) through unchanged client code: the official OpenAI
 * SDK with its default settings and the Vercel AI SDK's default OpenAI provider (whose
 * `openai(model)` speaks the Responses API), against a real gateway, router, nats-server and
 * sim-provider on loopback. Responses are kept for reference (the AI SDK's tool loop sends
 * earlier turns as item references); background responses go through the JOBS stream's batch
 * lane and are retrieved and cancelled by id.
 */
import { createOpenAI } from "@ai-sdk/openai";
import { generateObject, generateText, stepCountIs, streamText, tool } from "ai";
import { Ajv2020 } from "ajv/dist/2020.js";
import OpenAI from "openai";
import { zodTextFormat } from "openai/helpers/zod";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { ResultSchema, type ChatRequest } from "../shared/contract/job.ts";
import { STREAMS } from "../shared/contract/subjects.ts";
import { scan, type StoredMessage } from "../shared/nats/read.ts";
import { KEYS, startGatewayStack, type GatewayStack } from "./harness/gateway.ts";

let gs: GatewayStack;
/** The SDK as application code would construct it: default retries and timeout. */
let client: OpenAI;

beforeAll(async () => {
  gs = await startGatewayStack({
    // The JetStream lane, so every job can be read back from JOBS as the router received it (the fast path is tested at the end).
    gateway: { interactive: "queue" },
    extra: () => ({
      tasks: {
        chat: { tiers: [{ strategy: "cheapest", models: ["budget/lite", "swift/mini"] }] },
        // No answer passes this check: every job dead-letters invalid_output.
        picky: { tiers: [{ models: ["budget/lite"] }], output: { forbidden_patterns: ["/[a-z]/i"] } },
      },
    }),
  });
  client = new OpenAI({ apiKey: KEYS.acme, baseURL: gs.gateway.url });
}, 30_000);
afterAll(async () => {
  await gs?.close();
});

/** The messages with Nats-Msg-Id `id` in a stream, read to the stream's end. */
async function byId(stream: string, id: string): Promise<StoredMessage[]> {
  const out: StoredMessage[] = [];
  for await (const m of scan(gs.stack.nats.js, stream)) if (m.msgId === id) out.push(m);
  return out;
}
const json = (m: StoredMessage): unknown => JSON.parse(new TextDecoder().decode(m.data));

/** The chat request a job carried, as the router received it. */
async function jobRequest(id: string): Promise<{ subject: string; request: ChatRequest }> {
  const [m] = await byId(STREAMS.jobs, id);
  if (!m) throw new Error(`no job ${id} in JOBS`);
  return { subject: m.subject, request: (json(m) as { request: ChatRequest }).request };
}

async function settled(id: string, c: OpenAI = client): Promise<OpenAI.Responses.Response> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const r = await c.responses.retrieve(id);
    if (r.status !== "queued" && r.status !== "in_progress") return r;
    if (Date.now() > deadline) throw new Error(`response ${id} still ${r.status}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const feedbackSchema = {
  type: "object",
  properties: {
    sentiment: { type: "string", enum: ["positive", "neutral", "negative"] },
    confidence: { type: "number", minimum: 0, maximum: 1 },
    topics: { type: "array", items: { type: "string" }, maxItems: 3 },
  },
  required: ["sentiment", "confidence", "topics"],
  additionalProperties: false,
};

describe("the official OpenAI SDK, default settings", () => {
  it("a string input gets a completed response whose output_text is the model's answer, with the Responses usage", async () => {
    const { data: response, response: http } = await client.responses
      .create({ model: "gpt-4o-mini", input: "Suggest a name for a bakery that sells sourdough." }, { headers: { "x-switchyard-task": "chat" } })
      .withResponse();
    expect(response.object).toBe("response");
    expect(response.id).toMatch(/^resp_/);
    expect(response.status).toBe("completed");
    expect(response.output_text).toMatch(/\w+/);
    expect(response.output).toHaveLength(1);
    expect(response.output[0]).toMatchObject({ type: "message", role: "assistant", status: "completed", content: [{ type: "output_text", annotations: [] }] });
    expect(response.usage!.total_tokens).toBe(response.usage!.input_tokens + response.usage!.output_tokens);
    expect(response.usage!.input_tokens).toBeGreaterThan(0);
    expect(http.headers.get("x-switchyard-task")).toBe("chat");
    expect(response.model).toBe(http.headers.get("x-switchyard-model"));

    // The answer is the job's result, translated: the same text the router stored in RESULTS.
    const [stored] = await byId(STREAMS.results, response.id);
    const result = ResultSchema.parse(json(stored!));
    expect(response.output_text).toBe((result.response as unknown as { choices: { message: { content: string } }[] }).choices[0]!.message.content);
    expect(response.model).toBe(`${result.provider}/${result.model}`);
  });

  it("instructions reach the model as a system message; text.format json_object returns the checked JSON", async () => {
    const response = await client.responses.create({
      model: "gpt-4o-mini",
      instructions: "You are a content moderation classifier. Answer with JSON.",
      input: "I will kill you",
      text: { format: { type: "json_object" } },
      metadata: { ticket: "T-1024" },
    });
    // The key's own task (moderation) served it: its output contract checked the JSON.
    expect(JSON.parse(response.output_text)).toMatchObject({ flagged: true, categories: ["violence"] });
    expect(response.instructions).toBe("You are a content moderation classifier. Answer with JSON.");
    expect(response.metadata).toEqual({ ticket: "T-1024" });
    const { subject, request } = await jobRequest(response.id);
    expect(subject).toMatch(/\.moderation$/);
    expect(request.messages[0]).toEqual({ role: "system", content: "You are a content moderation classifier. Answer with JSON." });
    expect(request.response_format).toEqual({ type: "json_object" });
  });

  it("text.format json_schema: the answer matches the caller's schema", async () => {
    const response = await client.responses.create({
      model: "chat",
      input: [{ role: "user", content: [{ type: "input_text", text: "How does this customer feel? 'The checkout was quick and the support team was lovely.'" }] }],
      text: { format: { type: "json_schema", name: "feedback", schema: feedbackSchema, strict: true } },
    });
    const validate = new Ajv2020({ strict: false }).compile(feedbackSchema);
    const parsed = JSON.parse(response.output_text);
    expect(validate(parsed), JSON.stringify(validate.errors)).toBe(true);
    expect(response.text?.format).toMatchObject({ type: "json_schema", name: "feedback" });
    // `model: "chat"` named the task.
    expect((await jobRequest(response.id)).request.response_format).toEqual({ type: "json_schema", json_schema: { name: "feedback", schema: feedbackSchema, strict: true } });
  });

  it("the SDK's responses.parse with a zod text format gets output_parsed", async () => {
    const Ticket = z.object({ team: z.enum(["billing", "support", "sales"]), urgent: z.boolean() });
    const parsed = await client.responses.parse({
      model: "chat",
      input: "Which team should handle this, and is it urgent? 'My card was charged twice and I need it fixed today.'",
      text: { format: zodTextFormat(Ticket, "ticket") },
    });
    expect(Ticket.safeParse(parsed.output_parsed).success).toBe(true);
  });

  it("stream: true yields OpenAI's events in order; the deltas add up to the answer the SDK's stream helper also assembles", async () => {
    const input = "Give me three tips for a job interview.";
    const stream = await client.responses.create({ model: "chat", input, stream: true });
    const types: string[] = [];
    let text = "";
    let done = "";
    let completed: OpenAI.Responses.Response | undefined;
    for await (const event of stream) {
      types.push(event.type);
      if (event.type === "response.output_text.delta") text += event.delta;
      if (event.type === "response.output_text.done") done = event.text;
      if (event.type === "response.completed") completed = event.response;
    }
    expect(types[0]).toBe("response.created");
    expect(types.at(-1)).toBe("response.completed");
    expect(types).toContain("response.output_item.added");
    expect(text).toMatch(/\w+/);
    expect(done).toBe(text);
    expect(completed!.status).toBe("completed");
    expect(completed!.usage!.output_tokens).toBeGreaterThan(0);

    // The SDK's helper checks the events' order and item ids as it builds its snapshot.
    const final = await client.responses.stream({ model: "chat", input }).finalResponse();
    expect(final.output_text).toBe(text);
  });

  it("function tools: a forced call comes back as a function_call item; its output goes back as function_call_output", async () => {
    const tools: OpenAI.Responses.Tool[] = [
      { type: "function", name: "get_weather", description: "Current weather in a city", parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"], additionalProperties: false }, strict: true },
    ];
    const first = await client.responses.create({ model: "chat", input: "What's the weather like in Lisbon right now?", tools, tool_choice: "required" });
    const call = first.output.find((o) => o.type === "function_call");
    expect(call).toBeDefined();
    if (call?.type !== "function_call") throw new Error("no function call");
    expect(call.name).toBe("get_weather");
    expect(typeof JSON.parse(call.arguments).city).toBe("string");

    const second = await client.responses.create({
      model: "chat",
      input: [{ role: "user", content: "What's the weather like in Lisbon right now?" }, call, { type: "function_call_output", call_id: call.call_id, output: '{"temperature_c": 19, "sky": "clear"}' }],
      tools,
    });
    expect(second.status).toBe("completed");
    expect(second.output_text).toMatch(/\w+/);
    const { request } = await jobRequest(second.id);
    expect(request.messages.slice(1)).toEqual([
      { role: "assistant", content: null, tool_calls: [{ id: call.call_id, type: "function", function: { name: "get_weather", arguments: call.arguments } }] },
      { role: "tool", tool_call_id: call.call_id, content: '{"temperature_c": 19, "sky": "clear"}' },
    ]);
  });

  it("what the gateway cannot do is the SDK's BadRequestError naming the field; an unknown id is NotFoundError", async () => {
    const hosted = await client.responses.create({ model: "chat", input: "news today?", tools: [{ type: "web_search" }] }).catch((e: unknown) => e);
    expect(hosted).toBeInstanceOf(OpenAI.BadRequestError);
    expect((hosted as InstanceType<typeof OpenAI.BadRequestError>).param).toBe("tools[0].type");
    const chained = await client.responses.create({ model: "chat", input: "and then?", previous_response_id: "resp_abc" }).catch((e: unknown) => e);
    expect(chained).toBeInstanceOf(OpenAI.BadRequestError);
    expect((chained as InstanceType<typeof OpenAI.BadRequestError>).code).toBe("unsupported_parameter");
    await expect(client.responses.retrieve("resp_doesnotexist")).rejects.toBeInstanceOf(OpenAI.NotFoundError);
  });

  it("a response is kept: retrieve returns it, its items can be referenced by id, delete removes it; store: false keeps nothing", async () => {
    const first = await client.responses.create({ model: "chat", input: "Name a colour of the rainbow." });
    expect(await client.responses.retrieve(first.id)).toMatchObject({ id: first.id, status: "completed", output: first.output });
    // Another tenant's key cannot see it or refer to it.
    const globex = new OpenAI({ apiKey: KEYS.globex, baseURL: gs.gateway.url });
    await expect(globex.responses.retrieve(first.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);

    const second = await client.responses.create({ model: "chat", input: [{ role: "user", content: "Name a colour of the rainbow." }, { type: "item_reference", id: first.output[0]!.id! }, { role: "user", content: "And another one?" }] });
    expect((await jobRequest(second.id)).request.messages).toEqual([
      { role: "user", content: "Name a colour of the rainbow." },
      { role: "assistant", content: first.output_text },
      { role: "user", content: "And another one?" },
    ]);
    const foreign = await globex.responses.create({ input: [{ type: "item_reference", id: first.output[0]!.id! }] }).catch((e: unknown) => e);
    expect(foreign).toBeInstanceOf(OpenAI.BadRequestError);
    expect(foreign).toMatchObject({ param: "input[0].id", code: "not_found" });

    // Only background responses can be cancelled.
    await expect(client.responses.cancel(first.id)).rejects.toBeInstanceOf(OpenAI.BadRequestError);
    await client.responses.delete(first.id);
    await expect(client.responses.retrieve(first.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);

    const unkept = await client.responses.create({ model: "chat", input: "Name a colour of the rainbow.", store: false });
    expect(unkept.status).toBe("completed");
    await expect(client.responses.retrieve(unkept.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
  });

  it("a dead-lettered job is the same typed error as on chat completions (422 invalid_output, not retried)", async () => {
    const err = await client.responses.create({ model: "picky", input: "Describe the sea in one word." }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.UnprocessableEntityError);
    expect(err).toMatchObject({ status: 422, code: "invalid_output" });
  });
});

describe("background responses, through the queue", () => {
  it("answers at once with status queued; the job runs on the batch lane; retrieve returns the finished response", async () => {
    const queued = await client.responses.create({ model: "chat", input: "Write two sentences about why the sky is blue.", background: true, metadata: { run: "nightly" } });
    expect(queued.status).toBe("queued");
    expect(queued.background).toBe(true);
    expect(queued.output).toEqual([]);
    const done = await settled(queued.id);
    expect(done.status).toBe("completed");
    expect(done.output_text).toMatch(/\w+/);
    expect(done.metadata).toEqual({ run: "nightly" });
    expect(done.usage!.total_tokens).toBeGreaterThan(0);
    expect((await jobRequest(queued.id)).subject).toBe("jobs.chat");
    // Another tenant cannot see it.
    await expect(client.responses.retrieve(queued.id).then(() => new OpenAI({ apiKey: KEYS.globex, baseURL: gs.gateway.url }).responses.retrieve(queued.id))).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    // Cancelling a finished response changes nothing.
    expect((await client.responses.cancel(queued.id)).status).toBe("completed");
  });

  it("a dead-lettered background job is a failed response with the HTTP error's code; delete removes it", async () => {
    const queued = await client.responses.create({ model: "picky", input: "Describe the sea in one word.", background: true });
    const failed = await settled(queued.id);
    expect(failed.status).toBe("failed");
    expect(failed.error).toMatchObject({ code: "invalid_output", message: expect.stringMatching(/\w/) });
    expect(failed.output).toEqual([]);
    await client.responses.delete(queued.id);
    await expect(client.responses.retrieve(queued.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
  });

  it("the stored response survives a gateway restart: an instance that did not take it serves it", async () => {
    const queued = await client.responses.create({ model: "chat", input: "Translate 'good morning' into Spanish.", background: true });
    await gs.restartGateway();
    const restarted = new OpenAI({ apiKey: KEYS.acme, baseURL: gs.gateway.url });
    const done = await settled(queued.id, restarted);
    expect(done.status).toBe("completed");
    expect(done.output_text).toMatch(/\w+/);
    client = restarted;
  });

  it("cancel withdraws a queued job: no router serves it afterwards", async () => {
    // No router running: the job waits in JOBS.
    for (const r of gs.stack.routers.splice(0)) await r.stop();
    const queued = await client.responses.create({ model: "chat", input: "What is a good name for a golden retriever puppy?", background: true });
    expect((await byId(STREAMS.jobs, queued.id)).length).toBe(1);
    const cancelled = await client.responses.cancel(queued.id);
    expect(cancelled.status).toBe("cancelled");
    expect(await byId(STREAMS.jobs, queued.id)).toEqual([]);

    await gs.stack.addRouter();
    // A later response is served; had the cancelled job still been queued, it would have been served first.
    const later = await client.responses.create({ model: "chat", input: "hi", background: true });
    expect((await settled(later.id)).status).toBe("completed");
    expect((await client.responses.retrieve(queued.id)).status).toBe("cancelled");
    expect(await byId(STREAMS.results, queued.id)).toEqual([]);
  });
});

describe("the Vercel AI SDK's default OpenAI provider (the Responses API)", () => {
  const provider = () => createOpenAI({ baseURL: gs.gateway.url, apiKey: KEYS.acme });

  it("generateText with openai('<task>') gets prose, with usage", async () => {
    const { text, usage, response } = await generateText({ model: provider()("chat"), prompt: "Say hello to a new colleague in one sentence." });
    expect(text).toMatch(/\w+/);
    expect(usage.totalTokens).toBeGreaterThan(0);
    expect(response.id).toMatch(/^resp_/);
    expect((await jobRequest(response.id)).subject).toMatch(/\.chat$/);
  });

  it("generateObject with a zod schema gets an object matching it", async () => {
    const ticket = z.object({ team: z.enum(["billing", "support", "sales"]), urgent: z.boolean(), summary: z.string().max(120) });
    const { object } = await generateObject({
      model: provider()("chat"),
      schema: ticket,
      prompt: "Which team should handle this, and is it urgent? 'I was charged twice this month and need a refund today.'",
    });
    expect(ticket.safeParse(object).success).toBe(true);
  });

  it("streamText streams the answer", async () => {
    const result = streamText({ model: provider()("chat"), prompt: "Write two sentences about autumn." });
    let text = "";
    for await (const delta of result.textStream) text += delta;
    expect(text).toMatch(/\w+/);
    expect(await result.text).toBe(text);
  });

  it.each([
    ["default settings: earlier turns go back as item references", {}],
    ["store: false: earlier turns go back in full", { openai: { store: false } }],
  ])("a tool loop: the model calls the tool, the SDK runs it and sends the result back (%s)", async (_, providerOptions) => {
    let asked: string | undefined;
    const result = await generateText({
      model: provider()("chat"),
      prompt: "What's the weather like in Oslo?",
      tools: {
        get_weather: tool({
          description: "Current weather in a city",
          inputSchema: z.object({ city: z.string() }),
          execute: async ({ city }) => {
            asked = city;
            return { city, temperature_c: 4, sky: "rain" };
          },
        }),
      },
      prepareStep: ({ stepNumber }) => ({ toolChoice: stepNumber === 0 ? "required" : "none" }),
      stopWhen: stepCountIs(2),
      providerOptions,
    });
    expect(result.steps).toHaveLength(2);
    expect(typeof asked).toBe("string");
    expect(result.steps[0]!.toolCalls[0]!.toolName).toBe("get_weather");
    expect(result.text).toMatch(/\w+/);
    const { request } = await jobRequest(result.response.id);
    const call = result.steps[0]!.toolCalls[0]!;
    expect(request.messages.slice(-2)).toEqual([
      { role: "assistant", content: null, tool_calls: [{ id: call.toolCallId, type: "function", function: { name: "get_weather", arguments: JSON.stringify(call.input) } }] },
      { role: "tool", tool_call_id: call.toolCallId, content: JSON.stringify({ city: asked, temperature_c: 4, sky: "rain" }) },
    ]);
  });
});

describe("the interactive fast path (gateway.interactive: request)", () => {
  let fast: GatewayStack;
  beforeAll(async () => {
    fast = await startGatewayStack({ ownServer: true, gateway: { interactive: "request" }, extra: () => ({ tasks: { chat: { tiers: [{ models: ["budget/lite"] }] } } }) });
  }, 30_000);
  afterAll(async () => {
    await fast?.close();
  });

  it("serves responses, streamed or not, over core NATS with nothing in JOBS; background ones still go through the queue", async () => {
    const c = new OpenAI({ apiKey: KEYS.acme, baseURL: fast.gateway.url });
    const plain = await c.responses.create({ model: "chat", input: "Write two sentences about why the sky is blue." });
    expect(plain.output_text).toMatch(/\w+/);
    const final = await c.responses.stream({ model: "chat", input: "Write two sentences about why the sky is blue." }).finalResponse();
    expect(final.output_text).toBe(plain.output_text);
    const ids = new Set<string | undefined>();
    for await (const m of scan(fast.stack.nats.js, STREAMS.jobs)) ids.add(m.msgId);
    expect(ids.has(plain.id)).toBe(false);

    const queued = await c.responses.create({ model: "chat", input: "Write two sentences about why the sky is blue.", background: true });
    expect((await settled(queued.id, c)).output_text).toBe(plain.output_text);
  });
});

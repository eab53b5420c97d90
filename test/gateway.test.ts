/**
 * The gateway with the official OpenAI SDK as the client, against a real gateway, router,
 * nats-server and sim-provider on loopback: chat completions (plain, JSON mode, tools,
 * streaming), models, and the SDK's own typed errors for each failure.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import OpenAI from "openai";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { DeadLetterSchema, ResultSchema } from "../shared/contract/job.ts";
import { INTERACTIVE_DURABLE, INTERACTIVE_SUBJECT, STREAMS } from "../shared/contract/subjects.ts";
import { scan, type StoredMessage } from "../shared/nats/read.ts";
import { KEYS, startGatewayStack, type GatewayStack } from "./harness/gateway.ts";

/** An OpenAI-dialect upstream that calls the first tool it is offered, as a tool-using model would. */
function startToolModel(): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (d: Buffer) => (body += d.toString()));
    req.on("end", () => {
      const request = JSON.parse(body) as { tools?: { function: { name: string } }[] };
      const tool = request.tools?.[0]?.function.name;
      const message = tool
        ? { role: "assistant", content: null, tool_calls: [{ id: "call_1", type: "function", function: { name: tool, arguments: '{"city":"Paris"}' } }] }
        : { role: "assistant", content: "no tools offered" };
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ id: "chatcmpl-tool", object: "chat.completion", created: 1, model: "tool-model", choices: [{ index: 0, message, finish_reason: tool ? "tool_calls" : "stop" }], usage: { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 } }));
    });
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve({ server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` })));
}

let gs: GatewayStack;
let toolModel: { server: Server; url: string };
let client: OpenAI;

beforeAll(async () => {
  toolModel = await startToolModel();
  gs = await startGatewayStack({
    extra: () => ({
      providers: { toolco: { dialect: "openai", base_url: `${toolModel.url}/v1`, timeout_ms: "2s", models: { agent: { upstream: "tool-model", input_per_mtok: 1, output_per_mtok: 2, context_window: 32000 } } } },
      tasks: { agent: { tiers: [{ models: ["toolco/agent"] }] }, chat: { tiers: [{ strategy: "cheapest", models: ["budget/lite", "swift/mini"] }] } },
    }),
  });
  client = gs.client();
});
afterAll(async () => {
  await gs?.close();
  await new Promise((r) => toolModel?.server.close(r));
});
beforeEach(() => gs.stack.sim.reset());

/** The messages with Nats-Msg-Id `id` in a stream (optionally one subject), read to the stream's end. */
async function byId(stream: string, id: string, subject?: string): Promise<StoredMessage[]> {
  const out: StoredMessage[] = [];
  for await (const m of scan(gs.stack.nats.js, stream, { subject })) if (m.msgId === id) out.push(m);
  return out;
}
const json = (m: StoredMessage): unknown => JSON.parse(new TextDecoder().decode(m.data));

const moderation = (text: string) => [
  { role: "system" as const, content: "You are a content moderation classifier. Answer with JSON." },
  { role: "user" as const, content: text },
];

describe("chat completions through the OpenAI SDK", () => {
  it("a plain request gets a chat.completion, with headers naming provider, model, attempts and cost", async () => {
    const { data, response } = await client.chat.completions
      .create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hello there" }] }, { headers: { "x-switchyard-task": "chat" } })
      .withResponse();
    expect(data.object).toBe("chat.completion");
    expect(data.choices[0]!.message.content).toContain("hello there");
    expect(data.usage?.total_tokens).toBeGreaterThan(0);
    expect(response.headers.get("x-switchyard-provider")).toBe("budget");
    expect(response.headers.get("x-switchyard-model")).toBe("budget/lite");
    expect(response.headers.get("x-switchyard-attempts")).toBe("1");
    expect(Number(response.headers.get("x-switchyard-cost-usd"))).toBeGreaterThan(0);
    expect(response.headers.get("x-switchyard-task")).toBe("chat");
  });

  it("JSON mode on the key's default task returns the checked JSON; the job went through the interactive lane", async () => {
    const { data, request_id } = await client.chat.completions.create({ model: "auto", messages: moderation("I will kill you"), response_format: { type: "json_object" } }).withResponse();
    expect(JSON.parse(data.choices[0]!.message.content!)).toMatchObject({ flagged: true, categories: ["violence"] });
    // The result is stored before the gateway hears of it, and the job before that: both are there to read.
    expect(await byId(STREAMS.jobs, request_id!, `${INTERACTIVE_SUBJECT}.moderation`)).toHaveLength(1);
    const results = await byId(STREAMS.results, request_id!);
    expect(results).toHaveLength(1);
    expect(ResultSchema.parse(json(results[0]!)).metadata).toEqual({ tenant: "acme", key: "acme" });
  });

  it("naming a model pins it", async () => {
    const { response } = await client.chat.completions.create({ model: "swift/mini", messages: [{ role: "user", content: "hi" }] }, { headers: { "x-switchyard-task": "chat" } }).withResponse();
    expect(response.headers.get("x-switchyard-model")).toBe("swift/mini");
  });

  it("tools: the model's tool call comes back in OpenAI's shape", async () => {
    const completion = await client.chat.completions.create(
      {
        model: "auto",
        messages: [{ role: "user", content: "What is the weather in Paris?" }],
        tools: [{ type: "function", function: { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } } }],
      },
      { headers: { "x-switchyard-task": "agent" } },
    );
    const choice = completion.choices[0]!;
    expect(choice.finish_reason).toBe("tool_calls");
    const call = choice.message.tool_calls![0]!;
    expect(call.type).toBe("function");
    if (call.type !== "function") throw new Error("not a function call");
    expect(call.function.name).toBe("get_weather");
    expect(JSON.parse(call.function.arguments)).toEqual({ city: "Paris" });
  });

  it("stream: true is read by the SDK's iterator and adds up to the same answer", async () => {
    const plain = await client.chat.completions.create({ model: "auto", messages: moderation("buy now, free money") });
    const stream = await client.chat.completions.create({ model: "auto", messages: moderation("buy now, free money"), stream: true, stream_options: { include_usage: true } });
    let content = "";
    let finish: string | null = null;
    let usage: OpenAI.CompletionUsage | null | undefined;
    let chunks = 0;
    for await (const chunk of stream) {
      chunks++;
      expect(chunk.object).toBe("chat.completion.chunk");
      for (const c of chunk.choices) {
        content += c.delta.content ?? "";
        finish = c.finish_reason ?? finish;
      }
      usage = chunk.usage ?? usage;
    }
    expect(chunks).toBeGreaterThanOrEqual(3);
    expect(content).toBe(plain.choices[0]!.message.content);
    expect(finish).toBe("stop");
    expect(usage?.total_tokens).toBeGreaterThan(0);
  });

  it("the SDK's stream helper assembles a tool call from the stream", async () => {
    const runner = client.chat.completions.stream(
      { model: "auto", messages: [{ role: "user", content: "weather?" }], tools: [{ type: "function", function: { name: "get_weather", parameters: { type: "object", properties: {} } } }] },
      { headers: { "x-switchyard-task": "agent" } },
    );
    const final = await runner.finalChatCompletion();
    const call = final.choices[0]!.message.tool_calls![0]!;
    expect(call.type === "function" && call.function.name).toBe("get_weather");
  });

  it("models.list: the catalogue with prices and context windows; retrieve by id and alias", async () => {
    const ids: string[] = [];
    for await (const m of client.models.list()) ids.push(m.id);
    expect(ids).toEqual(expect.arrayContaining(["auto", "budget/lite", "swift/mini", "premium/large", "toolco/agent"]));
    const lite = (await client.models.retrieve("budget/lite")) as OpenAI.Model & { context_window: number; pricing: { input_per_mtok: number; output_per_mtok: number } };
    expect(lite).toMatchObject({ id: "budget/lite", owned_by: "budget", context_window: 16000, pricing: { input_per_mtok: 0.05, output_per_mtok: 0.2 } });
  });

  it("models follow the live price in the switchyard-models bucket", async () => {
    const { openBuckets } = await import("../shared/nats/buckets.ts");
    const { models } = await openBuckets(gs.stack.nats.nc, gs.stack.config);
    const now = new Date().toISOString();
    await models.put("swift/mini", JSON.stringify({ id: "swift/mini", provider: "swift", model: "mini", input_per_mtok: 0.01, output_per_mtok: 0.02, context_window: 128000, price_source: "cli", price_updated_at: now, health: "healthy", error_rate: 0, rate_limit_rate: 0, latency_p50_ms: null, latency_p95_ms: null, samples: 0, cooldown_until: null, health_updated_at: now, updated_at: now }));
    await expect.poll(async () => ((await client.models.retrieve("swift/mini")) as unknown as { pricing: unknown }).pricing, { timeout: 5_000 }).toEqual({ input_per_mtok: 0.01, output_per_mtok: 0.02, source: "cli" });
  });
});

describe("errors arrive as the SDK's typed errors", () => {
  it("401: no key, or a wrong one", async () => {
    const wrong = gs.client("sk-not-a-key");
    const err = await wrong.chat.completions.create({ model: "auto", messages: moderation("hi") }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.AuthenticationError);
    expect((err as InstanceType<typeof OpenAI.AuthenticationError>).code).toBe("invalid_api_key");
    expect((err as Error).message).not.toContain("sk-not-a-key");
    const res = await fetch(`${gs.gateway.url}/models`);
    expect(res.status).toBe(401);
    expect(await res.json()).toEqual({ error: { message: expect.any(String), type: "invalid_request_error", param: null, code: "missing_api_key" } });
  });

  it("403: a task the key may not use", async () => {
    const err = await gs.client(KEYS.globex).chat.completions.create({ model: "auto", messages: moderation("hi") }, { headers: { "x-switchyard-task": "classification" } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.PermissionDeniedError);
  });

  it("400: an invalid body names the parameter; an unknown task is refused", async () => {
    const err = await client.chat.completions.create({ model: "auto", messages: [] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect((err as InstanceType<typeof OpenAI.BadRequestError>).param).toBe("messages");
    const bad = await client.chat.completions.create({ model: "auto", messages: moderation("x"), temperature: 7 }).catch((e: unknown) => e);
    expect((bad as InstanceType<typeof OpenAI.BadRequestError>).param).toBe("temperature");
    const unknown = await client.chat.completions.create({ model: "auto", messages: moderation("x") }, { headers: { "x-switchyard-task": "nope" } }).catch((e: unknown) => e);
    expect(unknown).toBeInstanceOf(OpenAI.BadRequestError);
    expect((unknown as InstanceType<typeof OpenAI.BadRequestError>).code).toBe("unknown_task");
  });

  it("413: a body over the limit", async () => {
    const err = await client.chat.completions.create({ model: "auto", messages: moderation("x".repeat(70_000)) }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect((err as InstanceType<typeof OpenAI.APIError>).status).toBe(413);
  });

  it("429 with retry-after once a key is over its rate", async () => {
    const slow = gs.client(KEYS.slow);
    const outcomes = await Promise.all(Array.from({ length: 4 }, () => slow.models.list().then(() => "ok", (e: unknown) => e)));
    const limited = outcomes.filter((o) => o instanceof OpenAI.RateLimitError) as InstanceType<typeof OpenAI.RateLimitError>[];
    expect(outcomes.filter((o) => o === "ok")).toHaveLength(2);
    expect(limited).toHaveLength(2);
    expect(Number(limited[0]!.headers?.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect(limited[0]!.code).toBe("rate_limit_exceeded");
  });

  it("504 when the deadline passes, and the job is not served late", async () => {
    gs.stack.sim.control("budget", "budget-lite", { outage: "hang" });
    gs.stack.sim.control("swift", "swift-mini", { outage: "hang" });
    gs.stack.sim.control("premium", "premium-large", { outage: "hang" });
    const started = Date.now();
    const err = await client.chat.completions.create({ model: "auto", messages: moderation("slow one") }, { headers: { "x-switchyard-timeout-ms": "800" } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.InternalServerError);
    expect((err as InstanceType<typeof OpenAI.APIError>).status).toBe(504);
    expect((err as InstanceType<typeof OpenAI.APIError>).code).toBe("deadline_exceeded");
    expect(Date.now() - started).toBeLessThan(3_000);
    const jobId = (err as InstanceType<typeof OpenAI.APIError>).headers?.get("x-request-id");
    expect(jobId).toMatch(/^chatcmpl-/);
    // The router gives up at the deadline too: the job ends as a dead letter, never as a result.
    const [job] = await byId(STREAMS.jobs, jobId!, `${INTERACTIVE_SUBJECT}.moderation`);
    expect(job).toBeDefined();
    // Done with: the router has acknowledged the job (after storing its outcome), so no outcome can still come.
    await expect.poll(async () => (await gs.stack.nats.jsm.consumers.info(STREAMS.jobs, INTERACTIVE_DURABLE)).ack_floor.stream_seq, { timeout: 10_000 }).toBeGreaterThanOrEqual(job!.seq);
    const dead = await byId(STREAMS.dlq, jobId!);
    expect(dead).toHaveLength(1);
    expect(DeadLetterSchema.parse(json(dead[0]!)).reason).toBe("deadline_exceeded");
    expect(await byId(STREAMS.results, jobId!)).toEqual([]);
  });

  it("404 for an unknown model id and an unknown route", async () => {
    await expect(client.models.retrieve("nope/model")).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    const res = await fetch(`${gs.gateway.url}/embeddings`, { method: "POST", headers: { authorization: `Bearer ${KEYS.acme}` } });
    expect(res.status).toBe(404);
  });
});

/**
 * The Responses API's pure translations (services/gateway/responses-schema.ts): a Responses
 * body → the job's chat request, a job's result or dead letter → OpenAI's response object, and
 * a finished response → OpenAI's stream events.
 */
import { describe, expect, it } from "vitest";
import { parseConfig } from "../shared/config/load.ts";
import type { DeadLetter, Result } from "../shared/contract/job.ts";
import { buildCatalog } from "../shared/routing/catalog.ts";
import { GatewayError } from "../services/gateway/openai-error.ts";
import {
  completedResponse,
  failedResponse,
  newResponse,
  parseResponseBody,
  referencedItemIds,
  responseIdOfItem,
  streamEvents,
  sseOf,
  type OutputItem,
} from "../services/gateway/responses-schema.ts";

const catalog = buildCatalog(
  parseConfig(
    `
providers:
  cheap:
    dialect: openai
    base_url: http://127.0.0.1:9/v1
    models:
      a: { input_per_mtok: 0.10, output_per_mtok: 0.40, context_window: 100000 }
aliases:
  small: cheap/a
tasks:
  support:
    tiers:
      - models: [cheap/a]
  chat:
    tiers:
      - models: [cheap/a]
`,
    "responses.yaml",
    {},
  ),
);

/** The 400 a body gets, as the client would see it. */
function refusal(body: unknown): { message: string; param: string | null; code: string | null } {
  try {
    parseResponseBody(body, catalog);
  } catch (err) {
    if (!(err instanceof GatewayError)) throw err;
    expect(err.status).toBe(400);
    return { message: err.message, param: err.param, code: err.code };
  }
  throw new Error("the body was accepted");
}

function result(message: Record<string, unknown>, finish = "stop", usage = { prompt_tokens: 12, completion_tokens: 7, total_tokens: 19 }): Result {
  return {
    id: "resp_abc",
    task: "support",
    status: "succeeded",
    provider: "cheap",
    model: "a",
    response: { id: "chatcmpl-1", object: "chat.completion", created: 1, model: "a", choices: [{ index: 0, message: { role: "assistant", ...message }, finish_reason: finish }], usage } as Result["response"],
    usage,
    cost_usd: 0.00001,
    latency_ms: 12,
    queued_ms: 1,
    attempts: [{ provider: "cheap", model: "a", tier: 0, outcome: "ok", http_status: 200, latency_ms: 12, error: null }],
    metadata: {},
    completed_at: "2026-12-02T10:00:05.000Z",
  };
}

describe("a Responses body as the job's chat request", () => {
  it("a string input is one user message; instructions come first, as a system message", () => {
    const p = parseResponseBody({ model: "gpt-4o-mini", instructions: "Answer like a pirate.", input: "Where is the nearest harbour?", max_output_tokens: 50, temperature: 0.3 }, catalog);
    expect(p.request).toEqual({
      model: "auto",
      messages: [
        { role: "system", content: "Answer like a pirate." },
        { role: "user", content: "Where is the nearest harbour?" },
      ],
      max_tokens: 50,
      temperature: 0.3,
    });
    expect(p.modelTask).toBeUndefined();
    expect(p.model).toBe("gpt-4o-mini");
    expect(p.echo).toMatchObject({ instructions: "Answer like a pirate.", max_output_tokens: 50, temperature: 0.3, text: { format: { type: "text" } }, tools: [], tool_choice: "auto", metadata: {} });
  });

  it("model resolves as on chat completions (an alias pins it) and may name a task", () => {
    expect(parseResponseBody({ model: "small", input: "hi" }, catalog).request.model).toBe("small");
    const byTask = parseResponseBody({ model: "support", input: "hi" }, catalog);
    expect(byTask.modelTask).toBe("support");
    expect(byTask.request.model).toBe("auto");
  });

  it("messages with input_text and input_image parts, earlier answers, tool calls and their outputs become chat messages in order", () => {
    const p = parseResponseBody(
      {
        model: "auto",
        input: [
          { role: "developer", content: "Be brief." },
          { type: "message", role: "user", content: [{ type: "input_text", text: "What's on this receipt?" }, { type: "input_image", image_url: "https://example.com/r.png", detail: "low" }] },
          { role: "assistant", content: [{ type: "output_text", text: "A coffee, 3.50.", annotations: [] }], id: "msg_1", status: "completed" },
          { role: "user", content: "Weather in Oslo and Bergen?" },
          { type: "function_call", call_id: "call_1", name: "weather", arguments: '{"city":"Oslo"}' },
          { type: "function_call", call_id: "call_2", name: "weather", arguments: '{"city":"Bergen"}' },
          { type: "function_call_output", call_id: "call_1", output: "4°C, rain" },
          { type: "function_call_output", call_id: "call_2", output: [{ type: "input_text", text: "6°C, sun" }] },
        ],
      },
      catalog,
    );
    expect(p.request.messages).toEqual([
      { role: "system", content: "Be brief." },
      { role: "user", content: [{ type: "text", text: "What's on this receipt?" }, { type: "image_url", image_url: { url: "https://example.com/r.png", detail: "low" } }] },
      { role: "assistant", content: "A coffee, 3.50." },
      { role: "user", content: "Weather in Oslo and Bergen?" },
      {
        role: "assistant",
        content: null,
        tool_calls: [
          { id: "call_1", type: "function", function: { name: "weather", arguments: '{"city":"Oslo"}' } },
          { id: "call_2", type: "function", function: { name: "weather", arguments: '{"city":"Bergen"}' } },
        ],
      },
      { role: "tool", tool_call_id: "call_1", content: "4°C, rain" },
      { role: "tool", tool_call_id: "call_2", content: "6°C, sun" },
    ]);
  });

  it("item_reference: the earlier output items it names replay as the assistant's turn", () => {
    const body = {
      input: [
        { role: "user", content: "Weather in Oslo?" },
        { type: "item_reference", id: "msg_X1" },
        { type: "item_reference", id: "fc_X1_0" },
        { type: "function_call_output", call_id: "call_7", output: "4°C" },
      ],
    };
    expect(referencedItemIds(body)).toEqual(["msg_X1", "fc_X1_0"]);
    expect(referencedItemIds({ input: "text" })).toEqual([]);
    expect(["msg_X1", "fc_X1_0", "resp_X1", "fc_X1"].map(responseIdOfItem)).toEqual(["resp_X1", "resp_X1", undefined, "resp_X1"]);
    const items = new Map<string, OutputItem>([
      ["msg_X1", { id: "msg_X1", type: "message", role: "assistant", status: "completed", content: [{ type: "output_text", text: "Let me look.", annotations: [], logprobs: [] }] }],
      ["fc_X1_0", { id: "fc_X1_0", type: "function_call", status: "completed", call_id: "call_7", name: "weather", arguments: '{"city":"Oslo"}' }],
    ]);
    expect(parseResponseBody(body, catalog, items).request.messages).toEqual([
      { role: "user", content: "Weather in Oslo?" },
      { role: "assistant", content: "Let me look.", tool_calls: [{ id: "call_7", type: "function", function: { name: "weather", arguments: '{"city":"Oslo"}' } }] },
      { role: "tool", tool_call_id: "call_7", content: "4°C" },
    ]);
  });

  it("text.format becomes response_format: json_schema, json_object, and text (none)", () => {
    const schema = { type: "object", properties: { city: { type: "string" } }, required: ["city"], additionalProperties: false };
    expect(parseResponseBody({ input: "x", text: { format: { type: "json_schema", name: "place", schema, strict: true } } }, catalog).request.response_format).toEqual({
      type: "json_schema",
      json_schema: { name: "place", schema, strict: true },
    });
    expect(parseResponseBody({ input: "x", text: { format: { type: "json_object" } } }, catalog).request.response_format).toEqual({ type: "json_object" });
    expect(parseResponseBody({ input: "x", text: { format: { type: "text" } } }, catalog).request.response_format).toBeUndefined();
  });

  it("function tools and tool_choice become chat's nested shapes", () => {
    const p = parseResponseBody(
      {
        input: "Book a table for two",
        tools: [{ type: "function", name: "book", description: "Books a table", parameters: { type: "object", properties: { people: { type: "integer" } } }, strict: false }],
        tool_choice: { type: "function", name: "book" },
        parallel_tool_calls: false,
      },
      catalog,
    );
    expect(p.request.tools).toEqual([{ type: "function", function: { name: "book", description: "Books a table", parameters: { type: "object", properties: { people: { type: "integer" } } }, strict: false } }]);
    expect(p.request.tool_choice).toEqual({ type: "function", function: { name: "book" } });
    expect(p.request.parallel_tool_calls).toBe(false);
    expect(parseResponseBody({ input: "x", tools: [{ type: "function", name: "f" }], tool_choice: "required" }, catalog).request.tool_choice).toBe("required");
  });

  it("unknown fields are tolerated; what Switchyard cannot honour is refused by name", () => {
    const tolerant = parseResponseBody({ input: "hi", store: false, reasoning: { effort: "low" }, include: [], some_new_field: 1 }, catalog);
    expect(tolerant.request.messages).toHaveLength(1);
    expect(tolerant.store).toBe(false);
    expect(parseResponseBody({ input: "hi" }, catalog).store).toBe(true);
    expect(refusal({ input: "hi", previous_response_id: "resp_1" })).toMatchObject({ param: "previous_response_id", code: "unsupported_parameter" });
    expect(refusal({ input: "hi", conversation: "conv_1" })).toMatchObject({ param: "conversation" });
    expect(refusal({ input: "hi", tools: [{ type: "web_search" }] })).toMatchObject({ param: "tools[0].type" });
    expect(refusal({ input: "hi", tools: [{ type: "web_search" }] }).message).toMatch(/only function tools/);
    expect(refusal({ input: [{ role: "user", content: "hi" }, { type: "item_reference", id: "msg_unknown" }] })).toMatchObject({ message: "Item with id 'msg_unknown' not found.", param: "input[1].id", code: "not_found" });
    expect(refusal({ input: [{ role: "user", content: [{ type: "input_file", file_id: "file_1" }] }] }).message).toMatch(/input_file/);
    expect(refusal({ input: "hi", background: true, stream: true })).toMatchObject({ param: "stream" });
  });

  it("bad values get OpenAI's 400 naming the field", () => {
    expect(refusal({ model: "x" }).param).toBe("input");
    expect(refusal({ input: "hi", temperature: 3 }).param).toBe("temperature");
    expect(refusal({ input: "hi", max_output_tokens: 0 }).param).toBe("max_output_tokens");
    expect(refusal({ input: "hi", text: { format: { type: "json_schema", schema: {} } } }).param).toBe("text.format.name");
    expect(refusal({ input: "hi", metadata: { n: 1 } }).message).toMatch(/metadata must be an object of at most 16 string values/);
    expect(refusal([1, 2]).message).toMatch(/JSON object/);
  });
});

describe("a job's outcome as a response object", () => {
  const echo = parseResponseBody({ input: "hi", metadata: { ticket: "T-1" } }, catalog).echo;
  const shell = newResponse("resp_abc", Date.parse("2026-12-02T10:00:00Z"), "gpt-4o-mini", echo, "in_progress");

  it("a text answer is one output message; usage in the Responses' terms; the served model", () => {
    const r = completedResponse(shell, result({ content: "Hello there." }, "stop", { prompt_tokens: 12, completion_tokens: 7, total_tokens: 19, prompt_tokens_details: { cached_tokens: 4 } } as never));
    expect(r).toMatchObject({
      id: "resp_abc",
      object: "response",
      status: "completed",
      created_at: Date.parse("2026-12-02T10:00:00Z") / 1000,
      completed_at: Date.parse("2026-12-02T10:00:05Z") / 1000,
      model: "cheap/a",
      error: null,
      incomplete_details: null,
      metadata: { ticket: "T-1" },
      output: [{ id: "msg_abc", type: "message", role: "assistant", status: "completed", content: [{ type: "output_text", text: "Hello there.", annotations: [] }] }],
      usage: { input_tokens: 12, input_tokens_details: { cached_tokens: 4 }, output_tokens: 7, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 19 },
    });
    expect(r).not.toHaveProperty("output_text");
  });

  it("tool calls are function_call items; a length stop is incomplete (max_output_tokens)", () => {
    const calls = completedResponse(shell, result({ content: null, tool_calls: [{ id: "call_9", type: "function", function: { name: "book", arguments: '{"people":2}' } }] }, "tool_calls"));
    expect(calls.output).toEqual([{ id: "fc_abc_0", type: "function_call", status: "completed", call_id: "call_9", name: "book", arguments: '{"people":2}' }]);
    const cut = completedResponse(shell, result({ content: "Once upon a" }, "length"));
    expect(cut).toMatchObject({ status: "incomplete", incomplete_details: { reason: "max_output_tokens" } });
  });

  it("a dead letter is a failed response carrying the code and message the HTTP error would", () => {
    const dl: DeadLetter = { id: "resp_abc", task: "support", status: "failed", reason: "exhausted", error: "every provider failed", attempts: [{ provider: "cheap", model: "a", tier: 0, outcome: "unavailable", http_status: 503, latency_ms: 3, error: "503" }], job: {}, metadata: {}, failed_at: "2026-12-02T10:00:05.000Z" };
    expect(failedResponse(shell, dl)).toMatchObject({ status: "failed", error: { code: "upstream_unavailable", message: "every provider failed" }, output: [] });
  });
});

describe("a finished response as OpenAI's stream", () => {
  const shell = newResponse("resp_abc", 0, "auto", parseResponseBody({ input: "hi" }, catalog).echo, "in_progress");

  it("created, in_progress, the message's text as delta and done, then completed, numbered in order", () => {
    const events = streamEvents(completedResponse(shell, result({ content: "Hi!" })));
    expect(events.map((e) => e.type)).toEqual([
      "response.created",
      "response.in_progress",
      "response.output_item.added",
      "response.content_part.added",
      "response.output_text.delta",
      "response.output_text.done",
      "response.content_part.done",
      "response.output_item.done",
      "response.completed",
    ]);
    expect(events.map((e) => e.sequence_number)).toEqual(events.map((_, i) => i));
    expect(events[0]).toMatchObject({ response: { id: "resp_abc", status: "in_progress", output: [] } });
    expect(events[4]).toMatchObject({ item_id: "msg_abc", output_index: 0, content_index: 0, delta: "Hi!" });
    expect(events[8]).toMatchObject({ response: { status: "completed", output: [{ content: [{ text: "Hi!" }] }] } });
    expect(sseOf(events.slice(0, 1))).toBe(`event: response.created\ndata: ${JSON.stringify(events[0])}\n\n`);
  });

  it("a tool call streams its arguments; an incomplete response ends with response.incomplete", () => {
    const events = streamEvents(completedResponse(shell, result({ content: null, tool_calls: [{ id: "call_1", type: "function", function: { name: "f", arguments: "{}" } }] }, "tool_calls")));
    expect(events.map((e) => e.type)).toEqual([
      "response.created",
      "response.in_progress",
      "response.output_item.added",
      "response.function_call_arguments.delta",
      "response.function_call_arguments.done",
      "response.output_item.done",
      "response.completed",
    ]);
    expect(streamEvents(completedResponse(shell, result({ content: "a" }, "length"))).at(-1)!.type).toBe("response.incomplete");
  });
});

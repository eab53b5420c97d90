import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { ChatRequestSchema, type ChatRequest } from "../shared/contract/job.ts";
import { estimatePromptTokens, estimateTextTokens } from "../shared/tokens.ts";
import { ANTHROPIC_VERSION, anthropicSchema, DEFAULT_MAX_TOKENS } from "../shared/adapters/anthropic.ts";
import { JSON_INSTRUCTION, jsonInstruction } from "../shared/adapters/convert.ts";
import {
  AuthFailedError,
  BadRequestError,
  InvalidOutputError,
  MalformedResponseError,
  NetworkError,
  ProviderTimeoutError,
  RateLimitedError,
  UnavailableError,
  type ProviderError,
} from "../shared/adapters/errors.ts";
import { geminiSchema } from "../shared/adapters/gemini.ts";
import { ADAPTERS } from "../shared/adapters/index.ts";
import type { Dialect, HttpReply, ProviderTarget } from "../shared/adapters/types.ts";

const target: ProviderTarget = { provider: "acme", upstream: "up-model", apiKey: "k-123" };
/** The `date` header every fixture carries, as `created` seconds. */
const FIXTURE_CREATED = Date.parse("Tue, 04 Mar 2025 10:15:30 GMT") / 1000;

const chat = (input: Record<string, unknown>): ChatRequest => ChatRequestSchema.parse(input);
const hi = chat({ messages: [{ role: "user", content: "hi" }] });

function fixture(dialect: Dialect, name: string): HttpReply {
  const file = new URL(`../shared/adapters/__fixtures__/${dialect}/${name}.json`, import.meta.url);
  const recorded = JSON.parse(readFileSync(file, "utf8")) as { status: number; headers: Record<string, string>; body: unknown };
  return { status: recorded.status, headers: recorded.headers, body: JSON.stringify(recorded.body) };
}

/** A recorded request: what `toRequest` must send, byte for byte once parsed. */
function requestFixture(dialect: Dialect, name: string): { path: string; headers: Record<string, string>; body: Record<string, unknown> } {
  const file = new URL(`../shared/adapters/__fixtures__/${dialect}/${name}.json`, import.meta.url);
  return JSON.parse(readFileSync(file, "utf8"));
}

function bodyOf(dialect: Dialect, request: ChatRequest): Record<string, unknown> {
  return JSON.parse(ADAPTERS[dialect].toRequest(request, target).body);
}

function thrown(fn: () => unknown): ProviderError {
  try {
    fn();
  } catch (err) {
    return err as ProviderError;
  }
  throw new Error("expected a throw");
}

const getOrder = { type: "function", function: { name: "get_order", description: "Looks up an order", parameters: { type: "object", properties: { order_id: { type: "string" } }, required: ["order_id"], additionalProperties: false, $schema: "http://json-schema.org/draft-07/schema#" } } };
const ping = { type: "function", function: { name: "ping" } };

/** A tool-using conversation: system and developer text, parallel calls, their results, then two user turns in a row. */
const conversation = chat({
  messages: [
    { role: "system", content: "You are a support agent." },
    { role: "developer", content: [{ type: "text", text: "Be brief." }] },
    { role: "user", content: "Where is order A-1001?" },
    {
      role: "assistant",
      content: null,
      tool_calls: [
        { id: "call_a", type: "function", function: { name: "get_order", arguments: '{"order_id":"A-1001"}' } },
        { id: "call_b", type: "function", function: { name: "ping", arguments: "" } },
      ],
    },
    { role: "tool", tool_call_id: "call_a", content: '{"status":"shipped"}' },
    { role: "tool", tool_call_id: "call_b", content: [{ type: "text", text: "pong" }] },
    { role: "user", content: "Thanks." },
    { role: "user", content: [{ type: "text", text: "When does it arrive?" }] },
  ],
  tools: [getOrder, ping],
  tool_choice: "auto",
  temperature: 1.4,
  top_p: 0.9,
  stop: "END",
  max_tokens: 300,
});

describe("openai adapter: request out", () => {
  it("sends the request as it is, with the upstream model, no streaming and a bearer key", () => {
    const call = ADAPTERS.openai.toRequest(conversation, target);
    expect(call.path).toBe("/chat/completions");
    expect(call.headers).toEqual({ "content-type": "application/json", authorization: "Bearer k-123" });
    expect(JSON.parse(call.body)).toEqual({ ...conversation, model: "up-model", stream: false });
  });
});

describe("anthropic adapter: request out", () => {
  it("posts to /messages with x-api-key and anthropic-version", () => {
    const call = ADAPTERS.anthropic.toRequest(hi, target);
    expect(call.path).toBe("/messages");
    expect(call.headers).toEqual({ "content-type": "application/json", "x-api-key": "k-123", "anthropic-version": ANTHROPIC_VERSION });
    expect(ADAPTERS.anthropic.toRequest(hi, { ...target, apiKey: undefined }).headers["x-api-key"]).toBeUndefined();
  });

  it("maps a tool-using conversation: system lifted, tool_use and merged tool_result turns, turns alternating", () => {
    expect(bodyOf("anthropic", conversation)).toEqual({
      model: "up-model",
      max_tokens: 300,
      system: "You are a support agent.\n\nBe brief.",
      temperature: 1,
      top_p: 0.9,
      stop_sequences: ["END"],
      messages: [
        { role: "user", content: [{ type: "text", text: "Where is order A-1001?" }] },
        {
          role: "assistant",
          content: [
            { type: "tool_use", id: "call_a", name: "get_order", input: { order_id: "A-1001" } },
            { type: "tool_use", id: "call_b", name: "ping", input: {} },
          ],
        },
        {
          role: "user",
          content: [
            { type: "tool_result", tool_use_id: "call_a", content: '{"status":"shipped"}' },
            { type: "tool_result", tool_use_id: "call_b", content: "pong" },
            { type: "text", text: "Thanks." },
            { type: "text", text: "When does it arrive?" },
          ],
        },
      ],
      tools: [
        { name: "get_order", description: "Looks up an order", input_schema: getOrder.function.parameters },
        { name: "ping", input_schema: { type: "object", properties: {} } },
      ],
      tool_choice: { type: "auto" },
    });
  });

  it.each([
    ["neither", {}, DEFAULT_MAX_TOKENS],
    ["max_tokens", { max_tokens: 50 }, 50],
    ["max_completion_tokens", { max_completion_tokens: 70 }, 70],
    ["both (the smaller)", { max_tokens: 90, max_completion_tokens: 60 }, 60],
  ])("max_tokens from %s", (_name, limits, expected) => {
    expect(bodyOf("anthropic", chat({ ...hi, ...limits })).max_tokens).toBe(expected);
  });

  it.each([
    ["auto", {}, { type: "auto" }],
    ["required", {}, { type: "any" }],
    ["none", {}, { type: "none" }],
    [{ type: "function", function: { name: "get_order" } }, {}, { type: "tool", name: "get_order" }],
    [undefined, {}, undefined],
    [undefined, { parallel_tool_calls: false }, { type: "auto", disable_parallel_tool_use: true }],
    ["required", { parallel_tool_calls: false }, { type: "any", disable_parallel_tool_use: true }],
  ])("tool_choice %j %j → %j", (choice, extra, expected) => {
    expect(bodyOf("anthropic", chat({ ...hi, tools: [getOrder], tool_choice: choice, ...extra })).tool_choice).toEqual(expected);
  });

  it("json_schema goes out as output_config.format with no instruction; json_object, having no native form, as the instruction", () => {
    const schema = { type: "object", properties: { label: { type: "string" } }, required: ["label"] };
    const classify = [{ role: "system", content: "Classify." }, ...hi.messages];
    const structured = bodyOf("anthropic", chat({ messages: classify, response_format: { type: "json_schema", json_schema: { name: "label", schema } } }));
    expect(structured.system).toBe("Classify.");
    expect(structured.output_config).toEqual({ format: { type: "json_schema", schema: { ...schema, additionalProperties: false } } });
    const object = bodyOf("anthropic", chat({ messages: classify, response_format: { type: "json_object" } }));
    expect(object.system).toBe(`Classify.\n\n${JSON_INSTRUCTION}`);
    expect(object.output_config).toBeUndefined();
    // OpenAI lets json_schema omit the schema; without one there is nothing to constrain decoding with.
    expect(bodyOf("anthropic", chat({ ...hi, response_format: { type: "json_schema", json_schema: { name: "x" } } }))).toMatchObject({ system: JSON_INSTRUCTION });
    const text = bodyOf("anthropic", chat({ ...hi, response_format: { type: "text" } }));
    expect(text.system).toBeUndefined();
    expect(text.output_config).toBeUndefined();
  });

  it("keeps assistant text beside its tool calls and drops empty text", () => {
    const request = chat({
      messages: [
        { role: "user", content: "" },
        { role: "user", content: "go" },
        { role: "assistant", content: "Looking.", tool_calls: [{ id: "c1", type: "function", function: { name: "ping", arguments: "{}" } }] },
        { role: "tool", tool_call_id: "c1", content: "" },
      ],
    });
    expect(bodyOf("anthropic", request).messages).toEqual([
      { role: "user", content: [{ type: "text", text: "go" }] },
      { role: "assistant", content: [{ type: "text", text: "Looking." }, { type: "tool_use", id: "c1", name: "ping", input: {} }] },
      { role: "user", content: [{ type: "tool_result", tool_use_id: "c1" }] },
    ]);
  });
});

describe("gemini adapter: request out", () => {
  it("posts to /models/{upstream}:generateContent with x-goog-api-key", () => {
    const call = ADAPTERS.gemini.toRequest(hi, { ...target, upstream: "gemini-2.0-flash" });
    expect(call.path).toBe("/models/gemini-2.0-flash:generateContent");
    expect(call.headers).toEqual({ "content-type": "application/json", "x-goog-api-key": "k-123" });
  });

  it("maps a tool-using conversation: systemInstruction, functionCall and merged functionResponse parts", () => {
    expect(bodyOf("gemini", conversation)).toEqual({
      systemInstruction: { parts: [{ text: "You are a support agent.\n\nBe brief." }] },
      contents: [
        { role: "user", parts: [{ text: "Where is order A-1001?" }] },
        {
          role: "model",
          parts: [{ functionCall: { name: "get_order", args: { order_id: "A-1001" } } }, { functionCall: { name: "ping", args: {} } }],
        },
        {
          role: "user",
          parts: [
            { functionResponse: { name: "get_order", response: { content: '{"status":"shipped"}' } } },
            { functionResponse: { name: "ping", response: { content: "pong" } } },
            { text: "Thanks." },
            { text: "When does it arrive?" },
          ],
        },
      ],
      generationConfig: { temperature: 1.4, topP: 0.9, maxOutputTokens: 300, stopSequences: ["END"] },
      tools: [
        {
          functionDeclarations: [
            { name: "get_order", description: "Looks up an order", parameters: { type: "object", properties: { order_id: { type: "string" } }, required: ["order_id"] } },
            { name: "ping" },
          ],
        },
      ],
      toolConfig: { functionCallingConfig: { mode: "AUTO" } },
    });
  });

  it.each([
    ["auto", { mode: "AUTO" }],
    ["required", { mode: "ANY" }],
    ["none", { mode: "NONE" }],
    [{ type: "function", function: { name: "get_order" } }, { mode: "ANY", allowedFunctionNames: ["get_order"] }],
  ])("tool_choice %j → %j", (choice, expected) => {
    expect(bodyOf("gemini", chat({ ...hi, tools: [getOrder], tool_choice: choice })).toolConfig).toEqual({ functionCallingConfig: expected });
  });

  /** A schema with keywords Gemini's OpenAPI-subset `Schema` refuses and its JSON Schema field takes. */
  const wide = {
    $schema: "https://json-schema.org/draft/2020-12/schema",
    type: "object",
    additionalProperties: false,
    properties: {
      label: { type: "string", enum: ["billing", "other"] },
      score: { type: ["number", "null"], minimum: 0 },
      kind: { const: "ticket" },
      tags: { type: "array", items: { type: "string", additionalProperties: false }, uniqueItems: true },
    },
    required: ["label"],
  };

  it("json_object sets the JSON MIME type; json_schema adds the schema as responseJsonSchema, only $schema and $id dropped", () => {
    expect(bodyOf("gemini", chat({ ...hi, response_format: { type: "json_object" } })).generationConfig).toEqual({ responseMimeType: "application/json" });
    const { $schema: _dropped, ...sent } = wide;
    const structured = chat({ ...hi, response_format: { type: "json_schema", json_schema: { name: "x", schema: { ...wide, $id: "urn:x" } } } });
    expect(bodyOf("gemini", structured).generationConfig).toEqual({ responseMimeType: "application/json", responseJsonSchema: sent });
    expect(bodyOf("gemini", chat({ ...hi, response_format: { type: "json_schema", json_schema: { name: "x" } } })).generationConfig).toEqual({ responseMimeType: "application/json" });
  });

  it("tool parameters keep the OpenAPI subset: geminiSchema drops the keywords Gemini's Schema refuses", () => {
    expect(geminiSchema(wide)).toEqual({
      type: "object",
      properties: {
        label: { type: "string", enum: ["billing", "other"] },
        score: { type: "number", nullable: true, minimum: 0 },
        kind: { enum: ["ticket"] },
        tags: { type: "array", items: { type: "string" } },
      },
      required: ["label"],
    });
    expect(geminiSchema({ anyOf: [{ type: "string", $id: "x" }, { type: "integer" }] })).toEqual({ anyOf: [{ type: "string" }, { type: "integer" }] });
  });

  it("sends back a tool call's thought signature, as Google's OpenAI endpoint carries it", () => {
    const request = chat({
      messages: [
        { role: "user", content: "go" },
        { role: "assistant", tool_calls: [{ id: "call_0", type: "function", function: { name: "ping", arguments: "{}" }, extra_content: { google: { thought_signature: "sig-1" } } }] },
        { role: "tool", tool_call_id: "call_0", content: "pong" },
      ],
    });
    expect((bodyOf("gemini", request).contents as unknown[])[1]).toEqual({ role: "model", parts: [{ functionCall: { name: "ping", args: {} }, thoughtSignature: "sig-1" }] });
  });
});

/**
 * A task's output contract as the router hands it over: constraints Anthropic refuses, a nested
 * object without additionalProperties, a $ref into $defs, a string format outside Anthropic's list.
 */
const ticketSchema = {
  $schema: "https://json-schema.org/draft/2020-12/schema",
  type: "object",
  properties: {
    label: { type: "string", enum: ["billing", "technical", "account", "shipping"], description: "The queue the ticket belongs in" },
    confidence: { type: "number", minimum: 0, maximum: 1 },
    summary: { type: "string", maxLength: 200, description: "One sentence" },
    order_id: { anyOf: [{ type: "string", pattern: "^A-[0-9]+$" }, { type: "null" }] },
    tags: { type: "array", items: { type: "string" }, minItems: 1, maxItems: 5, uniqueItems: true },
    customer: { $ref: "#/$defs/customer" },
  },
  required: ["label", "confidence", "summary", "order_id", "tags", "customer"],
  additionalProperties: false,
  $defs: {
    customer: {
      type: "object",
      properties: { email: { type: "string", format: "email" }, since: { type: "string", format: "year-month" } },
      required: ["email"],
    },
  },
};

const ticketRequest = chat({
  model: "support-triage",
  messages: [
    { role: "system", content: "Triage the support ticket." },
    { role: "user", content: "Order A-1001 was charged twice. ada@example.com" },
  ],
  temperature: 0,
  max_tokens: 200,
  response_format: { type: "json_schema", json_schema: { name: "ticket", strict: true, schema: ticketSchema } },
});

describe("structured output: the output contract in each dialect's native form", () => {
  it.each<[Dialect, string]>([
    ["openai", "response_format passes through unchanged, strict included"],
    ["anthropic", "output_config.format with the schema made strict, no JSON instruction"],
    ["gemini", "generationConfig.responseJsonSchema beside responseMimeType"],
  ])("%s: %s (request-json-schema fixture)", (dialect) => {
    const expected = requestFixture(dialect, "request-json-schema");
    const call = ADAPTERS[dialect].toRequest(ticketRequest, target);
    expect({ path: call.path, headers: call.headers, body: JSON.parse(call.body) }).toEqual(expected);
  });

  it.each<[Dialect, (body: Record<string, unknown>) => unknown, unknown]>([
    ["openai", (b) => b.response_format, { type: "json_object" }],
    ["anthropic", (b) => [b.system, b.output_config], [JSON_INSTRUCTION, undefined]],
    ["gemini", (b) => b.generationConfig, { responseMimeType: "application/json" }],
  ])("%s: json_object", (dialect, pick, expected) => {
    expect(pick(bodyOf(dialect, chat({ ...hi, response_format: { type: "json_object" } })))).toEqual(expected);
  });

  it("jsonInstruction stays available for models without structured outputs", () => {
    expect(jsonInstruction(ticketRequest)).toBe(`${JSON_INSTRUCTION} The object must conform to this JSON Schema:\n${JSON.stringify(ticketSchema)}`);
    expect(jsonInstruction(chat({ ...hi, response_format: { type: "json_object" } }))).toBe(JSON_INSTRUCTION);
    expect(jsonInstruction(chat({ ...hi, response_format: { type: "text" } }))).toBeUndefined();
    expect(jsonInstruction(hi)).toBeUndefined();
  });
});

describe("anthropicSchema", () => {
  it.each<[string, Record<string, unknown>, Record<string, unknown>]>([
    ["closes an object without additionalProperties", { type: "object", properties: { a: { type: "string" } } }, { type: "object", properties: { a: { type: "string" } }, additionalProperties: false }],
    ["closes an object that allows extra keys", { type: "object", additionalProperties: true }, { type: "object", additionalProperties: false }],
    ["declares required names missing from properties before closing, so the schema stays satisfiable", { type: "object", required: ["reply"] }, { type: "object", required: ["reply"], properties: { reply: {} }, additionalProperties: false }],
    ["closes a nullable object", { type: ["object", "null"], properties: {} }, { type: ["object", "null"], properties: {}, additionalProperties: false }],
    ["leaves a non-object alone", { type: "string", enum: ["a"], default: "a" }, { type: "string", enum: ["a"], default: "a" }],
    ["moves numeric constraints into a new description", { type: "integer", exclusiveMinimum: 0, exclusiveMaximum: 10, multipleOf: 2 }, { type: "integer", description: "(exclusiveMinimum: 0, exclusiveMaximum: 10, multipleOf: 2)" }],
    ["appends string constraints to the description", { type: "string", description: "A code.", minLength: 2, pattern: "^[A-Z]+$" }, { type: "string", description: 'A code. (minLength: 2, pattern: "^[A-Z]+$")' }],
    ["keeps minItems 0 and 1", { type: "array", items: { type: "string" }, minItems: 0 }, { type: "array", items: { type: "string" }, minItems: 0 }],
    ["moves minItems above 1", { type: "array", items: { type: "string" }, minItems: 2 }, { type: "array", items: { type: "string" }, description: "(minItems: 2)" }],
    ["keeps a supported format, moves another", { anyOf: [{ type: "string", format: "uuid" }, { type: "string", format: "iban" }] }, { anyOf: [{ type: "string", format: "uuid" }, { type: "string", description: '(format: "iban")' }] }],
    ["turns oneOf into anyOf", { oneOf: [{ type: "object", properties: {} }, { type: "null" }] }, { anyOf: [{ type: "object", properties: {}, additionalProperties: false }, { type: "null" }] }],
    [
      "recurses through items, allOf and definitions",
      { definitions: { p: { type: "object", properties: { n: { type: "number", maximum: 5 } } } }, allOf: [{ $ref: "#/definitions/p" }], type: "array", items: [{ type: "object" }] },
      {
        definitions: { p: { type: "object", properties: { n: { type: "number", description: "(maximum: 5)" } }, additionalProperties: false } },
        allOf: [{ $ref: "#/definitions/p" }],
        type: "array",
        items: [{ type: "object", additionalProperties: false }],
      },
    ],
    ["drops $schema and $id at the root only", { $schema: "x", $id: "urn:a", type: "object", properties: { b: { $id: "urn:b", type: "string" } } }, { type: "object", properties: { b: { $id: "urn:b", type: "string" } }, additionalProperties: false }],
  ])("%s", (_name, input, expected) => {
    const before = structuredClone(input);
    expect(anthropicSchema(input)).toEqual(expected);
    expect(input).toEqual(before);
  });

  it("refuses a map (additionalProperties as a schema), which structured outputs cannot express", () => {
    const map = { type: "object", properties: { counts: { type: "object", additionalProperties: { type: "integer" } } } };
    const err = thrown(() => anthropicSchema(map));
    expect(err).toBeInstanceOf(BadRequestError);
    expect(err.message).toMatch(/#\/properties\/counts/);
    const request = chat({ ...hi, response_format: { type: "json_schema", json_schema: { name: "m", schema: map } } });
    expect(thrown(() => ADAPTERS.anthropic.toRequest(request, target))).toBeInstanceOf(BadRequestError);
  });
});

describe.each(["anthropic", "gemini"] as const)("%s adapter: requests it cannot express", (dialect) => {
  it.each([
    ["an image part", { messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "https://x/y.png" } }] }] }, /text content only/],
    ["a non-function tool", { messages: hi.messages, tools: [{ type: "web_search" }] }, /function tools only/],
    ["tool arguments that are not JSON", { messages: [{ role: "assistant", tool_calls: [{ id: "c", type: "function", function: { name: "f", arguments: "{oops" } }] }] }, /not JSON/],
  ])("refuses %s with a BadRequestError", (_name, input, message) => {
    const err = thrown(() => ADAPTERS[dialect].toRequest(chat(input), target));
    expect(err).toBeInstanceOf(BadRequestError);
    expect(err.message).toMatch(message);
    expect(err.transient).toBe(false);
  });
});

it("gemini refuses a tool result that answers no earlier call", () => {
  const request = chat({ messages: [{ role: "user", content: "go" }, { role: "tool", tool_call_id: "call_9", content: "x" }] });
  expect(thrown(() => ADAPTERS.gemini.toRequest(request, target))).toBeInstanceOf(BadRequestError);
});

interface Expected {
  id: string;
  model: string;
  content: string | null;
  finish: string | null;
  toolCalls?: unknown[];
  usage?: [prompt: number, completion: number, total: number];
  created?: number;
}

describe("responses in", () => {
  it.each<[Dialect, string, Expected]>([
    ["openai", "text", { id: "chatcmpl-B7wYkD9vT6f3mJzN", model: "gpt-4o-mini-2024-07-18", content: "billing", finish: "stop", usage: [41, 2, 43], created: 1741083330 }],
    [
      "openai",
      "tool-call",
      {
        id: "chatcmpl-B7wZ2xQpL0aYt9",
        model: "gpt-4o-mini-2024-07-18",
        content: null,
        finish: "tool_calls",
        toolCalls: [{ id: "call_Qy1Gm6y2nXxj8Q3d", type: "function", function: { name: "get_order", arguments: '{"order_id":"A-1001"}' } }],
        usage: [88, 18, 106],
        created: 1741083331,
      },
    ],
    ["openai", "length-no-usage", { id: "chatcmpl-local-7", model: "llama3.1:8b", content: "The order ships", finish: "length", created: 1741083332 }],
    ["anthropic", "text", { id: "msg_01XFDUDYJgAACzvnptvVoYEL", model: "claude-3-5-haiku-20241022", content: '{"label": "billing"}', finish: "stop", usage: [52, 9, 61] }],
    [
      "anthropic",
      "tool-call",
      {
        id: "msg_01Aq9w938a90dw8q",
        model: "claude-sonnet-4-20250514",
        content: "I'll look up that order.",
        finish: "tool_calls",
        toolCalls: [{ id: "toolu_01A09q90qw90lq917835lq9", type: "function", function: { name: "get_order", arguments: '{"order_id":"A-1001"}' } }],
        usage: [1580, 64, 1644],
      },
    ],
    ["anthropic", "max-tokens", { id: "msg_013Zva2CMHLNnXjNJJKqJ2EF", model: "claude-3-5-haiku-20241022", content: "The order A-1001 was", finish: "length", usage: [30, 5, 35] }],
    ["anthropic", "stop-sequence", { id: "msg_01BmQ7u9o5nP3eZt", model: "claude-3-5-haiku-20241022", content: "shipping", finish: "stop", usage: [30, 2, 32] }],
    [
      "anthropic",
      "structured-output",
      {
        id: "msg_01Hq3XbW8tS2nVJcKq5Fz9Ld",
        model: "claude-haiku-4-5-20251001",
        content: '{"label":"billing","confidence":0.94,"summary":"Order A-1001 was charged twice.","order_id":"A-1001","tags":["double-charge"],"customer":{"email":"ada@example.com"}}',
        finish: "stop",
        usage: [412, 58, 470],
      },
    ],
    ["anthropic", "refusal", { id: "msg_01Rf7Ym2QpV4cXk8Nd3Hs1Tb", model: "claude-haiku-4-5-20251001", content: "I can't help with that.", finish: "content_filter", usage: [380, 9, 389] }],
    ["gemini", "text", { id: "kQ7GaLW7Hc2xz7IPqdnb0AU", model: "gemini-2.0-flash", content: '{"label": "billing"}', finish: "stop", usage: [48, 8, 56] }],
    ["gemini", "thinking", { id: "t3GaLW7Hc2xz7IPq", model: "gemini-2.5-flash", content: "billing", finish: "stop", usage: [40, 96, 136] }],
    [
      "gemini",
      "tool-call",
      {
        id: "fc1GaLW7Hc2xz7IPq",
        model: "gemini-2.5-flash",
        content: null,
        finish: "tool_calls",
        toolCalls: [
          { id: "call_0", type: "function", function: { name: "get_order", arguments: '{"order_id":"A-1001"}' }, extra_content: { google: { thought_signature: "CiQBVKhc7sigEXAMPLE" } } },
          { id: "call_1", type: "function", function: { name: "get_customer", arguments: '{"email":"ada@example.com"}' } },
        ],
        usage: [120, 30, 150],
      },
    ],
    ["gemini", "max-tokens", { id: "mx1", model: "gemini-2.0-flash", content: "The order A-1001 was", finish: "length", usage: [30, 5, 35] }],
    ["gemini", "safety", { id: "sf1", model: "gemini-2.0-flash", content: null, finish: "content_filter", usage: [25, 0, 25] }],
  ])("%s %s", (dialect, name, e) => {
    const { response, usage, usageEstimated } = ADAPTERS[dialect].fromResponse(fixture(dialect, name), hi);
    expect(response).toMatchObject({ id: e.id, object: "chat.completion", model: e.model, created: e.created ?? FIXTURE_CREATED });
    expect(response.choices).toHaveLength(1);
    expect(response.choices[0]).toMatchObject({ index: 0, finish_reason: e.finish, message: { role: "assistant", content: e.content } });
    expect(response.choices[0]?.message.tool_calls).toEqual(e.toolCalls);
    if (e.usage) {
      // The cache and reasoning details are checked, and priced, in cost-ledger.test.ts.
      expect(usage).toMatchObject({ prompt_tokens: e.usage[0], completion_tokens: e.usage[1], total_tokens: e.usage[2] });
      expect(usageEstimated).toBe(false);
    } else {
      const prompt = estimatePromptTokens(hi.messages);
      const completion = estimateTextTokens(e.content ?? "");
      expect(usage).toEqual({ prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion });
      expect(usageEstimated).toBe(true);
    }
    expect(response.usage).toMatchObject(usage);
  });

  it.each(["anthropic", "gemini"] as const)("%s: a response without usage gets an estimate, flagged", (dialect) => {
    const body = dialect === "anthropic"
      ? { id: "m", model: "c", content: [{ type: "text", text: "twelve chars" }], stop_reason: "end_turn" }
      : { candidates: [{ content: { parts: [{ text: "twelve chars" }] }, finishReason: "STOP" }] };
    const got = ADAPTERS[dialect].fromResponse({ status: 200, headers: {}, body: JSON.stringify(body) }, hi);
    expect(got.usageEstimated).toBe(true);
    expect(got.usage.completion_tokens).toBe(3);
    expect(got.response.created).toBe(0);
  });
});

describe("errors in", () => {
  it.each<[Dialect, string, string, new (...args: never[]) => ProviderError, { contextLength?: boolean; retryAfterMs?: number }?]>([
    ["openai", "error-rate-limit", "rate_limited", RateLimitedError, { retryAfterMs: 120 }],
    ["openai", "error-invalid-api-key", "auth_failed", AuthFailedError],
    ["openai", "error-context-length", "bad_request", BadRequestError, { contextLength: true }],
    ["openai", "error-overloaded", "unavailable", UnavailableError],
    ["openai", "error-timeout", "timeout", ProviderTimeoutError],
    ["anthropic", "error-overloaded", "unavailable", UnavailableError],
    ["anthropic", "error-api", "unavailable", UnavailableError],
    ["anthropic", "error-rate-limit", "rate_limited", RateLimitedError, { retryAfterMs: 7000 }],
    ["anthropic", "error-invalid-request", "bad_request", BadRequestError, { contextLength: false }],
    ["anthropic", "error-prompt-too-long", "bad_request", BadRequestError, { contextLength: true }],
    ["anthropic", "error-context-limit", "bad_request", BadRequestError, { contextLength: true }],
    ["anthropic", "error-authentication", "auth_failed", AuthFailedError],
    ["anthropic", "error-permission", "auth_failed", AuthFailedError],
    ["anthropic", "error-not-found", "bad_request", BadRequestError, { contextLength: false }],
    ["anthropic", "error-request-too-large", "bad_request", BadRequestError, { contextLength: false }],
    ["gemini", "error-resource-exhausted", "rate_limited", RateLimitedError, { retryAfterMs: 34_000 }],
    ["gemini", "error-unavailable", "unavailable", UnavailableError],
    ["gemini", "error-internal", "unavailable", UnavailableError],
    ["gemini", "error-invalid-argument", "bad_request", BadRequestError, { contextLength: false }],
    ["gemini", "error-context-length", "bad_request", BadRequestError, { contextLength: true }],
    ["gemini", "error-api-key-invalid", "auth_failed", AuthFailedError],
    ["gemini", "error-permission-denied", "auth_failed", AuthFailedError],
    ["gemini", "error-unauthenticated", "auth_failed", AuthFailedError],
    ["gemini", "error-not-found", "bad_request", BadRequestError, { contextLength: false }],
    ["gemini", "error-deadline-exceeded", "timeout", ProviderTimeoutError],
  ])("%s %s → %s", (dialect, name, kind, type, extra = {}) => {
    const reply = fixture(dialect, name);
    const err = thrown(() => ADAPTERS[dialect].fromResponse(reply, hi));
    expect(err).toBeInstanceOf(type);
    expect(err).toMatchObject({ kind, status: reply.status, ...extra });
    expect(err.message).toMatch(new RegExp(`^HTTP ${reply.status}\\b`));
  });

  it.each<[Dialect, string, RegExp]>([
    ["gemini", "prompt-blocked", /no candidate \(prompt blocked: PROHIBITED_CONTENT\)/],
    ["gemini", "malformed-function-call", /MALFORMED_FUNCTION_CALL/],
  ])("%s %s → invalid_output", (dialect, name, message) => {
    const err = thrown(() => ADAPTERS[dialect].fromResponse(fixture(dialect, name), hi));
    expect(err).toBeInstanceOf(InvalidOutputError);
    expect(err).toMatchObject({ kind: "invalid_output", status: 200 });
    expect(err.message).toMatch(message);
  });

  it("anthropic: a tool_use block without id or name is invalid_output", () => {
    const body = { id: "m", model: "c", content: [{ type: "tool_use", input: {} }], stop_reason: "tool_use" };
    const err = thrown(() => ADAPTERS.anthropic.fromResponse({ status: 200, headers: {}, body: JSON.stringify(body) }, hi));
    expect(err).toBeInstanceOf(InvalidOutputError);
    expect(err).toMatchObject({ kind: "invalid_output", status: 200 });
  });

  describe.each(["openai", "anthropic", "gemini"] as const)("%s: a provider's garbage is not the model's answer", (dialect) => {
    it.each<[string, string, HttpReply, new (...args: never[]) => ProviderError, RegExp]>([
      ["a 200 cut short", "malformed_response", { status: 200, headers: {}, body: '{"id":"x","choi' }, MalformedResponseError, /not JSON \(15 bytes\)/],
      ["a 200 proxy page", "malformed_response", { status: 200, headers: {}, body: "<html>Welcome</html>" }, MalformedResponseError, /not JSON/],
      ["a 200 of the wrong shape", "malformed_response", { status: 200, headers: {}, body: '{"candidates":"x","content":"x","choices":[]}' }, MalformedResponseError, /^provider response is not /],
      ["a 200 JSON array", "malformed_response", { status: 200, headers: {}, body: "[]" }, MalformedResponseError, /^provider response is not /],
      ["an HTML 502", "unavailable", { status: 502, headers: {}, body: "<html>Bad Gateway</html>" }, UnavailableError, /^HTTP 502/],
    ])("%s → %s", (_name, kind, reply, type, message) => {
      const err = thrown(() => ADAPTERS[dialect].fromResponse(reply, hi));
      expect(err).toBeInstanceOf(type);
      expect(err).toMatchObject({ kind, status: reply.status });
      expect(err.message).toMatch(message);
    });
  });
});

describe("ProviderError.transient reads the outcome table", () => {
  // invalid_output is a quality signal: the same model asked again later answers no better.
  it.each(
    [
      new RateLimitedError("x"),
      new UnavailableError("x"),
      new ProviderTimeoutError("x"),
      new NetworkError("x"),
      new MalformedResponseError("x"),
      new InvalidOutputError("x"),
      new BadRequestError("x"),
      new AuthFailedError("x"),
    ].map((err) => [err.kind, err.transient, err] as const),
  )("%s: transient %s", (kind, transient) => {
    expect(transient).toBe(["rate_limited", "unavailable", "timeout", "network_error", "malformed_response"].includes(kind));
  });
});

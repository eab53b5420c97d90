/**
 * The `anthropic` dialect: Anthropic's Messages API, `POST /messages` relative to a base URL
 * such as `https://api.anthropic.com/v1`.
 */
import { z } from "zod";
import type { ChatMessage, ChatRequest } from "../contract/job.ts";
import {
  completion,
  completionLimit,
  createdFrom,
  eventJson,
  streamCutShort,
  functionTools,
  jsonInstruction,
  normalUsage,
  parseErrorBody,
  parseReply,
  responseSchema,
  stopSequences,
  textOf,
  toolCallsOf,
  toolChoice,
  type OpenAiToolCall,
} from "./convert.ts";
import {
  AuthFailedError,
  BadRequestError,
  errorForStatus,
  InvalidOutputError,
  parseRetryAfter,
  ProviderTimeoutError,
  RateLimitedError,
  UnavailableError,
  type ProviderError,
} from "./errors.ts";
import { isRecord } from "../json.ts";
import type { Adapter, Completion, HttpCall, HttpReply, ProviderTarget, SseEvent, StreamDelta, StreamParser } from "./types.ts";

/**
 * `max_tokens` sent when the job sets neither `max_tokens` nor `max_completion_tokens`: the
 * Messages API requires one. 4096 is within every current Claude model's output limit and
 * ample for the classification and extraction answers jobs usually ask for.
 * @defaultValue 4096
 */
export const DEFAULT_MAX_TOKENS = 4096;

/** The API version this adapter speaks (sent as `anthropic-version`). */
export const ANTHROPIC_VERSION = "2023-06-01";

/**
 * String formats the Messages API's structured outputs accept (its documented list, which the
 * official SDKs filter `format` by); any other format moves into the description.
 */
const SUPPORTED_FORMATS: ReadonlySet<unknown> = new Set(["date-time", "time", "date", "duration", "email", "hostname", "uri", "ipv4", "ipv6", "uuid"]);

/** Numeric, string and array constraints structured outputs refuse (`minItems` only above 1, `format` only outside `SUPPORTED_FORMATS`). */
const UNSUPPORTED_CONSTRAINTS: ReadonlySet<string> = new Set([
  "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
  "minLength", "maxLength", "pattern",
  "minItems", "maxItems", "uniqueItems",
  "format",
]);

/** Keywords whose value maps names to subschemas. */
const SUBSCHEMA_MAPS: ReadonlySet<string> = new Set(["properties", "$defs", "definitions"]);

type ContentBlock =
  | { type: "text"; text: string }
  | { type: "tool_use"; id: string; name: string; input: Record<string, unknown> }
  | { type: "tool_result"; tool_use_id: string; content?: string };

interface Turn {
  role: "user" | "assistant";
  content: ContentBlock[];
}

/** Only what Switchyard reads; a new block type or field breaks nothing. */
const ResponseSchema = z.looseObject({
  id: z.string().optional(),
  model: z.string().optional(),
  content: z.array(
    z.looseObject({
      type: z.string(),
      text: z.string().optional(),
      id: z.string().optional(),
      name: z.string().optional(),
      input: z.unknown().optional(),
    }),
  ),
  stop_reason: z.string().nullable().optional(),
  usage: z
    .looseObject({
      input_tokens: z.number().int().nonnegative(),
      output_tokens: z.number().int().nonnegative(),
      cache_creation_input_tokens: z.number().int().nonnegative().nullable().optional(),
      cache_read_input_tokens: z.number().int().nonnegative().nullable().optional(),
    })
    .optional(),
});

const ErrorBodySchema = z.looseObject({
  error: z.looseObject({ type: z.string().optional(), message: z.string().optional() }),
});

const FINISH_REASONS: Readonly<Record<string, string>> = {
  end_turn: "stop",
  stop_sequence: "stop",
  max_tokens: "length",
  model_context_window_exceeded: "length",
  tool_use: "tool_calls",
  refusal: "content_filter",
};

export function toRequest(request: ChatRequest, target: ProviderTarget): HttpCall {
  const system: string[] = [];
  const turns: Turn[] = [];
  for (const m of request.messages) {
    if (m.role === "system" || m.role === "developer") {
      const text = textOf(m.content, "anthropic");
      if (text) system.push(text);
    } else if (m.role === "user") {
      addTurn(turns, "user", textBlocks(m));
    } else if (m.role === "assistant") {
      const calls = toolCallsOf(m, "anthropic").map((c): ContentBlock => ({ type: "tool_use", id: c.id, name: c.name, input: c.arguments }));
      addTurn(turns, "assistant", [...textBlocks(m), ...calls]);
    } else {
      if (!m.tool_call_id) throw new BadRequestError("a tool message lacks tool_call_id, which the anthropic API needs");
      const text = textOf(m.content, "anthropic");
      addTurn(turns, "user", [text ? { type: "tool_result", tool_use_id: m.tool_call_id, content: text } : { type: "tool_result", tool_use_id: m.tool_call_id }]);
    }
  }
  // A schema goes out as structured outputs (GA: `output_config.format`, no beta header); the
  // answer comes back as an ordinary text block holding the JSON. Without a schema there is no
  // native JSON mode, so the request asks in the system prompt.
  const schema = responseSchema(request);
  const json = schema ? undefined : jsonInstruction(request);
  if (json) system.push(json);

  const body: Record<string, unknown> = {
    model: target.upstream,
    max_tokens: completionLimit(request) ?? DEFAULT_MAX_TOKENS,
    messages: turns,
  };
  if (system.length > 0) body.system = system.join("\n\n");
  if (schema) body.output_config = { format: { type: "json_schema", schema: anthropicSchema(schema) } };
  // Anthropic's range is 0–1 where OpenAI's is 0–2; above 1 it refuses the request, so 1 is the nearest it serves.
  if (request.temperature !== undefined) body.temperature = Math.min(request.temperature, 1);
  if (request.top_p !== undefined) body.top_p = request.top_p;
  const stop = stopSequences(request);
  if (stop) body.stop_sequences = stop;
  const tools = functionTools(request, "anthropic");
  if (tools) {
    body.tools = tools.map((t) => ({
      name: t.name,
      ...(t.description === undefined ? {} : { description: t.description }),
      input_schema: t.parameters ?? { type: "object", properties: {} },
    }));
    const choice = anthropicToolChoice(request);
    if (choice) body.tool_choice = choice;
  }

  const headers: Record<string, string> = { "content-type": "application/json", "anthropic-version": ANTHROPIC_VERSION };
  if (target.apiKey) headers["x-api-key"] = target.apiKey;
  return { path: "/messages", headers, body: JSON.stringify(body) };
}

/** The Messages API requires user and assistant turns to alternate, so a message joins the previous turn of its role. */
function addTurn(turns: Turn[], role: Turn["role"], blocks: ContentBlock[]): void {
  if (blocks.length === 0) return;
  const last = turns[turns.length - 1];
  if (last?.role === role) last.content.push(...blocks);
  else turns.push({ role, content: blocks });
}

/** Anthropic refuses empty text blocks, so empty content gives none. */
function textBlocks(m: ChatMessage): ContentBlock[] {
  const text = textOf(m.content, "anthropic");
  return text ? [{ type: "text", text }] : [];
}

/**
 * A JSON Schema cut to what the Messages API's structured outputs accept, as the official SDKs
 * transform it: every object schema gets `additionalProperties: false` (which the API requires;
 * an answer without extra keys still meets the original schema), unsupported constraints leave
 * the schema and are appended to its `description` as "(minimum: 0, maximum: 1)", `oneOf`
 * becomes `anyOf`, and the root's `$schema` and `$id` are dropped. It recurses through
 * `properties`, `items`, `anyOf`/`allOf`/`oneOf` and `$defs`/`definitions`. The router checks
 * the answer against the original schema, so the moved constraints are still enforced.
 * An object whose `additionalProperties` is itself a schema (a map) cannot be expressed, and
 * is refused with a `BadRequestError` so that another candidate serves the job.
 */
export function anthropicSchema(schema: Record<string, unknown>): Record<string, unknown> {
  const { $schema: _schema, $id: _id, ...rest } = schema;
  return strictSchema(rest, "#");
}

function strictSchema(node: Record<string, unknown>, at: string): Record<string, unknown> {
  const sub = (s: unknown, path: string) => (isRecord(s) ? strictSchema(s, path) : s);
  const out: Record<string, unknown> = {};
  const moved: string[] = [];
  for (const [key, value] of Object.entries(node)) {
    if (SUBSCHEMA_MAPS.has(key) && isRecord(value)) {
      out[key] = Object.fromEntries(Object.entries(value).map(([name, s]) => [name, sub(s, `${at}/${key}/${name}`)]));
    } else if ((key === "anyOf" || key === "allOf" || key === "oneOf") && Array.isArray(value)) {
      out[key === "oneOf" && node.anyOf === undefined ? "anyOf" : key] = value.map((s, i) => sub(s, `${at}/${key}/${i}`));
    } else if (key === "items") {
      out.items = Array.isArray(value) ? value.map((s, i) => sub(s, `${at}/items/${i}`)) : sub(value, `${at}/items`);
    } else if (key === "additionalProperties") {
      if (isRecord(value)) {
        throw new BadRequestError(`the anthropic API's structured outputs need additionalProperties: false on every object, and the output schema gives it a schema at ${at}`);
      }
    } else if (UNSUPPORTED_CONSTRAINTS.has(key) && !(key === "minItems" && (value === 0 || value === 1)) && !(key === "format" && SUPPORTED_FORMATS.has(value))) {
      moved.push(`${key}: ${JSON.stringify(value)}`);
    } else {
      out[key] = value;
    }
  }
  if (isObjectSchema(node)) {
    // Closing an object whose required names are not among its properties would forbid them:
    // they are declared (any value) first, so the schema stays satisfiable.
    if (Array.isArray(node.required)) {
      const props = isRecord(out.properties) ? { ...out.properties } : {};
      for (const name of node.required) if (typeof name === "string" && !(name in props)) props[name] = {};
      out.properties = props;
    }
    out.additionalProperties = false;
  }
  if (moved.length > 0) {
    const note = `(${moved.join(", ")})`;
    out.description = typeof out.description === "string" && out.description !== "" ? `${out.description} ${note}` : note;
  }
  return out;
}

function isObjectSchema(node: Record<string, unknown>): boolean {
  const type = node.type;
  return type === "object" || (Array.isArray(type) && type.includes("object")) || isRecord(node.properties) || node.additionalProperties !== undefined;
}

function anthropicToolChoice(request: ChatRequest): Record<string, unknown> | undefined {
  const choice = toolChoice(request);
  if (choice?.kind === "none") return { type: "none" };
  const base =
    choice?.kind === "required" ? { type: "any" } : choice?.kind === "function" ? { type: "tool", name: choice.name } : { type: "auto" };
  if (request.parallel_tool_calls === false) return { ...base, disable_parallel_tool_use: true };
  return choice ? base : undefined;
}

export function fromResponse(reply: HttpReply, request: ChatRequest): Completion {
  if (reply.status < 200 || reply.status >= 300) throw errorFromReply(reply);
  const body = parseReply(reply, ResponseSchema, "an Anthropic message");
  let text: string | null = null;
  const toolCalls: OpenAiToolCall[] = [];
  for (const block of body.content) {
    if (block.type === "text" && block.text !== undefined) text = (text ?? "") + block.text;
    else if (block.type === "tool_use") {
      if (block.id === undefined || block.name === undefined) {
        throw new InvalidOutputError("provider response has a tool_use block without id or name", { status: reply.status });
      }
      toolCalls.push({ id: block.id, type: "function", function: { name: block.name, arguments: JSON.stringify(block.input ?? {}) } });
    }
  }
  const message = { role: "assistant" as const, content: text, ...(toolCalls.length > 0 ? { tool_calls: toolCalls } : {}) };
  const finish = body.stop_reason ? (FINISH_REASONS[body.stop_reason] ?? null) : null;
  const u = body.usage;
  // input_tokens leaves out the tokens read from and written to the cache, which are billed
  // too (at their own prices); OpenAI's prompt_tokens includes them. Thinking tokens are in
  // output_tokens and the API reports no count of their own, so they are priced as output.
  const read = u?.cache_read_input_tokens ?? 0;
  const written = u?.cache_creation_input_tokens ?? 0;
  const usage = u && normalUsage(u.input_tokens + read + written, u.output_tokens, undefined, { cached: read, cacheWrite: written });
  return completion(
    {
      id: body.id ?? "",
      object: "chat.completion",
      created: createdFrom(reply),
      model: body.model ?? "",
      choices: [{ index: 0, message, finish_reason: finish }],
    },
    usage,
    request,
  );
}

function errorFromReply(reply: HttpReply): ProviderError {
  const parsed = ErrorBodySchema.safeParse(parseErrorBody(reply.body));
  const type = parsed.success ? parsed.data.error.type : undefined;
  const detail = parsed.success ? parsed.data.error.message : undefined;
  return errorOfType(type, detail, `HTTP ${reply.status}${type ? ` ${type}` : ""}: ${detail ?? "no error message"}`, reply.status, reply.headers);
}

/** The error for Anthropic's error `type`, from an error status or an `error` event in a stream (status 200 then). */
function errorOfType(type: string | undefined, detail: string | undefined, message: string, status: number, headers: HttpReply["headers"]): ProviderError {
  switch (type) {
    case "rate_limit_error":
      return new RateLimitedError(message, { status, retryAfterMs: parseRetryAfter(headers) });
    case "overloaded_error":
    case "api_error":
      return new UnavailableError(message, { status });
    case "timeout_error":
      return new ProviderTimeoutError(message, { status });
    case "authentication_error":
    case "permission_error":
      return new AuthFailedError(message, { status });
    case "invalid_request_error":
      return new BadRequestError(message, { status, contextLength: status === 400 && isContextLengthMessage(detail ?? "") });
    case "not_found_error":
    case "request_too_large":
      return new BadRequestError(message, { status });
  }
  // An error event with a type this adapter does not know: the provider failed mid-answer.
  if (status === 200) return new UnavailableError(message, { status });
  return errorForStatus(status, message, headers);
}

/**
 * Whether an `invalid_request_error` says the prompt does not fit the context window.
 * Anthropic gives that no error code of its own, so this is the one place that reads message
 * text, matching its two known wordings: "prompt is too long: 208656 tokens > 200000 maximum"
 * and "input length and `max_tokens` exceed context limit: 178959 + 64000 > 200000, ...".
 */
export function isContextLengthMessage(message: string): boolean {
  return /^prompt is too long\b/i.test(message) || /exceed context limit/i.test(message);
}

/** The same body with `stream: true`: the answer comes as the Messages API's event stream. */
export function toStreamRequest(request: ChatRequest, target: ProviderTarget): HttpCall {
  const call = toRequest(request, target);
  return { ...call, headers: { ...call.headers, accept: "text/event-stream" }, body: `${call.body.slice(0, -1)},"stream":true}` };
}

/** The events this parser reads (message_start, content_block_start/delta, message_delta, message_stop, error); others (ping, content_block_stop, new ones) pass. */
const EventSchema = z.looseObject({
  type: z.string(),
  index: z.number().int().nonnegative().optional(),
  message: z.looseObject({ id: z.string().optional(), model: z.string().optional(), usage: z.record(z.string(), z.unknown()).optional() }).optional(),
  content_block: z.looseObject({ type: z.string(), id: z.string().optional(), name: z.string().optional() }).optional(),
  delta: z
    .looseObject({
      type: z.string().optional(),
      text: z.string().optional(),
      partial_json: z.string().optional(),
      stop_reason: z.string().nullable().optional(),
      stop_sequence: z.string().nullable().optional(),
    })
    .optional(),
  usage: z.record(z.string(), z.unknown()).nullable().optional(),
  error: z.looseObject({ type: z.string().optional(), message: z.string().optional() }).optional(),
});

interface BlockSoFar {
  readonly type: string;
  text: string;
  readonly id?: string | undefined;
  readonly name?: string | undefined;
  json: string;
  /** Its index among the answer's tool calls, as OpenAI numbers them. */
  readonly call: number;
}

class AnthropicStream implements StreamParser {
  readonly #request: ChatRequest;
  #id: string | undefined;
  #model: string | undefined;
  #usage: Record<string, unknown> = {};
  readonly #blocks: BlockSoFar[] = [];
  #calls = 0;
  #stop: string | null = null;
  #done = false;

  constructor(request: ChatRequest) {
    this.#request = request;
  }

  push(event: SseEvent): readonly StreamDelta[] {
    const parsed = EventSchema.safeParse(eventJson(event));
    if (!parsed.success) throw streamCutShort("an event it could read");
    const e = parsed.data;
    switch (e.type) {
      case "message_start":
        this.#id = e.message?.id;
        this.#model = e.message?.model;
        this.#usage = { ...e.message?.usage };
        return [];
      case "content_block_start": {
        const b = e.content_block;
        if (b === undefined || e.index === undefined) return [];
        const call = b.type === "tool_use" ? this.#calls++ : -1;
        this.#blocks[e.index] = { type: b.type, text: "", id: b.id, name: b.name, json: "", call };
        if (b.type !== "tool_use") return [];
        return [{ tool_calls: [{ index: call, id: b.id ?? "", type: "function", function: { name: b.name ?? "", arguments: "" } }] }];
      }
      case "content_block_delta": {
        const block = e.index === undefined ? undefined : this.#blocks[e.index];
        const d = e.delta;
        if (block === undefined || d === undefined) return [];
        if (d.type === "text_delta" && d.text) {
          block.text += d.text;
          return block.type === "text" ? [{ content: d.text }] : [];
        }
        if (d.type === "input_json_delta" && d.partial_json) {
          block.json += d.partial_json;
          return [{ tool_calls: [{ index: block.call, function: { arguments: d.partial_json } }] }];
        }
        return [];
      }
      case "message_delta":
        if (e.delta?.stop_reason) this.#stop = e.delta.stop_reason;
        // message_delta's usage counts are cumulative: each replaces the one before.
        if (e.usage) for (const [k, v] of Object.entries(e.usage)) if (v !== null) this.#usage[k] = v;
        return [];
      case "message_stop":
        this.#done = true;
        return [];
      case "error": {
        const type = e.error?.type;
        const detail = e.error?.message;
        throw errorOfType(type, detail, `stream error${type ? ` ${type}` : ""}: ${detail ?? "no error message"}`, 200, {});
      }
    }
    return [];
  }

  finish(headers: HttpReply["headers"]): Completion {
    if (!this.#done) throw streamCutShort("message_stop");
    const content = this.#blocks.filter((b) => b !== undefined).map((b) => {
      if (b.type === "tool_use") return { type: b.type, id: b.id, name: b.name, input: parseToolInput(b.json) };
      return b.type === "text" ? { type: b.type, text: b.text } : { type: b.type };
    });
    const body = { id: this.#id, type: "message", role: "assistant", model: this.#model, content, stop_reason: this.#stop, usage: this.#usage };
    return fromResponse({ status: 200, headers, body: JSON.stringify(body) }, this.#request);
  }
}

/** A tool call's streamed input: no fragments is an empty object, as the Messages API documents. */
function parseToolInput(json: string): unknown {
  if (json === "") return {};
  try {
    return JSON.parse(json);
  } catch {
    throw new InvalidOutputError("provider streamed tool_use input that is not JSON", { status: 200 });
  }
}

export const anthropicAdapter: Adapter = { dialect: "anthropic", toRequest, fromResponse, toStreamRequest, streamParser: (request) => new AnthropicStream(request) };

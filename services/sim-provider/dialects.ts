/**
 * The wire shapes the sim-provider speaks: OpenAI chat completions, Anthropic messages and
 * Gemini generateContent. Each dialect reads its request into the one `SimChatRequest` the
 * replies are built from (messages, limits, and each API's own structured-output, tool and
 * choice-count fields), and writes successes (text, tool calls, n choices) and errors with
 * the provider's real status codes and bodies; the server's behaviour and fault machinery is
 * shared by all three.
 */
import type { IncomingHttpHeaders } from "node:http";
import type { Reply, SimChatRequest, SimMessage, SimTool, SimToolChoice } from "./replies.ts";
import type { UsageDetails } from "./scenario.ts";
import { fromOpenApiSchema } from "./schema-value.ts";
import { isRecord } from "../../shared/json.ts";

/** A response to send as it is: status, JSON body, extra headers. */
export interface WireReply {
  readonly status: number;
  readonly body: string;
  readonly headers?: Record<string, string>;
}

export interface ParsedChat {
  readonly model: string;
  readonly request: SimChatRequest;
}

/** What a completion body shows of the model: pre-serialised, as it goes out on every success. */
export interface SimModel {
  readonly modelJson: string;
  readonly fingerprintJson: string;
  /** The usage parts the model reports (`usage_details`); undefined: none, and the usage is the plain one. */
  readonly usageDetails: UsageDetails | undefined;
}

/** A model's usage parts fitted to one call: cache reads, then writes, within the prompt. */
function partsOf(d: UsageDetails, prompt: number): { cached: number; written: number; reasoning: number } {
  const cached = Math.min(d.cached_tokens, prompt);
  return { cached, written: Math.min(d.cache_write_tokens, prompt - cached), reasoning: d.reasoning_tokens };
}

/** OpenAI's usage: the parts inside the totals, in its details objects. */
function openAiUsage(m: SimModel, prompt: number, completion: number): string {
  if (!m.usageDetails) return `{"prompt_tokens":${prompt},"completion_tokens":${completion},"total_tokens":${prompt + completion}}`;
  const { cached, reasoning } = partsOf(m.usageDetails, prompt);
  const out = completion + reasoning;
  return `{"prompt_tokens":${prompt},"completion_tokens":${out},"total_tokens":${prompt + out},"prompt_tokens_details":{"cached_tokens":${cached},"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":${reasoning},"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}`;
}

/** Anthropic's usage: input_tokens without the cache, the cache counts beside it, thinking inside output_tokens. */
function anthropicUsage(m: SimModel, prompt: number, completion: number): string {
  if (!m.usageDetails) return `{"input_tokens":${prompt},"output_tokens":${completion}}`;
  const { cached, written, reasoning } = partsOf(m.usageDetails, prompt);
  return `{"input_tokens":${prompt - cached - written},"cache_creation_input_tokens":${written},"cache_read_input_tokens":${cached},"output_tokens":${completion + reasoning}}`;
}

/** Gemini's usageMetadata: the cache inside promptTokenCount, thoughts counted apart from the candidates. */
function geminiUsage(m: SimModel, prompt: number, completion: number): string {
  if (!m.usageDetails) return `{"promptTokenCount":${prompt},"candidatesTokenCount":${completion},"totalTokenCount":${prompt + completion}}`;
  const { cached, reasoning } = partsOf(m.usageDetails, prompt);
  return `{"promptTokenCount":${prompt},"candidatesTokenCount":${completion},"totalTokenCount":${prompt + completion + reasoning},"cachedContentTokenCount":${cached},"thoughtsTokenCount":${reasoning}}`;
}

export interface SimDialect {
  /** Checks the parsed body (an object) and reads the model and request; the model comes from the path where the API puts it there. */
  parse(body: Record<string, unknown>, headers: IncomingHttpHeaders, pathModel: string | undefined): ParsedChat | WireReply;
  /** The API key the request presents, where this dialect expects it. */
  presentedKey(headers: IncomingHttpHeaders, query: string): string | undefined;
  tooLarge(): WireReply;
  notJson(): WireReply;
  notFound(message: string): WireReply;
  unknownModel(model: string): WireReply;
  unauthorized(presented: string | undefined): WireReply;
  /** The refusal when the prompt (and, where the API counts it, the completion limit) exceeds the window. */
  contextCheck(promptTokens: number, completionTokens: number, window: number): WireReply | undefined;
  rateLimited(model: string, retryAfterS: number): WireReply;
  serverError(): WireReply;
  /** The answer to the scenario's "503" fault: each API's own overload status. */
  overloaded(): WireReply;
  /**
   * The body of a success: `n` identical choices (candidates) of the reply, and the usage with
   * `completionTokens` already counting all of them. A template rather than JSON.stringify of a
   * nested object: this runs for every successful request.
   */
  completion(id: number, m: SimModel, reply: Reply, n: number, promptTokens: number, completionTokens: number): string;
  /** A 200 body that starts like a completion and is not JSON. */
  malformed(id: number): string;
  /**
   * A success as the dialect's event stream, the same answer as `completion` gives: `head`
   * goes out at once, each of `tokens` after the scenario's per-token delay, then `tail`.
   * Every string is whole SSE events.
   */
  stream(id: number, m: SimModel, reply: Reply, n: number, promptTokens: number, completionTokens: number, includeUsage: boolean): StreamFraming;
  /** The error event that breaks a stream off midway (`stream_fail_after_tokens`), as the API sends it after its 200. */
  streamError(): string;
}

export interface StreamFraming {
  readonly head: string;
  readonly tokens: readonly string[];
  readonly tail: string;
}

/**
 * The reply's text in the pieces a model would stream: each word with the spaces before it,
 * so the pieces join back to exactly the text.
 */
export function streamPieces(text: string): string[] {
  return text === "" ? [] : text.split(/(?<=\S)(?=\s)/);
}

/** A tool call's arguments in two pieces, as the APIs stream a call's JSON in fragments. */
function argumentPieces(args: string): string[] {
  const half = args.length >> 1;
  return half === 0 ? [args] : [args.slice(0, half), args.slice(half)];
}

const sse = (data: string) => `data: ${data}\n\n`;
const namedSse = (event: string, data: string) => `event: ${event}\ndata: ${data}\n\n`;

const MALFORMED = "<<simulated malformed body>>";


function positiveInt(v: unknown): boolean {
  return typeof v === "number" && Number.isInteger(v) && v > 0;
}

function openAiError(status: number, message: string, type = "invalid_request_error", param: string | null = null, code: string | null = null): WireReply {
  return { status, body: JSON.stringify({ error: { message, type, param, code } }) };
}

export const openaiDialect: SimDialect = {
  parse(body) {
    const messages = body.messages;
    if (!Array.isArray(messages)) return openAiError(400, "Missing required parameter: 'messages'.", undefined, "messages");
    if (messages.length === 0) {
      return openAiError(400, "Invalid 'messages': empty array. Expected an array with minimum length 1.", undefined, "messages", "empty_array");
    }
    for (const m of messages) {
      if (typeof m !== "object" || m === null) return openAiError(400, "Invalid 'messages': every message must be an object.", undefined, "messages");
    }
    if (typeof body.model !== "string") return openAiError(400, "Missing required parameter: 'model'.", undefined, "model");
    const request: MutableRequest = {
      messages: messages as SimMessage[],
      max_tokens: body.max_tokens,
      max_completion_tokens: body.max_completion_tokens,
    };
    if (body.stream === true) {
      request.stream = true;
      request.streamUsage = isRecord(body.stream_options) && body.stream_options.include_usage === true;
    }
    if (body.response_format !== undefined && body.response_format !== null) {
      const refusal = readOpenAiFormat(body.response_format, request);
      if (refusal) return refusal;
    }
    if (body.tools !== undefined || body.tool_choice !== undefined) {
      const refusal = readOpenAiTools(body.tools, body.tool_choice, request);
      if (refusal) return refusal;
    }
    if (body.n !== undefined && body.n !== null) {
      if (typeof body.n !== "number" || !Number.isInteger(body.n) || body.n < 1 || body.n > 128) {
        return openAiError(400, `Invalid 'n': expected an integer between 1 and 128, got ${JSON.stringify(body.n)}.`, undefined, "n", "invalid_value");
      }
      request.n = body.n;
    }
    return { model: body.model, request };
  },
  presentedKey(headers) {
    const h = headers.authorization;
    return h?.startsWith("Bearer ") ? h.slice("Bearer ".length) : undefined;
  },
  tooLarge: () => openAiError(413, "The request body is too large.", undefined, "messages"),
  notJson: () => openAiError(400, "We could not parse the JSON body of your request."),
  notFound: (message) => openAiError(404, message),
  unknownModel: (model) => openAiError(404, `The model \`${model}\` does not exist or you do not have access to it.`, undefined, null, "model_not_found"),
  unauthorized(presented) {
    const message = presented
      ? "Incorrect API key provided."
      : "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).";
    return openAiError(401, message, undefined, null, "invalid_api_key");
  },
  contextCheck(prompt, completion, window) {
    if (prompt + completion <= window) return undefined;
    return openAiError(
      400,
      `This model's maximum context length is ${window} tokens. However, you requested ${prompt + completion} tokens (${prompt} in the messages, ${completion} in the completion). Please reduce the length of the messages or completion.`,
      undefined,
      "messages",
      "context_length_exceeded",
    );
  },
  rateLimited: (model, after) => ({
    ...openAiError(429, `Rate limit reached for ${model}. Please try again in ${after}s.`, "requests", null, "rate_limit_exceeded"),
    headers: { "retry-after": String(after) },
  }),
  serverError: () => openAiError(500, "The server had an error while processing your request. Sorry about that!", "server_error"),
  overloaded: () => openAiError(503, "The server is overloaded", "server_error"),
  completion(id, m, reply, n, prompt, completion) {
    let choices = openAiChoice(id, reply, 0);
    for (let i = 1; i < n; i++) choices += `,${openAiChoice(id, reply, i)}`;
    return `{"id":"chatcmpl-sim-${id}","object":"chat.completion","created":${Math.floor(Date.now() / 1000)},"model":${m.modelJson},"choices":[${choices}],"usage":${openAiUsage(m, prompt, completion)},"system_fingerprint":${m.fingerprintJson}}`;
  },
  malformed: (id) => `{"id":"chatcmpl-sim-${id}","object":"chat.completion","choices":[{"index":0,"message":${MALFORMED}`,
  stream(id, m, reply, n, prompt, completion, includeUsage) {
    const base = `{"id":"chatcmpl-sim-${id}","object":"chat.completion.chunk","created":${Math.floor(Date.now() / 1000)},"model":${m.modelJson},"system_fingerprint":${m.fingerprintJson},"choices":[`;
    const chunk = (index: number, delta: string, finish: string | null = null) => sse(`${base}{"index":${index},"delta":${delta},"logprobs":null,"finish_reason":${finish === null ? "null" : `"${finish}"`}}]}`);
    let head = "";
    const tokens: string[] = [];
    let tail = "";
    const call = reply.toolCall;
    for (let i = 0; i < n; i++) {
      head += chunk(i, `{"role":"assistant","content":${call ? "null" : '""'},"refusal":null}`);
      if (call) {
        tokens.push(chunk(i, `{"tool_calls":[{"index":0,"id":"call_sim_${id}_${i}","type":"function","function":{"name":${JSON.stringify(call.name)},"arguments":""}}]}`));
        for (const piece of argumentPieces(call.arguments)) tokens.push(chunk(i, `{"tool_calls":[{"index":0,"function":{"arguments":${JSON.stringify(piece)}}}]}`));
      } else {
        for (const piece of streamPieces(reply.content)) tokens.push(chunk(i, `{"content":${JSON.stringify(piece)}}`));
      }
      tail += chunk(i, "{}", call ? "tool_calls" : reply.finish_reason);
    }
    if (includeUsage) tail += sse(`${base}],"usage":${openAiUsage(m, prompt, completion)}}`);
    return { head, tokens, tail: `${tail}data: [DONE]\n\n` };
  },
  streamError: () => sse(`{"error":{"message":"The server had an error while processing your request. Sorry about that!","type":"server_error","param":null,"code":null}}`),
};

type MutableRequest = { -readonly [K in keyof SimChatRequest]: SimChatRequest[K] };

/** `response_format`: `json_object`, or `json_schema` with `{name, schema, strict?}`; `text` asks for nothing. */
function readOpenAiFormat(format: unknown, request: MutableRequest): WireReply | undefined {
  const type = isRecord(format) ? format.type : undefined;
  if (type === "text") return undefined;
  if (type === "json_object") {
    request.json = true;
    return undefined;
  }
  if (type === "json_schema" && isRecord(format)) {
    const spec = format.json_schema;
    if (!isRecord(spec) || typeof spec.name !== "string") {
      return openAiError(400, "Missing required parameter: 'response_format.json_schema.name'.", undefined, "response_format.json_schema.name", "missing_required_parameter");
    }
    request.json = true;
    if (isRecord(spec.schema)) request.schema = spec.schema;
    return undefined;
  }
  return openAiError(400, `Invalid value: ${JSON.stringify(type)}. Supported values are: 'json_object', 'json_schema', and 'text'.`, undefined, "response_format.type", "invalid_value");
}

/** `tools: [{type: "function", function: {name, parameters}}]` and `tool_choice`: "none" | "auto" | "required" | `{type: "function", function: {name}}`. */
function readOpenAiTools(rawTools: unknown, choice: unknown, request: MutableRequest): WireReply | undefined {
  const tools: SimTool[] = [];
  if (rawTools !== undefined && rawTools !== null) {
    if (!Array.isArray(rawTools)) return openAiError(400, "Invalid type for 'tools': expected an array.", undefined, "tools", "invalid_type");
    for (const [i, t] of rawTools.entries()) {
      if (!isRecord(t)) return openAiError(400, `Invalid type for 'tools[${i}]': expected an object.`, undefined, `tools[${i}]`, "invalid_type");
      if (t.type !== "function") continue;
      const fn = t.function;
      if (!isRecord(fn) || typeof fn.name !== "string") {
        return openAiError(400, `Missing required parameter: 'tools[${i}].function.name'.`, undefined, `tools[${i}].function.name`, "missing_required_parameter");
      }
      tools.push({ name: fn.name, description: typeof fn.description === "string" ? fn.description : undefined, parameters: fn.parameters });
    }
  }
  request.tools = tools;
  if (choice === undefined || choice === null || choice === "auto" || choice === "none") return undefined;
  if (tools.length === 0) {
    return openAiError(400, "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.", undefined, "tool_choice");
  }
  if (choice === "required") {
    request.toolChoice = { kind: "any" };
    return undefined;
  }
  if (isRecord(choice) && choice.type === "function" && isRecord(choice.function) && typeof choice.function.name === "string") {
    const name = choice.function.name;
    if (!tools.some((t) => t.name === name)) {
      return openAiError(400, `Invalid value for 'tool_choice': function '${name}' is not one of the functions in 'tools'.`, undefined, "tool_choice");
    }
    request.toolChoice = { kind: "tool", name };
    return undefined;
  }
  if (isRecord(choice) && choice.type === "allowed_tools") return undefined;
  return openAiError(400, `Invalid value for 'tool_choice': ${JSON.stringify(choice)}.`, undefined, "tool_choice", "invalid_value");
}

function openAiChoice(id: number, reply: Reply, index: number): string {
  const call = reply.toolCall;
  if (call) {
    return `{"index":${index},"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_sim_${id}_${index}","type":"function","function":{"name":${JSON.stringify(call.name)},"arguments":${JSON.stringify(call.arguments)}}}]},"finish_reason":"tool_calls"}`;
  }
  return `{"index":${index},"message":{"role":"assistant","content":${JSON.stringify(reply.content)}},"finish_reason":"${reply.finish_reason}"}`;
}

/** Anthropic's error `type` for each status it answers with. */
const ANTHROPIC_ERROR_TYPES: Readonly<Record<number, string>> = {
  400: "invalid_request_error",
  401: "authentication_error",
  403: "permission_error",
  404: "not_found_error",
  413: "request_too_large",
  429: "rate_limit_error",
  500: "api_error",
  529: "overloaded_error",
};

function anthropicError(status: number, message: string): WireReply {
  return { status, body: JSON.stringify({ type: "error", error: { type: ANTHROPIC_ERROR_TYPES[status] ?? "api_error", message } }) };
}

/** A system prompt asking for a JSON object counts as JSON mode: a real model told so answers with one. */
const ASKS_FOR_JSON = /\bJSON object\b/i;

export const anthropicDialect: SimDialect = {
  parse(body, headers) {
    if (headers["anthropic-version"] === undefined) return anthropicError(400, "anthropic-version: header is required");
    if (typeof body.model !== "string") return anthropicError(400, "model: Field required");
    if (!positiveInt(body.max_tokens)) return anthropicError(400, "max_tokens: Field required");
    const messages = body.messages;
    if (!Array.isArray(messages) || messages.length === 0) return anthropicError(400, "messages: at least one message is required");
    for (const m of messages) {
      if (!isRecord(m)) return anthropicError(400, "messages: every message must be an object");
      if (m.role !== "user" && m.role !== "assistant") {
        return anthropicError(400, `messages: Unexpected role ${JSON.stringify(m.role)}. The Messages API accepts a top-level \`system\` parameter, not "system" as an input message role.`);
      }
    }
    const system = systemText(body.system);
    const request: MutableRequest = {
      messages: system ? [{ role: "system", content: system }, ...(messages as SimMessage[])] : (messages as SimMessage[]),
      max_tokens: body.max_tokens,
    };
    const refusal = readAnthropicFormat(body, system, request) ?? (body.tools !== undefined || body.tool_choice !== undefined ? readAnthropicTools(body.tools, body.tool_choice, request) : undefined);
    if (refusal) return refusal;
    if (body.stream === true) request.stream = true;
    return { model: body.model, request };
  },
  presentedKey: (headers) => single(headers["x-api-key"]),
  tooLarge: () => anthropicError(413, "Request exceeds the maximum allowed number of bytes."),
  notJson: () => anthropicError(400, "There was an issue with the format or content of your request: the body is not valid JSON."),
  notFound: (message) => anthropicError(404, message),
  unknownModel: (model) => anthropicError(404, `model: ${model}`),
  unauthorized: (presented) => anthropicError(401, presented ? "invalid x-api-key" : "x-api-key header is required"),
  contextCheck(prompt, completion, window) {
    if (prompt > window) return anthropicError(400, `prompt is too long: ${prompt} tokens > ${window} maximum`);
    if (prompt + completion > window) {
      return anthropicError(400, `input length and \`max_tokens\` exceed context limit: ${prompt} + ${completion} > ${window}, decrease input length or \`max_tokens\` and try again`);
    }
    return undefined;
  },
  rateLimited: (_model, after) => ({
    ...anthropicError(429, "This request would exceed your organization's rate limit. Please try again later."),
    headers: { "retry-after": String(after) },
  }),
  serverError: () => anthropicError(500, "Internal server error"),
  overloaded: () => anthropicError(529, "Overloaded"),
  completion(id, m, reply, _n, prompt, completion) {
    const call = reply.toolCall;
    if (call) {
      return `{"id":"msg_sim_${id}","type":"message","role":"assistant","model":${m.modelJson},"content":[{"type":"tool_use","id":"toolu_sim_${id}","name":${JSON.stringify(call.name)},"input":${call.arguments}}],"stop_reason":"tool_use","stop_sequence":null,"usage":${anthropicUsage(m, prompt, completion)}}`;
    }
    const stop = reply.finish_reason === "length" ? "max_tokens" : "end_turn";
    return `{"id":"msg_sim_${id}","type":"message","role":"assistant","model":${m.modelJson},"content":[{"type":"text","text":${JSON.stringify(reply.content)}}],"stop_reason":"${stop}","stop_sequence":null,"usage":${anthropicUsage(m, prompt, completion)}}`;
  },
  malformed: (id) => `{"id":"msg_sim_${id}","type":"message","role":"assistant","content":${MALFORMED}`,
  stream(id, m, reply, _n, prompt, completion) {
    // message_start carries the input side with no output yet; message_delta's usage is the cumulative whole.
    const start = `{"type":"message_start","message":{"id":"msg_sim_${id}","type":"message","role":"assistant","model":${m.modelJson},"content":[],"stop_reason":null,"stop_sequence":null,"usage":${anthropicUsage(m, prompt, 0).replace(/"output_tokens":\d+/, '"output_tokens":0')}}}`;
    let head = namedSse("message_start", start);
    const tokens: string[] = [];
    const call = reply.toolCall;
    if (call) {
      tokens.push(namedSse("content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_sim_${id}","name":${JSON.stringify(call.name)},"input":{}}}`));
      for (const piece of argumentPieces(call.arguments)) {
        tokens.push(namedSse("content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":${JSON.stringify(piece)}}}`));
      }
    } else {
      head += namedSse("content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`);
      for (const piece of streamPieces(reply.content)) {
        tokens.push(namedSse("content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":${JSON.stringify(piece)}}}`));
      }
    }
    head += namedSse("ping", `{"type":"ping"}`);
    const stop = call ? "tool_use" : reply.finish_reason === "length" ? "max_tokens" : "end_turn";
    const tail =
      namedSse("content_block_stop", `{"type":"content_block_stop","index":0}`) +
      namedSse("message_delta", `{"type":"message_delta","delta":{"stop_reason":"${stop}","stop_sequence":null},"usage":${anthropicUsage(m, prompt, completion)}}`) +
      namedSse("message_stop", `{"type":"message_stop"}`);
    return { head, tokens, tail };
  },
  streamError: () => namedSse("error", `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`),
};

/**
 * The answer format: `output_config.format` (`{type: "json_schema", schema}`, current), the older
 * top-level `output_format`, or a system prompt asking for a JSON object, whose schema, if it
 * gives one after "JSON Schema:", is read from the text.
 */
function readAnthropicFormat(body: Record<string, unknown>, system: string, request: MutableRequest): WireReply | undefined {
  const config = body.output_config;
  const format = isRecord(config) && config.format !== undefined ? config.format : body.output_format;
  const where = isRecord(config) && config.format !== undefined ? "output_config.format" : "output_format";
  if (format !== undefined && format !== null) {
    if (!isRecord(format) || format.type !== "json_schema") return anthropicError(400, `${where}.type: Input should be 'json_schema'`);
    if (!isRecord(format.schema)) return anthropicError(400, `${where}.schema: Field required`);
    request.json = true;
    request.schema = format.schema;
    return undefined;
  }
  if (system && ASKS_FOR_JSON.test(system)) {
    request.json = true;
    const schema = schemaInText(system);
    if (schema !== undefined) request.schema = schema;
  }
  return undefined;
}

/** The JSON object after "JSON Schema:" in an instruction, or undefined when there is none that parses. */
export function schemaInText(text: string): Record<string, unknown> | undefined {
  const at = text.search(SCHEMA_LEAD);
  if (at === -1) return undefined;
  const start = text.indexOf("{", at);
  if (start === -1) return undefined;
  let depth = 0;
  let inString = false;
  for (let i = start; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === "{") depth++;
    else if (c === "}" && --depth === 0) {
      try {
        const parsed: unknown = JSON.parse(text.slice(start, i + 1));
        return isRecord(parsed) ? parsed : undefined;
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}

const SCHEMA_LEAD = /JSON Schema:/i;

/** `tools: [{name, input_schema}]` (server tools, which have no input_schema, are skipped) and `tool_choice`: auto | any | tool | none. */
function readAnthropicTools(rawTools: unknown, choice: unknown, request: MutableRequest): WireReply | undefined {
  const tools: SimTool[] = [];
  if (rawTools !== undefined) {
    if (!Array.isArray(rawTools)) return anthropicError(400, "tools: Input should be a valid list");
    for (const [i, t] of rawTools.entries()) {
      if (!isRecord(t) || typeof t.name !== "string") return anthropicError(400, `tools.${i}.name: Field required`);
      if (t.input_schema === undefined) continue;
      tools.push({ name: t.name, description: typeof t.description === "string" ? t.description : undefined, parameters: t.input_schema });
    }
  }
  request.tools = tools;
  if (choice === undefined) return undefined;
  if (!isRecord(choice)) return anthropicError(400, "tool_choice: Input should be an object");
  let toolChoice: SimToolChoice | undefined;
  if (choice.type === "any") toolChoice = { kind: "any" };
  else if (choice.type === "tool") {
    if (typeof choice.name !== "string") return anthropicError(400, "tool_choice.tool.name: Field required");
    const name = choice.name;
    if (!tools.some((t) => t.name === name)) return anthropicError(400, `tool_choice: tool '${name}' is not among the tools provided`);
    toolChoice = { kind: "tool", name };
  } else if (choice.type !== "auto" && choice.type !== "none") {
    return anthropicError(400, "tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'");
  }
  if (toolChoice && tools.length === 0) return anthropicError(400, "tool_choice: a tool choice of 'any' or 'tool' needs tools");
  if (toolChoice) request.toolChoice = toolChoice;
  return undefined;
}

/** `system` as a string or as an array of text blocks. */
function systemText(system: unknown): string {
  if (typeof system === "string") return system;
  if (!Array.isArray(system)) return "";
  return system.map((b: unknown) => (isRecord(b) && typeof b.text === "string" ? b.text : "")).join("\n");
}

function single(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** google.rpc.Status names for the HTTP statuses the Gemini API answers with. */
const GOOGLE_STATUS: Readonly<Record<number, string>> = {
  400: "INVALID_ARGUMENT",
  401: "UNAUTHENTICATED",
  403: "PERMISSION_DENIED",
  404: "NOT_FOUND",
  429: "RESOURCE_EXHAUSTED",
  500: "INTERNAL",
  503: "UNAVAILABLE",
};

function googleError(code: number, message: string, details?: unknown[]): WireReply {
  const error = { code, message, status: GOOGLE_STATUS[code] ?? "UNKNOWN", ...(details ? { details } : {}) };
  return { status: code, body: JSON.stringify({ error }) };
}

export const geminiDialect: SimDialect = {
  parse(body, _headers, pathModel) {
    const contents = body.contents;
    if (!Array.isArray(contents) || contents.length === 0) return googleError(400, "* GenerateContentRequest.contents: contents is not specified");
    const messages: SimMessage[] = [];
    const system = body.systemInstruction;
    if (isRecord(system) && Array.isArray(system.parts)) messages.push({ role: "system", content: system.parts });
    for (const c of contents) {
      if (!isRecord(c) || !Array.isArray(c.parts) || c.parts.length === 0) {
        return googleError(400, "* GenerateContentRequest.contents: contents.parts must not be empty.");
      }
      if (c.role !== "user" && c.role !== "model") return googleError(400, "Please use a valid role: user, model.");
      messages.push({ role: c.role === "model" ? "assistant" : "user", content: c.parts });
    }
    const config = isRecord(body.generationConfig) ? body.generationConfig : {};
    const request: MutableRequest = { messages, max_tokens: config.maxOutputTokens };
    if (config.responseMimeType === "application/json") {
      request.json = true;
      if (isRecord(config.responseJsonSchema)) request.schema = config.responseJsonSchema;
      else if (isRecord(config.responseSchema)) request.schema = fromOpenApiSchema(config.responseSchema);
    } else if (config.responseSchema !== undefined || config.responseJsonSchema !== undefined) {
      return googleError(400, "* GenerationConfig.response_schema: response_mime_type must be application/json (or text/x.enum) when a response schema is set.");
    }
    if (config.candidateCount !== undefined) {
      const n = config.candidateCount;
      if (typeof n !== "number" || !Number.isInteger(n) || n < 1 || n > 8) {
        return googleError(400, "* GenerationConfig.candidate_count: candidate_count must be between 1 and 8.");
      }
      request.n = n;
    }
    if (body.tools !== undefined) {
      const refusal = readGeminiTools(body.tools, body.toolConfig, request);
      if (refusal) return refusal;
    }
    return { model: pathModel ?? "", request };
  },
  presentedKey(headers, query) {
    const header = single(headers["x-goog-api-key"]);
    if (header !== undefined || query === "") return header;
    return new URLSearchParams(query).get("key") ?? undefined;
  },
  tooLarge: () => googleError(400, "Request payload size exceeds the limit."),
  notJson: () => googleError(400, "Invalid JSON payload received."),
  notFound: (message) => googleError(404, message),
  unknownModel: (model) =>
    googleError(404, `models/${model} is not found for API version v1beta, or is not supported for generateContent. Call ListModels to see the list of available models and their supported methods.`),
  unauthorized(presented) {
    if (presented === undefined) {
      return googleError(403, "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.");
    }
    return googleError(400, "API key not valid. Please pass a valid API key.", [
      { "@type": "type.googleapis.com/google.rpc.ErrorInfo", reason: "API_KEY_INVALID", domain: "googleapis.com", metadata: { service: "generativelanguage.googleapis.com" } },
    ]);
  },
  // Gemini counts only the input against the window; maxOutputTokens is capped, not refused.
  contextCheck(prompt, _completion, window) {
    if (prompt <= window) return undefined;
    return googleError(400, `The input token count (${prompt}) exceeds the maximum number of tokens allowed (${window}).`);
  },
  // Gemini sends no Retry-After header: the delay rides in google.rpc.RetryInfo.
  rateLimited: (_model, after) =>
    googleError(429, "You exceeded your current quota, please check your plan and billing details.", [
      { "@type": "type.googleapis.com/google.rpc.RetryInfo", retryDelay: `${after}s` },
    ]),
  serverError: () => googleError(500, "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting"),
  overloaded: () => googleError(503, "The model is overloaded. Please try again later."),
  completion(id, m, reply, n, prompt, completion) {
    const finish = reply.finish_reason === "length" ? "MAX_TOKENS" : "STOP";
    const part = reply.toolCall ? `{"functionCall":{"name":${JSON.stringify(reply.toolCall.name)},"args":${reply.toolCall.arguments}}}` : `{"text":${JSON.stringify(reply.content)}}`;
    let candidates = "";
    for (let i = 0; i < n; i++) candidates += `${i === 0 ? "" : ","}{"content":{"parts":[${part}],"role":"model"},"finishReason":"${finish}","index":${i}}`;
    return `{"candidates":[${candidates}],"usageMetadata":${geminiUsage(m, prompt, completion)},"modelVersion":${m.modelJson},"responseId":"sim-${id}"}`;
  },
  malformed: (id) => `{"candidates":[{"content":{"parts":${MALFORMED}],"responseId":"sim-${id}"`,
  stream(id, m, reply, n, prompt, completion) {
    // Each event is a whole GenerateContentResponse with the next parts; the last one carries the finish reason and the usage.
    const chunk = (parts: string, extra = "", usage = "") =>
      `data: {"candidates":[${Array.from({ length: n }, (_, i) => `{"content":{"parts":[${parts}],"role":"model"}${extra},"index":${i}}`).join(",")}]${usage},"modelVersion":${m.modelJson},"responseId":"sim-${id}"}\r\n\r\n`;
    const tokens = reply.toolCall
      ? [chunk(`{"functionCall":{"name":${JSON.stringify(reply.toolCall.name)},"args":${reply.toolCall.arguments}}}`)]
      : streamPieces(reply.content).map((piece) => chunk(`{"text":${JSON.stringify(piece)}}`));
    const finish = reply.finish_reason === "length" ? "MAX_TOKENS" : "STOP";
    // The closing event adds no text (an empty part would turn a tool call's null content into "").
    return { head: "", tokens, tail: chunk(reply.toolCall ? "" : `{"text":""}`, `,"finishReason":"${finish}"`, `,"usageMetadata":${geminiUsage(m, prompt, completion)}`) };
  },
  streamError: () => `data: {"error":{"code":503,"message":"The model is overloaded. Please try again later.","status":"UNAVAILABLE"}}\r\n\r\n`,
};

/**
 * `tools: [{functionDeclarations: [{name, parameters | parametersJsonSchema}]}]` and
 * `toolConfig.functionCallingConfig`: mode ANY (optionally `allowedFunctionNames`) forces a call;
 * AUTO, NONE and VALIDATED leave the model free to answer in text.
 */
function readGeminiTools(rawTools: unknown, toolConfig: unknown, request: MutableRequest): WireReply | undefined {
  if (!Array.isArray(rawTools)) return googleError(400, "Invalid value at 'tools' (type.googleapis.com/google.ai.generativelanguage.v1beta.Tool): expected a list.");
  const tools: SimTool[] = [];
  for (const t of rawTools) {
    const declarations = isRecord(t) ? t.functionDeclarations : undefined;
    if (!Array.isArray(declarations)) continue;
    for (const d of declarations) {
      if (!isRecord(d) || typeof d.name !== "string") return googleError(400, "* GenerateContentRequest.tools[0].function_declarations[0].name: Name cannot be empty.");
      const parameters = isRecord(d.parametersJsonSchema) ? d.parametersJsonSchema : isRecord(d.parameters) ? fromOpenApiSchema(d.parameters) : undefined;
      tools.push({ name: d.name, description: typeof d.description === "string" ? d.description : undefined, parameters });
    }
  }
  request.tools = tools;
  const config = isRecord(toolConfig) && isRecord(toolConfig.functionCallingConfig) ? toolConfig.functionCallingConfig : undefined;
  if (config?.mode !== "ANY") return undefined;
  const names = Array.isArray(config.allowedFunctionNames) ? config.allowedFunctionNames.filter((x): x is string => typeof x === "string") : undefined;
  for (const name of names ?? []) {
    if (!tools.some((t) => t.name === name)) {
      return googleError(400, `* GenerateContentRequest.tool_config.function_calling_config.allowed_function_names: function ${name} is not declared.`);
    }
  }
  if (tools.length > 0) request.toolChoice = names && names.length > 0 ? { kind: "any", names } : { kind: "any" };
  return undefined;
}

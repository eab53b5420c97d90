/**
 * The `gemini` dialect: Google's Gemini API, `POST /models/{model}:generateContent` relative to
 * a base URL such as `https://generativelanguage.googleapis.com/v1beta`.
 */
import { z } from "zod";
import type { ChatRequest } from "../contract/job.ts";
import {
  completion,
  completionLimit,
  createdFrom,
  eventJson,
  streamCutShort,
  functionTools,
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
import { isRecord } from "../json.ts";
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
import type { Adapter, Completion, HttpCall, HttpReply, ProviderTarget, SseEvent, StreamDelta, StreamParser } from "./types.ts";

type Part =
  | { text: string }
  | { functionCall: { name: string; args: Record<string, unknown> }; thoughtSignature?: string }
  | { functionResponse: { name: string; response: Record<string, unknown> } };

interface Content {
  role: "user" | "model";
  parts: Part[];
}

/** Only what Switchyard reads; a new part type or field breaks nothing. */
const ResponseSchema = z.looseObject({
  responseId: z.string().optional(),
  modelVersion: z.string().optional(),
  candidates: z
    .array(
      z.looseObject({
        content: z
          .looseObject({
            parts: z
              .array(
                z.looseObject({
                  text: z.string().optional(),
                  thought: z.boolean().optional(),
                  thoughtSignature: z.string().optional(),
                  functionCall: z.looseObject({ name: z.string(), args: z.record(z.string(), z.unknown()).optional() }).optional(),
                }),
              )
              .optional(),
          })
          .optional(),
        finishReason: z.string().optional(),
      }),
    )
    .optional(),
  promptFeedback: z.looseObject({ blockReason: z.string().optional() }).optional(),
  usageMetadata: z
    .looseObject({
      promptTokenCount: z.number().int().nonnegative().optional(),
      candidatesTokenCount: z.number().int().nonnegative().optional(),
      thoughtsTokenCount: z.number().int().nonnegative().optional(),
      cachedContentTokenCount: z.number().int().nonnegative().optional(),
      totalTokenCount: z.number().int().nonnegative().optional(),
    })
    .optional(),
});

/** google.rpc.Status, as every Google API sends it. */
const ErrorBodySchema = z.looseObject({
  error: z.looseObject({
    code: z.number().optional(),
    message: z.string().optional(),
    status: z.string().optional(),
    details: z.array(z.looseObject({ "@type": z.string().optional(), reason: z.string().optional(), retryDelay: z.string().optional() })).optional(),
  }),
});

const FINISH_REASONS: Readonly<Record<string, string>> = {
  STOP: "stop",
  MAX_TOKENS: "length",
  SAFETY: "content_filter",
  RECITATION: "content_filter",
  BLOCKLIST: "content_filter",
  PROHIBITED_CONTENT: "content_filter",
  SPII: "content_filter",
  IMAGE_SAFETY: "content_filter",
};

/**
 * The JSON-Schema keywords Gemini's `Schema` (an OpenAPI 3.0 subset, which tool parameters
 * take) has fields for. It refuses the whole request on any other, `additionalProperties` and
 * `$schema` included, so the rest are dropped: the router still checks the tool's arguments.
 */
const SCHEMA_KEYWORDS = new Set([
  "type", "format", "title", "description", "nullable", "enum", "default", "example",
  "minimum", "maximum", "minLength", "maxLength", "pattern",
  "minItems", "maxItems", "required", "minProperties", "maxProperties", "propertyOrdering",
]);

/** Google's own OpenAI-compatible endpoint carries the thought signature of a tool call here; Gemini 3 refuses a replayed call without it. */
const SIGNATURE_FIELD = "extra_content";

export function toRequest(request: ChatRequest, target: ProviderTarget): HttpCall {
  const system: string[] = [];
  const contents: Content[] = [];
  // Gemini names a function response by the function, OpenAI by the call id.
  const callNames = new Map<string, string>();
  for (const m of request.messages) {
    if (m.role === "system" || m.role === "developer") {
      const text = textOf(m.content, "gemini");
      if (text) system.push(text);
    } else if (m.role === "user") {
      addContent(contents, "user", textParts(textOf(m.content, "gemini")));
    } else if (m.role === "assistant") {
      const calls = toolCallsOf(m, "gemini").map((c): Part => {
        callNames.set(c.id, c.name);
        const signature = thoughtSignatureOf(c.raw);
        return { functionCall: { name: c.name, args: c.arguments }, ...(signature === undefined ? {} : { thoughtSignature: signature }) };
      });
      addContent(contents, "model", [...textParts(textOf(m.content, "gemini")), ...calls]);
    } else {
      const name = m.tool_call_id === undefined ? undefined : callNames.get(m.tool_call_id);
      if (name === undefined) throw new BadRequestError(`tool message ${m.tool_call_id ?? "without tool_call_id"} answers no earlier tool call, and the gemini API needs the function name`);
      addContent(contents, "user", [{ functionResponse: { name, response: { content: textOf(m.content, "gemini") } } }]);
    }
  }

  const body: Record<string, unknown> = { contents };
  if (system.length > 0) body.systemInstruction = { parts: [{ text: system.join("\n\n") }] };
  const config = generationConfig(request);
  if (Object.keys(config).length > 0) body.generationConfig = config;
  const tools = functionTools(request, "gemini");
  if (tools) {
    body.tools = [
      {
        functionDeclarations: tools.map((t) => {
          const parameters = t.parameters && geminiSchema(t.parameters);
          return {
            name: t.name,
            ...(t.description === undefined ? {} : { description: t.description }),
            // Gemini refuses an object schema without properties; a tool taking no arguments declares none.
            ...(parameters && isRecord(parameters.properties) && Object.keys(parameters.properties).length > 0 ? { parameters } : {}),
          };
        }),
      },
    ];
    const choice = toolChoice(request);
    if (choice) {
      body.toolConfig = {
        functionCallingConfig:
          choice.kind === "function"
            ? { mode: "ANY", allowedFunctionNames: [choice.name] }
            : { mode: choice.kind === "required" ? "ANY" : choice.kind.toUpperCase() },
      };
    }
  }

  const headers: Record<string, string> = { "content-type": "application/json" };
  if (target.apiKey) headers["x-goog-api-key"] = target.apiKey;
  return { path: `/models/${encodeURIComponent(target.upstream)}:generateContent`, headers, body: JSON.stringify(body) };
}

/** Parallel function responses must share one turn, so a content joins the previous one of its role. */
function addContent(contents: Content[], role: Content["role"], parts: Part[]): void {
  if (parts.length === 0) return;
  const last = contents[contents.length - 1];
  if (last?.role === role) last.parts.push(...parts);
  else contents.push({ role, parts });
}

function textParts(text: string): Part[] {
  return text ? [{ text }] : [];
}

function thoughtSignatureOf(call: Readonly<Record<string, unknown>>): string | undefined {
  const extra = call[SIGNATURE_FIELD];
  const google = isRecord(extra) ? extra.google : undefined;
  return isRecord(google) && typeof google.thought_signature === "string" ? google.thought_signature : undefined;
}

function generationConfig(request: ChatRequest): Record<string, unknown> {
  const config: Record<string, unknown> = {};
  if (request.temperature !== undefined) config.temperature = request.temperature;
  if (request.top_p !== undefined) config.topP = request.top_p;
  const limit = completionLimit(request);
  if (limit !== undefined) config.maxOutputTokens = limit;
  const stop = stopSequences(request);
  if (stop) config.stopSequences = stop;
  const format = request.response_format?.type;
  if (format === "json_object" || format === "json_schema") {
    config.responseMimeType = "application/json";
    // responseJsonSchema takes JSON Schema as it is (responseSchema, the OpenAPI subset, would
    // lose additionalProperties, $ref and more); the API requires the MIME type beside it.
    const schema = responseSchema(request);
    if (schema) {
      const { $schema: _schema, $id: _id, ...rest } = schema;
      config.responseJsonSchema = rest;
    }
  }
  return config;
}

/** A JSON Schema cut down to what Gemini accepts (see `SCHEMA_KEYWORDS`); `["x", "null"]` types become `nullable`, `const` a one-value `enum`. */
export function geminiSchema(schema: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(schema)) {
    if (key === "properties" && isRecord(value)) {
      out.properties = Object.fromEntries(Object.entries(value).map(([name, s]) => [name, isRecord(s) ? geminiSchema(s) : s]));
    } else if (key === "items" && isRecord(value)) {
      out.items = geminiSchema(value);
    } else if (key === "anyOf" && Array.isArray(value)) {
      out.anyOf = value.map((s: unknown) => (isRecord(s) ? geminiSchema(s) : s));
    } else if (key === "type" && Array.isArray(value)) {
      const types = value.filter((t) => t !== "null");
      if (types.length < value.length) out.nullable = true;
      if (types.length === 1) out.type = types[0];
    } else if (key === "const") {
      out.enum = [value];
    } else if (SCHEMA_KEYWORDS.has(key)) {
      out[key] = value;
    }
  }
  return out;
}

export function fromResponse(reply: HttpReply, request: ChatRequest): Completion {
  if (reply.status < 200 || reply.status >= 300) throw errorFromReply(reply);
  const body = parseReply(reply, ResponseSchema, "a generateContent response");
  const candidate = body.candidates?.[0];
  if (!candidate) {
    const reason = body.promptFeedback?.blockReason;
    throw new InvalidOutputError(`provider returned no candidate${reason ? ` (prompt blocked: ${reason})` : ""}`, { status: reply.status });
  }
  if (candidate.finishReason === "MALFORMED_FUNCTION_CALL") {
    throw new InvalidOutputError("provider produced a malformed function call (finishReason MALFORMED_FUNCTION_CALL)", { status: reply.status });
  }
  let text: string | null = null;
  const toolCalls: OpenAiToolCall[] = [];
  for (const part of candidate.content?.parts ?? []) {
    if (part.functionCall) {
      const call: OpenAiToolCall = {
        id: `call_${toolCalls.length}`,
        type: "function",
        function: { name: part.functionCall.name, arguments: JSON.stringify(part.functionCall.args ?? {}) },
      };
      if (part.thoughtSignature !== undefined) call[SIGNATURE_FIELD] = { google: { thought_signature: part.thoughtSignature } };
      toolCalls.push(call);
    } else if (part.text !== undefined && part.thought !== true) {
      text = (text ?? "") + part.text;
    }
  }
  const message = { role: "assistant" as const, content: text, ...(toolCalls.length > 0 ? { tool_calls: toolCalls } : {}) };
  // Gemini reports STOP when it calls a function; OpenAI clients look for tool_calls.
  const finish = toolCalls.length > 0 ? "tool_calls" : candidate.finishReason ? (FINISH_REASONS[candidate.finishReason] ?? null) : null;
  const u = body.usageMetadata;
  // promptTokenCount already includes cachedContentTokenCount; thinking tokens are billed as
  // output but counted apart from the candidates', so they are added to the completion.
  const usage = u?.promptTokenCount === undefined ? undefined : normalUsage(
    u.promptTokenCount,
    (u.candidatesTokenCount ?? 0) + (u.thoughtsTokenCount ?? 0),
    u.totalTokenCount,
    { cached: u.cachedContentTokenCount, reasoning: u.thoughtsTokenCount },
  );
  return completion(
    {
      id: body.responseId ?? "",
      object: "chat.completion",
      created: createdFrom(reply),
      model: body.modelVersion ?? "",
      choices: [{ index: 0, message, finish_reason: finish }],
    },
    usage,
    request,
  );
}

function errorFromReply(reply: HttpReply): ProviderError {
  const parsed = ErrorBodySchema.safeParse(parseErrorBody(reply.body));
  const error = parsed.success ? parsed.data.error : undefined;
  const code = error?.status;
  return errorOfStatus(error, `HTTP ${reply.status}${code ? ` ${code}` : ""}: ${error?.message ?? "no error message"}`, reply.status, reply.headers);
}

/** The error for a google.rpc.Status, from an error reply or one sent in a stream after its 200. */
function errorOfStatus(error: z.output<typeof ErrorBodySchema>["error"] | undefined, message: string, status: number, headers: HttpReply["headers"]): ProviderError {
  const code = error?.status;
  switch (code) {
    case "RESOURCE_EXHAUSTED":
      return new RateLimitedError(message, { status, retryAfterMs: parseRetryAfter(headers) ?? retryInfoMs(error?.details) });
    case "UNAVAILABLE":
    case "INTERNAL":
      return new UnavailableError(message, { status });
    case "DEADLINE_EXCEEDED":
      return new ProviderTimeoutError(message, { status });
    case "PERMISSION_DENIED":
    case "UNAUTHENTICATED":
      return new AuthFailedError(message, { status });
    case "INVALID_ARGUMENT":
      // A wrong API key comes back as INVALID_ARGUMENT too; only the ErrorInfo reason tells it apart.
      if (error?.details?.some((d) => d.reason === "API_KEY_INVALID")) return new AuthFailedError(message, { status });
      return new BadRequestError(message, { status, contextLength: isContextLengthMessage(error?.message ?? "") });
    case "FAILED_PRECONDITION":
    case "NOT_FOUND":
      return new BadRequestError(message, { status });
  }
  if (status === 200) return new UnavailableError(message, { status });
  return errorForStatus(status, message, headers);
}

/** google.rpc.RetryInfo's `retryDelay` (a protobuf Duration such as "34s"), under the same one-minute cap as Retry-After. */
function retryInfoMs(details: readonly { "@type"?: string | undefined; retryDelay?: string | undefined }[] | undefined): number | undefined {
  const delay = details?.find((d) => d["@type"]?.endsWith("google.rpc.RetryInfo"))?.retryDelay;
  const seconds = delay === undefined ? undefined : /^(\d+(?:\.\d+)?)s$/.exec(delay)?.[1];
  return seconds === undefined ? undefined : parseRetryAfter({ "retry-after": seconds });
}

/**
 * Whether an INVALID_ARGUMENT says the prompt does not fit the context window. Gemini gives
 * that no reason code of its own, so this is the one place that reads message text: "The
 * input token count (1200293) exceeds the maximum number of tokens allowed (1048576)."
 */
export function isContextLengthMessage(message: string): boolean {
  return /input token count .* exceeds the maximum number of tokens/i.test(message);
}

/** `streamGenerateContent` with `alt=sse`: each event's data is a GenerateContentResponse holding the answer's next parts. */
export function toStreamRequest(request: ChatRequest, target: ProviderTarget): HttpCall {
  const call = toRequest(request, target);
  return { ...call, path: `${call.path.slice(0, -":generateContent".length)}:streamGenerateContent?alt=sse`, headers: { ...call.headers, accept: "text/event-stream" } };
}

const ChunkSchema = ResponseSchema.extend({ error: ErrorBodySchema.shape.error.optional() });

type PartOut = NonNullable<NonNullable<NonNullable<z.output<typeof ResponseSchema>["candidates"]>[number]["content"]>["parts"]>[number];

class GeminiStream implements StreamParser {
  readonly #request: ChatRequest;
  #responseId: string | undefined;
  #modelVersion: string | undefined;
  readonly #parts: PartOut[] = [];
  #finish: string | undefined;
  #candidates = false;
  #promptFeedback: unknown;
  #usage: unknown;
  #calls = 0;

  constructor(request: ChatRequest) {
    this.#request = request;
  }

  push(event: SseEvent): readonly StreamDelta[] {
    const parsed = ChunkSchema.safeParse(eventJson(event));
    if (!parsed.success) throw streamCutShort("a GenerateContentResponse it could read");
    const chunk = parsed.data;
    if (chunk.error) throw errorOfStatus(chunk.error, `stream error${chunk.error.status ? ` ${chunk.error.status}` : ""}: ${chunk.error.message ?? "no error message"}`, 200, {});
    this.#responseId ??= chunk.responseId;
    this.#modelVersion ??= chunk.modelVersion;
    if (chunk.usageMetadata) this.#usage = chunk.usageMetadata;
    if (chunk.promptFeedback) this.#promptFeedback = chunk.promptFeedback;
    const candidate = chunk.candidates?.[0];
    if (candidate === undefined) return [];
    this.#candidates = true;
    if (candidate.finishReason) this.#finish = candidate.finishReason;
    const out: StreamDelta[] = [];
    for (const part of candidate.content?.parts ?? []) {
      this.#parts.push(part);
      // A function call comes whole in one part; numbered as fromResponse numbers them.
      if (part.functionCall) {
        const index = this.#calls++;
        out.push({ tool_calls: [{ index, id: `call_${index}`, type: "function", function: { name: part.functionCall.name, arguments: JSON.stringify(part.functionCall.args ?? {}) } }] });
      } else if (part.text && part.thought !== true) out.push({ content: part.text });
    }
    return out;
  }

  finish(headers: HttpReply["headers"]): Completion {
    // Gemini has no end-of-stream event: the last chunk carries the finish reason (or the prompt's block).
    if (this.#finish === undefined && this.#promptFeedback === undefined) throw streamCutShort("a finishReason");
    const candidates = this.#candidates ? [{ content: { parts: this.#parts, role: "model" }, ...(this.#finish ? { finishReason: this.#finish } : {}) }] : undefined;
    const body = { candidates, promptFeedback: this.#promptFeedback, usageMetadata: this.#usage, modelVersion: this.#modelVersion, responseId: this.#responseId };
    return fromResponse({ status: 200, headers, body: JSON.stringify(body) }, this.#request);
  }
}

export const geminiAdapter: Adapter = { dialect: "gemini", toRequest, fromResponse, toStreamRequest, streamParser: (request) => new GeminiStream(request) };

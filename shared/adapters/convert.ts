/**
 * What the translating dialects (`anthropic`, `gemini`) read from the OpenAI-shaped request
 * and do with a provider reply in the same way. A request the target API cannot express is
 * refused with a `BadRequestError` (no status): the router then tries the next candidate,
 * which may speak a dialect that can.
 */
import { isRecord } from "../json.ts";
import type { z } from "zod";
import type { ChatMessage, ChatRequest, Usage } from "../contract/job.ts";
import { estimatePromptTokens, estimateTextTokens } from "../tokens.ts";
import { BadRequestError, MalformedResponseError } from "./errors.ts";
import type { ChatCompletion, Completion, HttpReply, SseEvent } from "./types.ts";

/** An OpenAI function tool, the only kind the translating dialects carry over. */
export interface FunctionTool {
  readonly name: string;
  readonly description: string | undefined;
  /** JSON Schema of the arguments, when the tool takes any. */
  readonly parameters: Record<string, unknown> | undefined;
}

/** An assistant message's tool call with its arguments already parsed. */
export interface ToolCall {
  readonly id: string;
  readonly name: string;
  readonly arguments: Record<string, unknown>;
  /** The call as the job sent it, for provider extensions riding along (Gemini's thought signature). */
  readonly raw: Readonly<Record<string, unknown>>;
}

export type ToolChoice = { readonly kind: "auto" | "none" | "required" } | { readonly kind: "function"; readonly name: string };

/** A normalised tool call, as OpenAI returns it. */
export interface OpenAiToolCall {
  id: string;
  type: "function";
  function: { name: string; arguments: string };
  [k: string]: unknown;
}


/** String content, or the text parts joined; any other part (image, audio, file) is refused rather than silently dropped. */
export function textOf(content: ChatMessage["content"], dialect: string): string {
  if (typeof content === "string") return content;
  if (!content) return "";
  let text = "";
  for (const part of content) {
    if (part.type !== "text" || typeof part.text !== "string") {
      throw new BadRequestError(`the ${dialect} adapter carries text content only, not a "${part.type}" part`);
    }
    text += part.text;
  }
  return text;
}

export function functionTools(request: ChatRequest, dialect: string): FunctionTool[] | undefined {
  const tools = request.tools;
  if (!Array.isArray(tools) || tools.length === 0) return undefined;
  return tools.map((tool: unknown) => {
    const fn = isRecord(tool) && tool.type === "function" && isRecord(tool.function) ? tool.function : undefined;
    if (!fn || typeof fn.name !== "string") {
      throw new BadRequestError(`the ${dialect} adapter carries function tools only`);
    }
    return {
      name: fn.name,
      description: typeof fn.description === "string" ? fn.description : undefined,
      parameters: isRecord(fn.parameters) ? fn.parameters : undefined,
    };
  });
}

export function toolChoice(request: ChatRequest): ToolChoice | undefined {
  const choice = request.tool_choice;
  if (choice === "auto" || choice === "none" || choice === "required") return { kind: choice };
  if (isRecord(choice) && isRecord(choice.function) && typeof choice.function.name === "string") {
    return { kind: "function", name: choice.function.name };
  }
  return undefined;
}

export function toolCallsOf(message: ChatMessage, dialect: string): ToolCall[] {
  return (message.tool_calls ?? []).map((call) => {
    const fn = isRecord(call.function) ? call.function : {};
    if (typeof call.id !== "string" || typeof fn.name !== "string") {
      throw new BadRequestError(`an assistant tool call lacks its id or function name, which the ${dialect} API needs`);
    }
    let args: unknown = {};
    if (typeof fn.arguments === "string" && fn.arguments.trim() !== "") {
      try {
        args = JSON.parse(fn.arguments);
      } catch {
        throw new BadRequestError(`the arguments of tool call ${call.id} are not JSON; the ${dialect} API takes them as an object`);
      }
    }
    if (!isRecord(args)) throw new BadRequestError(`the arguments of tool call ${call.id} are not a JSON object`);
    return { id: call.id, name: fn.name, arguments: args, raw: call };
  });
}

/** The smaller of `max_completion_tokens` and `max_tokens` when both are set, as the sim-provider reads them. */
export function completionLimit(request: ChatRequest): number | undefined {
  const a = request.max_completion_tokens;
  const b = request.max_tokens;
  if (a === undefined) return b;
  return b === undefined ? a : Math.min(a, b);
}

export function stopSequences(request: ChatRequest): string[] | undefined {
  if (request.stop === undefined) return undefined;
  return typeof request.stop === "string" ? [request.stop] : request.stop;
}

/** The JSON Schema of a `json_schema` response format, if one was given. */
export function responseSchema(request: ChatRequest): Record<string, unknown> | undefined {
  const format = request.response_format;
  if (format?.type !== "json_schema" || !isRecord(format.json_schema)) return undefined;
  return isRecord(format.json_schema.schema) ? format.json_schema.schema : undefined;
}

/**
 * The system-prompt instruction that asks for JSON where the API has no native form for the
 * request's `response_format`: Anthropic's `json_object` (the Messages API has no schema-less
 * JSON mode), or a model configured without structured outputs.
 */
export const JSON_INSTRUCTION = "Respond with only a JSON object: no other text and no Markdown code fence.";

/**
 * `JSON_INSTRUCTION` for a `json_object` or `json_schema` response format, with the schema
 * appended when there is one; undefined for `text` or no format. Whoever sends it also checks
 * the answer (the router's output check), since a prompt guarantees nothing.
 */
export function jsonInstruction(request: ChatRequest): string | undefined {
  const type = request.response_format?.type;
  if (type !== "json_object" && type !== "json_schema") return undefined;
  const schema = responseSchema(request);
  return schema ? `${JSON_INSTRUCTION} The object must conform to this JSON Schema:\n${JSON.stringify(schema)}` : JSON_INSTRUCTION;
}

/**
 * The reply body parsed and checked against the dialect's (partial) response schema. A body that
 * is neither is `malformed_response`: the provider's fault, whatever the model would have said.
 */
export function parseReply<T extends z.ZodType>(reply: HttpReply, schema: T, what: string): z.output<T> {
  let json: unknown;
  try {
    json = JSON.parse(reply.body);
  } catch {
    throw new MalformedResponseError(`provider answered ${reply.status} with a body that is not JSON (${reply.body.length} bytes)`, { status: reply.status });
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new MalformedResponseError(`provider response is not ${what} (${issue?.path.join(".") || "body"}: ${issue?.message})`, { status: reply.status });
  }
  return parsed.data;
}

/** The error body as JSON, or undefined when it is not (a proxy's HTML page, say). */
export function parseErrorBody(body: string): unknown {
  try {
    return JSON.parse(body);
  } catch {
    return undefined;
  }
}

/**
 * Seconds since the epoch from the reply's `Date` header: these APIs put no timestamp in the
 * body, and reading the reply keeps `fromResponse` pure. 0 when the header is missing.
 */
export function createdFrom(reply: HttpReply): number {
  const date = reply.headers.date;
  const ms = typeof date === "string" ? Date.parse(date) : NaN;
  return Number.isFinite(ms) ? Math.floor(ms / 1000) : 0;
}

/** The parts of a provider's usage that are priced apart, each already counted in its total. */
export interface UsageParts {
  readonly cached?: number | null | undefined;
  readonly cacheWrite?: number | null | undefined;
  readonly reasoning?: number | null | undefined;
}

/**
 * Usage in the normal form (`Usage` in the contract): the totals, and the details only for
 * parts that are non-zero, so a provider without caching or reasoning gives the three v1
 * fields alone.
 */
export function normalUsage(prompt: number, completionTokens: number, total: number | undefined, parts: UsageParts = {}): Usage {
  const usage: Usage = { prompt_tokens: prompt, completion_tokens: completionTokens, total_tokens: total ?? prompt + completionTokens };
  if (parts.cached || parts.cacheWrite) {
    usage.prompt_tokens_details = {
      ...(parts.cached ? { cached_tokens: parts.cached } : {}),
      ...(parts.cacheWrite ? { cache_write_tokens: parts.cacheWrite } : {}),
    };
  }
  if (parts.reasoning) usage.completion_tokens_details = { reasoning_tokens: parts.reasoning };
  return usage;
}

/** The normalised completion; usage is estimated, and flagged so, when the provider sent none. */
export function completion(base: ChatCompletion, usage: Usage | undefined, request: ChatRequest): Completion {
  const estimated = usage === undefined;
  const counted = usage ?? normalUsage(estimatePromptTokens(request.messages), estimateTextTokens(base.choices[0]?.message.content ?? ""), undefined);
  return { response: { ...base, usage: counted }, usage: counted, usageEstimated: estimated };
}

/**
 * Server-Sent Events out of a body that arrives in arbitrary pieces (the WHATWG event-stream
 * rules the three APIs use: lines end in LF, CRLF or CR; `event:` names the event, `data:`
 * lines are joined with LF; a blank line dispatches; lines starting with `:` are comments).
 */
export class SseDecoder {
  #buffer = "";
  #event: string | undefined;
  #data: string[] = [];

  /** The events completed by this piece of the body. */
  push(text: string): SseEvent[] {
    const out: SseEvent[] = [];
    let buffer = this.#buffer + text;
    let start = 0;
    for (;;) {
      let end = -1;
      for (let i = start; i < buffer.length; i++) {
        const c = buffer.charCodeAt(i);
        if (c === 10 || c === 13) {
          end = i;
          break;
        }
      }
      // A CR at the very end may be the first half of a CRLF: wait for the next piece.
      if (end === -1 || (buffer.charCodeAt(end) === 13 && end === buffer.length - 1)) break;
      this.#line(buffer.slice(start, end), out);
      start = end + (buffer.charCodeAt(end) === 13 && buffer.charCodeAt(end + 1) === 10 ? 2 : 1);
    }
    buffer = buffer.slice(start);
    this.#buffer = buffer;
    return out;
  }

  #line(line: string, out: SseEvent[]): void {
    if (line === "") {
      if (this.#data.length > 0) out.push({ event: this.#event, data: this.#data.join("\n") });
      this.#event = undefined;
      this.#data = [];
      return;
    }
    if (line.charCodeAt(0) === 58) return;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.charCodeAt(0) === 32) value = value.slice(1);
    if (field === "data") this.#data.push(value);
    else if (field === "event") this.#event = value;
  }
}

/** A stream event's data as JSON, or `MalformedResponseError`: the provider's fault, as a body that is not JSON would be. */
export function eventJson(event: SseEvent): unknown {
  try {
    return JSON.parse(event.data);
  } catch {
    throw new MalformedResponseError(`provider streamed an event whose data is not JSON (${event.data.length} bytes)`, { status: 200 });
  }
}

/** The stream stopped before the API's end of answer: as a truncated body, the provider's fault. */
export function streamCutShort(what: string): MalformedResponseError {
  return new MalformedResponseError(`provider stream ended before ${what}`, { status: 200 });
}

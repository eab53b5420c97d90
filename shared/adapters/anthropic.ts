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
  functionTools,
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
import type { Adapter, Completion, HttpCall, HttpReply, ProviderTarget } from "./types.ts";

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
 * Anthropic has no JSON mode, so a `response_format` of `json_object` or `json_schema` becomes
 * this instruction in the system prompt; the router's output check parses what comes back.
 */
export const JSON_INSTRUCTION = "Respond with only a JSON object: no other text and no Markdown code fence.";

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
  const json = jsonInstruction(request);
  if (json) system.push(json);

  const body: Record<string, unknown> = {
    model: target.upstream,
    max_tokens: completionLimit(request) ?? DEFAULT_MAX_TOKENS,
    messages: turns,
  };
  if (system.length > 0) body.system = system.join("\n\n");
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

function jsonInstruction(request: ChatRequest): string | undefined {
  const type = request.response_format?.type;
  if (type !== "json_object" && type !== "json_schema") return undefined;
  const schema = responseSchema(request);
  return schema ? `${JSON_INSTRUCTION} The object must conform to this JSON Schema:\n${JSON.stringify(schema)}` : JSON_INSTRUCTION;
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
  // input_tokens leaves out cached prompt tokens, which are still billed; OpenAI's prompt_tokens includes them.
  const usage = u && {
    prompt_tokens: u.input_tokens + (u.cache_creation_input_tokens ?? 0) + (u.cache_read_input_tokens ?? 0),
    completion_tokens: u.output_tokens,
  };
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
  const message = `HTTP ${reply.status}${type ? ` ${type}` : ""}: ${detail ?? "no error message"}`;
  const status = reply.status;
  switch (type) {
    case "rate_limit_error":
      return new RateLimitedError(message, { status, retryAfterMs: parseRetryAfter(reply.headers) });
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
  return errorForStatus(status, message, reply.headers);
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

export const anthropicAdapter: Adapter = { dialect: "anthropic", toRequest, fromResponse };

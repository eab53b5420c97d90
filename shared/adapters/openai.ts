/**
 * The `openai` dialect: OpenAI's chat-completions API and the many providers that copy it
 * (DeepSeek, Mistral, Groq, Together, Fireworks, vLLM, Ollama, OpenRouter).
 */
import { z } from "zod";
import type { ChatRequest } from "../contract/job.ts";
import { estimatePromptTokens, estimateTextTokens } from "../tokens.ts";
import { eventJson, normalUsage, parseReply, streamCutShort } from "./convert.ts";
import { BadRequestError, errorForStatus, RateLimitedError, UnavailableError, type ProviderError } from "./errors.ts";
import type { Adapter, ChatCompletion, Completion, HttpCall, HttpReply, ProviderTarget, SseEvent, StreamDelta, StreamParser, ToolCallDelta } from "./types.ts";

/** Only what Switchyard reads; a provider adding fields breaks nothing. */
const ResponseSchema = z.looseObject({
  id: z.string().optional(),
  model: z.string().optional(),
  created: z.number().optional(),
  choices: z
    .array(
      z.looseObject({
        index: z.number().optional(),
        message: z.looseObject({ content: z.string().nullable().optional(), tool_calls: z.array(z.unknown()).optional() }),
        finish_reason: z.string().nullable().optional(),
      }),
    )
    .min(1),
  usage: z
    .looseObject({
      prompt_tokens: z.number().int().nonnegative(),
      completion_tokens: z.number().int().nonnegative(),
      total_tokens: z.number().int().nonnegative().optional(),
      prompt_tokens_details: z.looseObject({ cached_tokens: z.number().int().nonnegative().nullable().optional() }).nullable().optional(),
      completion_tokens_details: z.looseObject({ reasoning_tokens: z.number().int().nonnegative().nullable().optional() }).nullable().optional(),
    })
    .nullable()
    .optional(),
});

const ErrorBodySchema = z.looseObject({
  error: z.union([z.looseObject({ message: z.string().optional(), code: z.unknown().optional(), type: z.string().optional() }), z.string()]),
});

export function toRequest(request: ChatRequest, target: ProviderTarget): HttpCall {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (target.apiKey) headers.authorization = `Bearer ${target.apiKey}`;
  return { path: "/chat/completions", headers, body: JSON.stringify({ ...request, model: target.upstream, stream: false }) };
}

export function fromResponse(reply: HttpReply, request: ChatRequest): Completion {
  if (reply.status < 200 || reply.status >= 300) throw errorFromReply(reply);
  const body = parseReply(reply, ResponseSchema, "a chat.completion");
  const response = { ...body, object: "chat.completion", id: body.id ?? "", created: body.created ?? 0, model: body.model ?? "" } as ChatCompletion;
  const u = body.usage;
  if (u) {
    // OpenAI's parts are already inside its totals: cached_tokens in prompt_tokens,
    // reasoning_tokens in completion_tokens. It reports no cache writes (it charges none).
    const usage = normalUsage(u.prompt_tokens, u.completion_tokens, u.total_tokens, {
      cached: u.prompt_tokens_details?.cached_tokens,
      reasoning: u.completion_tokens_details?.reasoning_tokens,
    });
    return { response, usage, usageEstimated: false };
  }
  const prompt = estimatePromptTokens(request.messages);
  const completion = body.choices.reduce((n, c) => n + estimateTextTokens(c.message.content ?? ""), 0);
  const usage = normalUsage(prompt, completion, undefined);
  response.usage = usage;
  return { response, usage, usageEstimated: true };
}

function errorFromReply(reply: HttpReply) {
  let message = `HTTP ${reply.status}`;
  let contextLength = false;
  try {
    const parsed = ErrorBodySchema.safeParse(JSON.parse(reply.body));
    if (parsed.success) {
      const e = parsed.data.error;
      if (typeof e === "string") message = e;
      else {
        if (e.message) message = e.message;
        contextLength = e.code === "context_length_exceeded";
      }
    }
  } catch {
    // A non-JSON error body (a proxy's HTML page, say) keeps the status as the message.
  }
  return errorForStatus(reply.status, `HTTP ${reply.status}: ${message}`, reply.headers, contextLength);
}

/** `stream_options.include_usage` asks for the usage chunk (`choices: []`) before `[DONE]`, so a streamed answer is priced as an unstreamed one. */
export function toStreamRequest(request: ChatRequest, target: ProviderTarget): HttpCall {
  const headers: Record<string, string> = { "content-type": "application/json", accept: "text/event-stream" };
  if (target.apiKey) headers.authorization = `Bearer ${target.apiKey}`;
  const body = { ...request, model: target.upstream, stream: true, stream_options: { include_usage: true } };
  return { path: "/chat/completions", headers, body: JSON.stringify(body) };
}

/** A `chat.completion.chunk`, or the error object OpenAI sends in place of one when the stream fails. */
const ChunkSchema = z.looseObject({
  id: z.string().optional(),
  model: z.string().optional(),
  created: z.number().optional(),
  system_fingerprint: z.string().nullable().optional(),
  choices: z
    .array(
      z.looseObject({
        index: z.number().int().nonnegative().optional(),
        delta: z
          .looseObject({
            content: z.string().nullable().optional(),
            tool_calls: z
              .array(
                z.looseObject({
                  index: z.number().int().nonnegative(),
                  id: z.string().optional(),
                  type: z.string().optional(),
                  function: z.looseObject({ name: z.string().optional(), arguments: z.string().optional() }).optional(),
                }),
              )
              .nullable()
              .optional(),
          })
          .optional(),
        finish_reason: z.string().nullable().optional(),
      }),
    )
    .optional(),
  usage: ResponseSchema.shape.usage,
  error: z.looseObject({ message: z.string().optional(), type: z.string().nullable().optional(), code: z.unknown().optional() }).optional(),
});

interface ChoiceSoFar {
  content: string | null;
  readonly toolCalls: { id: string; type: "function"; function: { name: string; arguments: string } }[];
  finish: string | null;
}

class OpenAiStream implements StreamParser {
  readonly #request: ChatRequest;
  #head: { id?: string; model?: string; created?: number; system_fingerprint?: string | null } = {};
  readonly #choices: ChoiceSoFar[] = [];
  #usage: unknown;
  #done = false;

  constructor(request: ChatRequest) {
    this.#request = request;
  }

  push(event: SseEvent): readonly StreamDelta[] {
    if (event.data === "[DONE]") {
      this.#done = true;
      return [];
    }
    const parsed = ChunkSchema.safeParse(eventJson(event));
    if (!parsed.success) throw streamCutShort("a chat.completion.chunk it could read");
    const chunk = parsed.data;
    if (chunk.error) throw streamError(chunk.error);
    if (this.#head.id === undefined) {
      this.#head = { id: chunk.id, model: chunk.model, created: chunk.created, ...(chunk.system_fingerprint === undefined ? {} : { system_fingerprint: chunk.system_fingerprint }) };
    }
    if (chunk.usage) this.#usage = chunk.usage;
    const out: StreamDelta[] = [];
    for (const c of chunk.choices ?? []) {
      const index = c.index ?? 0;
      const so = (this.#choices[index] ??= { content: null, toolCalls: [], finish: null });
      if (c.finish_reason) so.finish = c.finish_reason;
      const text = c.delta?.content;
      if (text) {
        so.content = (so.content ?? "") + text;
        if (index === 0) out.push({ content: text });
      }
      const calls = c.delta?.tool_calls;
      if (calls && calls.length > 0) {
        const deltas: ToolCallDelta[] = [];
        for (const t of calls) {
          const call = (so.toolCalls[t.index] ??= { id: "", type: "function", function: { name: "", arguments: "" } });
          if (t.id) call.id = t.id;
          if (t.function?.name) call.function.name += t.function.name;
          if (t.function?.arguments) call.function.arguments += t.function.arguments;
          deltas.push({
            index: t.index,
            ...(t.id ? { id: t.id, type: "function" as const } : {}),
            function: { ...(t.function?.name ? { name: t.function.name } : {}), arguments: t.function?.arguments ?? "" },
          });
        }
        if (index === 0) out.push({ tool_calls: deltas });
      }
    }
    return out;
  }

  finish(headers: HttpReply["headers"]): Completion {
    // Compatible servers that ignore stream_options end with a finish reason and [DONE], no usage chunk.
    if (!this.#done && !this.#choices.some((c) => c?.finish)) throw streamCutShort("[DONE]");
    const choices = this.#choices.map((c, index) => ({
      index,
      message: { role: "assistant", content: c.content, ...(c.toolCalls.length > 0 ? { tool_calls: c.toolCalls } : {}) },
      finish_reason: c.finish,
    }));
    const body = { ...this.#head, object: "chat.completion", choices, ...(this.#usage ? { usage: this.#usage } : {}) };
    return fromResponse({ status: 200, headers, body: JSON.stringify(body) }, this.#request);
  }
}

/** An error sent in the stream's place after a 200: typed by what OpenAI names it, as the status would have typed it. */
function streamError(e: { message?: string | undefined; type?: string | null | undefined; code?: unknown }): ProviderError {
  const name = typeof e.code === "string" ? e.code : (e.type ?? "");
  const message = `stream error${name ? ` ${name}` : ""}: ${e.message ?? "no error message"}`;
  if (name === "rate_limit_exceeded" || e.type === "requests" || e.type === "tokens") return new RateLimitedError(message, { status: 200 });
  if (e.type === "invalid_request_error") return new BadRequestError(message, { status: 200, contextLength: e.code === "context_length_exceeded" });
  return new UnavailableError(message, { status: 200 });
}

export const openaiAdapter: Adapter = { dialect: "openai", toRequest, fromResponse, toStreamRequest, streamParser: (request) => new OpenAiStream(request) };

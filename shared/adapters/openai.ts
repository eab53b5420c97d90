/**
 * The `openai` dialect: OpenAI's chat-completions API and the many providers that copy it
 * (DeepSeek, Mistral, Groq, Together, Fireworks, vLLM, Ollama, OpenRouter).
 */
import { z } from "zod";
import type { ChatRequest } from "../contract/job.ts";
import { estimatePromptTokens, estimateTextTokens } from "../tokens.ts";
import { normalUsage, parseReply } from "./convert.ts";
import { errorForStatus } from "./errors.ts";
import type { Adapter, ChatCompletion, Completion, HttpCall, HttpReply, ProviderTarget } from "./types.ts";

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

export const openaiAdapter: Adapter = { dialect: "openai", toRequest, fromResponse };

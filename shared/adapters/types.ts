/**
 * The adapter contract: one file per provider dialect, each a pair of pure functions.
 * `toRequest` turns the OpenAI-shaped job request into the provider's HTTP call;
 * `fromResponse` turns the provider's reply into an OpenAI `chat.completion` or throws a
 * `ProviderError`. HTTP itself lives in `http.ts`, so adapters are tested on fixtures alone.
 */
import type { ChatRequest, Usage } from "../contract/job.ts";

/** `openai` (and every OpenAI-compatible API), `anthropic` (Messages API), `gemini` (generateContent). */
export type Dialect = "openai" | "anthropic" | "gemini";

/** Where a call goes: the provider as configured, and the model name its API expects. */
export interface ProviderTarget {
  readonly provider: string;
  readonly upstream: string;
  readonly apiKey: string | undefined;
}

/** A call relative to the provider's base URL. */
export interface HttpCall {
  /** @defaultValue "POST" (every chat call); the batch APIs also poll and download with GET. */
  readonly method?: "GET" | "POST";
  readonly path: string;
  readonly headers: Record<string, string>;
  /** Ignored for GET. */
  readonly body: string;
  /** Replies above this size are refused. @defaultValue 8 MiB; a batch's result file may be far larger than any chat reply. */
  readonly maxResponseBytes?: number;
}

export interface HttpReply {
  readonly status: number;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly body: string;
}

/** The OpenAI `chat.completion` object, the normalised response whoever served the job. */
export interface ChatCompletion {
  id: string;
  object: "chat.completion";
  created: number;
  model: string;
  choices: {
    index: number;
    message: { role: "assistant"; content: string | null; tool_calls?: unknown[]; [k: string]: unknown };
    finish_reason: string | null;
    [k: string]: unknown;
  }[];
  usage?: Usage;
  [k: string]: unknown;
}

export interface Completion {
  readonly response: ChatCompletion;
  readonly usage: Usage;
  /** True when the provider sent no usage and the token counts are Switchyard's estimate. */
  readonly usageEstimated: boolean;
}

export interface Adapter {
  readonly dialect: Dialect;
  toRequest(request: ChatRequest, target: ProviderTarget): HttpCall;
  fromResponse(reply: HttpReply, request: ChatRequest): Completion;
  /** The same call asking the provider to stream its answer (Server-Sent Events). */
  toStreamRequest(request: ChatRequest, target: ProviderTarget): HttpCall;
  /** A parser for one streamed answer; an error status is read by `fromResponse` as usual. */
  streamParser(request: ChatRequest): StreamParser;
}

/** One Server-Sent Event: its `event:` name (none for a plain `data:` event) and its data lines joined. */
export interface SseEvent {
  readonly event: string | undefined;
  readonly data: string;
}

/**
 * A piece of a streamed answer, normalised to the `delta` of OpenAI's `chat.completion.chunk`
 * (first choice only): text, or tool-call fragments keyed by `index`, whose `id` and
 * `function.name` come with a call's first fragment and whose `arguments` are pieces of its
 * JSON. The finish reason and usage come with the whole answer (`StreamParser.finish`).
 */
export type StreamDelta =
  | { readonly content: string }
  | { readonly tool_calls: readonly ToolCallDelta[] };

export interface ToolCallDelta {
  readonly index: number;
  readonly id?: string;
  readonly type?: "function";
  readonly function: { readonly name?: string; readonly arguments: string };
}

/**
 * Reads one streamed answer event by event. Pure: it holds the answer so far and does no I/O.
 * `push` returns what the event adds to the answer (nothing for bookkeeping events: pings, a
 * role, empty text) and throws the dialect's `ProviderError` for an error event; `finish`
 * returns the whole answer, the very `Completion` the dialect's `fromResponse` gives for the
 * same answer unstreamed, or throws `MalformedResponseError` when the stream stopped short of
 * its end.
 */
export interface StreamParser {
  push(event: SseEvent): readonly StreamDelta[];
  finish(headers: HttpReply["headers"]): Completion;
}

/** Where a streamed answer's pieces go as they arrive: one call per read from the network. */
export interface StreamSink {
  /**
   * `model`: the catalogue id (`provider/model`) of the model answering. Returns how long (ms)
   * the sink will send nothing more, so the provider's stream need not be read until then.
   */
  deltas(deltas: readonly StreamDelta[], model: string): number;
}

/**
 * The Responses API (`POST /v1/responses`) as pure translations: its body → the job's chat
 * request; the job's result or dead letter → OpenAI's `response` object; a finished response,
 * or an answer's pieces as the router relays them, → the stream events OpenAI sends for it. No
 * I/O here: `responses.ts` carries these out.
 *
 * Schemas are partial, as the rest of the gateway's: unknown fields are tolerated (OpenAI adds
 * some every few weeks), and a field whose meaning Switchyard cannot honour — server-side
 * conversations, chaining by `previous_response_id`, hosted tools — is refused with a 400 naming
 * it, because silently ignoring it would give a different answer than the caller asked for.
 */
import { z } from "zod";
import type { ChatCompletion, StreamDelta } from "../../shared/adapters/types.ts";
import type { ChatMessage, ChatRequest, DeadLetter, Result } from "../../shared/contract/job.ts";
import { ChatRequestSchema } from "../../shared/contract/job.ts";
import type { Catalog } from "../../shared/routing/catalog.ts";
import { errorFromDeadLetter } from "./chat.ts";
import { GatewayError, paramOf } from "./openai-error.ts";

/** Response ids are `resp_` and a nuid: anything else is not ours, and is a 404 without a lookup. */
export const RESPONSE_ID_PATTERN = /^resp_[A-Za-z0-9]+$/;

export const RESPONSE_STATUSES = ["queued", "in_progress", "completed", "incomplete", "failed", "cancelled"] as const;
export type ResponseStatus = (typeof RESPONSE_STATUSES)[number];
export const isFinished = (s: ResponseStatus): boolean => s !== "queued" && s !== "in_progress";

const METADATA_PROBLEM = "metadata must be an object of at most 16 string values.";

/** Text content of a message: `input_text` from the caller, `output_text` / `refusal` when it replays an earlier answer. */
const TextPartSchema = z.looseObject({ type: z.enum(["input_text", "output_text"]), text: z.string() });
const RefusalPartSchema = z.looseObject({ type: z.literal("refusal"), refusal: z.string() });
const ImagePartSchema = z.looseObject({
  type: z.literal("input_image"),
  image_url: z.string({ error: "input_image needs an image_url (a URL or a data: URL); file_id references are not supported." }),
  detail: z.enum(["low", "high", "auto"]).nullish(),
});
const ContentPartSchema = z.discriminatedUnion("type", [TextPartSchema, RefusalPartSchema, ImagePartSchema], {
  error: "content parts may be input_text, input_image (by URL), output_text or refusal; input_file and other types are not supported.",
});
const ContentSchema = z.union([z.string(), z.array(ContentPartSchema)], {
  // A list whose part is wrong says what is wrong with the part, not only that the union failed.
  error: (issue) => (Array.isArray(issue.input) && "errors" in issue ? (issue.errors as { message: string }[][])[1]?.[0]?.message : undefined) ?? "content must be a string or a list of content parts.",
});

/** An input item: a message (`type` may be left out), a function call the model made earlier, or its output. */
const MessageItemSchema = z.looseObject({
  type: z.literal("message").optional(),
  role: z.enum(["user", "assistant", "system", "developer"]),
  content: ContentSchema,
});
const FunctionCallItemSchema = z.looseObject({ type: z.literal("function_call"), call_id: z.string(), name: z.string(), arguments: z.string() });
const FunctionCallOutputItemSchema = z.looseObject({ type: z.literal("function_call_output"), call_id: z.string(), output: ContentSchema });
/** An output item of an earlier stored response, by id (what the Vercel AI SDK sends for earlier turns by default). */
const ItemReferenceSchema = z.looseObject({ type: z.literal("item_reference"), id: z.string() });
const InputItemSchema = z.discriminatedUnion("type", [MessageItemSchema, FunctionCallItemSchema, FunctionCallOutputItemSchema, ItemReferenceSchema], {
  error: (issue) => {
    const type = (issue.input as { type?: unknown } | undefined)?.type;
    return `input items may be messages, function_call, function_call_output or item_reference${typeof type === "string" ? `, not ${type}` : ""}.`;
  },
});
/** Checked on its own, after the body: a union of string and list would hide which item is wrong behind its own message. */
const InputItemsSchema = z.array(InputItemSchema).min(1, { error: "input must hold at least one item." });

/** `text.format`: plain text, JSON mode, or a JSON schema, as chat's `response_format` has them. */
const TextFormatSchema = z.discriminatedUnion(
  "type",
  [
    z.looseObject({ type: z.literal("text") }),
    z.looseObject({ type: z.literal("json_object") }),
    z.looseObject({
      type: z.literal("json_schema"),
      name: z.string().min(1).max(64),
      schema: z.record(z.string(), z.unknown()),
      description: z.string().nullish(),
      strict: z.boolean().nullish(),
    }),
  ],
  { error: 'text.format.type must be "text", "json_object" or "json_schema".' },
);
export type TextFormat = z.output<typeof TextFormatSchema>;

/** Function tools only: hosted tools (web search, file search, computer use, MCP…) run on OpenAI's side, which Switchyard is not. */
const FunctionToolSchema = z.looseObject(
  {
    type: z.literal("function", { error: "only function tools are supported; hosted tools (web_search, file_search, mcp…) run on OpenAI's servers." }),
    name: z.string().min(1),
    description: z.string().nullish(),
    parameters: z.record(z.string(), z.unknown()).nullish(),
    strict: z.boolean().nullish(),
  },
  { error: "a tool must be an object." },
);
const ToolChoiceSchema = z.union([z.enum(["none", "auto", "required"]), z.looseObject({ type: z.literal("function"), name: z.string() })], {
  error: 'tool_choice must be "none", "auto", "required" or {"type": "function", "name": …}.',
});

/** The POST /v1/responses body: what Switchyard reads. Unknown fields are tolerated and ignored. */
export const CreateResponseBodySchema = z.looseObject(
  {
    model: z.string().min(1).max(256).optional(),
    input: z.union([z.string().min(1), z.array(z.unknown())], { error: "input must be a string or a list of input items." }),
    instructions: z.string().nullish(),
    max_output_tokens: z.int().positive().nullish(),
    temperature: z.number().min(0).max(2).nullish(),
    top_p: z.number().min(0).max(1).nullish(),
    text: z.looseObject({ format: TextFormatSchema.nullish() }).nullish(),
    tools: z.array(FunctionToolSchema).nullish(),
    tool_choice: ToolChoiceSchema.nullish(),
    parallel_tool_calls: z.boolean().nullish(),
    metadata: z
      .record(z.string(), z.string({ error: METADATA_PROBLEM }).max(512, { error: METADATA_PROBLEM }), { error: METADATA_PROBLEM })
      .refine((m) => Object.keys(m).length <= 16, { error: METADATA_PROBLEM })
      .nullish(),
    stream: z.boolean().nullish(),
    background: z.boolean().nullish(),
    store: z.boolean().nullish(),
    user: z.string().nullish(),
  },
  { error: "The request body must be a JSON object." },
);

/** Fields that need state or services Switchyard does not have; each is refused by name. */
const UNSUPPORTED: Readonly<Record<string, string>> = {
  previous_response_id: "previous_response_id needs the earlier requests' input, which Switchyard does not keep: send the earlier turns in input (their output items may be item_reference).",
  conversation: "conversation needs conversations stored by the server, which Switchyard does not keep: send the earlier turns in input.",
  prompt: "prompt templates are stored on OpenAI's servers; send the instructions and input themselves.",
};

/** The echo of the request that every response object carries, whatever its status. */
export interface ResponseEcho {
  readonly instructions: string | null;
  readonly max_output_tokens: number | null;
  readonly temperature: number | null;
  readonly top_p: number | null;
  readonly text: { format: TextFormat };
  readonly tools: unknown[];
  readonly tool_choice: unknown;
  readonly parallel_tool_calls: boolean;
  readonly metadata: Record<string, string>;
  readonly background: boolean;
  readonly user?: string;
}

/** The ids of the earlier output items a body refers to (`item_reference`), to be looked up before it is parsed. Nothing is checked here. */
export function referencedItemIds(body: unknown): string[] {
  const input = (body as { input?: unknown } | null)?.input;
  if (!Array.isArray(input)) return [];
  return input.flatMap((i) => ((i as { type?: unknown })?.type === "item_reference" && typeof (i as { id?: unknown }).id === "string" ? [(i as { id: string }).id] : []));
}

/** The response an output item belongs to: item ids are made from their response's id (`completedResponse`). */
export function responseIdOfItem(itemId: string): string | undefined {
  const m = /^(?:msg|fc)_([A-Za-z0-9]+)(?:_\d+)?$/.exec(itemId);
  return m ? `resp_${m[1]}` : undefined;
}

export interface ParsedResponseBody {
  /** `model` as the caller wrote it (`auto` when absent): what the response says until a model has served it. */
  readonly model: string;
  /** The chat request the job carries. */
  readonly request: ChatRequest;
  /** The task `model` names, when it names one (and no catalogue model): `openai("classification")` in the Vercel AI SDK. */
  readonly modelTask: string | undefined;
  readonly echo: ResponseEcho;
  readonly stream: boolean;
  readonly background: boolean;
  /** Whether the response is to be kept for later reference (`store`, true unless false, as OpenAI's). */
  readonly store: boolean;
}

/**
 * A Responses body → the job's chat request, or a 400 naming the bad field. `model` resolves
 * as on chat completions (a catalogue id or alias pins the model; anything else lets the
 * task's policy decide), and may also name a task.
 */
export function parseResponseBody(body: unknown, catalog: Catalog, references: ReadonlyMap<string, OutputItem> = new Map()): ParsedResponseBody {
  const invalid = (error: z.ZodError, prefix: PropertyKey[] = []) => {
    const issue = error.issues[0]!;
    const param = paramOf([...prefix, ...issue.path]);
    return new GatewayError(400, `Invalid request: ${param ? `${param}: ` : ""}${issue.message}`, { param, code: "invalid_value" });
  };
  const parsed = CreateResponseBodySchema.safeParse(body);
  if (!parsed.success) throw invalid(parsed.error);
  const b = parsed.data;
  let input: string | InputItem[];
  if (typeof b.input === "string") input = b.input;
  else {
    const items = InputItemsSchema.safeParse(b.input);
    if (!items.success) throw invalid(items.error, ["input"]);
    input = items.data;
    const missing = input.findIndex((i) => i.type === "item_reference" && !references.has(i.id));
    if (missing >= 0) throw new GatewayError(400, `Item with id '${(input[missing] as { id: string }).id}' not found.`, { param: `input[${missing}].id`, code: "not_found" });
  }
  for (const [field, why] of Object.entries(UNSUPPORTED)) {
    const v = (b as Record<string, unknown>)[field];
    if (v !== undefined && v !== null) throw new GatewayError(400, why, { param: field, code: "unsupported_parameter" });
  }
  if (b.background && b.stream) throw new GatewayError(400, "background responses cannot be streamed here: retrieve them with GET /v1/responses/{id}.", { param: "stream", code: "unsupported_parameter" });

  const asked = b.model ?? "auto";
  const pinned = asked !== "auto" && catalog.resolve(asked) !== undefined;
  const modelTask = !pinned && catalog.tasks.has(asked) ? asked : undefined;
  const format: TextFormat = b.text?.format ?? { type: "text" };
  const tools = (b.tools ?? []).map((t) => ({ type: "function", function: dropNullish({ name: t.name, description: t.description, parameters: t.parameters, strict: t.strict }) }));
  const choice = b.tool_choice;
  const chat = dropNullish({
    model: pinned ? asked : "auto",
    messages: messagesOf(b.instructions ?? undefined, input, references),
    max_tokens: b.max_output_tokens,
    temperature: b.temperature,
    top_p: b.top_p,
    response_format: responseFormatOf(format),
    tools: tools.length > 0 ? tools : undefined,
    tool_choice: typeof choice === "object" && choice !== null ? { type: "function", function: { name: choice.name } } : choice,
    parallel_tool_calls: tools.length > 0 ? b.parallel_tool_calls : undefined,
    user: b.user,
  });
  const request = ChatRequestSchema.safeParse(chat);
  // Everything was checked above in the Responses' own terms; a chat-side refusal is a translation gap, reported as such.
  if (!request.success) throw new GatewayError(400, `Invalid request: ${request.error.issues[0]!.message}`, { code: "invalid_value" });
  return {
    model: asked,
    request: request.data,
    modelTask,
    stream: b.stream === true,
    background: b.background === true,
    store: b.store !== false,
    echo: {
      instructions: b.instructions ?? null,
      max_output_tokens: b.max_output_tokens ?? null,
      temperature: b.temperature ?? null,
      top_p: b.top_p ?? null,
      text: { format },
      tools: b.tools ?? [],
      tool_choice: choice ?? "auto",
      parallel_tool_calls: b.parallel_tool_calls ?? true,
      metadata: b.metadata ?? {},
      background: b.background === true,
      ...(b.user ? { user: b.user } : {}),
    },
  };
}

type Content = z.output<typeof ContentSchema>;
type InputItem = z.output<typeof InputItemSchema>;

/** `instructions` first, as a system message (OpenAI's own placement), then the input items in order, references replaced by the items they name. */
function messagesOf(instructions: string | undefined, input: string | InputItem[], references: ReadonlyMap<string, OutputItem>): ChatMessage[] {
  const out: ChatMessage[] = [];
  if (instructions) out.push({ role: "system", content: instructions });
  if (typeof input === "string") {
    out.push({ role: "user", content: input });
    return out;
  }
  for (const given of input) {
    const item = given.type === "item_reference" ? asInputItem(references.get(given.id)!) : given;
    if (item.type === "item_reference") continue;
    if (item.type === "function_call") {
      const call = { id: item.call_id, type: "function", function: { name: item.name, arguments: item.arguments } };
      // A turn's text and its (parallel) calls arrive as consecutive items; chat carries them on one assistant message.
      const last = out.at(-1);
      if (last?.role === "assistant") (last.tool_calls ??= []).push(call);
      else out.push({ role: "assistant", content: null, tool_calls: [call] });
    } else if (item.type === "function_call_output") {
      out.push({ role: "tool", tool_call_id: item.call_id, content: textOf(item.output) });
    } else {
      // Developer messages are system messages to every dialect Switchyard speaks.
      const role = item.role === "developer" ? "system" : item.role;
      out.push({ role, content: role === "user" ? contentOf(item.content) : textOf(item.content) });
    }
  }
  return out;
}

/** An earlier output item as the input item that replays it. */
function asInputItem(o: OutputItem): InputItem {
  if (o.type === "function_call") return { type: "function_call", call_id: o.call_id, name: o.name, arguments: o.arguments };
  return { type: "message", role: "assistant", content: o.content.map((c) => ({ ...c })) };
}

/** User content keeps its parts (images included) in chat's part shapes. */
function contentOf(content: Content): ChatMessage["content"] {
  if (typeof content === "string") return content;
  return content.map((p) => {
    switch (p.type) {
      case "input_image":
        return { type: "image_url", image_url: dropNullish({ url: p.image_url, detail: p.detail }) };
      case "refusal":
        return { type: "text", text: p.refusal };
      default:
        return { type: "text", text: p.text };
    }
  });
}

/** System, assistant and tool content as one string: every dialect takes text there, not every one takes parts. */
function textOf(content: Content): string {
  if (typeof content === "string") return content;
  return content.map((p) => (p.type === "refusal" ? p.refusal : p.type === "input_image" ? "" : p.text)).join("");
}

function responseFormatOf(format: TextFormat): ChatRequest["response_format"] {
  switch (format.type) {
    case "text":
      return undefined;
    case "json_object":
      return { type: "json_object" };
    case "json_schema":
      return { type: "json_schema", json_schema: dropNullish({ name: format.name, schema: format.schema, description: format.description, strict: format.strict }) };
  }
}

function dropNullish<T extends Record<string, unknown>>(o: T): { [K in keyof T]: Exclude<T[K], null> } {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined && v !== null)) as { [K in keyof T]: Exclude<T[K], null> };
}

// ---------------------------------------------------------------------------------------------
// The response object

export interface OutputText {
  type: "output_text";
  text: string;
  annotations: never[];
  logprobs: never[];
}
export interface OutputRefusal {
  type: "refusal";
  refusal: string;
}
export interface OutputMessage {
  id: string;
  type: "message";
  role: "assistant";
  status: "in_progress" | "completed" | "incomplete";
  content: (OutputText | OutputRefusal)[];
}
export interface FunctionCallOutput {
  id: string;
  type: "function_call";
  status: "in_progress" | "completed" | "incomplete";
  call_id: string;
  name: string;
  arguments: string;
}
export type OutputItem = OutputMessage | FunctionCallOutput;

export interface ResponseUsage {
  input_tokens: number;
  input_tokens_details: { cached_tokens: number };
  output_tokens: number;
  output_tokens_details: { reasoning_tokens: number };
  total_tokens: number;
}

/**
 * OpenAI's `response` object. `output_text` is not sent: OpenAI's servers do not send it
 * either; the SDKs compute it from `output`.
 */
export interface ResponseObject extends ResponseEcho {
  id: string;
  object: "response";
  created_at: number;
  completed_at: number | null;
  status: ResponseStatus;
  error: { code: string; message: string } | null;
  incomplete_details: { reason: "max_output_tokens" | "content_filter" } | null;
  model: string;
  output: OutputItem[];
  usage: ResponseUsage | null;
  truncation: "disabled";
}

/** The response before its job has an outcome: `queued` (background) or `in_progress`. */
export function newResponse(id: string, createdAtMs: number, model: string, echo: ResponseEcho, status: "queued" | "in_progress"): ResponseObject {
  return {
    id,
    object: "response",
    created_at: Math.floor(createdAtMs / 1000),
    completed_at: null,
    status,
    error: null,
    incomplete_details: null,
    model,
    output: [],
    usage: null,
    truncation: "disabled",
    ...echo,
  };
}

/**
 * The ids of a response's output items, from the suffix of its id: one scheme for the
 * finished response and its live events, so `LiveResponseEvents.end` can match them up.
 */
const messageItemId = (suffix: string) => `msg_${suffix}`;
const callItemId = (suffix: string, i: number) => `fc_${suffix}_${i}`;
const callId = (suffix: string, i: number) => `call_${suffix}_${i}`;

/** A job's result as the finished response: the answer's text and tool calls as output items, chat's usage in the Responses' terms. */
export function completedResponse(shell: ResponseObject, r: Result): ResponseObject {
  const completion = r.response as unknown as ChatCompletion;
  const choice = completion.choices[0];
  const message = choice?.message;
  // Item ids derive from the response's id, so a stored response reads the same every time.
  const suffix = shell.id.slice("resp_".length);
  const output: OutputItem[] = [];
  const refusal = typeof message?.refusal === "string" && message.refusal !== "" ? message.refusal : undefined;
  if (message && (message.content || refusal || !message.tool_calls?.length)) {
    const content: (OutputText | OutputRefusal)[] = refusal ? [{ type: "refusal", refusal }] : [{ type: "output_text", text: message.content ?? "", annotations: [], logprobs: [] }];
    output.push({ id: messageItemId(suffix), type: "message", role: "assistant", status: "completed", content });
  }
  for (const [i, call] of (message?.tool_calls ?? []).entries()) {
    const c = call as { id?: string; function?: { name?: string; arguments?: string } };
    output.push({ id: callItemId(suffix, i), type: "function_call", status: "completed", call_id: c.id ?? callId(suffix, i), name: c.function?.name ?? "", arguments: c.function?.arguments ?? "{}" });
  }
  const incomplete = choice?.finish_reason === "length" ? "max_output_tokens" : choice?.finish_reason === "content_filter" ? "content_filter" : undefined;
  const u = (completion.usage ?? r.usage) as ChatCompletion["usage"] & { prompt_tokens_details?: { cached_tokens?: number }; completion_tokens_details?: { reasoning_tokens?: number } };
  return {
    ...shell,
    status: incomplete ? "incomplete" : "completed",
    incomplete_details: incomplete ? { reason: incomplete } : null,
    completed_at: Math.floor(Date.parse(r.completed_at) / 1000),
    model: `${r.provider}/${r.model}`,
    output,
    usage: {
      input_tokens: u?.prompt_tokens ?? r.usage.prompt_tokens,
      input_tokens_details: { cached_tokens: u?.prompt_tokens_details?.cached_tokens ?? 0 },
      output_tokens: u?.completion_tokens ?? r.usage.completion_tokens,
      output_tokens_details: { reasoning_tokens: u?.completion_tokens_details?.reasoning_tokens ?? 0 },
      total_tokens: u?.total_tokens ?? r.usage.total_tokens,
    },
  };
}

/** A dead letter as a failed response, with the code and message the same request would get as an HTTP error. */
export function failedResponse(shell: ResponseObject, dl: DeadLetter): ResponseObject {
  const e = errorFromDeadLetter(dl);
  return { ...shell, status: "failed", error: { code: e.code ?? "server_error", message: e.message } };
}

// ---------------------------------------------------------------------------------------------
// Streaming

export interface StreamEvent {
  type: string;
  sequence_number: number;
  [k: string]: unknown;
}

/**
 * A finished response as OpenAI's stream: `response.created`, `response.in_progress`, each
 * output item added, its content (text deltas, or function-call argument deltas) and done,
 * then `response.completed` (or `response.incomplete`). The in-progress snapshots carry no
 * output yet, as OpenAI's do.
 */
export function streamEvents(final: ResponseObject): StreamEvent[] {
  const events: StreamEvent[] = [];
  const emit = (type: string, fields: Record<string, unknown>) => events.push({ type, sequence_number: events.length, ...fields });
  const pending: ResponseObject = { ...final, status: "in_progress", output: [], usage: null, completed_at: null, incomplete_details: null };
  emit("response.created", { response: pending });
  emit("response.in_progress", { response: pending });
  for (const [output_index, item] of final.output.entries()) itemEvents(emit, output_index, item);
  emit(terminalEvent(final), { response: final });
  return events;
}

type Emit = (type: string, fields: Record<string, unknown>) => void;

/** An output item as streamed so far: the answer's text, or a function call by its index among the chat tool calls. */
type LiveItem = { kind: "message"; text: string } | { kind: "call"; index: number; call_id: string; name: string; arguments: string };

const terminalEvent = (final: ResponseObject) => (final.status === "incomplete" ? "response.incomplete" : "response.completed");

/** One whole output item's events: added, its content in one delta, done. */
function itemEvents(emit: Emit, output_index: number, item: OutputItem): void {
  if (item.type === "function_call") {
    emit("response.output_item.added", { output_index, item: { ...item, status: "in_progress", arguments: "" } });
    emit("response.function_call_arguments.delta", { item_id: item.id, output_index, delta: item.arguments });
    emit("response.function_call_arguments.done", { item_id: item.id, output_index, name: item.name, arguments: item.arguments });
    emit("response.output_item.done", { output_index, item });
    return;
  }
  emit("response.output_item.added", { output_index, item: { ...item, status: "in_progress", content: [] } });
  for (const [content_index, part] of item.content.entries()) {
    const ids = { item_id: item.id, output_index, content_index };
    if (part.type === "refusal") {
      emit("response.content_part.added", { ...ids, part: { type: "refusal", refusal: "" } });
      emit("response.refusal.delta", { ...ids, delta: part.refusal });
      emit("response.refusal.done", { ...ids, refusal: part.refusal });
    } else {
      emit("response.content_part.added", { ...ids, part: { ...part, text: "" } });
      emit("response.output_text.delta", { ...ids, delta: part.text, logprobs: [] });
      emit("response.output_text.done", { ...ids, text: part.text, logprobs: [] });
    }
    emit("response.content_part.done", { ...ids, part });
  }
  emit("response.output_item.done", { output_index, item });
}

/**
 * A response streamed as its answer arrives (the fast path, README "Responses API"): the
 * router's pieces (chat deltas) become OpenAI's events, output items numbered in the order
 * their first piece came. `start` opens the response, `push` adds pieces, and `end` closes the
 * streamed items against the finished response (which its terminal event carries, its output
 * in that same order) or `fail` ends it failed. Each returns the events to send, numbered on
 * from the last.
 */
export class LiveResponseEvents {
  readonly #shell: ResponseObject;
  readonly #suffix: string;
  #seq = 0;
  #model = "";
  /** Output items as streamed so far, by output_index. */
  readonly #items: LiveItem[] = [];
  #message: number | undefined;
  readonly #calls = new Map<number, number>();

  constructor(shell: ResponseObject) {
    this.#shell = shell;
    this.#suffix = shell.id.slice("resp_".length);
  }

  #emitter(events: StreamEvent[]): Emit {
    return (type, fields) => events.push({ type, sequence_number: this.#seq++, ...fields });
  }

  #pending(): ResponseObject {
    return { ...this.#shell, status: "in_progress", model: this.#model || this.#shell.model };
  }

  /** `model`: the catalogue model answering (`provider/model`). */
  start(model: string): StreamEvent[] {
    this.#model = model;
    const events: StreamEvent[] = [];
    const emit = this.#emitter(events);
    emit("response.created", { response: this.#pending() });
    emit("response.in_progress", { response: this.#pending() });
    return events;
  }

  push(deltas: readonly StreamDelta[]): StreamEvent[] {
    const events: StreamEvent[] = [];
    const emit = this.#emitter(events);
    for (const d of deltas) {
      if ("content" in d) {
        if (d.content === "") continue;
        let output_index = this.#message;
        if (output_index === undefined) {
          output_index = this.#message = this.#items.push({ kind: "message", text: "" }) - 1;
          const item_id = messageItemId(this.#suffix);
          emit("response.output_item.added", { output_index, item: { id: item_id, type: "message", role: "assistant", status: "in_progress", content: [] } });
          emit("response.content_part.added", { item_id, output_index, content_index: 0, part: { type: "output_text", text: "", annotations: [], logprobs: [] } });
        }
        (this.#items[output_index] as { text: string }).text += d.content;
        emit("response.output_text.delta", { item_id: messageItemId(this.#suffix), output_index, content_index: 0, delta: d.content, logprobs: [] });
        continue;
      }
      for (const t of d.tool_calls) {
        let output_index = this.#calls.get(t.index);
        const item_id = callItemId(this.#suffix, t.index);
        if (output_index === undefined) {
          const call = { kind: "call" as const, index: t.index, call_id: t.id ?? callId(this.#suffix, t.index), name: t.function.name ?? "", arguments: "" };
          output_index = this.#items.push(call) - 1;
          this.#calls.set(t.index, output_index);
          emit("response.output_item.added", { output_index, item: { id: item_id, type: "function_call", status: "in_progress", call_id: call.call_id, name: call.name, arguments: "" } });
        }
        if (t.function.arguments === "") continue;
        (this.#items[output_index] as { arguments: string }).arguments += t.function.arguments;
        emit("response.function_call_arguments.delta", { item_id, output_index, delta: t.function.arguments });
      }
    }
    return events;
  }

  /** Closes the streamed items against `final` (the job's response) and finishes: the events, and `final` with its output in the streamed order. */
  end(final: ResponseObject): { events: StreamEvent[]; response: ResponseObject } {
    const events: StreamEvent[] = [];
    const emit = this.#emitter(events);
    const byId = new Map(final.output.map((item) => [item.id, item]));
    const output: OutputItem[] = [];
    for (const [output_index, live] of this.#items.entries()) {
      const item = byId.get(this.#idOf(live)) ?? this.#asItem(live, "completed");
      byId.delete(item.id);
      output.push(item);
      if (item.type === "function_call") {
        emit("response.function_call_arguments.done", { item_id: item.id, output_index, name: item.name, arguments: item.arguments });
      } else {
        const part = item.content[0]!;
        const ids = { item_id: item.id, output_index, content_index: 0 };
        if (part.type === "output_text") emit("response.output_text.done", { ...ids, text: part.text, logprobs: [] });
        emit("response.content_part.done", { ...ids, part });
      }
      emit("response.output_item.done", { output_index, item });
    }
    // What the pieces did not carry (an empty answer's message) comes whole.
    for (const item of byId.values()) itemEvents(emit, output.push(item) - 1, item);
    const response = { ...final, output };
    emit(terminalEvent(response), { response });
    return { events, response };
  }

  /**
   * The stream broke off after its first piece: `response.failed`, with the output so far,
   * incomplete; then an `error` event with the error nested as OpenAI's servers send it, which
   * the official SDK raises mid-iteration and the Vercel AI SDK reports as an error part.
   */
  fail(error: { type: string; code: string; message: string; param: string | null }): StreamEvent[] {
    const events: StreamEvent[] = [];
    const emit = this.#emitter(events);
    const output = this.#items.map((live) => this.#asItem(live, "incomplete"));
    emit("response.failed", { response: { ...this.#pending(), status: "failed", error: { code: error.code, message: error.message }, output } });
    emit("error", { error });
    return events;
  }

  #idOf(live: LiveItem): string {
    return live.kind === "message" ? messageItemId(this.#suffix) : callItemId(this.#suffix, live.index);
  }

  #asItem(live: LiveItem, status: "completed" | "incomplete"): OutputItem {
    const id = this.#idOf(live);
    if (live.kind === "message") return { id, type: "message", role: "assistant", status, content: [{ type: "output_text", text: live.text, annotations: [], logprobs: [] }] };
    return { id, type: "function_call", status, call_id: live.call_id, name: live.name, arguments: live.arguments };
  }
}

/** Server-Sent Events framing: the event's type as the SSE event name, the event as its data. */
export function sseOf(events: readonly StreamEvent[]): string {
  return events.map((e) => `event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`).join("");
}

// ---------------------------------------------------------------------------------------------
// Responses at rest

/**
 * A response as kept in the KV bucket `switchyard-responses` (key = the response id): the
 * response object clients read, the tenant it belongs to, and for a background one the JOBS
 * sequence of its job, so a cancel can withdraw a job not yet served.
 */
export const ResponseRecordSchema = z.object({
  tenant: z.string(),
  task: z.string(),
  job_seq: z.int().nullable(),
  response: z.looseObject({
    id: z.string().regex(RESPONSE_ID_PATTERN),
    object: z.literal("response"),
    status: z.enum(RESPONSE_STATUSES),
    background: z.boolean(),
    output: z.array(z.looseObject({ id: z.string(), type: z.string() })),
  }),
});
export interface ResponseRecord {
  readonly tenant: string;
  readonly task: string;
  readonly job_seq: number | null;
  readonly response: ResponseObject;
}

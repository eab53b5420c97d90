/**
 * POST /v1/chat/completions: the OpenAI body becomes a job on the interactive lane
 * (`ijobs.<task>`) with a deadline and this instance's reply subject; the router's outcome
 * becomes a `chat.completion`, a Server-Sent-Events stream of `chat.completion.chunk`s, or an
 * OpenAI-shaped error.
 *
 * With the fast path (`gateway.interactive: request`), a stream starts at the answer's first
 * token (README, "Streaming"): the router calls the model streaming and relays its pieces, and
 * a failure before the first token still falls over to another model unseen; one after it ends
 * the stream with an error event. A request whose answer must be checked whole (the task's
 * `output:` section, a JSON `response_format`) or asks for `n` > 1, and every request on the
 * JetStream lane, is streamed only once the job has completed and passed its check: a failure
 * is then always a proper error status rather than a stream broken halfway.
 */
import { withTraceContext } from "../../shared/ops/tracing.ts";
import { LiveSse, SSE_HEADERS } from "./sse.ts";
import type { IncomingHttpHeaders, ServerResponse } from "node:http";
import type { JetStreamClient } from "@nats-io/jetstream";
import { headers as natsHeaders, nuid } from "@nats-io/transport-node";
import type { ChatCompletion } from "../../shared/adapters/types.ts";
import { ChatRequestSchema, type ChatRequest, type DeadLetter, type JobInput, type Result } from "../../shared/contract/job.ts";
import { interactiveJobSubject, REPLY_HEADER, type Names } from "../../shared/contract/subjects.ts";
import { isMessageTooLarge } from "../../shared/nats/errors.ts";
import type { Catalog } from "../../shared/routing/catalog.ts";
import { isTransient } from "../../shared/routing/outcomes.ts";
import { formatUsd } from "../../shared/usd.ts";
import type { Caller } from "./auth.ts";
import { asGatewayError, GatewayError, paramOf } from "./openai-error.ts";
import type { Logger } from "../../shared/log.ts";
import type { Outcome, ReplyInbox } from "./replies.ts";
import type { FastPath, StreamListener } from "./fast-path.ts";
import type { StreamDelta } from "../../shared/adapters/types.ts";
import type { TaskPolicy } from "../../shared/routing/catalog.ts";
import type { KeyLimits } from "./key-limits.ts";
import { isRecord } from "../../shared/json.ts";
import { writeJson } from "./json-reply.ts";

export const TASK_HEADER = "x-switchyard-task";
export const TIMEOUT_HEADER = "x-switchyard-timeout-ms";

export interface ChatDeps {
  readonly js: JetStreamClient;
  readonly inbox: ReplyInbox;
  readonly catalog: () => Catalog;
  readonly requestTimeoutMs: number;
  readonly clock: () => number;
  /** The deployment's names (the interactive lane's subject). @defaultValue names() (no namespace) */
  readonly names?: Names;
  /** Set when `gateway.interactive` is `request`: jobs go to the routers over core NATS (fast-path.ts), not through the JetStream lane. */
  readonly fastPath?: FastPath | undefined;
  /** The keys' allowed models and tokens per minute, shared by every gateway (key-limits.ts); none enforced without it. */
  readonly keyLimits?: KeyLimits;
  /** Where a live stream's failure that is not the caller's or a provider's (a bug) is logged: the stream has begun, so no 500 can carry it. */
  readonly logger?: Logger;
}

export interface ParsedChat {
  readonly request: ChatRequest;
  readonly stream: boolean;
  readonly includeUsage: boolean;
}

/**
 * An OpenAI chat-completions body → the job's request, or a 400 naming the bad field. A
 * `model` the catalogue does not know (say `gpt-4o-mini` from unchanged client code) becomes
 * `auto`: the task's policy picks the model. A catalogue id or alias pins it.
 */
export function parseChatBody(body: unknown, catalog: Catalog): ParsedChat {
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw new GatewayError(400, "The request body must be a JSON object.");
  const { stream, stream_options: streamOptions, ...rest } = body as Record<string, unknown>;
  if (stream !== undefined && stream !== null && typeof stream !== "boolean") throw new GatewayError(400, "stream must be a boolean.", { param: "stream" });
  if (typeof rest.model === "string" && rest.model !== "auto" && catalog.resolve(rest.model) === undefined) rest.model = "auto";
  const parsed = ChatRequestSchema.safeParse(rest);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const param = paramOf(issue.path);
    throw new GatewayError(400, `Invalid request: ${param ? `${param}: ` : ""}${issue.message}`, { param, code: "invalid_value" });
  }
  const includeUsage = isRecord(streamOptions) && streamOptions.include_usage === true;
  return { request: parsed.data, stream: stream === true, includeUsage };
}

/** The task from the header or the key's default; 400 for an unknown task, 403 for one the key may not use. */
export function taskFor(caller: Caller, header: string | string[] | undefined, catalog: Catalog): string {
  const named = (Array.isArray(header) ? header[0] : header)?.trim();
  const task = named || caller.task;
  if (!catalog.tasks.has(task)) throw new GatewayError(400, `No task "${task}" is configured.`, { param: TASK_HEADER, code: "unknown_task" });
  if (caller.tasks && !caller.tasks.has(task)) throw new GatewayError(403, `This API key may not use task "${task}".`, { code: "task_not_allowed" });
  return task;
}

/** The configured request timeout, shortened by the caller's own (x-switchyard-timeout-ms, or the SDK's x-stainless-timeout in seconds). */
export function timeoutFor(h: IncomingHttpHeaders, configuredMs: number): number {
  let ms = configuredMs;
  const asked = Number(h[TIMEOUT_HEADER]);
  if (Number.isFinite(asked) && asked > 0) ms = Math.min(ms, asked);
  const sdk = Number(h["x-stainless-timeout"]) * 1000;
  if (Number.isFinite(sdk) && sdk > 0) ms = Math.min(ms, sdk);
  return ms;
}

/** What a request learns for the access log, metrics and traces: its task, the model that served it, the caller's trace context. */
export interface JobNote {
  task: string | undefined;
  model: string | undefined;
  traceparent?: string | undefined;
  tracestate?: string | undefined;
}

/** `note` learns the request's task and the model that served it, for the access log and metrics. */
export async function chatCompletion(deps: ChatDeps, caller: Caller, h: IncomingHttpHeaders, body: unknown, res: ServerResponse, note?: JobNote): Promise<void> {
  const catalog = deps.catalog();
  const { request, stream, includeUsage } = parseChatBody(body, catalog);
  const task = taskFor(caller, h[TASK_HEADER], catalog);
  if (note) note.task = task;
  const id = `chatcmpl-${nuid.next()}`;
  const live = stream && deps.fastPath !== undefined && streamsLive(catalog.tasks.get(task)!, request) ? new LiveStream(res, id, task, includeUsage, deps.clock) : undefined;
  let o: Result;
  try {
    o = await runInteractive(deps, caller, h, task, id, request, note, live);
  } catch (err) {
    if (live?.started) return live.fail(failedStream(deps, err));
    throw err;
  }
  const completion = completionOf(o);
  if (live?.started) return live.end(completion);
  const extra = resultHeaders(o);
  if (stream) return writeStream(res, completion, includeUsage, extra);
  writeJson(res, 200, JSON.stringify(completion), extra);
}

/**
 * Serves `request` as job `id` on the interactive lane and waits for it: the result, or the
 * OpenAI-shaped error its dead letter (or the deadline passing) means. Every OpenAI endpoint
 * that answers at once (chat completions, responses) goes through here.
 */
export async function runInteractive(deps: ChatDeps, caller: Caller, h: IncomingHttpHeaders, task: string, id: string, request: ChatRequest, note?: JobNote, live?: StreamListener): Promise<Result> {
  // The key's models and tokens per minute, shared by every gateway (key-limits.ts).
  await deps.keyLimits?.admit(caller, request, task, deps.catalog());
  const timeoutMs = timeoutFor(h, deps.requestTimeoutMs);
  const job: JobInput = {
    id,
    task,
    request,
    deadline: new Date(deps.clock() + timeoutMs).toISOString(),
    metadata: { tenant: caller.tenant, key: caller.keyName },
  };
  const fast = deps.fastPath;
  const o =
    fast === undefined ? await viaQueue(deps, task, id, job, timeoutMs, note)
    : live === undefined ? await fast.request(task, id, job, timeoutMs, note)
    : await fast.stream(task, id, job, timeoutMs, note, live);
  if (o === undefined) {
    throw new GatewayError(504, `No model answered within ${timeoutMs} ms; the request was not served.`, { code: "deadline_exceeded", headers: { "x-request-id": id } });
  }
  if (o.status === "failed") throw errorFromDeadLetter(o);
  deps.keyLimits?.used(caller, request, o.usage);
  if (note) note.model = `${o.provider}/${o.model}`;
  return o;
}

/** The job on the JetStream interactive lane; its outcome comes to this instance's reply subject. Undefined once `timeoutMs` has passed. */
async function viaQueue(deps: ChatDeps, task: string, id: string, job: JobInput, timeoutMs: number, note: JobNote | undefined): Promise<Outcome | undefined> {
  const hdrs = natsHeaders();
  hdrs.set(REPLY_HEADER, deps.inbox.subject);
  withTraceContext(note, hdrs);
  const outcome = deps.inbox.wait(id, timeoutMs);
  try {
    await deps.js.publish((deps.names?.interactiveJobSubject ?? interactiveJobSubject)(task), JSON.stringify(job), { msgID: id, headers: hdrs });
  } catch (err) {
    deps.inbox.cancel(id);
    throw jobPublishError(err);
  }
  return outcome;
}

/** A job publish that failed, as the caller's error: too large is theirs (413), anything else an outage (503). */
export function jobPublishError(err: unknown): GatewayError {
  if (isMessageTooLarge(err)) {
    return new GatewayError(413, "The request is larger than the job queue accepts (NATS max_payload or the JOBS stream's max_msg_size); send a smaller one.", { code: "request_too_large" });
  }
  return new GatewayError(503, `The job queue is unavailable (${(err as Error).message}); try again shortly.`, { code: "queue_unavailable" });
}

export function completionOf(r: Result): ChatCompletion {
  const resp = r.response as unknown as ChatCompletion;
  return { ...resp, id: resp.id || r.id, created: resp.created || Math.floor(Date.parse(r.completed_at) / 1000), model: resp.model || `${r.provider}/${r.model}`, usage: resp.usage ?? r.usage };
}

/** What served the request: provider, model, attempts and cost. */
export function resultHeaders(r: Result): Record<string, string> {
  return {
    "x-request-id": r.id,
    "x-switchyard-task": r.task,
    "x-switchyard-provider": r.provider,
    "x-switchyard-model": `${r.provider}/${r.model}`,
    "x-switchyard-attempts": String(r.attempts.length),
    "x-switchyard-cost-usd": formatUsd(r.cost_usd),
  };
}

/** A dead letter as the status and error a caller of OpenAI would get for the same failure. */
export function errorFromDeadLetter(dl: DeadLetter): GatewayError {
  const h = { "x-request-id": dl.id };
  switch (dl.reason) {
    case "deadline_exceeded":
      return new GatewayError(504, `No model answered before the deadline; the request was not served. ${dl.error}`, { code: "deadline_exceeded", headers: h });
    case "budget_exceeded":
      // A spent budget (README "Budgets") is OpenAI's out-of-quota 429. Retrying cannot help before
      // the window turns, so `x-should-retry: false` keeps the SDKs from retrying it.
      if (dl.budget) return new GatewayError(429, dl.error, { type: "insufficient_quota", code: "insufficient_quota", headers: { ...h, "x-should-retry": "false" } });
      return new GatewayError(400, dl.error, { code: dl.reason, headers: h });
    case "invalid_job":
    case "no_route":
      return new GatewayError(400, dl.error, { code: dl.reason, headers: h });
    case "invalid_output":
      // Retrying cannot help (no model is asked again for an answer it failed), so not a 5xx the SDKs would retry.
      return new GatewayError(422, dl.error, { code: "invalid_output", headers: h });
    case "exhausted":
      // No transient failure among the attempts: the request itself was refused, the caller's problem; anything else is ours.
      if (dl.attempts.length > 0 && !dl.attempts.some((a) => isTransient(a.outcome))) return new GatewayError(400, dl.error, { code: "upstream_bad_request", headers: h });
      return new GatewayError(502, dl.error, { code: "upstream_unavailable", headers: h });
  }
}

/**
 * Whether the answer may reach the caller as it is made: not when a check must read it whole
 * first (the task's `output:` section, a JSON `response_format`, which the router judges after
 * the last token), nor with `n` > 1 (the router relays one choice).
 */
export function streamsLive(policy: TaskPolicy, request: ChatRequest): boolean {
  const format = request.response_format?.type;
  return !policy.contract.declared && format !== "json_object" && format !== "json_schema" && (request.n ?? 1) === 1;
}

/**
 * A chat completion streamed as the router relays it, in OpenAI's framing: the headers and a
 * role chunk with the first piece, a chunk per piece, then (`end`) the finish chunk, the usage
 * chunk when asked for, and `[DONE]`; or (`fail`) an error event in OpenAI's shape, which the
 * SDKs raise as an APIError mid-iteration. The caller going away cuts the router's call off.
 */
class LiveStream extends LiveSse implements StreamListener {
  readonly #id: string;
  readonly #includeUsage: boolean;
  readonly #created: number;
  #head = "";

  constructor(res: ServerResponse, id: string, task: string, includeUsage: boolean, clock: () => number) {
    super(res, { "x-request-id": id, [TASK_HEADER]: task });
    this.#id = id;
    this.#includeUsage = includeUsage;
    this.#created = Math.floor(clock() / 1000);
  }

  chunk(model: string, deltas: readonly StreamDelta[]): void {
    this.send(
      () => {
        this.#head = `{"id":"${this.#id}","object":"chat.completion.chunk","created":${this.#created},"model":${JSON.stringify(model)},"choices":[`;
        return this.#choice(`{"role":"assistant","content":""}`, null);
      },
      () => deltas.map((d) => this.#choice(JSON.stringify(d), null)).join(""),
    );
  }

  end(c: ChatCompletion): void {
    this.finish(() => {
      let out = this.#choice("{}", c.choices[0]?.finish_reason ?? "stop");
      if (this.#includeUsage) out += `data: ${this.#head}],"usage":${JSON.stringify(c.usage)}}\n\n`;
      return `${out}data: [DONE]\n\n`;
    });
  }

  fail(e: GatewayError): void {
    this.finish(() => `data: ${e.body()}\n\n`);
  }

  #choice(delta: string, finish: string | null): string {
    return `data: ${this.#head}{"index":0,"delta":${delta},"logprobs":null,"finish_reason":${finish === null ? "null" : JSON.stringify(finish)}}]}\n\n`;
  }
}

/** The error event ending a live stream that failed after it began; a failure of the gateway itself is logged, as a 500 would be. */
export function failedStream(deps: Pick<ChatDeps, "logger">, err: unknown): GatewayError {
  if (!(err instanceof GatewayError)) deps.logger?.error({ err: (err as Error).message }, "live stream failed");
  return asGatewayError(err, "The stream failed inside the gateway.");
}

/** The completion as OpenAI's stream framing: a role chunk, content, tool calls, a finish chunk per choice, optional usage, then [DONE]. */
function writeStream(res: ServerResponse, c: ChatCompletion, includeUsage: boolean, extra: Record<string, string>): void {
  res.writeHead(200, { ...SSE_HEADERS, ...extra });
  const base = { id: c.id, object: "chat.completion.chunk", created: c.created, model: c.model };
  const chunk = (choice: Record<string, unknown>) => `data: ${JSON.stringify({ ...base, choices: [choice] })}\n\n`;
  let out = "";
  for (const choice of c.choices) {
    const index = choice.index ?? 0;
    const message = choice.message;
    out += chunk({ index, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null });
    if (message.content) out += chunk({ index, delta: { content: message.content }, logprobs: null, finish_reason: null });
    if (message.tool_calls?.length) {
      out += chunk({ index, delta: { tool_calls: message.tool_calls.map((t, i) => ({ index: i, ...(t as object) })) }, logprobs: null, finish_reason: null });
    }
    out += chunk({ index, delta: {}, logprobs: null, finish_reason: choice.finish_reason ?? "stop" });
  }
  if (includeUsage) out += `data: ${JSON.stringify({ ...base, choices: [], usage: c.usage })}\n\n`;
  res.end(`${out}data: [DONE]\n\n`);
}

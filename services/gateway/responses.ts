/**
 * The Responses API: `POST /v1/responses`, `GET /v1/responses/{id}`, `POST
 * /v1/responses/{id}/cancel` (background responses) and `DELETE /v1/responses/{id}`.
 *
 * A response served at once is a job on the interactive lane, exactly as a chat completion is
 * (`runInteractive` in chat.ts): the same task resolution, deadline, failover and output check;
 * only the body and the answer are translated (`responses-schema.ts`).
 *
 * Responses are kept in the KV bucket `switchyard-responses`, one entry per response id, for 30
 * days. A finished one is kept unless `store: false`, so that a later request's `item_reference`
 * to one of its output items — what the Vercel AI SDK sends for earlier turns — resolves on any
 * gateway instance. A background one is a job on the batch lane (`jobs.<task>`), answered at
 * once with `status: "queued"`; its entry is written before the job is published and settled by
 * whichever gateway's outcome filer reads the job's result or dead letter (`batch-filer.ts`), so
 * a gateway restart loses nothing.
 */
import { withTraceContext } from "../../shared/ops/tracing.ts";
import { LiveSse, SSE_HEADERS } from "./sse.ts";
import type { IncomingHttpHeaders, ServerResponse } from "node:http";
import type { JetStreamManager } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import { nuid } from "@nats-io/transport-node";
import type { StreamDelta } from "../../shared/adapters/types.ts";
import type { JobInput, Result } from "../../shared/contract/job.ts";
import { jobSubject, STREAMS } from "../../shared/contract/subjects.ts";
import { parseJsonOrUndefined } from "../../shared/json.ts";
import type { Logger } from "../../shared/log.ts";
import { isMessageTooLarge } from "../../shared/nats/errors.ts";
import type { Caller } from "./auth.ts";
import { failedStream, jobPublishError, resultHeaders, runInteractive, streamsLive, TASK_HEADER, taskFor, type ChatDeps, type JobNote } from "./chat.ts";
import type { StreamListener } from "./fast-path.ts";
import { GatewayError } from "./openai-error.ts";
import { OutcomeSchema } from "./replies.ts";
import {
  completedResponse,
  failedResponse,
  isFinished,
  LiveResponseEvents,
  newResponse,
  parseResponseBody,
  referencedItemIds,
  RESPONSE_ID_PATTERN,
  ResponseRecordSchema,
  responseIdOfItem,
  sseOf,
  streamEvents,
  type OutputItem,
  type ResponseObject,
  type ResponseRecord,
  type StreamEvent,
} from "./responses-schema.ts";
import { writeJson } from "./json-reply.ts";

/**
 * A response streamed as the router relays its answer (chat.ts's LiveStream, in the Responses
 * API's events): the headers and `response.created` with the first piece, the pieces' events
 * as they come, then the items' done events and `response.completed`; or `response.failed`
 * when the answer broke off after its first piece. The caller going away cuts the router's
 * call off.
 */
class LiveResponse extends LiveSse implements StreamListener {
  readonly events: LiveResponseEvents;

  constructor(res: ServerResponse, shell: ResponseObject, task: string) {
    super(res, { "x-request-id": shell.id, [TASK_HEADER]: task });
    this.events = new LiveResponseEvents(shell);
  }

  chunk(model: string, deltas: readonly StreamDelta[]): void {
    this.send(
      () => sseOf(this.events.start(model)),
      () => sseOf(this.events.push(deltas)),
    );
  }

  end(events: readonly StreamEvent[]): void {
    this.finish(() => sseOf(events));
  }

  fail(e: GatewayError): void {
    this.finish(() => sseOf(this.events.fail({ type: e.type, code: e.code ?? "server_error", message: e.message, param: e.param })));
  }
}

/** Marks a background response's job in its metadata, so the outcome filer tells it from an interactive one. */
const BACKGROUND_MARK = "background_response";

/** Compare-and-set attempts before a change gives up (another writer keeps winning). */
const CAS_TRIES = 10;

export interface ResponsesDeps {
  /** The interactive path, shared with chat completions. */
  readonly chat: ChatDeps;
  readonly jsm: JetStreamManager;
  /** The responses bucket (`switchyard-responses`). */
  readonly kv: KV;
  readonly logger: Logger;
}

export interface ResponsesService {
  /** POST /v1/responses: answers `res` (JSON, or SSE with `stream: true`). */
  create(caller: Caller, h: IncomingHttpHeaders, body: unknown, res: ServerResponse, note?: JobNote): Promise<void>;
  get(caller: Caller, id: string): Promise<ResponseObject>;
  cancel(caller: Caller, id: string): Promise<ResponseObject>;
  delete(caller: Caller, id: string): Promise<{ id: string; object: "response.deleted"; deleted: true }>;
  /** Settles a background response from its job's outcome (a RESULTS or DLQ message); any other outcome is ignored. Throws to have it redelivered. */
  file(outcomeText: string): Promise<void>;
}

interface Entry {
  readonly record: ResponseRecord;
  readonly revision: number;
}

export function createResponsesService(deps: ResponsesDeps): ResponsesService {
  const { chat, kv, logger } = deps;

  /** Keeps a finished response for later reference. A failure costs only those references (a 400 naming the item), never the answer. */
  async function keep(caller: Caller, task: string, response: ResponseObject): Promise<void> {
    const record: ResponseRecord = { tenant: caller.tenant, task, job_seq: null, response };
    await kv.create(response.id, JSON.stringify(record)).catch((err: unknown) => {
      logger.warn({ response: response.id, err: (err as Error).message }, "could not store a response; references to its items will not resolve");
    });
  }

  /** The output items `body` refers to by id, from the responses they belong to. Unknown ones are left out (the parse names them). */
  async function referenced(caller: Caller, body: unknown): Promise<Map<string, OutputItem>> {
    const items = new Map<string, OutputItem>();
    const responses = new Set(referencedItemIds(body).flatMap((i) => responseIdOfItem(i) ?? []));
    for (const id of responses) {
      const entry = await read(id);
      if (entry?.record.tenant === caller.tenant) for (const item of entry.record.response.output) items.set(item.id, item);
    }
    return items;
  }

  async function read(id: string): Promise<Entry | undefined> {
    const e = await kv.get(id);
    if (!e || e.operation !== "PUT") return undefined;
    const parsed = ResponseRecordSchema.safeParse(parseJsonOrUndefined(e.string()));
    if (!parsed.success) {
      logger.warn({ response: id, problem: parsed.error.issues[0]?.message }, "ignoring a KV entry that is not a stored response");
      return undefined;
    }
    // Written by this module from a ResponseObject; the schema checks what the code branches on.
    return { record: parsed.data as unknown as ResponseRecord, revision: e.revision };
  }

  /** Compare-and-set: false when someone else wrote first. An entry too large for the bucket throws: trying again cannot help. */
  async function update(id: string, record: ResponseRecord, revision: number): Promise<boolean> {
    try {
      await kv.update(id, JSON.stringify(record), revision);
      return true;
    } catch (err) {
      if (isMessageTooLarge(err)) throw err;
      logger.debug({ response: id, err: (err as Error).message }, "response entry changed under us");
      return false;
    }
  }

  const notFound = (id: string) => new GatewayError(404, `Response with id '${id}' not found.`, { code: "not_found", param: "response_id" });

  /** A stored response of this tenant's, with its revision. */
  async function own(caller: Caller, id: string): Promise<Entry> {
    const got = RESPONSE_ID_PATTERN.test(id) ? await read(id) : undefined;
    if (!got || got.record.tenant !== caller.tenant) throw notFound(id);
    return got;
  }

  /** Writes `next(entry)` until a compare-and-set holds; `next` returning undefined leaves the entry as it is. */
  async function change(id: string, load: () => Promise<Entry | undefined>, next: (r: ResponseRecord) => ResponseRecord | undefined): Promise<ResponseRecord | undefined> {
    for (let tries = 0; tries < CAS_TRIES; tries++) {
      const entry = await load();
      if (!entry) return undefined;
      const record = next(entry.record);
      if (!record) return entry.record;
      if (await update(id, record, entry.revision)) return record;
    }
    throw new GatewayError(503, "The response is changing too fast; try again.", { code: "busy" });
  }

  async function background(caller: Caller, task: string, id: string, shell: ResponseObject, job: JobInput, note: JobNote | undefined, res: ServerResponse): Promise<void> {
    const record: ResponseRecord = { tenant: caller.tenant, task, job_seq: null, response: shell };
    // The entry exists before the job does, so its outcome always finds it.
    const revision = await kv.create(id, JSON.stringify(record)).catch((err: unknown) => {
      throw isMessageTooLarge(err)
        ? new GatewayError(413, "The request is larger than the gateway's KV bucket accepts (NATS max_payload); send a smaller one.", { code: "request_too_large" })
        : new GatewayError(503, `The response store is unavailable (${(err as Error).message}); try again shortly.`, { code: "queue_unavailable" });
    });
    const hdrs = withTraceContext(note);
    let seq: number;
    try {
      seq = (await chat.js.publish((chat.names?.jobSubject ?? jobSubject)(task), JSON.stringify(job), { msgID: id, headers: hdrs })).seq;
    } catch (err) {
      await kv.delete(id).catch(() => {});
      throw jobPublishError(err);
    }
    // Only for a later cancel; if the outcome was filed first there is nothing left to withdraw.
    await update(id, { ...record, job_seq: seq }, revision);
    writeJson(res, 200, JSON.stringify(shell), { "x-request-id": id, [TASK_HEADER]: task });
  }

  return {
    async create(caller, h, body, res, note) {
      const catalog = chat.catalog();
      const p = parseResponseBody(body, catalog, await referenced(caller, body));
      const task = taskFor(caller, h[TASK_HEADER] ?? p.modelTask, catalog);
      if (note) note.task = task;
      const id = `resp_${nuid.next()}`;
      if (p.background) {
        // The key's allowed models and token rate hold as for a request answered at once; the
        // token reservation stays at its estimate, as the outcome may be filed by another gateway.
        await chat.keyLimits?.admit(caller, p.request, task, catalog);
        const shell = newResponse(id, chat.clock(), p.model, p.echo, "queued");
        const job: JobInput = { id, task, request: p.request, metadata: { tenant: caller.tenant, key: caller.keyName, [BACKGROUND_MARK]: true } };
        return background(caller, task, id, shell, job, note, res);
      }
      const shell = newResponse(id, chat.clock(), p.model, p.echo, "in_progress");
      const live = p.stream && chat.fastPath !== undefined && streamsLive(catalog.tasks.get(task)!, p.request) ? new LiveResponse(res, shell, task) : undefined;
      let result: Result;
      try {
        result = await runInteractive(chat, caller, h, task, id, p.request, note, live);
      } catch (err) {
        if (live?.started) return live.fail(failedStream(chat, err));
        throw err;
      }
      if (live?.started) {
        const { events, response } = live.events.end(completedResponse(shell, result));
        if (p.store) await keep(caller, task, response);
        return live.end(events);
      }
      const final = completedResponse(shell, result);
      if (p.store) await keep(caller, task, final);
      const extra = resultHeaders(result);
      if (p.stream) {
        res.writeHead(200, { ...SSE_HEADERS, ...extra });
        res.end(sseOf(streamEvents(final)));
        return;
      }
      writeJson(res, 200, JSON.stringify(final), extra);
    },

    async get(caller, id) {
      return (await own(caller, id)).record.response;
    },

    async cancel(caller, id) {
      if (!(await own(caller, id)).record.response.background) {
        throw new GatewayError(400, "Only responses created with background=true can be cancelled.", { param: "response_id", code: "not_background" });
      }
      const withdraw: { seq: number | null } = { seq: null };
      const record = await change(id, () => own(caller, id), (r) => {
        // As OpenAI's: cancelling a finished response changes nothing and returns it.
        if (isFinished(r.response.status)) return undefined;
        withdraw.seq = r.job_seq;
        return { ...r, response: { ...r.response, status: "cancelled" } };
      });
      // After the entry says cancelled, so a job already served is never deleted from JOBS (replay reads it there).
      // A router that already holds the job still serves it; its outcome finds the response cancelled and is dropped.
      if (withdraw.seq !== null) await deps.jsm.streams.deleteMessage(chat.names?.streams.jobs ?? STREAMS.jobs, withdraw.seq, false).catch(() => false);
      return record!.response;
    },

    async delete(caller, id) {
      await own(caller, id);
      await kv.delete(id);
      return { id, object: "response.deleted", deleted: true };
    },

    async file(outcomeText) {
      const parsed = OutcomeSchema.safeParse(parseJsonOrUndefined(outcomeText));
      if (!parsed.success || parsed.data.metadata[BACKGROUND_MARK] !== true) return;
      const o = parsed.data;
      const settle = (outcome: (shell: ResponseObject) => ResponseObject) =>
        change(o.id, () => read(o.id), (r) => (isFinished(r.response.status) ? undefined : { ...r, response: outcome(r.response) }));
      let settled: ResponseRecord | undefined;
      try {
        settled = await settle((shell) => (o.status === "succeeded" ? completedResponse(shell, o) : failedResponse(shell, o)));
      } catch (err) {
        if (!isMessageTooLarge(err)) throw err;
        // Redelivering it would fail the same way: the answer stays in RESULTS, the response says where.
        const message = `The answer is larger than the gateway's KV bucket accepts (NATS max_payload); it is in RESULTS under id ${o.id}.`;
        settled = await settle((shell) => ({ ...shell, status: "failed", error: { code: "response_too_large", message } }));
      }
      if (!settled) logger.debug({ response: o.id }, "outcome of a deleted background response dropped");
    },
  };
}

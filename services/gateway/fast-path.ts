/**
 * The gateway's side of the interactive fast path (`gateway.interactive: request`): a chat
 * request's job goes to the routers as a core NATS request on
 * `<ns>.switchyard.interactive.<task>`, served by their queue group, and the reply is the
 * job's Result or DeadLetter. Nothing is stored on the way: the caller's connection is the
 * only one waiting, so a durable queue would add a store, a pull and a second store to every
 * request for nothing (PERF-NOTES). The router records the outcome in RESULTS or DLQ after
 * replying (services/router/interactive.ts).
 *
 * No router with a free slot → NATS answers "no responders" at once → 503. A router that
 * stops before finishing hands the request back with nothing published, and it is sent
 * again (another router of the group takes it). A router that dies mid-request leaves the
 * caller to its deadline (504): no queue redelivers a request.
 *
 * Streaming (`stream`, README "Streaming"): the request carries STREAM_HEADER and its own reply
 * subject, where the router sends the answer's pieces as they arrive and then the outcome.
 * A handback before any piece sends the request again as above; after one, the caller already
 * has half an answer and the stream fails.
 */
import { withTraceContext } from "../../shared/ops/tracing.ts";
import { headers as natsHeaders, type Msg, type NatsConnection } from "@nats-io/transport-node";
import type { StreamDelta } from "../../shared/adapters/types.ts";
import type { JobInput } from "../../shared/contract/job.ts";
import { HANDBACK_HEADER, STREAM_CANCEL_SUFFIX, STREAM_HEADER, type Names } from "../../shared/contract/subjects.ts";
import { parseJsonOrUndefined } from "../../shared/json.ts";
import { isMessageTooLarge } from "../../shared/nats/errors.ts";
import { createInboxMux } from "../../shared/nats/inbox-mux.ts";
import { GatewayError } from "./openai-error.ts";
import { OutcomeSchema, type Outcome } from "./replies.ts";
import { createRequestMux, NoRespondersError, RequestTimeoutError } from "./request-mux.ts";

/** The caller's trace context, passed on so the router's job span joins its trace. */
export interface TraceContext {
  readonly traceparent?: string | undefined;
  readonly tracestate?: string | undefined;
}

export interface FastPath {
  /**
   * The job's outcome, or undefined once `timeoutMs` has passed. Throws a GatewayError: 503
   * when no router takes the request, 413 when it is larger than NATS carries.
   */
  request(task: string, id: string, job: JobInput, timeoutMs: number, trace?: TraceContext): Promise<Outcome | undefined>;
  /**
   * The same, with the answer streamed: its pieces reach `listener` as the router sends them,
   * then the outcome settles the promise. Throws as `request` does, and a GatewayError 502
   * when the router stopped after the first piece.
   */
  stream(task: string, id: string, job: JobInput, timeoutMs: number, trace: TraceContext | undefined, listener: StreamListener): Promise<Outcome | undefined>;
}

export interface StreamListener {
  /** Pieces of the answer from `model` (`provider/model`). */
  chunk(model: string, deltas: readonly StreamDelta[]): void;
  /** Hands over the way to cut the request off (the caller went away): the router aborts its call, the promise settles undefined. */
  cancelWith(cancel: () => void): void;
}

/** Sends of one request at most: the first, and again after each router that stopped under it. */
const MAX_SENDS = 3;

export function createFastPath(nc: NatsConnection, names: Names, clock: () => number = Date.now): FastPath {
  const cancelSubject = `${names.interactiveRequestPrefix}.${STREAM_CANCEL_SUFFIX}`;
  const mux = createRequestMux(nc);
  // Streamed requests' messages all come to one wildcard subscription: no SUB and UNSUB per request.
  const streams = new Map<string, (got: Msg | Error) => void>();
  let streamed = 0;
  const streamInbox = createInboxMux(
    nc,
    (token, msg) => streams.get(token)?.(msg),
    (err) => {
      for (const on of [...streams.values()]) on(err);
    },
  );
  return {
    stream(task, id, job, timeoutMs, trace, listener) {
      const subject = names.interactiveRequestSubject(task);
      const payload = JSON.stringify(job);
      const headers = natsHeaders();
      headers.set(STREAM_HEADER, "1");
      withTraceContext(trace, headers);
      const xid = { "x-request-id": id };
      return new Promise<Outcome | undefined>((resolve, reject) => {
        let sends = 0;
        let pieces = 0;
        let settled = false;
        const settle = (err: GatewayError | undefined, o?: Outcome) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          streams.delete(token);
          if (err) reject(err);
          else resolve(o);
        };
        const timer = setTimeout(() => settle(undefined), timeoutMs);
        const token = (++streamed).toString(36);
        const inbox = streamInbox.subject(token);
        streams.set(token, (msg) => {
          if (msg instanceof Error) return settle(new GatewayError(503, `The routers are unreachable (${msg.message}); try again shortly.`, { code: "queue_unavailable", headers: xid }));
          const h = msg.headers;
          if (h?.get(STREAM_HEADER)) {
            pieces++;
            const chunk = parseJsonOrUndefined(msg.string()) as { model?: unknown; deltas?: unknown } | undefined;
            if (chunk && typeof chunk.model === "string" && Array.isArray(chunk.deltas)) listener.chunk(chunk.model, chunk.deltas as StreamDelta[]);
            return;
          }
          if (msg.data.length === 0 && h?.status === "503") {
            return settle(new GatewayError(503, "No router has a free slot for the request (or none is running); try again shortly.", { code: "no_router_available", headers: xid }));
          }
          if (h?.get(HANDBACK_HEADER)) {
            if (pieces > 0) return settle(new GatewayError(502, "The router serving the request stopped partway through the answer.", { code: "upstream_unavailable", headers: xid }));
            if (sends < MAX_SENDS) return send();
            return settle(new GatewayError(503, "Every router that took the request was stopping; try again shortly.", { code: "no_router_available", headers: xid }));
          }
          try {
            settle(undefined, outcomeOf(msg, id, xid));
          } catch (err) {
            settle(err as GatewayError);
          }
        });
        const send = () => {
          sends++;
          try {
            nc.publish(subject, payload, { reply: inbox, headers });
          } catch (err) {
            if (isMessageTooLarge(err)) settle(new GatewayError(413, "The request is larger than NATS carries (max_payload); send a smaller one.", { code: "request_too_large" }));
            else settle(new GatewayError(503, `The routers are unreachable (${(err as Error).message}); try again shortly.`, { code: "queue_unavailable", headers: xid }));
          }
        };
        listener.cancelWith(() => {
          if (settled) return;
          try {
            nc.publish(cancelSubject, inbox);
          } catch {
            // A closed connection: the router's call runs to its end, heard by nobody.
          }
          settle(undefined);
        });
        send();
      });
    },
    async request(task, id, job, timeoutMs, trace) {
      const subject = names.interactiveRequestSubject(task);
      const payload = JSON.stringify(job);
      const headers = withTraceContext(trace);
      const until = clock() + timeoutMs;
      const xid = { "x-request-id": id };
      for (let send = 1; ; send++) {
        const left = until - clock();
        if (left <= 0) return undefined;
        let reply: Msg;
        try {
          reply = await mux.request(subject, payload, left, headers);
        } catch (err) {
          if (err instanceof RequestTimeoutError) return undefined;
          if (err instanceof NoRespondersError) {
            throw new GatewayError(503, "No router has a free slot for the request (or none is running); try again shortly.", { code: "no_router_available", headers: xid });
          }
          if (isMessageTooLarge(err)) throw new GatewayError(413, "The request is larger than NATS carries (max_payload); send a smaller one.", { code: "request_too_large" });
          throw new GatewayError(503, `The routers are unreachable (${(err as Error).message}); try again shortly.`, { code: "queue_unavailable", headers: xid });
        }
        if (reply.headers?.get(HANDBACK_HEADER)) {
          if (send < MAX_SENDS) continue;
          throw new GatewayError(503, "Every router that took the request was stopping; try again shortly.", { code: "no_router_available", headers: xid });
        }
        return outcomeOf(reply, id, xid);
      }
    },
  };
}

/** The router's final reply as this request's outcome, or a 502 when it is not one. */
function outcomeOf(reply: Msg, id: string, xid: Record<string, string>): Outcome {
  const parsed = OutcomeSchema.safeParse(parseJsonOrUndefined(reply.string()));
  if (!parsed.success || parsed.data.id !== id) {
    throw new GatewayError(502, "A router answered with something that is not this request's outcome.", { code: "internal_error", headers: xid });
  }
  return parsed.data;
}

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
 */
import { headers as natsHeaders, RequestError, TimeoutError, type MsgHdrs, type NatsConnection } from "@nats-io/transport-node";
import type { JobInput } from "../../shared/contract/job.ts";
import { HANDBACK_HEADER, type Names } from "../../shared/contract/subjects.ts";
import { parseJsonOrUndefined } from "../../shared/json.ts";
import { isMessageTooLarge } from "../../shared/nats/errors.ts";
import { GatewayError } from "./openai-error.ts";
import { OutcomeSchema, type Outcome } from "./replies.ts";

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
}

/** Sends of one request at most: the first, and again after each router that stopped under it. */
const MAX_SENDS = 3;

export function createFastPath(nc: NatsConnection, names: Names, clock: () => number = Date.now): FastPath {
  return {
    async request(task, id, job, timeoutMs, trace) {
      const subject = names.interactiveRequestSubject(task);
      const payload = JSON.stringify(job);
      let headers: MsgHdrs | undefined;
      if (trace?.traceparent) {
        headers = natsHeaders();
        headers.set("traceparent", trace.traceparent);
        if (trace.tracestate) headers.set("tracestate", trace.tracestate);
      }
      const until = clock() + timeoutMs;
      const xid = { "x-request-id": id };
      for (let send = 1; ; send++) {
        const left = until - clock();
        if (left <= 0) return undefined;
        let reply;
        try {
          reply = await nc.request(subject, payload, { timeout: left, ...(headers ? { headers } : {}) });
        } catch (err) {
          if (err instanceof TimeoutError) return undefined;
          if (err instanceof RequestError && err.isNoResponders()) {
            throw new GatewayError(503, "No router has a free slot for the request (or none is running); try again shortly.", { code: "no_router_available", headers: xid });
          }
          if (isMessageTooLarge(err)) throw new GatewayError(413, "The request is larger than NATS carries (max_payload); send a smaller one.", { code: "request_too_large" });
          throw new GatewayError(503, `The routers are unreachable (${(err as Error).message}); try again shortly.`, { code: "queue_unavailable", headers: xid });
        }
        if (reply.headers?.get(HANDBACK_HEADER)) {
          if (send < MAX_SENDS) continue;
          throw new GatewayError(503, "Every router that took the request was stopping; try again shortly.", { code: "no_router_available", headers: xid });
        }
        const parsed = OutcomeSchema.safeParse(parseJsonOrUndefined(reply.string()));
        if (!parsed.success || parsed.data.id !== id) {
          throw new GatewayError(502, "A router answered with something that is not this request's outcome.", { code: "internal_error", headers: xid });
        }
        return parsed.data;
      }
    },
  };
}

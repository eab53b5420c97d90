/**
 * Core NATS requests whose replies all come to one subscription of this gateway
 * (shared/nats/inbox-mux.ts): `nc.request` without its per-request costs.
 */
import type { Msg, MsgHdrs, NatsConnection } from "@nats-io/transport-node";
import { createInboxMux } from "../../shared/nats/inbox-mux.ts";
import { atTurnEnd } from "../../shared/nats/turn-end.ts";

/** Nobody subscribes to the subject (NATS answered 503 at once). */
export class NoRespondersError extends Error {
  override readonly name = "NoRespondersError";
}

/** No reply within the request's time. */
export class RequestTimeoutError extends Error {
  override readonly name = "RequestTimeoutError";
}

interface Awaited {
  readonly resolve: (msg: Msg) => void;
  readonly reject: (err: Error) => void;
  readonly timer: NodeJS.Timeout;
}

export interface RequestMux {
  /** The reply; rejects with NoRespondersError, RequestTimeoutError, or what publishing threw (a payload over max_payload, a closed connection). */
  request(subject: string, payload: string, timeoutMs: number, headers?: MsgHdrs): Promise<Msg>;
}

export function createRequestMux(nc: NatsConnection): RequestMux {
  const awaited = new Map<string, Awaited>();
  let next = 0;
  const inbox = createInboxMux(nc, settle);
  // As nats.js fails its requests when the connection closes, rather than at their timeout.
  void nc.closed().then(() => {
    for (const a of awaited.values()) {
      clearTimeout(a.timer);
      a.reject(new Error("the NATS connection closed"));
    }
    awaited.clear();
  });

  function settle(token: string, msg: Msg): void {
    const a = awaited.get(token);
    if (a === undefined) return;
    awaited.delete(token);
    clearTimeout(a.timer);
    if (msg.headers?.code === 503 && msg.data.length === 0) a.reject(new NoRespondersError(`no responders on the request's subject`));
    else a.resolve(msg);
  }

  return {
    request(subject, payload, timeoutMs, headers) {
      return new Promise<Msg>((resolve, reject) => {
        const token = (++next).toString(36);
        const timer = setTimeout(() => {
          awaited.delete(token);
          reject(new RequestTimeoutError(`no reply within ${timeoutMs} ms`));
        }, timeoutMs);
        awaited.set(token, { resolve, reject, timer });
        // With the other requests of this turn: one socket write for them all (turn-end.ts).
        atTurnEnd(() => {
          try {
            nc.publish(subject, payload, { reply: inbox.subject(token), ...(headers ? { headers } : {}) });
          } catch (err) {
            awaited.delete(token);
            clearTimeout(timer);
            reject(err as Error);
          }
        });
      });
    },
  };
}

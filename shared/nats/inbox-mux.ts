/**
 * Many exchanges' replies on one wildcard subscription, `<inbox>.<token>`, told apart by the
 * last token: what nats.js's own request mux does, without the record, timer promise and
 * Error object it makes per request (the last to reject the request it already answered),
 * which showed in the gateway's and the router's profiles. The gateway's requests and
 * streamed requests (services/gateway) and the router's PubAcks (services/router/outcome-store.ts)
 * come back this way; each keeps its own table of what waits on a token.
 */
import { createInbox, type Msg, type NatsConnection, type Subscription } from "@nats-io/transport-node";

export interface InboxMux {
  /** The reply subject for `token`; its messages reach the mux's `on`. Subscribes on first use. */
  subject(token: string | number): string;
}

/** `on` hears every message to one of the mux's subjects, with the token it was sent to; `onError` a subscription error (a permissions violation). */
export function createInboxMux(nc: NatsConnection, on: (token: string, msg: Msg) => void, onError?: (err: Error) => void): InboxMux {
  const prefix = createInbox();
  let sub: Subscription | undefined;
  return {
    subject(token) {
      sub ??= nc.subscribe(`${prefix}.*`, {
        callback: (err, msg) => {
          if (err) onError?.(err);
          else on(msg.subject.slice(prefix.length + 1), msg);
        },
      });
      return `${prefix}.${token}`;
    },
  };
}

/**
 * The router's side of the interactive fast path: a queue-group subscription on
 * `<ns>.switchyard.interactive.*` (subjects.ts). A gateway sends a chat request's job there as
 * a core NATS request; NATS gives it to one router of the group, which works it with the same
 * job logic as a JetStream job (`worker.ts`) and replies with its Result or DeadLetter.
 *
 * Backpressure: a router holds the subscription only while it has a free interactive slot
 * (the slots are the consumer's, shared with the interactive lane's pulls). Taking the last
 * one drains the subscription, so NATS sends new requests to the other routers of the group,
 * or, with none left, answers the gateway "no responders" at once; a slot freeing subscribes
 * again. Draining rather than unsubscribing keeps the requests NATS had already sent here.
 *
 * A streamed request (`stream.ts`) can be cut off by its gateway when the caller goes away: it
 * publishes the request's reply subject to `<prefix>.stream.cancel`, which every router hears,
 * and the one serving it cancels the call as a stop would (nothing recorded, nothing replied
 * that anyone hears).
 */
import { Empty, headers as natsHeaders, type Msg, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { CallCancel } from "../../shared/adapters/http.ts";
import { HANDBACK_HEADER, STREAM_CANCEL_SUFFIX, STREAM_HEADER } from "../../shared/contract/subjects.ts";
import type { Logger } from "../../shared/log.ts";
import { atTurnEnd } from "../../shared/nats/turn-end.ts";
import type { JobTrace } from "./job-trace.ts";
import { RouterStream } from "./stream.ts";

/** One request being worked, as the job logic sees it (the fields of a JetStream hold it reads). */
export interface RequestTurn {
  readonly startedAt: number;
  /** No ack_wait runs under a request, so it never lapses: always now. */
  readonly renewedAt: number;
  /** Fired when the worker stops past its grace period: the call is cut off and the request handed back. */
  readonly cancel: CallCancel;
  readonly lane: "interactive";
  trace?: JobTrace | undefined;
  /** Set when the gateway asked for the answer streamed (STREAM_HEADER, `stream.ts`). */
  readonly stream?: RouterStream | undefined;
}

/** The worker's interactive slots (the consumer's, `consumer.ts`). */
export interface RequestSlots {
  /** Takes a slot; false when none is free. */
  take(): boolean;
  /** Whether a slot is free now. */
  free(): boolean;
  giveBack(): void;
}

export interface RequestServerDeps {
  readonly nc: NatsConnection;
  /** The request subjects' prefix, `<ns>.switchyard.interactive`; the task is the next token. */
  readonly prefix: string;
  readonly queue: string;
  readonly logger: Logger;
  readonly clock: () => number;
  readonly slots: RequestSlots;
  /** Works one request and replies to it; its slot is given back when this settles. */
  readonly serve: (msg: Msg, task: string, turn: RequestTurn) => Promise<void>;
}

export interface RequestServer {
  /** Joins the queue group (when a slot is free). */
  start(): void;
  /** Capacity may have changed: joins the group again if it left for want of a slot. */
  resume(): void;
  /** Leaves the group for good; resolves once requests already sent here have reached `serve`. */
  stop(): Promise<void>;
  readonly turns: ReadonlySet<RequestTurn>;
  /** Resolves when no request is being worked, or after `ms`, whichever first. */
  idle(ms: number): Promise<void>;
  reply(msg: Msg, payload: string): void;
  /** Tells the gateway this router published nothing for the request: it may send it again. */
  handBack(msg: Msg): void;
}

/** How long a stop waits for the subscription to drain; NATS may be gone. */
const DRAIN_TIMEOUT_MS = 500;

export function createRequestServer({ nc, prefix, queue, logger, clock, slots, serve }: RequestServerDeps): RequestServer {
  const turns = new Set<RequestTurn>();
  /** Streamed requests by reply subject, for their gateway's cancel. */
  const streams = new Map<string, RequestTurn>();
  let sub: Subscription | undefined;
  let cancels: Subscription | undefined;
  let started = false;
  let stopping = false;
  let idleWaiter: (() => void) | undefined;

  function open(): void {
    if (sub !== undefined || !started || stopping || !slots.free()) return;
    sub = nc.subscribe(`${prefix}.*`, {
      queue,
      callback: (err, msg) => {
        if (err) logger.error({ err: err.message }, "interactive request subscription failed");
        else take(msg);
      },
    });
  }

  function leave(): Promise<void> {
    const s = sub;
    sub = undefined;
    return s === undefined ? Promise.resolve() : s.drain().catch(() => {});
  }

  function take(msg: Msg): void {
    if (!msg.reply) {
      logger.warn({ subject: msg.subject }, "an interactive request without a reply subject: nobody would hear the answer, so it is not served");
      return;
    }
    // Sent here before the subscription drained, with every slot taken: another router may have one.
    if (!slots.take()) {
      handBack(msg);
      return;
    }
    const now = clock();
    const replyTo = msg.reply;
    const streamed = msg.headers?.get(STREAM_HEADER) === "1";
    const turn: RequestTurn = {
      startedAt: now,
      get renewedAt() {
        return clock();
      },
      cancel: new CallCancel(),
      lane: "interactive",
      trace: undefined,
      stream: streamed ? new RouterStream(nc, replyTo) : undefined,
    };
    turns.add(turn);
    if (streamed) streams.set(replyTo, turn);
    if (!slots.free()) void leave();
    serve(msg, msg.subject.slice(prefix.length + 1), turn)
      .catch((err: unknown) => {
        logger.error({ err: (err as Error).message, subject: msg.subject }, "interactive request failed; handing it back");
        handBack(msg);
      })
      .finally(() => {
        turns.delete(turn);
        if (streamed) streams.delete(replyTo);
        turn.stream?.close();
        slots.giveBack();
        if (turns.size === 0) idleWaiter?.();
      });
  }

  function reply(msg: Msg, payload: string): void {
    // The stream's last gathered pieces go before the outcome that ends it.
    if (msg.reply) streams.get(msg.reply)?.stream?.flush();
    // With the other replies of this turn: one socket write for them all (turn-end.ts).
    atTurnEnd(() => {
      try {
        msg.respond(payload);
      } catch {
        // A closed connection: the gateway times out; the outcome is recorded all the same.
      }
    });
  }

  function handBack(msg: Msg): void {
    if (msg.reply) streams.get(msg.reply)?.stream?.flush();
    const h = natsHeaders();
    h.set(HANDBACK_HEADER, "1");
    try {
      msg.respond(Empty, { headers: h });
    } catch {
      // A closed connection: the gateway times out.
    }
  }

  return {
    turns,
    start() {
      started = true;
      cancels = nc.subscribe(`${prefix}.${STREAM_CANCEL_SUFFIX}`, {
        callback: (err, msg) => {
          if (!err) streams.get(msg.string())?.cancel.cancel();
        },
      });
      open();
    },
    resume: open,
    async stop() {
      stopping = true;
      try {
        cancels?.unsubscribe();
      } catch {
        // NATS is gone: the subscription went with it.
      }
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([leave(), new Promise((r) => (timer = setTimeout(r, DRAIN_TIMEOUT_MS)))]);
      clearTimeout(timer);
    },
    async idle(ms) {
      if (turns.size === 0) return;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([new Promise<void>((r) => (idleWaiter = r)), new Promise<void>((r) => (timer = setTimeout(r, ms)))]);
      clearTimeout(timer);
    },
    reply,
    handBack,
  };
}

/** Waits `ms` unless `cancel` fires first; true when it did. */
export function sleepUnlessCancelled(cancel: CallCancel, ms: number): Promise<boolean> {
  if (cancel.cancelled) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      cancel.attach(undefined);
      resolve(false);
    }, ms);
    cancel.attach(() => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

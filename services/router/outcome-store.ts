/**
 * Where a job's one outcome goes: RESULTS or DLQ with `Nats-Msg-Id` = job id, then the reply
 * to a waiting gateway, then the ack. It retries through a storage outage in place, keeps an
 * outcome it could not store for the job's redelivery (so the provider is not paid twice),
 * and guards against a second outcome for one job.
 */
import type { JetStreamClient, JsMsg } from "@nats-io/jetstream";
import { headers as natsHeaders, type Msg, type NatsConnection } from "@nats-io/transport-node";
import { names as namesFor, REPLY_HEADER, type Names } from "../../shared/contract/subjects.ts";
import type { DlqReason } from "../../shared/contract/job.ts";
import type { Logger } from "../../shared/log.ts";
import { createInboxMux } from "../../shared/nats/inbox-mux.ts";
import { scan } from "../../shared/nats/read.ts";
import { nextTurn } from "../../shared/nats/turn-end.ts";
import { failSpan } from "../../shared/ops/tracing.ts";
import type { Hold } from "./consumer.ts";
import { holdLapsed } from "./job.ts";

export type OutcomeKind = "result" | "dead_letter";

/** An outcome built but not stored (RESULTS or DLQ unreachable), kept for the job's redelivery. */
export interface KeptOutcome {
  readonly kind: OutcomeKind;
  readonly subject: string;
  readonly payload: string;
  readonly id: string;
  /** For metrics: the job's task as labelled (`other` for a subject no task has), and a dead letter's reason. */
  readonly task?: string;
  readonly reason?: DlqReason;
}

export interface OutcomeStore {
  /**
   * Publishes the outcome, replies, acks. Resolves false (publishing nothing) when the hold
   * has lapsed or the job's call was aborted by a stop: the redelivery decides then. Rejects
   * when storage stayed unreachable through every retry; the outcome is kept for the
   * redelivery (see `kept`).
   */
  finish(hold: Hold, outcome: KeptOutcome): Promise<boolean>;
  /** The outcome kept for this delivery's job (by stream sequence), taken out of the store. */
  takeKept(seq: number): KeptOutcome | undefined;
  /** Whether RESULTS holds a result with this id, among results stored since `since`. */
  resultStored(task: string, id: string, since: number): Promise<boolean>;
}

export interface OutcomeStoreDeps {
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly logger: Logger;
  readonly clock: () => number;
  readonly ackWaitMs: number;
  /** True once the worker is stopping: no more waiting between retries. */
  readonly stopping: () => boolean;
  /** Waits between attempts to store an outcome. @defaultValue about 10 s in all, longer than a stream leader election */
  readonly retryDelaysMs?: readonly number[];
  /** The deployment's names (RESULTS, the reply prefix). @defaultValue names() (no namespace) */
  readonly names?: Names;
}

const STORE_RETRIES_MS = [100, 250, 500, 1_000, 2_000, 3_000, 3_000];
/** Outcomes kept at most; the oldest goes first (its job then does the work again). */
const KEPT_LIMIT = 50_000;

/** How long a stored outcome's PubAck may take before the publish counts as failed (nats.js's JetStream default). */
const PUBACK_TIMEOUT_MS = 5_000;

/** A PubAck that did not come, or said the outcome was not stored. */
export class PublishFailedError extends Error {
  override readonly name = "PublishFailedError";
}

interface AwaitedAck {
  readonly resolve: () => void;
  readonly reject: (err: Error) => void;
  readonly sentAt: number;
}

/**
 * JetStream publishes (`Nats-Msg-Id` set, the PubAck awaited) with every PubAck coming to one
 * subscription (shared/nats/inbox-mux.ts). `js.publish` does the same through
 * nats.js's request machinery, which per publish builds a request record, a timer with its
 * promise, and an Error object (its "cancelled" rejection of the already settled request).
 * Measured (bench/compare.ts): a bare consume-publish-ack pipeline spends 0.038 CPU ms per job
 * this way against 0.062 with `js.publish`. One timer sweeps every overdue publish instead.
 */
export function createPubAcks(nc: NatsConnection, timeoutMs = PUBACK_TIMEOUT_MS) {
  const awaited = new Map<string, AwaitedAck>();
  let next = 0;
  let sweep: NodeJS.Timeout | undefined;
  const inbox = createInboxMux(nc, settle);
  // As nats.js fails its requests when the connection closes, rather than at their timeout.
  void nc.closed().then(() => {
    for (const a of awaited.values()) a.reject(new PublishFailedError("the NATS connection closed"));
    awaited.clear();
  });

  function settle(token: string, msg: Msg): void {
    const a = awaited.get(token);
    if (a === undefined) return;
    awaited.delete(token);
    if (msg.headers?.hasError) return a.reject(new PublishFailedError(msg.headers.code === 503 ? "no JetStream stream answered (no responders)" : `PubAck status ${msg.headers.code} ${msg.headers.description}`));
    let ack: { stream?: string; error?: { description?: string; err_code?: number } };
    try {
      ack = msg.json();
    } catch {
      return a.reject(new PublishFailedError("invalid PubAck"));
    }
    if (ack.error !== undefined) return a.reject(new PublishFailedError(`${ack.error.description ?? "JetStream error"} (${ack.error.err_code ?? "?"})`));
    if (!ack.stream) return a.reject(new PublishFailedError("invalid PubAck"));
    a.resolve();
  }

  function overdue(): void {
    const now = performance.now();
    // Sent in token order, so the overdue ones come first.
    for (const [token, a] of awaited) {
      if (now - a.sentAt < timeoutMs) break;
      awaited.delete(token);
      a.reject(new PublishFailedError(`no PubAck within ${timeoutMs} ms`));
    }
    if (awaited.size === 0) {
      clearInterval(sweep);
      sweep = undefined;
    }
  }

  return {
    publish(subject: string, payload: string | Uint8Array, msgId: string): Promise<void> {
      return new Promise<void>((resolve, reject) => {
        const token = (++next).toString(36);
        const h = natsHeaders();
        h.set("Nats-Msg-Id", msgId);
        // Throws on a closed connection: the promise rejects, and the caller retries or keeps the outcome.
        nc.publish(subject, payload, { headers: h, reply: inbox.subject(token) });
        awaited.set(token, { resolve, reject, sentAt: performance.now() });
        if (sweep === undefined) {
          sweep = setInterval(overdue, Math.min(1_000, timeoutMs));
          sweep.unref();
        }
      });
    },
  };
}

export function createOutcomeStore({ nc, js, logger, clock, ackWaitMs, stopping, retryDelaysMs = STORE_RETRIES_MS, names = namesFor() }: OutcomeStoreDeps): OutcomeStore {
  const kept = new Map<number, KeptOutcome>();
  const pubAcks = createPubAcks(nc);

  const mayPublish = (hold: Hold) => !hold.cancel.cancelled && !holdLapsed(clock(), hold.renewedAt, ackWaitMs);

  /** After the outcome is stored: a gateway waiting on this job hears it at once. Core NATS, so a lost reply costs that caller a timeout, never the outcome. */
  function replyTo(m: JsMsg, payload: string): void {
    const to = m.headers?.get(REPLY_HEADER);
    if (!to || !names.isReplySubject(to)) return;
    try {
      nc.publish(to, payload);
    } catch {
      // A closed connection: the outcome is in its stream all the same.
    }
  }

  return {
    async finish(hold, outcome) {
      if (!mayPublish(hold)) {
        logger.info({ id: outcome.id, subject: hold.m.subject }, "no longer holding the job: leaving it to its redelivery");
        return false;
      }
      const span = hold.trace?.publish(outcome.kind, outcome.subject, outcome.id, outcome.reason);
      // A stream leader election or a NATS restart lasts seconds: retry in place, the job held by
      // the consumer's working(), rather than spend a delivery of the job's budget on it.
      for (let retry = 0; ; retry++) {
        try {
          await nextTurn();
          if (!mayPublish(hold)) {
            span?.setAttribute("switchyard.published", false);
            span?.end();
            return false;
          }
          await pubAcks.publish(outcome.subject, outcome.payload, outcome.id);
          break;
        } catch (err) {
          if (retry < retryDelaysMs.length && !stopping() && mayPublish(hold)) {
            await new Promise((r) => setTimeout(r, retryDelaysMs[retry]));
            continue;
          }
          if (kept.size >= KEPT_LIMIT) kept.delete(kept.keys().next().value as number);
          kept.set(hold.m.seq, outcome);
          if (span) {
            failSpan(span, err);
            span.end();
          }
          throw err;
        }
      }
      replyTo(hold.m, outcome.payload);
      hold.m.ack();
      span?.end();
      return true;
    },
    takeKept(seq) {
      const k = kept.get(seq);
      if (k) kept.delete(seq);
      return k;
    },
    async resultStored(task, id, since) {
      for await (const stored of scan(js, names.streams.results, { subject: names.resultSubject(task), since: new Date(since), headersOnly: true })) {
        if (stored.msgId === id) return true;
      }
      return false;
    },
  };
}

/**
 * Streaming on the fast path (README, "Streaming"): a request carrying STREAM_HEADER has its
 * model called in streaming mode, and the answer's pieces go to the gateway as they arrive.
 *
 * Nothing is sent before the first piece of the answer (text or a tool call), so a call that
 * fails before it — an error status, an error event after the stream opened, a timeout before
 * the first token — is an ordinary failed attempt, and the job falls over to the next candidate
 * as it would unstreamed: the caller never sees it. From the first piece on, the answer is
 * committed to this call: a failure now cannot be undone by another model (the caller has half
 * an answer), so the job ends with a dead letter and the gateway ends the stream with an error
 * event. The final Result or DeadLetter is still the request's reply, as unstreamed.
 */
import { headers as natsHeaders, type MsgHdrs, type NatsConnection } from "@nats-io/transport-node";
import type { StreamDelta, StreamSink } from "../../shared/adapters/types.ts";
import type { Attempt, DeadLetter, Job } from "../../shared/contract/job.ts";
import { STREAM_HEADER } from "../../shared/contract/subjects.ts";
import { buildDeadLetter } from "./job.ts";

/**
 * How long after sending a message the next one waits, gathering the pieces that arrive
 * meanwhile. Each message costs a socket write here and a wake-up, a parse and a socket write
 * in the gateway (≈ 0.2 CPU ms per message per process measured, bench/ttft.ts), while a
 * provider sends a token every few ms; the first piece never waits, so the time to first token
 * is untouched.
 */
const STREAM_FLUSH_MS = 10;
/**
 * What is gathered goes with the first piece read once STREAM_FLUSH_MS have passed, so a
 * steady stream costs no wake-up of its own; this timer only bounds the wait when the
 * provider pauses. Until the next send the provider's stream is left unparsed (`deltas` says
 * for how long): its tokens come to the caller in one piece, not one each.
 */
const STALL_FLUSH_MS = 15;

/**
 * One request's stream to its gateway: the first piece at once, then the pieces after each
 * message gathered into the next one, runs of text joined into one delta.
 */
export class RouterStream implements StreamSink {
  readonly #nc: NatsConnection;
  readonly #to: string;
  #committed = false;
  #pending: StreamDelta[] = [];
  #model = "";
  #sentAt = -Infinity;
  #timer: NodeJS.Timeout | undefined;

  constructor(nc: NatsConnection, replyTo: string) {
    this.#nc = nc;
    this.#to = replyTo;
  }

  /** Whether the caller has had part of an answer: from then on the job cannot fall over. */
  get committed(): boolean {
    return this.#committed;
  }

  deltas(deltas: readonly StreamDelta[], model: string): number {
    this.#committed = true;
    const pending = this.#pending;
    for (const d of deltas) {
      const last = pending.at(-1);
      if (last !== undefined && "content" in last && "content" in d) pending[pending.length - 1] = { content: last.content + d.content };
      else pending.push(d);
    }
    this.#model = model;
    const since = performance.now() - this.#sentAt;
    if (since >= STREAM_FLUSH_MS) {
      this.flush();
      return STREAM_FLUSH_MS;
    }
    this.#timer ??= setTimeout(() => this.flush(), STALL_FLUSH_MS - since);
    return STREAM_FLUSH_MS - since;
  }

  /** Sends what is gathered now; before the request's reply, so the pieces precede the outcome (one connection keeps their order). */
  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#pending.length === 0) return;
    const deltas = this.#pending;
    this.#pending = [];
    this.#sentAt = performance.now();
    try {
      this.#nc.publish(this.#to, JSON.stringify({ model: this.#model, deltas }), { headers: CHUNK_HEADERS });
    } catch {
      // A closed connection: the caller's stream stops here; the final reply cannot reach it either.
    }
  }

  /** Drops what is gathered: the request is over without a reply anyone hears (cancelled, or cut off by a stop). */
  close(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#pending = [];
  }
}

/** The one header set every chunk carries, made once. */
const CHUNK_HEADERS: MsgHdrs = natsHeaders();
CHUNK_HEADERS.set(STREAM_HEADER, "chunk");

/**
 * The dead letter of a job whose streamed answer broke off after its first piece, in place of
 * whatever the delivery would have done next (another candidate, a redelivery): its attempts as
 * they stand, the last one the failure.
 */
export function brokenStream(job: Job, attempts: readonly Attempt[], now: number): DeadLetter {
  const last = attempts.at(-1);
  const why = last === undefined ? "" : ` ${last.provider}/${last.model}: ${last.error ?? last.outcome}`;
  return buildDeadLetter(job, "exhausted", `The answer broke off after it had begun streaming, so no other model could take over.${why}`, attempts, now);
}

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

/** One request's stream to its gateway. */
export class RouterStream implements StreamSink {
  readonly #nc: NatsConnection;
  readonly #to: string;
  #committed = false;

  constructor(nc: NatsConnection, replyTo: string) {
    this.#nc = nc;
    this.#to = replyTo;
  }

  /** Whether the caller has had part of an answer: from then on the job cannot fall over. */
  get committed(): boolean {
    return this.#committed;
  }

  deltas(deltas: readonly StreamDelta[], model: string): void {
    this.#committed = true;
    try {
      this.#nc.publish(this.#to, JSON.stringify({ model, deltas }), { headers: chunkHeaders() });
    } catch {
      // A closed connection: the caller's stream stops here; the final reply cannot reach it either.
    }
  }
}

let shared: MsgHdrs | undefined;
/** The one header set every chunk carries, made once. */
function chunkHeaders(): MsgHdrs {
  if (shared === undefined) {
    shared = natsHeaders();
    shared.set(STREAM_HEADER, "chunk");
  }
  return shared;
}

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

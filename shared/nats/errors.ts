/**
 * What a failed publish means for the caller: a message too large for NATS or its stream is
 * refused the same way every time, so it is the sender's problem (HTTP 413), never a
 * retryable outage; a lost KV compare-and-set is another writer's turn, to be read again.
 */
import { JetStreamApiCodes, JetStreamApiError } from "@nats-io/jetstream";
import { InvalidArgumentError } from "@nats-io/transport-node";

/** nats-server's JSStreamMessageExceedsMaximumErr: larger than the stream's `max_msg_size`. */
const STREAM_MESSAGE_TOO_LARGE = 10054;

/** For a publish to a subject the caller built: true when it failed because the message exceeds the server's `max_payload` or the stream's `max_msg_size`. */
export function isMessageTooLarge(err: unknown): boolean {
  // The client checks max_payload before sending. For a publish of a valid subject and headers
  // (the callers' own) the payload is the only argument it can refuse, so the type says enough.
  if (err instanceof InvalidArgumentError) return true;
  return err instanceof JetStreamApiError && err.code === STREAM_MESSAGE_TOO_LARGE;
}

/** A KV compare-and-set lost: another writer moved the entry's revision, or a create found the key already there. */
export function isWrongRevision(err: unknown): boolean {
  return err instanceof JetStreamApiError && (err.code === JetStreamApiCodes.StreamWrongLastSequence || err.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown);
}

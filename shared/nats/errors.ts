/**
 * What a failed publish means for the caller: a message too large for NATS or its stream is
 * refused the same way every time, so it is the sender's problem (HTTP 413), never a
 * retryable outage.
 */
import { JetStreamApiError } from "@nats-io/jetstream";
import { InvalidArgumentError } from "@nats-io/transport-node";

/** nats-server's JSStreamMessageExceedsMaximumErr: larger than the stream's `max_msg_size`. */
const STREAM_MESSAGE_TOO_LARGE = 10054;

/** True when a publish failed because the message exceeds the server's `max_payload` or the stream's `max_msg_size`. */
export function isMessageTooLarge(err: unknown): boolean {
  // The client checks max_payload before sending and throws InvalidArgumentError("payload", …).
  if (err instanceof InvalidArgumentError) return /payload/.test(err.message);
  return err instanceof JetStreamApiError && err.code === STREAM_MESSAGE_TOO_LARGE;
}

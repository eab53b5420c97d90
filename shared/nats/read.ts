import { DeliverPolicy, type JetStreamClient } from "@nats-io/jetstream";

/**
 * Reads a stream (optionally one subject filter, optionally from a time) up to the message
 * that was last when reading started, with an ordered consumer; yields each message's
 * parsed JSON. For listings (`dlq list`), not for following.
 */
export async function* readAll<T>(js: JetStreamClient, stream: string, opts: { subject?: string; since?: Date } = {}): AsyncGenerator<T> {
  const consumer = await js.consumers.get(stream, {
    ...(opts.subject ? { filter_subjects: opts.subject } : {}),
    ...(opts.since ? { deliver_policy: DeliverPolicy.StartTime, opt_start_time: opts.since.toISOString() } : {}),
  });
  for (;;) {
    const batch = await consumer.fetch({ max_messages: 1000, expires: 1000 });
    let got = 0;
    let caughtUp = false;
    for await (const m of batch) {
      got++;
      yield m.json<T>();
      caughtUp = m.info.pending === 0;
    }
    if (got === 0 || caughtUp) return;
  }
}

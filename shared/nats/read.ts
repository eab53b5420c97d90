import { DeliverPolicy, type JetStreamClient } from "@nats-io/jetstream";

export interface StoredMessage {
  readonly seq: number;
  /** When the stream stored it, ms since the epoch. */
  readonly time: number;
  readonly subject: string;
  /** The `Nats-Msg-Id` header, when present. */
  readonly msgId: string | undefined;
  readonly data: Uint8Array;
  /** Messages after this one that the scan will still read: a progress bar's total. */
  readonly pending: number;
}

export interface ScanOptions {
  /** One subject filter, e.g. `jobs.moderation` or `dlq.>`. */
  readonly subject?: string;
  readonly since?: Date;
  /**
   * The last sequence to read. A replay appends to the very stream it reads (JOBS), so it
   * stops at the sequence that was last when it began instead of chasing its own output.
   */
  readonly lastSeq?: number;
  /** Payloads are not needed (looking for ids): the server sends headers only. */
  readonly headersOnly?: boolean;
}

/** Reads a stream with an ordered consumer, oldest first, from `since` up to `lastSeq` or the end. */
export async function* scan(js: JetStreamClient, stream: string, opts: ScanOptions = {}): AsyncGenerator<StoredMessage> {
  const consumer = await js.consumers.get(stream, {
    ...(opts.subject ? { filter_subjects: opts.subject } : {}),
    ...(opts.since ? { deliver_policy: DeliverPolicy.StartTime, opt_start_time: opts.since.toISOString() } : {}),
    ...(opts.headersOnly ? { headers_only: true } : {}),
  });
  const last = opts.lastSeq ?? Infinity;
  for (;;) {
    const batch = await consumer.fetch({ max_messages: 1000, expires: 1000 });
    let got = 0;
    let done = false;
    for await (const m of batch) {
      got++;
      if (m.seq > last) {
        done = true;
        break;
      }
      const pending = Math.min(m.info.pending, Number.isFinite(last) ? last - m.seq : Infinity);
      yield { seq: m.seq, time: m.info.timestampNanos / 1e6, subject: m.subject, msgId: m.headers?.get("Nats-Msg-Id") || undefined, data: m.data, pending };
      if (pending <= 0) {
        done = true;
        break;
      }
    }
    if (got === 0 || done) return;
  }
}

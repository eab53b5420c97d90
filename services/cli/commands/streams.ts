import { jetstreamManager, type ConsumerInfo, type JetStreamManager, type StreamInfo } from "@nats-io/jetstream";
import { BATCHER_DURABLE, GATEWAY_BATCH_DURABLE, INTERACTIVE_DURABLE, names, ROUTER_DURABLE, type Names } from "../../../shared/contract/subjects.ts";
import { cliNames } from "../names.ts";
import { connectNats, natsFromEnvironment } from "../../../shared/nats/connect.ts";
import { parse } from "../args.ts";
import { table } from "../table.ts";
import type { Command } from "./types.ts";
import { summaryOf } from "./catalog.ts";

/** Every stream Switchyard keeps, and who creates it when it is missing. */
const streamList = (n: Names): readonly { readonly name: string; readonly createdBy: string }[] => [
  ...Object.values(n.streams).map((name) => ({ name, createdBy: "run `switchyard provision` (or start a router with provision: auto, or `switchyard up`)" })),
  { name: n.batchLinesStream, createdBy: "run `switchyard provision` (or start a gateway with provision: auto)" },
  { name: n.batchQueueStream, createdBy: "run `switchyard provision` (or start a router with provision: auto, or `switchyard up`)" },
];

/** Every durable consumer Switchyard shares between its processes. */
const consumerList = (n: Names): readonly { readonly stream: string; readonly name: string; readonly role: string }[] => [
  { stream: n.streams.jobs, name: n.routerDurable, role: `router workers, batch lane (${n.subjects.jobs}.>)` },
  { stream: n.streams.jobs, name: n.interactiveDurable, role: `router workers, interactive lane (${n.interactiveSubject}.>)` },
  { stream: n.streams.results, name: n.gatewayBatchDurable, role: "gateways, collecting batch results" },
  { stream: n.streams.dlq, name: n.gatewayBatchDurable, role: "gateways, collecting batch dead letters" },
  { stream: n.batchQueueStream, name: n.batcherDurable, role: "router workers, grouping batch-lane jobs into provider batches" },
];

/** `switchyard streams --json`: one object, NATS's own field names where NATS has one. */
export interface StreamsReport {
  readonly streams: ({ readonly name: string; readonly present: false } | {
    readonly name: string;
    readonly present: true;
    readonly subjects: string[];
    readonly messages: number;
    readonly bytes: number;
    /** null while the stream is empty. */
    readonly first_ts: string | null;
    readonly last_ts: string | null;
    readonly consumer_count: number;
  })[];
  readonly consumers: ({ readonly stream: string; readonly name: string; readonly role: string; readonly present: false } | {
    readonly stream: string;
    readonly name: string;
    readonly role: string;
    readonly present: true;
    /** Messages not yet delivered (the backlog). */
    readonly num_pending: number;
    /** Delivered and not yet acknowledged (in flight). */
    readonly num_ack_pending: number;
    readonly num_redelivered: number;
    /** Pull requests waiting: roughly, the processes pulling. */
    readonly num_waiting: number;
    readonly ack_wait_ms: number;
  })[];
}

export const streamsCommand: Command = {
  name: "streams",
  summary: summaryOf("streams"),
  usage: `switchyard streams [--json]

For JOBS, RESULTS, DLQ, the gateway's BATCH_LINES and the batch lane's BATCH_QUEUE: subjects,
messages, size, first and last time. For each shared consumer — the router workers' batch lane
(${ROUTER_DURABLE}) and interactive lane (${INTERACTIVE_DURABLE}) on JOBS, the gateways' batch
collectors (${GATEWAY_BATCH_DURABLE}) on RESULTS and DLQ, the batchers (${BATCHER_DURABLE}) on
BATCH_QUEUE —: messages waiting, in flight (delivered, not
acknowledged), redelivered, pull requests waiting (the processes pulling) and ack wait.
A stream or consumer not created yet is listed as missing.

--json prints one JSON object instead: {"streams": [...], "consumers": [...]}, with NATS's
field names (messages, bytes, first_ts, last_ts; num_pending, num_ack_pending,
num_redelivered, num_waiting) and "present": false for what is missing.`,
  async run(argv) {
    const { values } = parse("streams", argv, { json: { type: "boolean" } });
    const nc = await connectNats(natsFromEnvironment(), "switchyard-streams");
    try {
      const n = cliNames();
      const report = await readStreams(await jetstreamManager(nc), n);
      process.stdout.write(values.json ? `${JSON.stringify(report)}\n` : renderStreams(report, n));
    } finally {
      await nc.drain();
    }
    return 0;
  },
};

export async function readStreams(jsm: JetStreamManager, n: Names = names()): Promise<StreamsReport> {
  const streams = await Promise.all(
    streamList(n).map(async ({ name }): Promise<StreamsReport["streams"][number]> => {
      const info: StreamInfo | undefined = await jsm.streams.info(name).catch(() => undefined);
      if (!info) return { name, present: false };
      const s = info.state;
      const empty = s.messages === 0;
      return {
        name,
        present: true,
        subjects: info.config.subjects ?? [],
        messages: s.messages,
        bytes: s.bytes,
        first_ts: empty ? null : s.first_ts,
        last_ts: empty ? null : s.last_ts,
        consumer_count: s.consumer_count,
      };
    }),
  );
  const consumers = await Promise.all(
    consumerList(n).map(async ({ stream, name, role }): Promise<StreamsReport["consumers"][number]> => {
      const c: ConsumerInfo | undefined = await jsm.consumers.info(stream, name).catch(() => undefined);
      if (!c) return { stream, name, role, present: false };
      return {
        stream,
        name,
        role,
        present: true,
        num_pending: c.num_pending,
        num_ack_pending: c.num_ack_pending,
        num_redelivered: c.num_redelivered,
        num_waiting: c.num_waiting,
        ack_wait_ms: Math.round((c.config.ack_wait ?? 0) / 1e6),
      };
    }),
  );
  return { streams, consumers };
}

export function renderStreams(r: StreamsReport, n: Names = names()): string {
  const missingStream = (name: string) => `(missing: ${streamList(n).find((s) => s.name === name)?.createdBy ?? "not created yet"})`;
  const streamRows = r.streams.map((s) =>
    s.present ? [s.name, s.subjects.join(","), String(s.messages), size(s.bytes), s.first_ts ?? "-", s.last_ts ?? "-"] : [s.name, missingStream(s.name), "", "", "", ""],
  );
  const consumerRows = r.consumers.map((c) =>
    c.present
      ? [`${c.stream}/${c.name}`, c.role, String(c.num_pending), String(c.num_ack_pending), String(c.num_redelivered), String(c.num_waiting), `${c.ack_wait_ms / 1000}s`]
      : [`${c.stream}/${c.name}`, c.role, "(missing)", "", "", "", ""],
  );
  return (
    table(["stream", "subjects", "messages", "size", "first", "last"], streamRows) +
    "\n" +
    table(["consumer", "for", "waiting", "in flight", "redelivered", "pulling", "ack wait"], consumerRows)
  );
}

function size(bytes: number): string {
  return bytes < 1024 * 1024 ? `${(bytes / 1024).toFixed(1)} KiB` : `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

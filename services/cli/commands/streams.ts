import { jetstreamManager } from "@nats-io/jetstream";
import { ROUTER_DURABLE, STREAMS } from "../../../shared/contract/subjects.ts";
import { connectNats, natsUrl } from "../../../shared/nats/connect.ts";
import { parse } from "../args.ts";
import { table } from "./dlq.ts";
import type { Command } from "./types.ts";

export const streamsCommand: Command = {
  name: "streams",
  summary: "show stream and consumer state",
  usage: `switchyard streams

For JOBS, RESULTS and DLQ: messages, bytes, first and last time. For the router consumer:
jobs waiting, in flight (unacknowledged), redelivered, and the workers pulling.`,
  async run(argv) {
    parse("streams", argv, {});
    const nc = await connectNats(natsUrl(), "switchyard-streams");
    try {
      const jsm = await jetstreamManager(nc);
      const rows: string[][] = [];
      for (const name of Object.values(STREAMS)) {
        const info = await jsm.streams.info(name).catch(() => undefined);
        if (!info) {
          rows.push([name, "(missing: start a router or `switchyard up`)", "", "", "", ""]);
          continue;
        }
        const s = info.state;
        rows.push([name, info.config.subjects?.join(",") ?? "", String(s.messages), mib(s.bytes), s.first_ts, s.last_ts]);
      }
      process.stdout.write(table(["stream", "subjects", "messages", "size", "first", "last"], rows));
      const c = await jsm.consumers.info(STREAMS.jobs, ROUTER_DURABLE).catch(() => undefined);
      process.stdout.write("\n");
      if (!c) process.stdout.write(`consumer ${STREAMS.jobs}/${ROUTER_DURABLE}: missing\n`);
      else {
        process.stdout.write(
          table(
            ["consumer", "waiting jobs", "in flight", "redelivered", "pulling workers", "ack wait"],
            [[`${STREAMS.jobs}/${ROUTER_DURABLE}`, String(c.num_pending), String(c.num_ack_pending), String(c.num_redelivered), String(c.num_waiting), `${(c.config.ack_wait ?? 0) / 1e9}s`]],
          ),
        );
      }
    } finally {
      await nc.drain();
    }
    return 0;
  },
};

function mib(bytes: number): string {
  return bytes < 1024 * 1024 ? `${(bytes / 1024).toFixed(1)} KiB` : `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

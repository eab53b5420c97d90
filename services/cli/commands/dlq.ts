import { jetstream } from "@nats-io/jetstream";
import { DLQ_REASONS, type DeadLetter } from "../../../shared/contract/job.ts";
import { STREAMS, SUBJECTS, TASK_PATTERN } from "../../../shared/contract/subjects.ts";
import { UsageError } from "../../../shared/errors.ts";
import { connectNats, natsUrl } from "../../../shared/nats/connect.ts";
import { readAll } from "../../../shared/nats/read.ts";
import { intFlag, parse } from "../args.ts";
import type { Command } from "./types.ts";

export const dlqCommand: Command = {
  name: "dlq",
  summary: "list dead letters (filter by task, reason, time)",
  usage: `switchyard dlq list [--task <task>] [--reason <reason>] [--since <ISO time>] [--limit 100] [--json]

Lists dead letters, oldest first: time, id, task, reason, attempts and the error.
Reasons: ${DLQ_REASONS.join(", ")}. --json prints each dead letter in full, one per line.`,
  async run(argv) {
    const [sub, ...rest] = argv;
    if (sub !== "list") throw new UsageError(`dlq: unknown subcommand "${sub ?? ""}"; try \`switchyard dlq list\``);
    const { values } = parse("dlq", rest, {
      task: { type: "string" },
      reason: { type: "string" },
      since: { type: "string" },
      limit: { type: "string" },
      json: { type: "boolean" },
    });
    if (values.task !== undefined && !TASK_PATTERN.test(values.task)) throw new UsageError(`dlq: --task "${values.task}" must match [a-z0-9_-]{1,64}`);
    if (values.reason !== undefined && !(DLQ_REASONS as readonly string[]).includes(values.reason)) throw new UsageError(`dlq: --reason must be one of ${DLQ_REASONS.join(", ")}`);
    const since = values.since === undefined ? undefined : new Date(values.since);
    if (since && Number.isNaN(since.getTime())) throw new UsageError(`dlq: --since "${values.since}" is not a date`);
    const limit = intFlag("dlq", "limit", values.limit, 100);
    const nc = await connectNats(natsUrl(), "switchyard-dlq");
    let shown = 0;
    let matched = 0;
    try {
      const rows: string[][] = [];
      for await (const d of readAll<DeadLetter>(jetstream(nc), STREAMS.dlq, { subject: `${SUBJECTS.dlq}.${values.task ?? ">"}`, since })) {
        if (values.reason && d.reason !== values.reason) continue;
        matched++;
        if (shown >= limit) continue;
        shown++;
        if (values.json) process.stdout.write(`${JSON.stringify(d)}\n`);
        else rows.push([d.failed_at, d.id, d.task, d.reason, String(d.attempts?.length ?? 0), d.error]);
      }
      if (!values.json) {
        process.stdout.write(table(["failed_at", "id", "task", "reason", "attempts", "error"], rows));
        process.stdout.write(`${matched} dead letter(s) matched${matched > shown ? `, ${shown} shown (--limit)` : ""}\n`);
      }
    } finally {
      await nc.drain();
    }
    return 0;
  },
};

export function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.min(80, Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length))));
  const fmt = (r: string[]) => r.map((c, i) => (c.length > widths[i]! ? `${c.slice(0, widths[i]! - 1)}…` : c.padEnd(widths[i]!))).join("  ").trimEnd();
  return [fmt(head), fmt(widths.map((w) => "-".repeat(w))), ...rows.map(fmt)].join("\n") + "\n";
}

import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { loadConfig } from "../../../shared/config/load.ts";
import { DLQ_REASONS, type DeadLetter } from "../../../shared/contract/job.ts";
import { namesOf, TASK_PATTERN } from "../../../shared/contract/subjects.ts";
import { cliNames } from "../names.ts";
import { UsageError } from "../../../shared/errors.ts";
import { connectNats, natsFromEnvironment } from "../../../shared/nats/connect.ts";
import { matchesDeadLetter, type DeadLetterFilter } from "../../replay/filters.ts";
import { openLedger, REPLAY_BUCKET } from "../../replay/ledger.ts";
import { isRecord, parseJsonOrUndefined } from "../../../shared/json.ts";
import { deadLetterReplay } from "../../replay/lineage.ts";
import { scan } from "../../../shared/nats/read.ts";
import { deadLetterCandidates } from "../../replay/sources.ts";
import { intFlag, parse } from "../args.ts";
import { table } from "../table.ts";
import { deadlineFlag, executeReplay, limitFlag, metaFlag, modelFlag, when } from "./replay.ts";
import type { Command } from "./types.ts";
import { summaryOf } from "./catalog.ts";

const FILTER_FLAGS = {
  task: { type: "string" },
  reason: { type: "string" },
  since: { type: "string" },
  until: { type: "string" },
  meta: { type: "string", multiple: true },
  id: { type: "string", multiple: true },
} as const;

export const dlqCommand: Command = {
  name: "dlq",
  summary: summaryOf("dlq"),
  usage: `switchyard dlq list   [filters] [--limit 100] [--json]
switchyard dlq show   <id> [--task <task>]
switchyard dlq replay [filters] [--model <model>] [--deadline <duration>] [--limit <n>] [--dry-run]

Filters: --task <task>, --reason <reason>, --since <time>, --until <time> (on failed_at;
ISO-8601 or a duration ago such as 12h), --meta key=value (repeatable: all must match the
metadata), --id <id> (repeatable). Reasons: ${DLQ_REASONS.join(", ")}.

list    oldest first: time, id, task, reason, attempts and the error; --json prints each
        dead letter in full, one per line.
show    the whole dead letter (job, attempts, error), and whether it was replayed, as what.
replay  publishes each selected dead letter's job again as a new job, with --model as its
        request.model when given, its deadline dropped (or now + --deadline), and lineage in
        metadata: replay_of, replay_root, replay_run, replay_generation, replay_reason,
        replay_source ("dlq"), replayed_at. Dead letter X becomes job X~r1; if that one
        fails too, replaying its dead letter gives X~r2. Each dead letter is replayed once:
        the replay ledger (KV bucket ${REPLAY_BUCKET}) records every publish, so the command
        is safe to interrupt and run again. Dead letters without a parsable job (not JSON,
        oversize) are skipped and counted. --dry-run counts what would be published.`,
  async run(argv) {
    const [sub, ...rest] = argv;
    if (sub === "list") return list(rest);
    if (sub === "show") return show(rest);
    if (sub === "replay") return replay(rest);
    throw new UsageError(`dlq: unknown subcommand "${sub ?? ""}"; try \`switchyard dlq list|show|replay\``);
  },
};

function filterFrom(command: string, values: { task?: string; reason?: string; since?: string; until?: string; meta?: string[]; id?: string[] }): DeadLetterFilter {
  if (values.task !== undefined && !TASK_PATTERN.test(values.task)) throw new UsageError(`${command}: --task "${values.task}" must match [a-z0-9_-]{1,64}`);
  if (values.reason !== undefined && !(DLQ_REASONS as readonly string[]).includes(values.reason)) throw new UsageError(`${command}: --reason must be one of ${DLQ_REASONS.join(", ")}`);
  return {
    task: values.task,
    reason: values.reason,
    since: values.since === undefined ? undefined : when(command, "since", values.since),
    until: values.until === undefined ? undefined : when(command, "until", values.until),
    meta: metaFlag(command, values.meta),
    ids: values.id ? new Set(values.id) : undefined,
  };
}

/** Dead letters of the filter's task (or all), from `since`, up to the last one when reading began. */
async function* deadLetters(nc: Awaited<ReturnType<typeof connectNats>>, task: string | undefined, since: Date | undefined): AsyncGenerator<DeadLetter> {
  const { streams, subjects } = cliNames();
  const lastSeq = (await (await jetstreamManager(nc)).streams.info(streams.dlq)).state.last_seq;
  for await (const m of scan(jetstream(nc), streams.dlq, { subject: `${subjects.dlq}.${task ?? ">"}`, since, lastSeq })) {
    const d = parseJsonOrUndefined(Buffer.from(m.data).toString("utf8"));
    // Only the router writes here; a foreign message is not a dead letter to list.
    if (isRecord(d)) yield d as unknown as DeadLetter;
  }
}

async function list(argv: string[]): Promise<number> {
  const { values } = parse("dlq list", argv, { ...FILTER_FLAGS, limit: { type: "string" }, json: { type: "boolean" } });
  const filter = filterFrom("dlq list", values);
  const limit = intFlag("dlq list", "limit", values.limit, 100);
  const nc = await connectNats(natsFromEnvironment(), "switchyard-dlq");
  let shown = 0;
  let matched = 0;
  try {
    const rows: string[][] = [];
    for await (const d of deadLetters(nc, filter.task, filter.since)) {
      if (!matchesDeadLetter(d, filter)) continue;
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
}

async function show(argv: string[]): Promise<number> {
  const { values, positionals } = parse("dlq show", argv, { task: { type: "string" } });
  const id = positionals[0];
  if (id === undefined) throw new UsageError("dlq show: name the dead letter's id");
  const filter = filterFrom("dlq show", { task: values.task, id: [id] });
  const nc = await connectNats(natsFromEnvironment(), "switchyard-dlq");
  try {
    const ledger = await openLedger(nc, loadConfig());
    let found = 0;
    for await (const d of deadLetters(nc, filter.task, undefined)) {
      if (!matchesDeadLetter(d, filter)) continue;
      found++;
      process.stdout.write(`${JSON.stringify(d, null, 2)}\n`);
      const { newId } = deadLetterReplay(d.id, isRecord(d.job?.metadata) ? d.job.metadata : {});
      const done = await ledger.done(newId);
      process.stdout.write(done ? `replayed as ${newId} at ${done.at} (JOBS sequence ${done.seq ?? "?"})\n` : `not replayed (\`switchyard dlq replay --id ${id}\` would publish it as ${newId})\n`);
    }
    if (found === 0) {
      process.stderr.write(`dlq show: no dead letter with id "${id}"${filter.task ? ` for task ${filter.task}` : ""}\n`);
      return 1;
    }
  } finally {
    await nc.drain();
  }
  return 0;
}

async function replay(argv: string[]): Promise<number> {
  const { values } = parse("dlq replay", argv, { ...FILTER_FLAGS, model: { type: "string" }, deadline: { type: "string" }, limit: { type: "string" }, "dry-run": { type: "boolean" } });
  const filter = filterFrom("dlq replay", values);
  const config = loadConfig();
  const model = modelFlag("dlq replay", config, values.model);
  const deadline = deadlineFlag("dlq replay", values.deadline);
  return executeReplay("dlq replay", config, { dryRun: values["dry-run"] ?? false, limit: limitFlag("dlq replay", values.limit) }, (js, jsm) =>
    deadLetterCandidates(js, jsm, filter, { model, deadline, now: () => new Date(), names: namesOf(config) }),
  );
}

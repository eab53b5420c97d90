/**
 * The end of a batch: reads its lines back from BATCH_LINES (through the project's one stream
 * reader, `shared/nats/read.ts`), and writes the output file (served lines) and the error file
 * (failed lines, invalid lines, and — for a cancelled or expired batch — every line that never
 * ran) to the object store. A cancelled or expired batch first withdraws its jobs that have not
 * run, deleting them from JOBS, so no router serves them afterwards.
 *
 * Idempotent: the files have fixed ids (`file-<batch>-output|error`), so an owner that takes
 * over a half-finished collection writes the same files again.
 */
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import { names as namesFor, type Names } from "../../shared/contract/subjects.ts";

const DEFAULT_NAMES = namesFor();
import { scan } from "../../shared/nats/read.ts";
import type { Catalog } from "../../shared/routing/catalog.ts";
import { fileLines, jobIdFor, lineNoOf, notRunLine, parseLine } from "./batch-lines.ts";
import { LineSeqsSchema, type BatchRecord, type LineSeqs, type RequestCounts } from "./batch-schema.ts";
import type { FileStore } from "./files.ts";

export interface CollectorDeps {
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  readonly files: FileStore;
  readonly catalog: () => Catalog;
  /** The deployment's names. @defaultValue names() (no namespace) */
  readonly names?: Names;
}

export interface Collected {
  readonly outputFileId: string | null;
  readonly errorFileId: string | null;
  readonly counts: RequestCounts;
}

const NOT_RUN = {
  expired: { code: "batch_expired", message: "The batch's 24h completion window ended before this request ran." },
  cancelled: { code: "batch_cancelled", message: "The batch was cancelled before this request ran." },
} as const;

/** Writes the batch's files; `ending` says whether lines without an outcome are to be reported (and their jobs withdrawn). */
export async function collectBatch(deps: CollectorDeps, record: BatchRecord, ending: "completed" | "expired" | "cancelled"): Promise<Collected> {
  const id = record.batch.id;
  const { ok, err, done, seqs } = await readLines(deps.js, id, deps.names ?? DEFAULT_NAMES);
  let total = record.batch.request_counts.total;
  if (ending !== "completed") {
    await Promise.all(seqs.filter(([lineNo]) => !done.has(lineNo)).map(([, seq]) => deps.jsm.streams.deleteMessage((deps.names ?? DEFAULT_NAMES).streams.jobs, seq, false).catch(() => false)));
    const { code, message } = NOT_RUN[ending];
    const data = await deps.files.content(record.tenant, record.batch.input_file_id).catch(() => new Uint8Array());
    const catalog = deps.catalog();
    const seen = new Set<string>();
    total = 0;
    for (const { lineNo, text } of fileLines(data)) {
      total++;
      // Parsed again only for the custom_id the error line reports.
      const line = parseLine(text, lineNo, catalog, seen);
      if (!done.has(lineNo)) err.push(notRunLine(jobIdFor(id, lineNo), line.customId, code, message));
    }
  }
  const write = async (lines: string[], kind: "output" | "error") =>
    lines.length === 0 ? null : (await deps.files.put(record.tenant, `${id}_${kind}.jsonl`, "batch_output", Buffer.from(`${lines.join("\n")}\n`), `file-${id}-${kind}`)).id;
  return {
    outputFileId: await write(ok, "output"),
    errorFileId: await write(err, "error"),
    counts: { total, completed: ok.length, failed: err.length },
  };
}

/** Once the batch's end is recorded: its lines in BATCH_LINES are no longer needed. */
export async function discardLines(jsm: JetStreamManager, batchId: string, n: Names = DEFAULT_NAMES): Promise<void> {
  await jsm.streams.purge(n.batchLinesStream, { filter: `${n.batchLinesSubject}.${batchId}.>` });
}

async function readLines(js: JetStreamClient, id: string, n: Names): Promise<{ ok: string[]; err: string[]; done: Set<number>; seqs: LineSeqs }> {
  const ok: string[] = [];
  const err: string[] = [];
  const done = new Set<number>();
  const seqs: LineSeqs = [];
  const decoder = new TextDecoder();
  for await (const m of scan(js, n.batchLinesStream, { subject: `${n.batchLinesSubject}.${id}.>` })) {
    const kind = m.subject.slice(m.subject.lastIndexOf(".") + 1);
    if (kind === "seqs") {
      // Written by this gateway's own dispatch: one that does not parse is a bug, not input.
      seqs.push(...LineSeqsSchema.parse(JSON.parse(decoder.decode(m.data))));
      continue;
    }
    const lineNo = lineNoOf(m.msgId ?? "");
    // A line filed twice (its outcome outlived the duplicate window) counts once.
    if (done.has(lineNo)) continue;
    done.add(lineNo);
    (kind === "ok" ? ok : err).push(decoder.decode(m.data));
  }
  return { ok, err, done, seqs };
}

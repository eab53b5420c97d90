/**
 * What a replay re-runs, read from the DLQ (dead letters) or the JOBS stream (served jobs,
 * retained for `streams.jobs_max_age`), turned into candidates: a new job to publish, or the
 * reason a message cannot be replayed.
 */
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import { names as namesFor, TASK_PATTERN, type Names } from "../../shared/contract/subjects.ts";
import { matchesDeadLetter, matchesMeta, type DeadLetterFilter } from "./filters.ts";
import { isRecord } from "../../shared/json.ts";
import { deadLetterReplay, replayId, replayJob } from "./lineage.ts";
import { scan } from "../../shared/nats/read.ts";
import type { DeadLetter } from "../../shared/contract/job.ts";

export type Candidate =
  | { readonly kind: "replay"; readonly newId: string; readonly of: string; readonly task: string; readonly job: Record<string, unknown> }
  | { readonly kind: "skip"; readonly id: string; readonly why: string };

export interface Scanned {
  /** Undefined for a message the filter did not select. */
  readonly candidate: Candidate | undefined;
  /** Messages still to read. */
  readonly pending: number;
}

export interface Overrides {
  readonly model?: string;
  readonly deadline?: string;
  readonly now: () => Date;
  /** The deployment's names (which DLQ and JOBS to read). @defaultValue names() (no namespace) */
  readonly names?: Names;
}

/** Dead letters matching the filter, oldest first, each as the job that re-runs it. */
export async function* deadLetterCandidates(js: JetStreamClient, jsm: JetStreamManager, filter: DeadLetterFilter, o: Overrides): AsyncGenerator<Scanned> {
  // Replays that fail again during this run land in the DLQ too; they are the next run's business.
  const { streams: STREAMS, subjects: SUBJECTS } = o.names ?? namesFor();
  const lastSeq = (await jsm.streams.info(STREAMS.dlq)).state.last_seq;
  for await (const m of scan(js, STREAMS.dlq, { subject: `${SUBJECTS.dlq}.${filter.task ?? ">"}`, since: filter.since, lastSeq })) {
    const d = parse(m.data) as DeadLetter | undefined;
    if (!d || typeof d.id !== "string" || !matchesDeadLetter(d, filter)) {
      yield { candidate: undefined, pending: m.pending };
      continue;
    }
    yield { candidate: fromDeadLetter(d, o), pending: m.pending };
  }
}

function fromDeadLetter(d: DeadLetter, o: Overrides): Candidate {
  const job = d.job;
  if (!isRecord(job) || "raw_base64" in job || !isRecord(job.request)) return { kind: "skip", id: d.id, why: "the dead letter holds no parsable job" };
  if (!TASK_PATTERN.test(d.task)) return { kind: "skip", id: d.id, why: "its subject names no valid task" };
  const metadata = isRecord(job.metadata) ? job.metadata : {};
  const { newId, label, root, generation } = deadLetterReplay(d.id, metadata);
  if (/[\r\n]/.test(newId)) return { kind: "skip", id: d.id, why: "its id cannot travel in a Nats-Msg-Id header" };
  return {
    kind: "replay",
    newId,
    of: d.id,
    task: d.task,
    job: replayJob(job, {
      newId,
      task: d.task,
      model: o.model,
      deadline: o.deadline,
      lineage: { replay_of: d.id, replay_root: root, replay_run: label, replay_source: "dlq", replayed_at: o.now().toISOString() },
      extra: { replay_generation: generation, replay_reason: d.reason },
    }),
  };
}

export interface JobSelection {
  readonly task: string;
  readonly since: Date;
  readonly until?: Date;
  readonly meta?: DeadLetterFilter["meta"];
  /** The run label: every new id is `<original id>~<run>`. */
  readonly run: string;
}

/** Jobs published to `jobs.<task>` in [since, until], oldest first, each as the job that re-runs it. */
export async function* jobCandidates(js: JetStreamClient, jsm: JetStreamManager, sel: JobSelection, o: Overrides): AsyncGenerator<Scanned> {
  const { streams: STREAMS, subjects: SUBJECTS } = o.names ?? namesFor();
  const lastSeq = (await jsm.streams.info(STREAMS.jobs)).state.last_seq;
  for await (const m of scan(js, STREAMS.jobs, { subject: `${SUBJECTS.jobs}.${sel.task}`, since: sel.since, lastSeq })) {
    // `until` has millisecond precision and stored times have nanoseconds: its whole millisecond is in range.
    if (sel.until && Math.floor(m.time) > sel.until.getTime()) return;
    const job = parse(m.data);
    if (!isRecord(job) || !isRecord(job.request)) {
      yield { candidate: { kind: "skip", id: m.msgId ?? `#${m.seq}`, why: "not a job (it was dead-lettered as invalid_job)" }, pending: m.pending };
      continue;
    }
    const metadata = isRecord(job.metadata) ? job.metadata : {};
    if (!matchesMeta(metadata, sel.meta)) {
      yield { candidate: undefined, pending: m.pending };
      continue;
    }
    const id = typeof job.id === "string" && job.id.length > 0 && job.id.length <= 128 ? job.id : m.msgId;
    if (id === undefined) {
      yield { candidate: { kind: "skip", id: `#${m.seq}`, why: "the job has no id and no Nats-Msg-Id" }, pending: m.pending };
      continue;
    }
    // A retry or replay of a job re-runs as that job: one new job per original and run label,
    // and a run meets its own output (from an earlier, interrupted start) as already replayed.
    const root = typeof metadata.replay_root === "string" ? metadata.replay_root : id;
    const newId = replayId(root, sel.run);
    if (/[\r\n]/.test(newId)) {
      yield { candidate: { kind: "skip", id, why: "its id cannot travel in a Nats-Msg-Id header" }, pending: m.pending };
      continue;
    }
    yield {
      candidate: {
        kind: "replay",
        newId,
        of: id,
        task: sel.task,
        job: replayJob(job, {
          newId,
          task: sel.task,
          model: o.model,
          deadline: o.deadline,
          lineage: { replay_of: id, replay_root: root, replay_run: sel.run, replay_source: "jobs", replayed_at: o.now().toISOString() },
        }),
      },
      pending: m.pending,
    };
  }
}

function parse(data: Uint8Array): unknown {
  try {
    return JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("utf8"));
  } catch {
    return undefined;
  }
}

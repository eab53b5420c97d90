/**
 * What a replayed job is: a new job with a new id derived from the one it re-runs, and its
 * lineage in metadata. Pure, so the id rules are unit tests.
 *
 * The new id is a function of the original, never random: a replay run that is interrupted
 * and started again derives the same ids, so the JetStream duplicate window and the replay
 * ledger (ledger.ts) both recognise what was already published.
 */
import { createHash } from "node:crypto";
import { isRecord } from "../../shared/json.ts";

/** Replay run labels become part of job ids; kept to characters no NATS header or shell mangles. */
export const RUN_LABEL = /^[A-Za-z0-9_.+=@/-]{1,64}$/;

/** Job ids are at most 128 characters (wire contract v1). */
const MAX_ID = 128;

/** Lineage a replayed job carries in its `metadata`, echoed back in its result or dead letter. */
export interface ReplayLineage {
  /** The id of the job this one re-runs. */
  readonly replay_of: string;
  /** The first job of the chain (a replay of a replay keeps its grandparent here). */
  readonly replay_root: string;
  /** The run label: `r<n>` for dead-letter replays (n-th generation), `--run` for batch replays. */
  readonly replay_run: string;
  /** Where the original was read: the DLQ or the JOBS stream. */
  readonly replay_source: "dlq" | "jobs";
  readonly replayed_at: string;
}

/**
 * `<id>~<label>`. When that would pass 128 characters the original id is replaced by a
 * SHA-256 prefix of it (`replay_of` still names it in full), which keeps the id a pure
 * function of (original, label).
 */
export function replayId(originalId: string, label: string): string {
  const plain = `${originalId}~${label}`;
  if (plain.length <= MAX_ID) return plain;
  return `${createHash("sha256").update(originalId).digest("hex").slice(0, 40)}~${label}`;
}

/**
 * A dead letter's replay: `X` becomes `X~r1`; a dead-lettered `X~r1` (itself a dead-letter
 * replay) becomes `X~r2`, and so on, so a chain of retries reads as generations of one job.
 * Anything else gets `~r1` appended.
 */
export function deadLetterReplay(id: string, metadata: Record<string, unknown>): { newId: string; label: string; root: string; generation: number } {
  const previous = metadata.replay_source === "dlq" && typeof metadata.replay_root === "string" && Number.isInteger(metadata.replay_generation) ? (metadata.replay_generation as number) : 0;
  const root = previous > 0 ? (metadata.replay_root as string) : id;
  const generation = previous + 1;
  const label = `r${generation}`;
  return { newId: replayId(root, label), label, root, generation };
}

/** The default label of a batch replay: the model it re-runs on (`best`, `premium/large`), else `rerun`. */
export function defaultRunLabel(model: string | undefined): string {
  return model === undefined ? "rerun" : model;
}

export interface ReplayJobOptions {
  readonly newId: string;
  readonly task: string;
  readonly lineage: ReplayLineage;
  /** Extra lineage fields (the dead-letter generation). */
  readonly extra?: Record<string, unknown>;
  /** Sets `request.model`: an alias, `provider/model` or `auto`. */
  readonly model?: string;
  /**
   * The new job's deadline. The original's is dropped: a job re-run later is past it by
   * definition (that is often why it was dead-lettered).
   */
  readonly deadline?: string;
}

/** The new job: the original's request, routing and metadata, with the new id, lineage and overrides. */
export function replayJob(original: Record<string, unknown>, opts: ReplayJobOptions): Record<string, unknown> {
  const { deadline: _dropped, ...rest } = original;
  const metadata = isRecord(original.metadata) ? original.metadata : {};
  const request = isRecord(original.request) && opts.model !== undefined ? { ...original.request, model: opts.model } : original.request;
  return {
    ...rest,
    id: opts.newId,
    task: opts.task,
    request,
    ...(opts.deadline === undefined ? {} : { deadline: opts.deadline }),
    metadata: { ...metadata, ...opts.lineage, ...opts.extra },
  };
}


/**
 * The router's boundary: raw JetStream message → a typed job, or the dead letter it must
 * become. Pure, so every malformed input is a unit test.
 */
import { JOB_ID_PATTERN, JobSchema, type DlqReason, type Job } from "../../shared/contract/job.ts";
import { names, type Names } from "../../shared/contract/subjects.ts";
import { isRecord } from "../../shared/json.ts";

export type Intake =
  | { readonly kind: "job"; readonly job: Job }
  | {
      readonly kind: "reject";
      readonly id: string;
      readonly task: string;
      readonly dlqSubject: string;
      readonly reason: Extract<DlqReason, "invalid_job" | "no_route">;
      readonly error: string;
      readonly job: Record<string, unknown>;
      readonly metadata: Record<string, unknown>;
    };

export interface IntakeOptions {
  readonly maxBytes: number;
  readonly isKnownTask: (task: string) => boolean;
  readonly newId: () => string;
  /** The deployment's names: a namespaced router reads `<ns>.jobs.<task>`. @defaultValue names() (no namespace) */
  readonly names?: Names;
}

const DEFAULT_NAMES = names();

/** How much of an oversize payload the dead letter keeps, so the dead letter itself fits in the stream. */
const RAW_KEEP_BYTES = 4096;

export function intake(subject: string, headerId: string | undefined, data: Uint8Array, opts: IntakeOptions): Intake {
  const n = opts.names ?? DEFAULT_NAMES;
  const subjectTask = n.taskOfSubject(subject);
  const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);

  let value: unknown;
  let parseError: Error | undefined;
  try {
    value = JSON.parse(bytes.toString("utf8"));
  } catch (err) {
    parseError = err as Error;
  }
  if (data.byteLength > opts.maxBytes) {
    // The id and metadata still come from the payload when it parses, so the caller can match the dead letter to its job.
    const kept = bytes.subarray(0, Math.min(data.byteLength, RAW_KEEP_BYTES)).toString("base64");
    const head = isRecord(value) ? value : {};
    return reject(subject, subjectTask, headerId, opts, n, "invalid_job", `The job is ${data.byteLength} bytes, over the ${opts.maxBytes}-byte limit.`, { raw_base64: kept, truncated: true, size_bytes: data.byteLength }, head.id, head.metadata);
  }
  if (subjectTask === null) {
    return reject(subject, subjectTask, headerId, opts, n, "invalid_job", `Subject "${subject}" is not ${n.subjects.jobs}.<task> with a task matching [a-z0-9_-]{1,64}.`, { raw_base64: bytes.toString("base64") });
  }
  if (parseError) return reject(subject, subjectTask, headerId, opts, n, "invalid_job", `The payload is not valid JSON (${parseError.message}).`, { raw_base64: bytes.toString("base64") });
  if (!isRecord(value)) return reject(subject, subjectTask, headerId, opts, n, "invalid_job", "The payload is JSON but not an object.", { raw_base64: bytes.toString("base64") });
  // JSON.parse accepts any depth, but serialising the result or dead letter would overflow the stack.
  if (deeperThan(value, 1)) return reject(subject, subjectTask, headerId, opts, n, "invalid_job", `The job nests deeper than ${MAX_DEPTH} levels.`, { raw_base64: bytes.toString("base64") });

  const parsed = JobSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue && issue.path.length > 0 ? `${issue.path.join(".")}: ` : "";
    return reject(subject, subjectTask, headerId, opts, n, "invalid_job", `The job does not match wire contract v1 (${where}${issue?.message ?? "invalid"}).`, value, value.id, value.metadata);
  }
  const input = parsed.data;
  if (input.task !== undefined && input.task !== subjectTask) {
    return reject(subject, subjectTask, headerId, opts, n, "invalid_job", `The job's task "${input.task}" does not match its subject's task "${subjectTask}".`, value, input.id, input.metadata);
  }
  if (!opts.isKnownTask(subjectTask)) {
    return reject(subject, subjectTask, headerId, opts, n, "no_route", `No task "${subjectTask}" is configured.`, value, input.id, input.metadata);
  }
  // The parse's output is this job's own object: completed in place, the keys in the order a
  // copy `{ ...input, id, task }` would have (an existing key keeps its place, a new one goes last).
  input.id ??= validIdOf(headerId) ?? opts.newId();
  input.task = subjectTask;
  return { kind: "job", job: input as Job };
}

function validIdOf(headerId: string | undefined): string | undefined {
  return headerId && JOB_ID_PATTERN.test(headerId) ? headerId : undefined;
}

/** The rejection of a job that cannot be worked; only built on that path, so the hot path makes no closures for it. */
function reject(subject: string, subjectTask: string | null, headerId: string | undefined, opts: IntakeOptions, n: Names, reason: "invalid_job" | "no_route", error: string, job: Record<string, unknown>, id?: unknown, metadata?: unknown): Intake {
  const suffix = subject.startsWith(`${n.subjects.jobs}.`) ? subject.slice(n.subjects.jobs.length + 1) : "";
  return {
    kind: "reject",
    id: typeof id === "string" && JOB_ID_PATTERN.test(id) ? id : (validIdOf(headerId) ?? opts.newId()),
    task: subjectTask ?? suffix,
    dlqSubject: n.dlqSubject(suffix || "_"),
    reason,
    error,
    job,
    metadata: isRecord(metadata) ? metadata : {},
  };
}

const MAX_DEPTH = 64;

/** Whether `v`, found at `depth`, nests deeper than MAX_DEPTH: recursion no deeper than the limit, and no allocation. */
function deeperThan(v: object, depth: number): boolean {
  if (depth > MAX_DEPTH) return true;
  if (Array.isArray(v)) {
    for (const child of v) if (typeof child === "object" && child !== null && deeperThan(child, depth + 1)) return true;
    return false;
  }
  for (const key in v) {
    const child = (v as Record<string, unknown>)[key];
    if (typeof child === "object" && child !== null && deeperThan(child, depth + 1)) return true;
  }
  return false;
}

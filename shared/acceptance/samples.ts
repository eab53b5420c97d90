/**
 * A task's sample jobs (`config/samples/<task>.jsonl`): what `switchyard verify` runs against
 * every candidate before a model is promoted, and what the pricing service re-tests a model
 * demoted for the task with.
 *
 * One JSON object per line (blank lines skipped), either a job in wire contract v1,
 * `{"request": {...}}`, or a job with the answer it should get,
 * `{"job": {"request": {...}}, "expected": "billing"}` (a label or the whole trimmed answer)
 * or `{"job": {...}, "expected": {"flagged": true}}` (fields the JSON output must have).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { JobSchema, type ChatRequest } from "../contract/job.ts";
import { ConfigError, UsageError } from "../errors.ts";
import { isRecord } from "../json.ts";

/** What a sample's answer should be: a label (or the whole trimmed text), or fields the JSON output must have. */
export type Expected = string | Record<string, unknown>;

export interface Sample {
  /** 1-based line in the samples file, for messages. */
  readonly line: number;
  readonly request: ChatRequest;
  readonly expected: Expected | undefined;
}

/** Where a task's samples live by convention: `<dir>/<task>.jsonl`, the dir being `samples/` beside the config file. */
export function samplesFile(dir: string, task: string): string {
  return join(dir, `${task}.jsonl`);
}

/**
 * Reads and validates a samples file. A bad line is a ConfigError naming the file and line;
 * an unreadable or empty file is a UsageError.
 */
export function readSamples(file: string, task: string): Sample[] {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new UsageError(`cannot read the samples file ${file} (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  const samples: Sample[] = [];
  const problems: ConfigError["problems"][number][] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = i + 1;
    if (raw.trim() === "") return;
    const problem = (message: string, path = "") => problems.push({ path, line, column: 1, message });
    let v: unknown;
    try {
      v = JSON.parse(raw);
    } catch (err) {
      return problem(`not JSON (${(err as Error).message})`);
    }
    if (!isRecord(v)) return problem("a sample must be a JSON object");
    const wrapped = "job" in v && !("request" in v);
    const jobValue = wrapped ? v.job : v;
    const expected = wrapped ? v.expected : undefined;
    if (wrapped && expected !== undefined && typeof expected !== "string" && !isRecord(expected)) {
      return problem('"expected" must be a string (a label) or an object (fields of the JSON output)', "expected");
    }
    const parsed = JobSchema.safeParse(jobValue);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      return problem(issue.message, [...(wrapped ? ["job"] : []), ...issue.path.map(String)].join("."));
    }
    if (parsed.data.task !== undefined && parsed.data.task !== task) return problem(`the job is for task "${parsed.data.task}", not "${task}"`, "task");
    samples.push({ line, request: parsed.data.request, expected: expected as Expected | undefined });
  });
  if (problems.length > 0) throw new ConfigError(file, problems);
  if (samples.length === 0) throw new UsageError(`${file} holds no samples`);
  return samples;
}

/**
 * Output acceptance: whether a model's answer is acceptable for its task, judged the same
 * way whichever model or dialect gave it. A check is compiled once per task from the task's
 * `output:` section (`shared/config/output-schema.ts`) and then run on every attempt, so
 * nothing is compiled per call.
 */
import type { ChatRequest } from "../contract/job.ts";
import { compileJsonSchema, compilePattern, DEFAULT_LABEL_FIELD, describeSchemaError, type OutputConfig } from "../config/output-schema.ts";

export type OutputCheckResult =
  | {
      readonly ok: true;
      /** The parsed JSON for `json` output, the label for `text` output with labels; undefined otherwise. */
      readonly output: unknown;
      /** The answer's label when the task lists `labels`. */
      readonly label?: string;
    }
  | { readonly ok: false; readonly error: string };

/**
 * `content` is the answer's text (`choices[0].message.content`); `request` is the job's
 * request, read only when the task has no `output:` section.
 */
export type OutputCheck = (content: string | null, request: ChatRequest) => OutputCheckResult;

/** Labels and offending values are quoted up to this length in error messages. */
const QUOTE_CHARS = 60;

/**
 * Compiles a task's output check. Without an `output:` section the check keeps the router's
 * original rule: the content must parse as JSON when the request's `response_format` asks
 * for JSON (`json_object`, `json_schema`), and that JSON is the output; otherwise anything
 * goes and there is no output.
 */
export function compileOutputCheck(config: OutputConfig | undefined): OutputCheck {
  if (config === undefined) return requestFormatCheck;

  const validate = config.json_schema === undefined ? undefined : compileJsonSchema(config.json_schema);
  const patterns = (config.forbidden_patterns ?? []).map((p) => ({ source: p, re: compilePattern(p) }));
  const labels = config.labels === undefined ? undefined : new Set(config.labels);
  const labelList = config.labels?.join(", ");
  const labelPath = (config.label_field ?? DEFAULT_LABEL_FIELD).split(".");
  const maxChars = config.max_chars;
  const json = config.format === "json";

  return (content) => {
    if (content === null || content.length === 0) return fail("the answer has no text content");
    if (maxChars !== undefined && content.length > maxChars) {
      return fail(`the answer is ${content.length} characters, over max_chars ${maxChars}`);
    }
    for (const p of patterns) {
      if (p.re.test(content)) return fail(`the answer matches forbidden pattern ${p.source}`);
    }

    if (!json) {
      if (labels === undefined) return { ok: true, output: undefined };
      const label = content.trim();
      if (!labels.has(label)) return fail(`the answer ${quote(label)} is not one of the labels (${labelList})`);
      return { ok: true, output: label, label };
    }

    let output: unknown;
    try {
      output = JSON.parse(stripCodeFence(content));
    } catch (err) {
      return fail(`the answer is not JSON (${(err as Error).message})`);
    }
    if (validate !== undefined && !validate(output)) {
      return fail(`the answer does not match json_schema: ${describeSchemaError(validate.errors)}`);
    }
    if (labels === undefined) return { ok: true, output };
    const label = valueAt(output, labelPath);
    if (typeof label !== "string") {
      return fail(`the answer has no string at label_field ${labelPath.join(".")}${label === undefined ? "" : ` (found ${quote(JSON.stringify(label))})`}`);
    }
    if (!labels.has(label)) return fail(`the answer's ${labelPath.join(".")} ${quote(label)} is not one of the labels (${labelList})`);
    return { ok: true, output, label };
  };
}

function requestFormatCheck(content: string | null, request: ChatRequest): OutputCheckResult {
  const format = request.response_format?.type;
  if (format !== "json_object" && format !== "json_schema") return { ok: true, output: undefined };
  try {
    return { ok: true, output: JSON.parse(stripCodeFence(content ?? "")) };
  } catch {
    return fail(`response_format ${format} was requested but the content is not JSON`);
  }
}

const FENCE = /^```[\w-]*[ \t]*\r?\n([\s\S]*?)\r?\n?```$/;

/**
 * The text inside a Markdown code fence (` ```json … ``` `) when the whole answer is one;
 * some models wrap JSON in a fence even when told not to. Anything else comes back as it is.
 */
export function stripCodeFence(content: string): string {
  const trimmed = content.trim();
  if (!trimmed.startsWith("```")) return content;
  const m = FENCE.exec(trimmed);
  return m ? m[1]! : content;
}

function valueAt(value: unknown, path: readonly string[]): unknown {
  let v = value;
  for (const key of path) {
    if (typeof v !== "object" || v === null || Array.isArray(v)) return undefined;
    v = (v as Record<string, unknown>)[key];
  }
  return v;
}

function quote(s: string): string {
  return JSON.stringify(s.length > QUOTE_CHARS ? `${s.slice(0, QUOTE_CHARS)}…` : s);
}

function fail(error: string): OutputCheckResult {
  return { ok: false, error };
}

/**
 * Output contracts steer the call, not only judge it. A task's `output:` section (and a job's
 * own `response_format`) becomes what the model is asked for — an OpenAI `response_format`
 * that each adapter sends in its dialect's native structured-output form — and the same
 * contract judges the answer afterwards.
 *
 * Compiled once per task (`compileTaskContract`, at config load) and bound once per job
 * (`bindContract`); nothing here does I/O, and nothing is compiled per attempt.
 */
import { Ajv2020, type ValidateFunction } from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import type { ChatMessage, ChatRequest } from "../contract/job.ts";
import { DEFAULT_LABEL_FIELD, describeSchemaError, type OutputConfig } from "../config/output-schema.ts";
import { jsonInstruction } from "../adapters/convert.ts";
import { isRecord } from "../json.ts";
import { compileOutputCheck, stripCodeFence, type OutputCheck, type OutputCheckResult } from "./check.ts";

/** The OpenAI `response_format` values a contract may ask for. */
export type ResponseFormat =
  | { type: "json_object" }
  | { type: "json_schema"; json_schema: { name: string; schema: Record<string, unknown>; strict: boolean } };

/** The property a text-label task's answer is wrapped in while it travels as JSON. */
export const LABEL_WRAPPER_KEY = "label";

export interface TaskContract {
  /** What every call for this task asks of the answer's shape; undefined when the task says nothing about it. */
  readonly responseFormat: ResponseFormat | undefined;
  /** Text labels travel as `{"label": …}` (an enum the model must pick from) and come back as the bare label. */
  readonly wrapsLabel: boolean;
  /** The task's labels, for the instruction sent to a model that takes no schema. */
  readonly labels: readonly string[] | undefined;
  /** The task's own check (`output:`), run on every answer. */
  readonly check: OutputCheck;
  /** True when the task has an `output:` section. */
  readonly declared: boolean;
}

/**
 * A task's contract: text with `labels` → an enum the model picks from (wrapped in an object,
 * since structured outputs take objects); JSON with a `json_schema` → that schema; JSON with
 * `labels` at a `label_field` → an object schema holding that enum; other JSON → JSON mode.
 */
export function compileTaskContract(task: string, output: OutputConfig | undefined): TaskContract {
  const check = compileOutputCheck(output);
  if (output === undefined) return { responseFormat: undefined, wrapsLabel: false, labels: undefined, check, declared: false };
  const labels = output.labels;
  let schema: Record<string, unknown> | undefined;
  let wrapsLabel = false;
  if (output.format === "text") {
    if (labels !== undefined) {
      schema = labelSchema([LABEL_WRAPPER_KEY], labels);
      wrapsLabel = true;
    }
  } else if (output.json_schema !== undefined) {
    schema = output.json_schema;
  } else if (labels !== undefined) {
    schema = labelSchema((output.label_field ?? DEFAULT_LABEL_FIELD).split("."), labels);
  }
  const responseFormat: ResponseFormat | undefined =
    schema !== undefined ? jsonSchemaFormat(task, schema) : output.format === "json" ? { type: "json_object" } : undefined;
  return { responseFormat, wrapsLabel, labels, check, declared: true };
}

/** `{a: {b: {enum}}}` for the path a.b, each level required, nothing else allowed. */
function labelSchema(path: readonly string[], labels: readonly string[]): Record<string, unknown> {
  let schema: Record<string, unknown> = { type: "string", enum: [...labels] };
  for (let i = path.length - 1; i >= 0; i--) {
    schema = { type: "object", properties: { [path[i]!]: schema }, required: [path[i]!], additionalProperties: false };
  }
  return schema;
}

function jsonSchemaFormat(name: string, schema: Record<string, unknown>): ResponseFormat {
  // OpenAI's strict mode refuses a schema it cannot enforce exactly, so ask for it only when the schema qualifies.
  return { type: "json_schema", json_schema: { name: schemaName(name), schema, strict: strictCompatible(schema) } };
}

/** OpenAI names a response format with [a-zA-Z0-9_-]{1,64}. */
function schemaName(name: string): string {
  const cleaned = name.replace(/[^a-zA-Z0-9_-]/g, "_").slice(0, 64);
  return cleaned || "output";
}

const STRICT_UNSUPPORTED = new Set(["allOf", "not", "if", "then", "else", "dependentRequired", "dependentSchemas", "patternProperties", "unevaluatedProperties", "unevaluatedItems", "propertyNames"]);

/**
 * Whether OpenAI's strict structured outputs can take the schema: every object closed
 * (`additionalProperties: false`) with all its properties required, and no keyword strict
 * mode refuses.
 */
export function strictCompatible(schema: unknown): boolean {
  if (Array.isArray(schema)) return schema.every(strictCompatible);
  if (!isRecord(schema)) return true;
  for (const key of Object.keys(schema)) if (STRICT_UNSUPPORTED.has(key)) return false;
  const props = schema.properties;
  if (isRecord(props) || schema.type === "object") {
    if (schema.additionalProperties !== false) return false;
    const required = Array.isArray(schema.required) ? schema.required : [];
    if (isRecord(props) && !Object.keys(props).every((k) => required.includes(k))) return false;
  }
  for (const [key, value] of Object.entries(schema)) {
    if (key === "enum" || key === "const" || key === "required" || key === "default" || key === "examples") continue;
    if (typeof value === "object" && value !== null && !strictCompatible(value)) return false;
  }
  return true;
}

/** Why a job's own contract cannot be used: its schema is not a JSON Schema. */
export interface ContractError {
  readonly kind: "invalid_schema";
  readonly message: string;
}

/** A task's contract bound to one job: the request to send each candidate and the judge of its answers. */
export interface JobContract {
  /**
   * The request to send a model: with the contract as `response_format` when the model takes
   * structured output, else as an instruction in the system prompt.
   */
  requestFor(structuredOutput: boolean): ChatRequest;
  /** Judges one answer against the task's check and the job's own schema. */
  judge(content: string | null): Judged;
}

export type Judged = (OutputCheckResult & { readonly ok: false }) | { readonly ok: true; readonly output: unknown; readonly label?: string; readonly content: string | null };

/**
 * Binds the task's contract to a job. When the job gives its own `json_schema`, that schema
 * goes to the model (the caller knows what it asked for) and both it and the task's check
 * judge the answer; a job asking only for JSON mode gets the task's schema where it has one.
 */
export function bindContract(task: TaskContract, request: ChatRequest): JobContract | ContractError {
  const jobFormat = request.response_format;
  let jobValidate: ValidateFunction | undefined;
  let format: ResponseFormat | undefined = task.responseFormat;
  let wraps = task.wrapsLabel;
  if (jobFormat?.type === "json_schema") {
    const spec = isRecord(jobFormat.json_schema) ? jobFormat.json_schema : undefined;
    const schema = spec && isRecord(spec.schema) ? spec.schema : undefined;
    if (schema !== undefined) {
      const compiled = compileJobSchema(schema);
      if ("kind" in compiled) return compiled;
      jobValidate = compiled;
    }
    // The job's own format goes as it was given; it replaces the task's wrapper.
    format = undefined;
    wraps = false;
  } else if (jobFormat?.type === "json_object" && task.wrapsLabel) {
    // The caller asked for JSON: the wrapped label object is that JSON.
    wraps = false;
  }

  return new BoundContract(task, request, format, wraps, jobValidate);
}

/** A class rather than closures: one is made per job on the hot path. */
class BoundContract implements JobContract {
  readonly #task: TaskContract;
  readonly #request: ChatRequest;
  readonly #format: ResponseFormat | undefined;
  readonly #wraps: boolean;
  readonly #jobValidate: ValidateFunction | undefined;
  #structured: ChatRequest | undefined;
  #unstructured: ChatRequest | undefined;

  constructor(task: TaskContract, request: ChatRequest, format: ResponseFormat | undefined, wraps: boolean, jobValidate: ValidateFunction | undefined) {
    this.#task = task;
    this.#request = request;
    this.#format = format;
    this.#wraps = wraps;
    this.#jobValidate = jobValidate;
  }

  requestFor(structuredOutput: boolean): ChatRequest {
    const format = this.#format;
    if (structuredOutput) return format === undefined ? this.#request : (this.#structured ??= { ...this.#request, response_format: format });
    return (this.#unstructured ??= instructed(this.#request, format ?? jobFormatOf(this.#request), this.#task.labels, this.#task.wrapsLabel && this.#wraps));
  }

  judge(raw: string | null): Judged {
    const content = this.#wraps && raw !== null ? unwrapLabel(raw) : raw;
    const checked = this.#task.check(content, this.#request);
    if (!checked.ok) return checked;
    let output = checked.output;
    const validate = this.#jobValidate;
    if (validate !== undefined) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(stripCodeFence(content ?? ""));
      } catch {
        return { ok: false, error: "response_format json_schema was requested but the answer is not JSON" };
      }
      if (!validate(parsed)) return { ok: false, error: `the answer does not match the request's json_schema: ${describeSchemaError(validate.errors)}` };
      if (output === undefined) output = parsed;
    }
    return checked.label === undefined ? { ok: true, output, content } : { ok: true, output, label: checked.label, content };
  }
}

function jobFormatOf(request: ChatRequest): ResponseFormat | undefined {
  const f = request.response_format;
  if (f?.type === "json_object") return { type: "json_object" };
  if (f?.type === "json_schema" && isRecord(f.json_schema) && isRecord(f.json_schema.schema)) {
    return { type: "json_schema", json_schema: { name: String(f.json_schema.name ?? "output"), schema: f.json_schema.schema, strict: false } };
  }
  return undefined;
}

/** `{"label": "x"}` (possibly fenced) → `x`; anything else as it is, for the check to judge. */
function unwrapLabel(content: string): string {
  const trimmed = stripCodeFence(content).trim();
  if (!trimmed.startsWith("{")) return content;
  try {
    const parsed: unknown = JSON.parse(trimmed);
    if (isRecord(parsed) && typeof parsed[LABEL_WRAPPER_KEY] === "string") return parsed[LABEL_WRAPPER_KEY];
  } catch {
    // Not JSON after all: judged as it is.
  }
  return content;
}

/**
 * The request with the contract as a system instruction instead of a `response_format`, for a
 * model configured `structured_output: false`: the labels listed, or the JSON instruction the
 * dialects use (with the schema), so the answer can still pass the same check.
 */
function instructed(request: ChatRequest, format: ResponseFormat | undefined, labels: readonly string[] | undefined, bareLabel: boolean): ChatRequest {
  const text = bareLabel && labels !== undefined
    ? `Answer with exactly one of these labels and nothing else: ${labels.join(", ")}.`
    : jsonInstruction({ ...request, response_format: format });
  const { response_format: _dropped, ...rest } = request;
  if (text === undefined) return rest as ChatRequest;
  const system: ChatMessage = { role: "system", content: text };
  return { ...rest, messages: [system, ...request.messages] } as ChatRequest;
}

/** Jobs repeat their schema (every line of a batch gives the same one): compile each once. */
const jobSchemas = new Map<string, ValidateFunction | ContractError>();
const JOB_SCHEMA_CACHE = 256;

function compileJobSchema(schema: Record<string, unknown>): ValidateFunction | ContractError {
  const key = JSON.stringify(schema);
  const known = jobSchemas.get(key);
  if (known !== undefined) return known;
  // A job's schema was written for some provider's structured outputs, which tolerate keywords
  // ajv does not know (`propertyOrdering`, say): lenient, unlike the config's own schemas. One
  // instance per schema, so two jobs' schemas with the same `$id` never clash and an evicted
  // schema leaves nothing behind.
  const ajv = new Ajv2020({ strict: false, allErrors: false, logger: false });
  addFormats.default(ajv);
  // Clients name the draft they wrote to (the Vercel AI SDK sends draft-07's `$schema`); the
  // keywords models are given are the same in 2020-12, so the check reads the schema as that.
  const { $schema: _draft, ...body } = schema;
  let compiled: ValidateFunction | ContractError;
  try {
    compiled = ajv.compile(body);
  } catch (err) {
    compiled = { kind: "invalid_schema", message: `request.response_format.json_schema.schema is not a valid JSON Schema: ${(err as Error).message}` };
  }
  if (jobSchemas.size >= JOB_SCHEMA_CACHE) jobSchemas.delete(jobSchemas.keys().next().value as string);
  jobSchemas.set(key, compiled);
  return compiled;
}

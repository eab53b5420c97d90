/**
 * A task's `output:` section: what an acceptable answer looks like, the same whichever model
 * gave it. Every attempt's content is checked against it (`shared/acceptance/check.ts`); an
 * answer that fails is an `invalid_output` attempt and the job moves to the next candidate.
 * `switchyard verify` measures each candidate model against it before the model is promoted.
 *
 * JSON Schemas and forbidden patterns are compiled here, while the config loads, so a bad one
 * stops start-up with its file and line like any other config mistake; the compiled forms are
 * kept (keyed by the parsed config values) for the checks to reuse.
 */
import { Ajv2020, type ErrorObject, type ValidateFunction } from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import { z } from "zod";

export const OUTPUT_FORMATS = ["json", "text"] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

/** The `label_field` used when a JSON task lists `labels` without naming the field. */
export const DEFAULT_LABEL_FIELD = "label";

export const OutputConfigSchema = z
  .strictObject({
    /**
     * `json`: the content must parse as JSON (a surrounding Markdown code fence is removed
     * first) and the parsed value is the result's `output`. `text`: the content is used as it
     * is. Defaults to `json` when `json_schema` or `label_field` is given, else `text`.
     */
    format: z.enum(OUTPUT_FORMATS).optional(),
    /**
     * A JSON Schema (draft 2020-12) the parsed output must satisfy; `json` format only.
     * Formats such as `date-time` and `email` are checked. Unknown keywords are config errors.
     */
    json_schema: z.record(z.string(), z.unknown()).optional(),
    /**
     * The allowed answers. `text`: the whole content, trimmed of surrounding whitespace, must
     * be one of them. `json`: the string at `label_field` must be.
     */
    labels: z.array(z.string().min(1)).min(1).optional(),
    /** Where the label sits in a JSON output: a key, or a dotted path such as `result.label`. @defaultValue `label` */
    label_field: z.string().min(1).optional(),
    /** Longest acceptable content, in characters (UTF-16 code units), before any parsing. */
    max_chars: z.int().positive().optional(),
    /**
     * Regular expressions (JavaScript syntax) the content must not match anywhere: `secret` or
     * `/api[_-]?key/i` (slashes allow flags; `g` and `y` are refused).
     */
    forbidden_patterns: z.array(z.string().min(1)).optional(),
    /**
     * The floor for `switchyard verify`: the least share of samples a candidate model must
     * pass (and, where samples carry expected answers, agree with) to stay in its tier.
     * @defaultValue 0.95
     */
    min_pass_rate: z.number().min(0).max(1).default(0.95),
  })
  .superRefine((o, ctx) => {
    const format = o.format ?? inferFormat(o);
    if (format === "text" && o.json_schema !== undefined) {
      ctx.addIssue({ code: "custom", path: ["json_schema"], message: "json_schema needs format: json" });
    }
    if (format === "text" && o.label_field !== undefined) {
      ctx.addIssue({ code: "custom", path: ["label_field"], message: "label_field needs format: json" });
    }
    if (o.label_field !== undefined && o.labels === undefined) {
      ctx.addIssue({ code: "custom", path: ["label_field"], message: "label_field needs labels to check against" });
    }
    if (o.json_schema !== undefined) {
      try {
        compileJsonSchema(o.json_schema);
      } catch (err) {
        const at = err instanceof JsonSchemaError ? err.at : [];
        ctx.addIssue({ code: "custom", path: ["json_schema", ...at], message: `not a valid JSON Schema: ${(err as Error).message}` });
      }
    }
    o.forbidden_patterns?.forEach((p, i) => {
      try {
        compilePattern(p);
      } catch (err) {
        ctx.addIssue({ code: "custom", path: ["forbidden_patterns", i], message: (err as Error).message });
      }
    });
  })
  .transform((o) => ({ ...o, format: o.format ?? inferFormat(o) }));

export type OutputConfig = z.output<typeof OutputConfigSchema>;

function inferFormat(o: { json_schema?: unknown; label_field?: unknown }): OutputFormat {
  return o.json_schema !== undefined || o.label_field !== undefined ? "json" : "text";
}

const validators = new WeakMap<object, ValidateFunction>();

/**
 * Compiles a JSON Schema, once per schema object: the config load compiles it to report a
 * bad schema, and the output check reuses that validator. Throws when the schema is invalid.
 */
export function compileJsonSchema(schema: Record<string, unknown>): ValidateFunction {
  const known = validators.get(schema);
  if (known) return known;
  // One instance per schema: two tasks' schemas may carry the same `$id` without clashing.
  // Unknown keywords and formats are refused (they are usually typos that would silently
  // check nothing); the pedantic type checks are off, as `type: [string, "null"]` and a
  // `minimum` without a `type` are valid JSON Schema that model providers' docs use.
  const ajv = new Ajv2020({ strictSchema: true, strictNumbers: true, strictTypes: false, strictTuples: false, strictRequired: false, allErrors: false, logger: false });
  addFormats.default(ajv);
  if (!ajv.validateSchema(schema)) {
    const e = ajv.errors?.[0];
    throw new JsonSchemaError(e ? `${e.instancePath || "(root)"}: ${e.message ?? e.keyword}` : "rejected by the meta-schema", pointer(e?.instancePath ?? ""));
  }
  const validate = ajv.compile(schema);
  validators.set(schema, validate);
  return validate;
}

/** A schema the meta-schema refuses; `at` is where in the schema, for the config error's line. */
export class JsonSchemaError extends Error {
  readonly at: (string | number)[];
  constructor(message: string, at: (string | number)[]) {
    super(message);
    this.name = "JsonSchemaError";
    this.at = at;
  }
}

/** A JSON Pointer (`/properties/n/type`) → path segments, array indices as numbers. */
function pointer(p: string): (string | number)[] {
  if (p === "") return [];
  return p
    .slice(1)
    .split("/")
    .map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"))
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}

/** The first validation error in words, e.g. `/score: must be <= 1`. */
export function describeSchemaError(errors: readonly ErrorObject[] | null | undefined): string {
  const e = errors?.[0];
  if (!e) return "does not match";
  const where = e.instancePath || "(root)";
  const extra = e.keyword === "additionalProperties" ? ` (${String((e.params as { additionalProperty?: unknown }).additionalProperty)})` : e.keyword === "enum" ? ` (${(e.params as { allowedValues?: unknown[] }).allowedValues?.map((v) => JSON.stringify(v)).join(", ")})` : "";
  return `${where}: ${e.message ?? e.keyword}${extra}`;
}

const LITERAL = /^\/(.+)\/([a-z]*)$/s;

/** `source` or `/source/flags` → a RegExp. Throws with a message fit for a config error. */
export function compilePattern(pattern: string): RegExp {
  const literal = LITERAL.exec(pattern);
  const source = literal ? literal[1]! : pattern;
  const flags = literal ? literal[2]! : "";
  // A global or sticky regex carries lastIndex from one test() to the next: checks would depend on history.
  if (/[gy]/.test(flags)) throw new Error(`the g and y flags make ${pattern} stateful; leave them out`);
  try {
    return new RegExp(source, flags);
  } catch (err) {
    throw new Error(`not a valid regular expression: ${(err as Error).message}`);
  }
}

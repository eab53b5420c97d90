import { describe, expect, it } from "vitest";
import { compileOutputCheck, stripCodeFence } from "../shared/acceptance/check.ts";
import { parseConfig } from "../shared/config/load.ts";
import { OutputConfigSchema, type OutputConfig } from "../shared/config/output-schema.ts";
import type { ChatRequest } from "../shared/contract/job.ts";
import { ConfigError } from "../shared/errors.ts";

const plain: ChatRequest = { model: "auto", messages: [{ role: "user", content: "hi" }] };
const jsonRequest: ChatRequest = { ...plain, response_format: { type: "json_object" } };
const output = (o: Record<string, unknown>): OutputConfig => OutputConfigSchema.parse(o);

const VERDICT_SCHEMA = {
  type: "object",
  required: ["flagged", "categories", "score"],
  properties: {
    flagged: { type: "boolean" },
    categories: { type: "array", items: { enum: ["harassment", "hate", "violence", "self_harm", "spam"] } },
    score: { type: "number", minimum: 0, maximum: 1 },
  },
  additionalProperties: false,
};

describe("output check without an output: section (the router's original rule)", () => {
  const check = compileOutputCheck(undefined);

  it("accepts any content and gives no output when the request did not ask for JSON", () => {
    expect(check("not json at all", plain)).toEqual({ ok: true, output: undefined });
    expect(check(null, plain)).toEqual({ ok: true, output: undefined });
  });

  it("parses the content when response_format asks for JSON", () => {
    expect(check('{"flagged":false}', jsonRequest)).toEqual({ ok: true, output: { flagged: false } });
    expect(check('{"a":1}', { ...plain, response_format: { type: "json_schema", json_schema: { name: "x", schema: {} } } })).toEqual({ ok: true, output: { a: 1 } });
  });

  it("fails content that is not JSON, naming the response_format", () => {
    expect(check("sure! here it is", jsonRequest)).toEqual({ ok: false, error: "response_format json_object was requested but the content is not JSON" });
    expect(check(null, jsonRequest)).toMatchObject({ ok: false });
  });

  it("strips a ```json code fence before parsing", () => {
    expect(check('```json\n{"flagged":true}\n```', jsonRequest)).toEqual({ ok: true, output: { flagged: true } });
  });
});

describe("code fences", () => {
  it("unwraps a whole-answer fence, with or without a language, and leaves other text alone", () => {
    expect(stripCodeFence('```json\n{"a":1}\n```')).toBe('{"a":1}');
    expect(stripCodeFence('  ```\n[1, 2]\n```\n')).toBe("[1, 2]");
    expect(stripCodeFence('```JSON\r\n{"a":1}\r\n```')).toBe('{"a":1}');
    expect(stripCodeFence('{"a":"```"}')).toBe('{"a":"```"}');
    expect(stripCodeFence("```json\n{} and then some text")).toBe("```json\n{} and then some text");
  });
});

describe("output check: json with a json_schema", () => {
  const check = compileOutputCheck(output({ format: "json", json_schema: VERDICT_SCHEMA }));

  it("passes a conforming answer and returns it parsed", () => {
    expect(check('{"flagged":true,"categories":["violence"],"score":0.4}', plain)).toEqual({
      ok: true,
      output: { flagged: true, categories: ["violence"], score: 0.4 },
    });
  });

  it("parses JSON whatever the request's response_format says: the task declares the format", () => {
    expect(check('```json\n{"flagged":false,"categories":[],"score":0}\n```', plain)).toMatchObject({ ok: true, output: { flagged: false } });
  });

  it("fails content that is not JSON", () => {
    const r = check("The text is fine.", plain);
    expect(r.ok).toBe(false);
    expect(!r.ok && r.error).toMatch(/^the answer is not JSON \(/);
  });

  it("fails a schema violation and says where", () => {
    expect(check('{"flagged":true,"categories":[],"score":3}', plain)).toEqual({ ok: false, error: "the answer does not match json_schema: /score: must be <= 1" });
    expect(check('{"flagged":true,"categories":[]}', plain)).toEqual({ ok: false, error: "the answer does not match json_schema: (root): must have required property 'score'" });
    expect(check('{"flagged":true,"categories":[],"score":0,"why":"x"}', plain)).toEqual({
      ok: false,
      error: "the answer does not match json_schema: (root): must NOT have additional properties (why)",
    });
    expect(check('{"flagged":true,"categories":["rude"],"score":0}', plain)).toEqual({
      ok: false,
      error: 'the answer does not match json_schema: /categories/0: must be equal to one of the allowed values ("harassment", "hate", "violence", "self_harm", "spam")',
    });
  });

  it("checks string formats", () => {
    const dated = compileOutputCheck(output({ json_schema: { type: "object", properties: { at: { type: "string", format: "date-time" } } } }));
    expect(dated('{"at":"2026-11-24T12:00:00Z"}', plain).ok).toBe(true);
    expect(dated('{"at":"last tuesday"}', plain)).toEqual({ ok: false, error: 'the answer does not match json_schema: /at: must match format "date-time"' });
  });
});

describe("output check: labels", () => {
  const labels = ["billing", "technical", "other"];

  it("text mode: the whole trimmed answer must be a label, and is the output", () => {
    const check = compileOutputCheck(output({ format: "text", labels }));
    expect(check("billing", plain)).toEqual({ ok: true, output: "billing", label: "billing" });
    expect(check("  technical\n", plain)).toEqual({ ok: true, output: "technical", label: "technical" });
    expect(check("Billing", plain)).toEqual({ ok: false, error: 'the answer "Billing" is not one of the labels (billing, technical, other)' });
    expect(check("billing, I think", plain)).toMatchObject({ ok: false });
    expect(check("", plain)).toEqual({ ok: false, error: "the answer has no text content" });
    expect(check(null, plain)).toEqual({ ok: false, error: "the answer has no text content" });
  });

  it("text mode quotes a long wrong answer only in part", () => {
    const check = compileOutputCheck(output({ labels }));
    const r = check("x".repeat(500), plain);
    expect(!r.ok && r.error).toBe(`the answer "${"x".repeat(60)}…" is not one of the labels (billing, technical, other)`);
  });

  it("json mode: the string at label_field (default `label`) must be a label", () => {
    const check = compileOutputCheck(output({ format: "json", labels }));
    expect(check('{"label":"other","confidence":0.9}', plain)).toEqual({ ok: true, output: { label: "other", confidence: 0.9 }, label: "other" });
    expect(check('{"label":"refund"}', plain)).toEqual({ ok: false, error: 'the answer\'s label "refund" is not one of the labels (billing, technical, other)' });
    expect(check('{"category":"billing"}', plain)).toEqual({ ok: false, error: "the answer has no string at label_field label" });
    expect(check('{"label":3}', plain)).toEqual({ ok: false, error: 'the answer has no string at label_field label (found "3")' });
  });

  it("json mode: a dotted label_field reaches into nested objects", () => {
    const check = compileOutputCheck(output({ labels, label_field: "result.category" }));
    expect(check('{"result":{"category":"technical"}}', plain)).toMatchObject({ ok: true, label: "technical" });
    expect(check('{"result":"technical"}', plain)).toEqual({ ok: false, error: "the answer has no string at label_field result.category" });
  });
});

describe("output check: max_chars and forbidden_patterns", () => {
  it("fails an answer over max_chars, counting the raw content", () => {
    const check = compileOutputCheck(output({ max_chars: 10 }));
    expect(check("0123456789", plain)).toEqual({ ok: true, output: undefined });
    expect(check("0123456789A", plain)).toEqual({ ok: false, error: "the answer is 11 characters, over max_chars 10" });
  });

  it("fails an answer matching a forbidden pattern, naming the pattern; /…/i literals keep their flags", () => {
    const check = compileOutputCheck(output({ forbidden_patterns: ["sk-[A-Za-z0-9]{8,}", "/as an ai language model/i"] }));
    expect(check("all good", plain).ok).toBe(true);
    expect(check("my key is sk-abcdefgh1234", plain)).toEqual({ ok: false, error: "the answer matches forbidden pattern sk-[A-Za-z0-9]{8,}" });
    expect(check("As an AI language model, I cannot", plain)).toEqual({ ok: false, error: "the answer matches forbidden pattern /as an ai language model/i" });
    // The same answer twice gets the same verdict: no regex state carried between calls.
    expect(check("As an AI language model, I cannot", plain).ok).toBe(false);
  });

  it("applies every check in json mode too, before parsing", () => {
    const check = compileOutputCheck(output({ format: "json", max_chars: 40, forbidden_patterns: ["password"] }));
    expect(check('{"password":"hunter2"}', plain)).toEqual({ ok: false, error: "the answer matches forbidden pattern password" });
    expect(check(`{"a":"${"x".repeat(40)}"}`, plain)).toMatchObject({ ok: false, error: expect.stringContaining("over max_chars 40") });
  });
});

describe("output: config section", () => {
  const yaml = (outputBlock: string) => `
providers:
  acme:
    dialect: openai
    base_url: http://127.0.0.1:9/v1
    models:
      small: { input_per_mtok: 0.1, output_per_mtok: 0.4, context_window: 8000 }
tasks:
  extraction:
    tiers:
      - models: [acme/small]
    output:
${outputBlock}
`;
  const errorOf = (text: string): ConfigError => {
    try {
      parseConfig(text, "cfg.yaml", {});
    } catch (err) {
      if (err instanceof ConfigError) return err;
      throw err;
    }
    throw new Error("expected a ConfigError");
  };

  it("defaults: format json when a json_schema is given, text otherwise; min_pass_rate 0.95", () => {
    const cfg = parseConfig(yaml("      json_schema: { type: object }"), "cfg.yaml", {});
    expect(cfg.tasks.extraction!.output).toEqual({ format: "json", json_schema: { type: "object" }, min_pass_rate: 0.95 });
    expect(OutputConfigSchema.parse({ labels: ["a"] })).toEqual({ format: "text", labels: ["a"], min_pass_rate: 0.95 });
    expect(OutputConfigSchema.parse({ labels: ["a"], label_field: "kind" }).format).toBe("json");
  });

  it("reports an invalid JSON Schema at the line of the offending keyword", () => {
    const err = errorOf(yaml("      format: json\n      json_schema:\n        type: object\n        properties:\n          n: { type: integr }"));
    expect(err.problems).toHaveLength(1);
    expect(err.problems[0]).toMatchObject({ path: "tasks.extraction.output.json_schema.properties.n.type", line: 17 });
    expect(err.problems[0]!.message).toMatch(/^not a valid JSON Schema: \/properties\/n\/type: must be equal to one of the allowed values/);
    expect(err.message).toContain("cfg.yaml:17:");
  });

  it("reports an unknown JSON Schema keyword (strict mode) with its line", () => {
    const err = errorOf(yaml("      json_schema:\n        type: object\n        requird: [a]"));
    expect(err.problems[0]).toMatchObject({ path: "tasks.extraction.output.json_schema", line: 14 });
    expect(err.problems[0]!.message).toContain("requird");
  });

  it("accepts the JSON Schema idioms providers document: union types with null, keywords without a type", () => {
    const cfg = parseConfig(yaml('      json_schema:\n        type: object\n        properties:\n          note: { type: [string, "null"], maxLength: 20 }\n          score: { minimum: 0 }'), "cfg.yaml", {});
    const check = compileOutputCheck(cfg.tasks.extraction!.output);
    expect(check('{"note":null,"score":1}', plain).ok).toBe(true);
    expect(check('{"note":"ok","score":-1}', plain)).toEqual({ ok: false, error: "the answer does not match json_schema: /score: must be >= 0" });
  });

  it("reports an invalid regular expression at its own line", () => {
    const err = errorOf(yaml('      forbidden_patterns:\n        - "ok"\n        - "(unclosed"'));
    expect(err.problems).toHaveLength(1);
    expect(err.problems[0]).toMatchObject({ path: "tasks.extraction.output.forbidden_patterns.1", line: 15 });
    expect(err.problems[0]!.message).toContain("not a valid regular expression");
    expect(errorOf(yaml('      forbidden_patterns: ["/x/g"]')).problems[0]!.message).toContain("the g and y flags");
  });

  it("refuses settings that cannot apply", () => {
    expect(errorOf(yaml("      format: text\n      json_schema: { type: object }")).problems[0]).toMatchObject({ path: "tasks.extraction.output.json_schema", message: "json_schema needs format: json" });
    expect(errorOf(yaml("      format: json\n      label_field: kind")).problems[0]).toMatchObject({ message: "label_field needs labels to check against" });
    expect(errorOf(yaml("      labels: []")).problems[0]!.path).toBe("tasks.extraction.output.labels");
    expect(errorOf(yaml("      min_pass_rate: 1.5")).problems[0]!.path).toBe("tasks.extraction.output.min_pass_rate");
    expect(errorOf(yaml("      max_length: 5")).problems[0]!.message).toContain("max_length");
  });
});

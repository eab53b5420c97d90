import { describe, expect, it } from "vitest";
import { bindContract, compileTaskContract, strictCompatible, type JobContract } from "../shared/acceptance/contract.ts";
import { OutputConfigSchema } from "../shared/config/output-schema.ts";
import type { ChatRequest } from "../shared/contract/job.ts";

const MODERATION_SCHEMA = {
  type: "object",
  required: ["flagged", "score"],
  properties: { flagged: { type: "boolean" }, score: { type: "number", minimum: 0, maximum: 1 } },
  additionalProperties: false,
};
const output = (o: unknown) => OutputConfigSchema.parse(o);
const req = (extra: Partial<ChatRequest> = {}): ChatRequest => ({ model: "auto", messages: [{ role: "user", content: "Is this rude? 'you idiot'" }], ...extra });
const bound = (c: ReturnType<typeof bindContract>): JobContract => {
  if ("kind" in c) throw new Error(c.message);
  return c;
};

describe("a task's output contract becomes what the model is asked for", () => {
  it("a json_schema goes as OpenAI's json_schema response_format, strict when the schema allows it", () => {
    const c = compileTaskContract("moderation", output({ json_schema: MODERATION_SCHEMA }));
    expect(c.responseFormat).toEqual({ type: "json_schema", json_schema: { name: "moderation", schema: MODERATION_SCHEMA, strict: true } });
    const open = compileTaskContract("extraction", output({ json_schema: { type: "object", properties: { reply: { type: "string" } } } }));
    expect(open.responseFormat).toMatchObject({ json_schema: { strict: false } });
  });

  it("text labels become an enum the model picks from, wrapped in an object, and come back bare", () => {
    const c = compileTaskContract("classification", output({ labels: ["billing", "shipping", "other"] }));
    expect(c.responseFormat).toEqual({
      type: "json_schema",
      json_schema: {
        name: "classification",
        strict: true,
        schema: { type: "object", properties: { label: { type: "string", enum: ["billing", "shipping", "other"] } }, required: ["label"], additionalProperties: false },
      },
    });
    const job = bound(bindContract(c, req()));
    expect(job.requestFor(true).response_format).toEqual(c.responseFormat);
    expect(job.judge('{"label":"shipping"}')).toEqual({ ok: true, output: "shipping", label: "shipping", content: "shipping" });
    // A model told in words answers the bare label: accepted as it is.
    expect(job.judge("billing")).toMatchObject({ ok: true, output: "billing", content: "billing" });
    expect(job.judge('{"label":"refunds"}')).toMatchObject({ ok: false, error: expect.stringContaining('"refunds" is not one of the labels') });
  });

  it("JSON labels at a dotted label_field become a nested enum; JSON without a schema asks for JSON mode", () => {
    const c = compileTaskContract("routing", output({ format: "json", labels: ["a", "b"], label_field: "result.team" }));
    expect(c.responseFormat).toMatchObject({
      json_schema: { schema: { properties: { result: { properties: { team: { enum: ["a", "b"] } }, required: ["team"] } }, required: ["result"] } },
    });
    expect(compileTaskContract("any-json", output({ format: "json" })).responseFormat).toEqual({ type: "json_object" });
    expect(compileTaskContract("free", output({ max_chars: 100 })).responseFormat).toBeUndefined();
    expect(compileTaskContract("chat", undefined).responseFormat).toBeUndefined();
  });

  it("a model with structured_output: false gets the contract as an instruction instead of a response_format", () => {
    const labels = bound(bindContract(compileTaskContract("classification", output({ labels: ["billing", "other"] })), req()));
    const plain = labels.requestFor(false);
    expect(plain.response_format).toBeUndefined();
    expect(plain.messages[0]).toEqual({ role: "system", content: "Answer with exactly one of these labels and nothing else: billing, other." });
    const schema = bound(bindContract(compileTaskContract("moderation", output({ json_schema: MODERATION_SCHEMA })), req()));
    const instructed = schema.requestFor(false);
    expect(instructed.response_format).toBeUndefined();
    expect(instructed.messages[0]!.content).toContain(`conform to this JSON Schema:\n${JSON.stringify(MODERATION_SCHEMA)}`);
    expect(instructed.messages.slice(1)).toEqual(req().messages);
  });

  it("when job and task both give a schema, the job's goes to the model and both judge the answer", () => {
    const task = compileTaskContract("moderation", output({ json_schema: MODERATION_SCHEMA }));
    const jobSchema = { type: "object", properties: { flagged: { type: "boolean" }, score: { type: "number" }, reason: { type: "string" } }, required: ["flagged", "score", "reason"] };
    const format = { type: "json_schema" as const, json_schema: { name: "mine", schema: jobSchema } };
    const job = bound(bindContract(task, req({ response_format: format })));
    expect(job.requestFor(true).response_format).toEqual(format);
    // Passes the job's schema, fails the task's (additionalProperties false).
    expect(job.judge('{"flagged":true,"score":0.9,"reason":"insult"}')).toMatchObject({ ok: false, error: expect.stringContaining("json_schema") });
    // Passes the task's, fails the job's (reason missing).
    expect(job.judge('{"flagged":true,"score":0.9}')).toMatchObject({ ok: false, error: expect.stringContaining("the request's json_schema") });
  });

  it("a job's own schema is checked even when the task has no contract", () => {
    const job = bound(bindContract(compileTaskContract("chat", undefined), req({ response_format: { type: "json_schema", json_schema: { name: "x", schema: { type: "object", required: ["city"] } } } })));
    expect(job.judge('{"city":"Lisbon"}')).toEqual({ ok: true, output: { city: "Lisbon" }, content: '{"city":"Lisbon"}' });
    expect(job.judge('{"town":"Lisbon"}')).toMatchObject({ ok: false });
    expect(job.judge("Lisbon")).toMatchObject({ ok: false, error: expect.stringContaining("not JSON") });
  });

  it("a job's schema written to draft-07 (as the Vercel AI SDK sends it) is checked like any other", () => {
    const schema = { $schema: "http://json-schema.org/draft-07/schema#", type: "object", properties: { team: { type: "string", enum: ["a", "b"] } }, required: ["team"], additionalProperties: false };
    const job = bound(bindContract(compileTaskContract("chat", undefined), req({ response_format: { type: "json_schema", json_schema: { name: "x", schema } } })));
    expect(job.judge('{"team":"a"}')).toMatchObject({ ok: true, output: { team: "a" } });
    expect(job.judge('{"team":"c"}')).toMatchObject({ ok: false });
  });

  it("a job's schema that is not a JSON Schema is refused with the reason", () => {
    const c = bindContract(compileTaskContract("chat", undefined), req({ response_format: { type: "json_schema", json_schema: { name: "x", schema: { type: "nonsense" } } } }));
    expect(c).toMatchObject({ kind: "invalid_schema", message: expect.stringContaining("not a valid JSON Schema") });
  });

  it("strict compatibility follows OpenAI's rules: closed objects, all properties required, no allOf", () => {
    expect(strictCompatible(MODERATION_SCHEMA)).toBe(true);
    expect(strictCompatible({ type: "object", properties: { a: { type: "string" } }, required: [], additionalProperties: false })).toBe(false);
    expect(strictCompatible({ type: "object", properties: { a: { type: "object", properties: { b: { type: "string" } }, required: ["b"] } }, required: ["a"], additionalProperties: false })).toBe(false);
    expect(strictCompatible({ allOf: [MODERATION_SCHEMA] })).toBe(false);
  });
});

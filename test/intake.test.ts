import { describe, expect, it } from "vitest";
import { DeadLetterSchema } from "../shared/contract/job.ts";
import { intake } from "../services/router/intake.ts";

const enc = (v: unknown) => new TextEncoder().encode(typeof v === "string" ? v : JSON.stringify(v));
let n = 0;
const opts = { maxBytes: 1024, isKnownTask: (t: string) => t === "moderation", newId: () => `gen-${++n}` };
const valid = { request: { messages: [{ role: "user", content: "hi" }] } };

function rejectOf(subject: string, data: Uint8Array, headerId?: string) {
  const r = intake(subject, headerId, data, opts);
  if (r.kind !== "reject") throw new Error("expected a reject");
  // What the router publishes must itself satisfy the contract.
  DeadLetterSchema.parse({ id: r.id, task: r.task, status: "failed", reason: r.reason, error: r.error, attempts: [], job: r.job, metadata: r.metadata, failed_at: new Date().toISOString() });
  return r;
}

describe("intake", () => {
  it("accepts a minimal job: id from the header, task from the subject, model auto", () => {
    const r = intake("jobs.moderation", "abc", enc(valid), opts);
    expect(r).toMatchObject({ kind: "job", job: { id: "abc", task: "moderation", request: { model: "auto" } } });
  });

  it("prefers the body's id, and generates one when neither is given", () => {
    expect(intake("jobs.moderation", "hdr", enc({ ...valid, id: "body" }), opts)).toMatchObject({ job: { id: "body" } });
    expect(intake("jobs.moderation", undefined, enc(valid), opts)).toMatchObject({ job: { id: expect.stringMatching(/^gen-/) } });
  });

  it("keeps unknown fields (forward compatibility) and echoes metadata", () => {
    const r = intake("jobs.moderation", "x", enc({ ...valid, extra: 1, metadata: { tenant: "acme" } }), opts);
    expect(r).toMatchObject({ kind: "job", job: { extra: 1, metadata: { tenant: "acme" } } });
  });

  it("not JSON → invalid_job carrying the raw bytes and the header id", () => {
    const r = rejectOf("jobs.moderation", enc("{not json"), "h1");
    expect(r).toMatchObject({ id: "h1", task: "moderation", dlqSubject: "dlq.moderation", reason: "invalid_job" });
    expect(Buffer.from(r.job.raw_base64 as string, "base64").toString()).toBe("{not json");
  });

  it("random bytes and JSON that is not an object → invalid_job", () => {
    expect(rejectOf("jobs.moderation", new Uint8Array([0xff, 0x00, 0x81, 0x7b])).reason).toBe("invalid_job");
    expect(rejectOf("jobs.moderation", enc("[1,2]")).error).toContain("not an object");
  });

  it.each([
    ["empty messages", { request: { messages: [] } }, "request.messages"],
    ["no request", { id: "a" }, "request"],
    ["wrong type", { request: { messages: [{ role: "user", content: 5 }] } }, "request.messages.0.content"],
    ["bad role", { request: { messages: [{ role: "robot", content: "x" }] } }, "request.messages.0.role"],
    ["bad deadline", { ...valid, deadline: "tomorrow" }, "deadline"],
    ["id too long", { ...valid, id: "x".repeat(129) }, "id"],
    ["typo in routing", { ...valid, routing: { max_cost: 1 } }, "routing"],
  ])("%s → invalid_job naming the field", (_, body, field) => {
    const r = rejectOf("jobs.moderation", enc(body), "h");
    expect(r.reason).toBe("invalid_job");
    expect(r.error).toContain(field);
    expect(r.job).toEqual(body);
  });

  it("oversize → invalid_job with a truncated raw copy", () => {
    const r = rejectOf("jobs.moderation", enc({ ...valid, pad: "x".repeat(2000) }), "big");
    expect(r.error).toContain("over the 1024-byte limit");
    expect(r.job).toMatchObject({ truncated: true, size_bytes: expect.any(Number) });
  });

  it("task in the body must match the subject", () => {
    expect(rejectOf("jobs.moderation", enc({ ...valid, task: "other" })).error).toContain('does not match');
  });

  it("unknown task → no_route on dlq.<task>", () => {
    expect(rejectOf("jobs.translation", enc(valid), "t")).toMatchObject({ reason: "no_route", task: "translation", dlqSubject: "dlq.translation" });
  });

  it("a subject deeper than jobs.<task> → invalid_job on the mirrored dlq subject", () => {
    expect(rejectOf("jobs.a.b", enc(valid))).toMatchObject({ reason: "invalid_job", dlqSubject: "dlq.a.b" });
  });
});

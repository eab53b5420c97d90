import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import * as anthropicBatch from "../shared/adapters/anthropic-batch.ts";
import { isBatchFinal, type BatchLine, type BatchLineOutcome } from "../shared/adapters/batch.ts";
import { BadRequestError, type ProviderError } from "../shared/adapters/errors.ts";
import * as geminiBatch from "../shared/adapters/gemini-batch.ts";
import { ADAPTERS } from "../shared/adapters/index.ts";
import * as openaiBatch from "../shared/adapters/openai-batch.ts";
import type { Dialect, HttpReply, ProviderTarget } from "../shared/adapters/types.ts";
import { ChatRequestSchema, type ChatRequest } from "../shared/contract/job.ts";

const target: ProviderTarget = { provider: "acme", upstream: "up-model", apiKey: "k-123" };
const chat = (input: Record<string, unknown>): ChatRequest => ChatRequestSchema.parse(input);

/** The two lines the request fixtures were written for. */
const SUBMITTED: readonly BatchLine[] = [
  {
    customId: "ticket-1",
    request: chat({
      messages: [
        { role: "system", content: "Classify the ticket. Labels: billing, shipping, other" },
        { role: "user", content: "My invoice shows the wrong amount" },
      ],
      max_tokens: 50,
      temperature: 0,
    }),
  },
  { customId: "ticket-2", request: chat({ messages: [{ role: "user", content: "Where is my parcel?" }], max_tokens: 50 }) },
];

/** The four lines the result fixtures answer. */
const ANSWERED: readonly BatchLine[] = ["ticket-1", "ticket-2", "ticket-3", "ticket-4"].map((customId) => ({
  customId,
  request: chat({ messages: [{ role: "user", content: `question of ${customId}` }] }),
}));

function path(dialect: Dialect, name: string): URL {
  return new URL(`../shared/adapters/__fixtures__/${dialect}/${name}`, import.meta.url);
}
function text(dialect: Dialect, name: string): string {
  return readFileSync(path(dialect, name), "utf8");
}
function reply(dialect: Dialect, name: string): HttpReply {
  const recorded = JSON.parse(text(dialect, `${name}.json`)) as { status: number; headers: Record<string, string>; body: unknown };
  return { status: recorded.status, headers: recorded.headers, body: JSON.stringify(recorded.body) };
}
function call(c: { method?: string; path: string; headers: Record<string, string>; body: string }) {
  return { path: c.path, headers: c.headers, body: JSON.parse(c.body) as unknown };
}
function thrown(fn: () => unknown): ProviderError {
  try {
    fn();
  } catch (err) {
    return err as ProviderError;
  }
  throw new Error("expected a throw");
}
function kinds(outcomes: readonly BatchLineOutcome[]): string[] {
  return outcomes.map((o) => `${o.customId}:${o.kind}`);
}

/** A completed line is what the chat parser makes of the same body on a live call. */
function expectLiveEqual(dialect: Dialect, outcome: BatchLineOutcome | undefined, body: unknown, request: ChatRequest): void {
  expect(outcome?.kind).toBe("completed");
  if (outcome?.kind !== "completed") return;
  expect(outcome.completion).toEqual(ADAPTERS[dialect].fromResponse({ status: 200, headers: {}, body: JSON.stringify(body) }, request));
}

describe("openai batch adapter", () => {
  it("writes the input file with one chat-completions line per request, each body the live call's", () => {
    expect(openaiBatch.toBatchFile(SUBMITTED, target)).toBe(text("openai", "batch-input.jsonl"));
    const live = JSON.parse(ADAPTERS.openai.toRequest(SUBMITTED[0]!.request, target).body);
    expect(JSON.parse(text("openai", "batch-input.jsonl").split("\n")[0]!).body).toEqual(live);
  });

  it("uploads the file as multipart form data with purpose batch", () => {
    const upload = openaiBatch.toUploadCall(SUBMITTED, target);
    expect(upload.path).toBe("/files");
    expect(upload.headers.authorization).toBe("Bearer k-123");
    const boundary = /boundary=(.+)$/.exec(upload.headers["content-type"]!)?.[1];
    expect(upload.headers["content-type"]).toMatch(/^multipart\/form-data; boundary=/);
    const parts = upload.body.split(`--${boundary}`);
    expect(parts[1]).toBe('\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n');
    expect(parts[2]).toBe(`\r\nContent-Disposition: form-data; name="file"; filename="switchyard-batch.jsonl"\r\nContent-Type: application/jsonl\r\n\r\n${text("openai", "batch-input.jsonl")}\r\n`);
    expect(parts[3]).toBe("--\r\n");
    expect(openaiBatch.fromUploadReply(reply("openai", "batch-file-created"))).toBe("file-7mWx2k1J4YhD3bqgPzVt6Q");
  });

  it("creates, polls, cancels and downloads at the documented paths", () => {
    expect(call(openaiBatch.toCreateCall("file-7mWx2k1J4YhD3bqgPzVt6Q", target))).toEqual(JSON.parse(text("openai", "batch-create-request.json")));
    expect(openaiBatch.toPollCall("batch_1", target)).toMatchObject({ method: "GET", path: "/batches/batch_1" });
    expect(openaiBatch.toCancelCall("batch_1", target)).toMatchObject({ path: "/batches/batch_1/cancel" });
    expect(openaiBatch.toCancelCall("batch_1", target).method).toBeUndefined();
    expect(openaiBatch.toContentCall("file-1", target)).toMatchObject({ method: "GET", path: "/files/file-1/content" });
  });

  it("reads each status into the normalised shape", () => {
    const validating = openaiBatch.fromBatchReply(reply("openai", "batch-validating"));
    expect(validating).toMatchObject({ id: "batch_67c6d3a1e5c88190b0d16b1c4b7a1d2e", state: "validating", results: undefined, failure: undefined });
    expect(openaiBatch.fromBatchReply(reply("openai", "batch-in-progress")).counts).toEqual({ total: 4, processing: 2, succeeded: 1, errored: 1, expired: 0, cancelled: 0 });
    const completed = openaiBatch.fromBatchReply(reply("openai", "batch-completed"));
    expect(completed.state).toBe("completed");
    expect(isBatchFinal(completed.state)).toBe(true);
    expect(completed.results).toEqual({ kind: "files", outputFileId: "file-Hb2mQ9rCt1aZ8xYpL3nVwE", errorFileId: "file-Q4sT8uVw2xYz6aBcDeFgHi" });
    expect(completed.counts).toEqual({ total: 4, processing: 0, succeeded: 2, errored: 2, expired: 0, cancelled: 0 });
    const expired = openaiBatch.fromBatchReply(reply("openai", "batch-expired"));
    expect(expired).toMatchObject({ state: "expired", counts: { succeeded: 2, errored: 1, expired: 1, processing: 0 } });
    const failed = openaiBatch.fromBatchReply(reply("openai", "batch-failed"));
    expect(failed).toMatchObject({ state: "failed", results: undefined, failure: "line 3: This line is not parseable as valid JSON." });
  });

  it("turns a refused batch call into the dialect's typed error", () => {
    const err = thrown(() => openaiBatch.fromBatchReply(reply("openai", "batch-error-not-found")));
    expect(err).toBeInstanceOf(BadRequestError);
    expect(err.status).toBe(404);
  });

  it("parses both result files into one outcome per line, answers exactly as live calls", () => {
    const output = text("openai", "batch-output.jsonl");
    const outcomes = openaiBatch.fromResultFiles([output, text("openai", "batch-errors.jsonl")], ANSWERED, "expired");
    expect(kinds(outcomes)).toEqual(["ticket-1:completed", "ticket-2:completed", "ticket-3:errored", "ticket-4:expired"]);
    const bodies = output.trim().split("\n").map((l) => JSON.parse(l).response.body);
    expectLiveEqual("openai", outcomes[0], bodies[1], ANSWERED[0]!.request);
    expectLiveEqual("openai", outcomes[1], bodies[0], ANSWERED[1]!.request);
    const refused = outcomes[2];
    expect(refused?.kind === "errored" && refused.error).toMatchObject({ kind: "bad_request", status: 400, contextLength: true });
  });

  it("accounts for a line the files do not mention: expired in an expired batch, lost otherwise", () => {
    const extra = [...ANSWERED, { customId: "ticket-5", request: ANSWERED[0]!.request }];
    const files = [text("openai", "batch-output.jsonl")];
    expect(openaiBatch.fromResultFiles(files, extra, "expired")[4]).toEqual({ customId: "ticket-5", kind: "expired" });
    const lost = openaiBatch.fromResultFiles(files, extra, "completed")[4];
    expect(lost?.kind === "errored" && lost.error.kind).toBe("malformed_response");
  });

  it("refuses a batch whose custom ids repeat", () => {
    expect(() => openaiBatch.toBatchFile([SUBMITTED[0]!, SUBMITTED[0]!], target)).toThrow(BadRequestError);
    expect(() => openaiBatch.toBatchFile([], target)).toThrow(/at least one line/);
  });
});

describe("anthropic batch adapter", () => {
  it("submits the lines with each params the live call's Messages body", () => {
    expect(call(anthropicBatch.toSubmitCall(SUBMITTED, target))).toEqual(JSON.parse(text("anthropic", "batch-request.json")));
    expect(anthropicBatch.toPollCall("msgbatch_1", target)).toMatchObject({ method: "GET", path: "/messages/batches/msgbatch_1", headers: { "anthropic-version": "2023-06-01", "x-api-key": "k-123" } });
    expect(anthropicBatch.toCancelCall("msgbatch_1", target)).toMatchObject({ path: "/messages/batches/msgbatch_1/cancel" });
    expect(anthropicBatch.toResultsCall("msgbatch_1", target)).toMatchObject({ method: "GET", path: "/messages/batches/msgbatch_1/results" });
  });

  it("refuses custom ids the API would refuse", () => {
    const bad = [{ ...SUBMITTED[0]!, customId: "has space" }];
    expect(thrown(() => anthropicBatch.toSubmitCall(bad, target))).toBeInstanceOf(BadRequestError);
    expect(() => anthropicBatch.toSubmitCall([{ ...SUBMITTED[0]!, customId: "x".repeat(65) }], target)).toThrow(BadRequestError);
  });

  it("reads processing_status and request_counts into the normalised shape", () => {
    expect(anthropicBatch.fromBatchReply(reply("anthropic", "batch-in-progress"))).toMatchObject({
      id: "msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d",
      state: "in_progress",
      counts: { total: 4, processing: 4, succeeded: 0 },
      results: undefined,
    });
    expect(anthropicBatch.fromBatchReply(reply("anthropic", "batch-canceling")).state).toBe("cancelling");
    const ended = anthropicBatch.fromBatchReply(reply("anthropic", "batch-ended"));
    expect(ended).toMatchObject({ state: "expired", counts: { total: 4, processing: 0, succeeded: 2, errored: 1, expired: 1, cancelled: 0 } });
    expect(ended.results).toEqual({ kind: "url", url: "https://api.anthropic.com/v1/messages/batches/msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d/results" });
    expect(anthropicBatch.fromBatchReply(reply("anthropic", "batch-ended-cancelled")).state).toBe("cancelled");
    expect(thrown(() => anthropicBatch.fromBatchReply(reply("anthropic", "batch-error-not-found")))).toMatchObject({ kind: "bad_request", status: 404 });
  });

  it("parses the results into one outcome per line, errors typed as a live call's", () => {
    const body = text("anthropic", "batch-results.jsonl");
    const outcomes = anthropicBatch.fromResults(body, ANSWERED, "expired");
    expect(kinds(outcomes)).toEqual(["ticket-1:completed", "ticket-2:completed", "ticket-3:errored", "ticket-4:expired"]);
    const messages = body.trim().split("\n").map((l) => JSON.parse(l).result.message);
    expectLiveEqual("anthropic", outcomes[0], messages[1], ANSWERED[0]!.request);
    expectLiveEqual("anthropic", outcomes[1], messages[0], ANSWERED[1]!.request);
    const refused = outcomes[2];
    expect(refused?.kind === "errored" && refused.error).toMatchObject({ kind: "bad_request", status: 400, contextLength: true });
  });
});

describe("every batch adapter", () => {
  it("refuses a batch holding a request its dialect cannot express, naming the line", () => {
    const image = chat({ messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "https://example.com/a.png" } }] }] });
    const lines = [SUBMITTED[0]!, { customId: "ticket-9", request: image }];
    for (const build of [anthropicBatch.toSubmitCall, geminiBatch.toSubmitCall]) {
      const err = thrown(() => build(lines, target));
      expect(err).toBeInstanceOf(BadRequestError);
      expect(err.message).toMatch(/^line "ticket-9": /);
    }
  });
});

describe("gemini batch adapter", () => {
  it("submits inlined requests, each the live call's generateContent body, keyed in metadata", () => {
    expect(call(geminiBatch.toSubmitCall(SUBMITTED, target))).toEqual(JSON.parse(text("gemini", "batch-request.json")));
    expect(geminiBatch.toPollCall("batches/abc", target)).toMatchObject({ method: "GET", path: "/batches/abc", headers: { "x-goog-api-key": "k-123" } });
    expect(geminiBatch.toCancelCall("batches/abc", target)).toMatchObject({ path: "/batches/abc:cancel" });
    expect(() => geminiBatch.toPollCall("batches/../models", target)).toThrow(BadRequestError);
  });

  it("reads the operation's state and int64 counts into the normalised shape", () => {
    expect(geminiBatch.fromOperationReply(reply("gemini", "batch-pending"))).toMatchObject({
      id: "batches/qk3vh1bzo2wynh5q2d1mzs6t9lsq0zsjb8bd",
      state: "validating",
      counts: { total: 4, processing: 4, succeeded: 0 },
      results: undefined,
    });
    expect(geminiBatch.fromOperationReply(reply("gemini", "batch-running"))).toMatchObject({ state: "in_progress", counts: { succeeded: 1, processing: 3 } });
    expect(geminiBatch.fromOperationReply(reply("gemini", "batch-succeeded"))).toMatchObject({ state: "completed", counts: { total: 4, succeeded: 3, errored: 1 }, results: { kind: "inline" } });
    expect(geminiBatch.fromOperationReply(reply("gemini", "batch-expired"))).toMatchObject({ state: "expired", counts: { succeeded: 1, expired: 3 } });
    expect(geminiBatch.fromOperationReply(reply("gemini", "batch-failed"))).toMatchObject({ state: "failed", results: undefined, failure: "Request contains an invalid argument." });
    expect(thrown(() => geminiBatch.fromOperationReply(reply("gemini", "batch-error-not-found")))).toMatchObject({ kind: "bad_request", status: 404 });
  });

  it("parses the inlined responses into one outcome per line, by key and by position when the keys are missing", () => {
    for (const name of ["batch-succeeded", "batch-succeeded-no-metadata"]) {
      const r = reply("gemini", name);
      const outcomes = geminiBatch.fromOperationResults(r, ANSWERED);
      expect(kinds(outcomes), name).toEqual(["ticket-1:completed", "ticket-2:completed", "ticket-3:errored", "ticket-4:completed"]);
      const responses = (JSON.parse(r.body) as { response: { inlinedResponses: { inlinedResponses: { response?: unknown }[] } } }).response.inlinedResponses.inlinedResponses;
      expectLiveEqual("gemini", outcomes[1], responses[1]!.response, ANSWERED[1]!.request);
      const refused = outcomes[2];
      expect(refused?.kind === "errored" && refused.error).toMatchObject({ kind: "bad_request", status: 400, contextLength: true });
    }
  });

  it("marks the lines an expired batch never answered as expired", () => {
    expect(kinds(geminiBatch.fromOperationResults(reply("gemini", "batch-expired"), ANSWERED))).toEqual([
      "ticket-1:completed",
      "ticket-2:expired",
      "ticket-3:expired",
      "ticket-4:expired",
    ]);
  });
});

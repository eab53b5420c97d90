/**
 * Batch API jobs carry the trace context of the request that created their batch (README,
 * "Tracing"), checked against an OTLP/HTTP receiver: every line's job span is a child of the
 * gateway's `POST /v1/batches` span, which is a child of the caller's `traceparent` when the
 * caller sent one; so one batch is one trace, however long it runs and whichever gateway
 * instance dispatches its lines.
 */
import { randomBytes } from "node:crypto";
import OpenAI, { toFile } from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jobIdFor } from "../services/gateway/batch-lines.ts";
import { KEYS, startGatewayStack, type GatewayStack } from "./harness/gateway.ts";
import { clearOtelEnv, KIND, startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from "./harness/otlp.ts";

const hex = (bytes: number) => randomBytes(bytes).toString("hex");
const LINES = 4;

let receiver: OtlpReceiver;
let gs: GatewayStack;
let client: OpenAI;

beforeAll(async () => {
  receiver = await startOtlpReceiver();
  clearOtelEnv();
  process.env.OTEL_EXPORTER_OTLP_ENDPOINT = receiver.url;
  process.env.OTEL_BSP_SCHEDULE_DELAY = "50";
  gs = await startGatewayStack();
  client = new OpenAI({ apiKey: KEYS.acme, baseURL: gs.gateway.url, maxRetries: 0 });
}, 30_000);

afterAll(async () => {
  await gs?.close();
  clearOtelEnv();
  await receiver?.close();
});

/** A completed batch of LINES moderation lines, created with `headers` on the create request. */
async function runBatch(headers: Record<string, string>): Promise<OpenAI.Batch> {
  const lines = Array.from({ length: LINES }, (_, i) =>
    JSON.stringify({ custom_id: `t-${i}`, method: "POST", url: "/v1/chat/completions", body: { model: "gpt-4o-mini", messages: [{ role: "user", content: `hello ${i}` }] } }),
  );
  const file = await client.files.create({ file: await toFile(Buffer.from(`${lines.join("\n")}\n`), "requests.jsonl"), purpose: "batch" });
  let batch = await client.batches.create({ input_file_id: file.id, endpoint: "/v1/chat/completions", completion_window: "24h" }, { headers });
  const deadline = Date.now() + 60_000;
  while (batch.status !== "completed" && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200));
    batch = await client.batches.retrieve(batch.id);
  }
  expect(batch.status).toBe("completed");
  expect(batch.request_counts).toEqual({ total: LINES, completed: LINES, failed: 0 });
  return batch;
}

/** Each line's job span and the span they hang from, once all have been exported. */
async function spansOf(batchId: string) {
  const jobIds = Array.from({ length: LINES }, (_, i) => jobIdFor(batchId, i + 1));
  const jobsOf = (spans: readonly ReceivedSpan[]) => jobIds.map((id) => spans.find((s) => s.kind === KIND.consumer && s.attributes["switchyard.job.id"] === id));
  const parentOf = (spans: readonly ReceivedSpan[]) => spans.find((s) => s.spanId === jobsOf(spans)[0]?.parentSpanId);
  const spans = await receiver.waitFor((all) => jobsOf(all).every((j) => j !== undefined) && parentOf(all) !== undefined);
  return { parent: parentOf(spans)!, jobs: jobsOf(spans) as ReceivedSpan[] };
}

describe("a Batch API batch with tracing on", () => {
  it("with the caller's traceparent on the create request: every line's job span is in the caller's trace, a child of the create request's span", async () => {
    const traceId = hex(16);
    const callerSpan = hex(8);
    const batch = await runBatch({ traceparent: `00-${traceId}-${callerSpan}-01`, tracestate: "vendor=batch" });
    const { parent, jobs } = await spansOf(batch.id);
    expect(parent).toMatchObject({ service: "switchyard-gateway", kind: KIND.server, name: "POST /v1/batches", traceId, parentSpanId: callerSpan });
    expect(parent.attributes).toMatchObject({ "http.route": "/v1/batches", "http.response.status_code": 200 });
    for (const job of jobs) {
      expect(job).toMatchObject({ service: "switchyard-router", name: "job moderation", traceId, parentSpanId: parent.spanId });
      expect(job.attributes).toMatchObject({ "switchyard.job.outcome": "result" });
    }
  });

  it("without one: the create request's span starts the trace, and all the batch's lines are in it", async () => {
    const batch = await runBatch({});
    const { parent, jobs } = await spansOf(batch.id);
    expect(parent).toMatchObject({ service: "switchyard-gateway", kind: KIND.server, name: "POST /v1/batches", parentSpanId: undefined });
    for (const job of jobs) expect(job).toMatchObject({ traceId: parent.traceId, parentSpanId: parent.spanId });
  });
});

/**
 * Tracing end to end, against an OTLP/HTTP receiver standing in for a collector: a caller's
 * `traceparent` (HTTP through the gateway, or a NATS header on a job) is the trace every
 * service's spans join, parents linked; with no OTLP endpoint in the environment nothing is
 * exported at all.
 */
import { randomBytes } from "node:crypto";
import { headers as natsHeaders } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jobSubject, STREAMS } from "../shared/contract/subjects.ts";
import type { Result } from "../shared/contract/job.ts";
import { tracingEnabled } from "../shared/ops/tracing.ts";
import { KEYS, startGatewayStack, type GatewayStack } from "./harness/gateway.ts";
import { jobsSettled, readAll } from "./harness/nats.ts";
import { clearOtelEnv, KIND, startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from "./harness/otlp.ts";
import { moderationJob, startStack, type TestStack } from "./harness/stack.ts";


const hex = (bytes: number) => randomBytes(bytes).toString("hex");

/** The spans of one trace, and the job span among them with its children. */
function jobSpans(spans: readonly ReceivedSpan[], traceId: string, jobId: string) {
  const inTrace = spans.filter((s) => s.traceId === traceId);
  const job = inTrace.find((s) => s.kind === KIND.consumer && s.attributes["switchyard.job.id"] === jobId);
  const children = job ? inTrace.filter((s) => s.parentSpanId === job.spanId) : [];
  return {
    inTrace,
    job,
    queueWait: children.find((s) => s.name === "queue wait"),
    attempts: children.filter((s) => s.kind === KIND.client),
    publish: children.find((s) => s.kind === KIND.producer),
  };
}

describe("tracing environment", () => {
  it("is on only with an OTLP endpoint, and off when the SDK or the traces exporter is disabled", () => {
    expect(tracingEnabled({})).toBe(false);
    expect(tracingEnabled({ OTEL_SERVICE_NAME: "x", OTEL_TRACES_SAMPLER: "always_on" })).toBe(false);
    expect(tracingEnabled({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318" })).toBe(true);
    expect(tracingEnabled({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://collector:4318/v1/traces" })).toBe(true);
    expect(tracingEnabled({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318", OTEL_SDK_DISABLED: "true" })).toBe(false);
    expect(tracingEnabled({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318", OTEL_TRACES_EXPORTER: "none" })).toBe(false);
  });
});

describe("with OTEL_EXPORTER_OTLP_ENDPOINT set", () => {
  let receiver: OtlpReceiver;
  let gs: GatewayStack;

  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    clearOtelEnv();
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = receiver.url;
    process.env.OTEL_BSP_SCHEDULE_DELAY = "50";
    gs = await startGatewayStack();
  }, 30_000);

  afterAll(async () => {
    await gs?.close();
    clearOtelEnv();
    await receiver?.close();
  });

  it("a chat request with a traceparent: the gateway's request span, the job, its queue wait, attempts and publish, all in the caller's trace", async () => {
    const traceId = hex(16);
    const callerSpan = hex(8);
    // budget fails, so the job fails over: one failed attempt and one that served it.
    gs.stack.sim.control("budget", "budget-lite", { outage: "503" });
    const res = await fetch(`${gs.gateway.url}/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${KEYS.acme}`, "content-type": "application/json", traceparent: `00-${traceId}-${callerSpan}-01`, tracestate: "vendor=abc" },
      body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "system", content: "You are a content moderation classifier. Answer with JSON." }, { role: "user", content: "have a nice day" }], response_format: { type: "json_object" } }),
    });
    gs.stack.sim.control("budget", "budget-lite", { outage: null });
    expect(res.status).toBe(200);
    const jobId = res.headers.get("x-request-id")!;
    const served = res.headers.get("x-switchyard-model")!;

    await receiver.waitFor((spans) => {
      const j = jobSpans(spans, traceId, jobId);
      return j.publish !== undefined && j.job !== undefined && spans.some((s) => s.traceId === traceId && s.kind === KIND.server);
    });
    const { inTrace, job, queueWait, attempts, publish } = jobSpans(receiver.spans, traceId, jobId);

    const server = inTrace.find((s) => s.kind === KIND.server)!;
    expect(server).toMatchObject({ service: "switchyard-gateway", name: "POST /v1/chat/completions", parentSpanId: callerSpan });
    expect(server.attributes).toMatchObject({ "http.request.method": "POST", "http.route": "/v1/chat/completions", "http.response.status_code": 200, "switchyard.task": "moderation", "switchyard.model": served });

    expect(job).toMatchObject({ service: "switchyard-router", name: "job moderation", parentSpanId: server.spanId, kind: KIND.consumer });
    expect(job!.attributes).toMatchObject({ "messaging.system": "nats", "switchyard.task": "moderation", "switchyard.job.outcome": "result", "switchyard.delivery_count": 1 });

    expect(queueWait).toBeDefined();
    expect(queueWait!.startMs).toBeLessThanOrEqual(queueWait!.endMs);
    expect(job!.startMs).toBeLessThanOrEqual(queueWait!.startMs);

    expect(attempts.length).toBeGreaterThanOrEqual(2);
    attempts.sort((a, b) => a.startMs - b.startMs);
    const failed = attempts[0]!;
    expect(failed).toMatchObject({ name: "chat budget-lite", status: 2 });
    expect(failed.attributes).toMatchObject({ "gen_ai.operation.name": "chat", "gen_ai.provider.name": "budget", "gen_ai.request.model": "budget-lite", "switchyard.attempt.outcome": "unavailable", "http.response.status_code": 503, "error.type": "unavailable" });
    const ok = attempts.at(-1)!;
    expect(ok.status).not.toBe(2);
    expect(ok.attributes["switchyard.model"]).toBe(served);
    expect(ok.attributes).toMatchObject({ "gen_ai.operation.name": "chat", "switchyard.attempt.outcome": "ok" });
    expect(ok.name).toBe(`chat ${ok.attributes["gen_ai.request.model"]}`);
    expect(typeof ok.attributes["gen_ai.response.model"]).toBe("string");
    expect(ok.attributes["gen_ai.usage.input_tokens"]).toBeGreaterThan(0);
    expect(ok.attributes["gen_ai.usage.output_tokens"]).toBeGreaterThan(0);
    expect(ok.attributes["switchyard.cost_usd"]).toBeGreaterThan(0);

    expect(publish).toMatchObject({ name: expect.stringMatching(/^publish .*results\.moderation$/), kind: KIND.producer });
    expect(publish!.attributes).toMatchObject({ "messaging.message.id": jobId });

    // Every span of the request is in the caller's trace, and each one's parent is in it too (or is the caller's).
    const ids = new Set([callerSpan, ...inTrace.map((s) => s.spanId)]);
    for (const s of inTrace) expect(ids.has(s.parentSpanId!), `${s.name}'s parent`).toBe(true);
  }, 30_000);

  it("a job published to NATS with a traceparent header: its spans share that trace id", async () => {
    const traceId = hex(16);
    const producerSpan = hex(8);
    const h = natsHeaders();
    h.set("traceparent", `00-${traceId}-${producerSpan}-01`);
    const job = moderationJob(1, { id: `traced-${hex(4)}` });
    await gs.stack.nats.js.publish(jobSubject("moderation"), JSON.stringify(job), { msgID: job.id, headers: h });

    await receiver.waitFor((spans) => jobSpans(spans, traceId, job.id).publish !== undefined);
    const { inTrace, job: span, queueWait, attempts, publish } = jobSpans(receiver.spans, traceId, job.id);
    expect(span).toMatchObject({ parentSpanId: producerSpan, name: "job moderation" });
    expect(queueWait).toBeDefined();
    expect(attempts.length).toBeGreaterThanOrEqual(1);
    expect(attempts.at(-1)!.attributes).toMatchObject({ "gen_ai.operation.name": "chat", "switchyard.attempt.outcome": "ok" });
    expect(publish).toBeDefined();
    expect(inTrace.every((s) => s.traceId === traceId)).toBe(true);
    expect(inTrace.length).toBe(1 + 1 + attempts.length + 1);
  }, 30_000);

  it("a job without a traceparent starts a trace of its own", async () => {
    const job = moderationJob(2, { id: `untraced-${hex(4)}` });
    await gs.stack.nats.js.publish(jobSubject("moderation"), JSON.stringify(job), { msgID: job.id });
    const spans = await receiver.waitFor((all) => all.some((s) => s.kind === KIND.producer && s.attributes["messaging.message.id"] === job.id));
    const span = spans.find((s) => s.kind === KIND.consumer && s.attributes["switchyard.job.id"] === job.id)!;
    expect(span.parentSpanId).toBeUndefined();
    expect(jobSpans(spans, span.traceId, job.id).attempts.length).toBeGreaterThanOrEqual(1);
  }, 30_000);
});

describe("with no OTLP endpoint in the environment", () => {
  let receiver: OtlpReceiver;
  let stack: TestStack;

  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    clearOtelEnv();
    // Everything but the endpoint: still off.
    process.env.OTEL_SERVICE_NAME = "switchyard-test";
    process.env.OTEL_BSP_SCHEDULE_DELAY = "50";
    stack = await startStack();
  }, 30_000);

  afterAll(async () => {
    await stack?.close();
    clearOtelEnv();
    await receiver?.close();
  });

  it("exports nothing, a job with a traceparent header included", async () => {
    const h = natsHeaders();
    h.set("traceparent", `00-${hex(16)}-${hex(8)}-01`);
    const job = moderationJob(3, { id: `off-${hex(4)}` });
    await stack.nats.js.publish(jobSubject("moderation"), JSON.stringify(job), { msgID: job.id, headers: h });
    await jobsSettled(stack.nats.jsm);
    const results = await readAll<Result>(stack.nats.js, STREAMS.results);
    expect(results.some((r) => r.id === job.id)).toBe(true);
    expect(stack.routers.every((r) => r.router.stats.received > 0)).toBe(true);
    await new Promise((r) => setTimeout(r, 200));
    expect(receiver.requests).toBe(0);
  }, 30_000);
});

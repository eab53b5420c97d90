/**
 * The Batch API through the official OpenAI SDK: files.create → batches.create → polling
 * batches.retrieve → files.content, with invalid and failing lines in the error file, cancel,
 * tenant isolation, and a gateway and a router restarted mid-batch losing nothing. Where a
 * test claims something happened mid-way (a restart mid-dispatch, jobs withdrawn), it reads
 * the stream timestamps and contents that show it, not only the batch's end.
 */
import { Kvm } from "@nats-io/kv";
import OpenAI, { toFile } from "openai";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { BatchRecordSchema } from "../services/gateway/batch-schema.ts";
import { GATEWAY_BUCKETS, ROUTER_DURABLE, STREAMS } from "../shared/contract/subjects.ts";
import { scan, type StoredMessage } from "../shared/nats/read.ts";
import { KEYS, startGatewayStack, type GatewayStack } from "./harness/gateway.ts";

let gs: GatewayStack;
let client: OpenAI;

beforeAll(async () => {
  // Lines are published a few at a time, so dispatching a few thousand takes long enough to stop an instance in the middle of it.
  gs = await startGatewayStack({ router: { max_in_flight: "32" }, batchTuning: { publishWindow: 4, checkpointLines: 100 } });
  client = gs.client();
});
afterAll(async () => {
  await gs?.close();
});
beforeEach(() => gs.stack.sim.reset());

const texts = ["have a nice day", "I will kill you", "buy now, free money", "what a lovely garden", "you stupid loser"];

function requestLine(i: number, body: Record<string, unknown> = {}): string {
  return JSON.stringify({
    custom_id: `req-${i}`,
    method: "POST",
    url: "/v1/chat/completions",
    body: { model: "gpt-4o-mini", messages: [{ role: "system", content: "You are a content moderation classifier. Answer with JSON." }, { role: "user", content: texts[i % texts.length] }], ...body },
  });
}

interface OutputLine {
  id: string;
  custom_id: string | null;
  response: { status_code: number; request_id: string; body: Record<string, unknown> } | null;
  error: { code: string; message: string } | null;
}

async function submit(c: OpenAI, lines: string[]): Promise<OpenAI.Batch> {
  const file = await c.files.create({ file: await toFile(Buffer.from(`${lines.join("\n")}\n`), "requests.jsonl"), purpose: "batch" });
  expect(file).toMatchObject({ object: "file", purpose: "batch", filename: "requests.jsonl" });
  return c.batches.create({ input_file_id: file.id, endpoint: "/v1/chat/completions", completion_window: "24h", metadata: { run: "test" } });
}

async function until(c: OpenAI, id: string, done: (b: OpenAI.Batch) => boolean, timeoutMs = 60_000): Promise<OpenAI.Batch> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const b = await c.batches.retrieve(id);
    if (done(b)) return b;
    if (Date.now() > deadline) throw new Error(`batch ${id} still ${b.status} (${JSON.stringify(b.request_counts)})`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** A batch's messages in a stream (its jobs in JOBS, its outcomes in RESULTS), headers only, since `since`. */
async function stored(stream: string, subject: string, batchId: string, since: number): Promise<StoredMessage[]> {
  const out: StoredMessage[] = [];
  for await (const m of scan(gs.stack.nats.js, stream, { subject, since: new Date(since - 1_000), headersOnly: true })) {
    if (m.msgId?.startsWith(`${batchId}-`)) out.push(m);
  }
  return out;
}

const lineOf = (m: StoredMessage) => Number(m.msgId!.slice(m.msgId!.lastIndexOf("-") + 1));

async function batchEntry(id: string) {
  const kv = await new Kvm(gs.stack.nats.nc).open(GATEWAY_BUCKETS.batches);
  const e = await kv.get(id);
  return BatchRecordSchema.parse(e?.json());
}

const terminal = (b: OpenAI.Batch) => ["completed", "failed", "expired", "cancelled"].includes(b.status);

async function lines(c: OpenAI, fileId: string | null | undefined): Promise<OutputLine[]> {
  if (!fileId) return [];
  const text = await (await c.files.content(fileId)).text();
  return text
    .split("\n")
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as OutputLine);
}

describe("the Batch API through the OpenAI SDK", () => {
  it("1,200 lines: served lines in the output file, invalid and failed lines in the error file, the batch never aborted", async () => {
    gs.stack.sim.control("premium", "premium-large", { outage: "503" });
    const input: string[] = [];
    const n = 1_200;
    for (let i = 0; i < n; i++) {
      // Every 100th line pins a model that is down, so it ends as a dead letter after its deliveries.
      input.push(i % 100 === 7 ? requestLine(i, { model: "premium/large" }) : requestLine(i));
    }
    const invalid = ["{not json", JSON.stringify({ method: "POST", url: "/v1/chat/completions", body: {} }), requestLine(3), JSON.stringify({ custom_id: "bad-url", method: "POST", url: "/v1/embeddings", body: {} }), JSON.stringify({ custom_id: "bad-body", method: "POST", url: "/v1/chat/completions", body: { messages: [] } })];
    const all = [...input.slice(0, 500), ...invalid, ...input.slice(500)];
    const created = await submit(client, all);
    expect(created).toMatchObject({ object: "batch", status: "validating", endpoint: "/v1/chat/completions", completion_window: "24h", metadata: { run: "test" } });

    const seen = new Set<string>([created.status]);
    const done = await until(client, created.id, (b) => {
      seen.add(b.status);
      return terminal(b);
    });
    expect(done.status).toBe("completed");
    expect(seen.has("in_progress") || seen.has("finalizing")).toBe(true);
    const failedPinned = n / 100;
    expect(done.request_counts).toEqual({ total: all.length, completed: n - failedPinned, failed: failedPinned + invalid.length });
    expect(done.completed_at).toBeGreaterThanOrEqual(done.created_at);

    const out = await lines(client, done.output_file_id);
    expect(out).toHaveLength(n - failedPinned);
    expect(new Set(out.map((l) => l.custom_id)).size).toBe(out.length);
    const killer = out.find((l) => l.custom_id === "req-1")!;
    expect(killer.error).toBeNull();
    expect(killer.response).toMatchObject({ status_code: 200, body: { object: "chat.completion" } });
    const content = (killer.response!.body as { choices: { message: { content: string } }[] }).choices[0]!.message.content;
    expect(JSON.parse(content)).toMatchObject({ flagged: true, categories: ["violence"] });

    const errors = await lines(client, done.error_file_id);
    expect(errors).toHaveLength(failedPinned + invalid.length);
    const pinned = errors.filter((l) => l.response !== null);
    expect(pinned).toHaveLength(failedPinned);
    for (const l of pinned) {
      expect(Number(l.custom_id!.slice("req-".length)) % 100).toBe(7);
      expect(l.response!.status_code).toBe(502);
      expect(l.response!.body).toMatchObject({ error: { type: "server_error", code: "upstream_unavailable" } });
    }
    const notRun = errors.filter((l) => l.response === null);
    expect(notRun.map((l) => l.error!.code)).toEqual(Array(invalid.length).fill("invalid_request"));
    expect(notRun.map((l) => l.custom_id).sort()).toEqual([null, null, "bad-body", "bad-url", "req-3"].sort());
    expect(notRun.find((l) => l.custom_id === "req-3")!.error!.message).toMatch(/used by an earlier line/);
    expect(notRun.find((l) => l.custom_id === "bad-body")!.error!.message).toMatch(/messages/);
    // Line numbers point into the file as uploaded.
    expect(notRun.find((l) => l.error!.message.includes("not valid JSON"))!.error!.message).toMatch(/^Line 501 /);

    const listed = await client.batches.list({ limit: 10 });
    expect(listed.data.map((b) => b.id)).toContain(created.id);
  });

  it("files and batches belong to their tenant", async () => {
    const b = await submit(client, [requestLine(1)]);
    const other = gs.client(KEYS.globex);
    await expect(other.batches.retrieve(b.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(other.files.retrieve(b.input_file_id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    expect((await other.batches.list()).data.map((x) => x.id)).not.toContain(b.id);
    await until(client, b.id, terminal);
  });

  it("cancel: the lines not yet run are withdrawn and reported as cancelled", async () => {
    gs.stack.sim.control("budget", "budget-lite", { latency_ms: { min: 300, max: 300 } });
    const n = 400;
    const b = await submit(client, Array.from({ length: n }, (_, i) => requestLine(i)));
    await until(client, b.id, (x) => x.status === "in_progress");
    const cancelling = await client.batches.cancel(b.id);
    expect(cancelling.status).toBe("cancelling");
    const done = await until(client, b.id, terminal);
    expect(done.status).toBe("cancelled");
    expect(done.cancelled_at).toBeGreaterThan(0);
    const out = await lines(client, done.output_file_id);
    const errors = await lines(client, done.error_file_id);
    expect(errors.length).toBeGreaterThan(n / 2);
    expect(errors.every((l) => l.error?.code === "batch_cancelled")).toBe(true);
    expect(new Set([...out, ...errors].map((l) => l.custom_id)).size).toBe(n);
    expect(done.request_counts).toEqual({ total: n, completed: out.length, failed: errors.length });
    // Withdrawn jobs are gone from JOBS: what is left of the batch there is exactly what ran…
    const left = await stored(STREAMS.jobs, "jobs.moderation", b.id, b.created_at * 1000);
    const ran = new Set([...out, ...errors.filter((l) => l.response !== null)].map((l) => l.custom_id));
    expect(left.length).toBe(ran.size);
    expect(left.length).toBeLessThan(n / 2);
    // …so the router has none of it left to run, at the moment the batch reads cancelled.
    expect((await gs.stack.nats.jsm.consumers.info(STREAMS.jobs, ROUTER_DURABLE)).num_pending).toBe(0);
  });

  it("a gateway stopped while it publishes a batch's lines: it records where it stopped, the next one publishes the rest, nothing twice", async () => {
    const n = 3_000;
    const jobsSoFar = async () => (await gs.stack.nats.jsm.streams.info(STREAMS.jobs, { subjects_filter: "jobs.moderation" })).state.subjects?.["jobs.moderation"] ?? 0;
    const before = await jobsSoFar();
    const b = await submit(client, Array.from({ length: n }, (_, i) => requestLine(i)));
    // Stopped as soon as its first lines are in JOBS.
    await expect.poll(jobsSoFar, { timeout: 10_000, interval: 5 }).toBeGreaterThan(before);
    await gs.gateway.stop();
    const stoppedAt = Date.now();
    // The stopped instance left the batch mid-dispatch, its position recorded and its lease handed over.
    const left = await batchEntry(b.id);
    expect(left.batch.status).toBe("validating");
    expect(left.dispatched).toBeGreaterThan(0);
    expect(left.dispatched).toBeLessThan(n);
    expect(left.lease).toBeNull();

    const restartedAt = Date.now();
    await gs.restartGateway();
    client = gs.client();
    const done = await until(client, b.id, terminal);
    expect(done.request_counts).toEqual({ total: n, completed: n, failed: 0 });
    const out = await lines(client, done.output_file_id);
    expect(out).toHaveLength(n);
    expect(new Set(out.map((l) => l.custom_id)).size).toBe(n);

    // Every line is in JOBS once: lines 1…checkpoint stored before the stop, the rest after the restart.
    const jobs = await stored(STREAMS.jobs, "jobs.moderation", b.id, b.created_at * 1000);
    expect(jobs).toHaveLength(n);
    expect(new Set(jobs.map(lineOf)).size).toBe(n);
    const first = jobs.filter((m) => m.time < stoppedAt + 1);
    const second = jobs.filter((m) => m.time >= restartedAt);
    expect(first.length + second.length).toBe(n);
    expect(first.map(lineOf).sort((x, y) => x - y)).toEqual(Array.from({ length: left.dispatched }, (_, i) => i + 1));
    expect(second.map(lineOf).sort((x, y) => x - y)).toEqual(Array.from({ length: n - left.dispatched }, (_, i) => left.dispatched + i + 1));
  });

  it("a gateway restart and a router restart mid-batch lose nothing and duplicate nothing", async () => {
    gs.stack.sim.control("budget", "budget-lite", { latency_ms: { min: 20, max: 40 } });
    const n = 1_500;
    const b = await submit(client, Array.from({ length: n }, (_, i) => requestLine(i)));
    await until(client, b.id, (x) => x.request_counts!.completed > 100);
    const gatewayRestartAt = Date.now();
    await gs.restartGateway();
    // The old client pointed at the old port; the new instance serves the same batch.
    client = gs.client();
    const mid = await client.batches.retrieve(b.id);
    expect(mid.status).toBe("in_progress");
    await gs.stack.routers[0]!.stop();
    gs.stack.routers.splice(0, 1);
    const routerRestartAt = Date.now();
    await gs.stack.addRouter();
    const done = await until(client, b.id, terminal);
    expect(done.status).toBe("completed");
    expect(done.request_counts).toEqual({ total: n, completed: n, failed: 0 });
    const out = await lines(client, done.output_file_id);
    expect(out).toHaveLength(n);
    expect(new Set(out.map((l) => l.custom_id)).size).toBe(n);
    expect(done.error_file_id).toBeNull();
    // Both restarts fell mid-batch: results were stored before the gateway's and after the new router started.
    const results = await stored(STREAMS.results, "results.moderation", b.id, b.created_at * 1000);
    expect(results).toHaveLength(n);
    expect(new Set(results.map(lineOf)).size).toBe(n);
    expect(results.filter((m) => m.time < gatewayRestartAt).length).toBeGreaterThan(0);
    expect(results.filter((m) => m.time > routerRestartAt).length).toBeGreaterThan(0);
  });
});

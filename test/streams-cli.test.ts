/**
 * `switchyard streams` against a real nats-server: every stream and shared consumer, the
 * interactive lane and the gateway's BATCH_LINES included, as a table and as --json.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { provisionGateway } from "../services/gateway/provision.ts";
import { DEFAULT_CONFIG_PATH, loadConfig } from "../shared/config/load.ts";
import { BATCH_LINES_STREAM, BATCH_QUEUE_STREAM, BATCHER_DURABLE, GATEWAY_BATCH_DURABLE, INTERACTIVE_DURABLE, ROUTER_DURABLE, STREAMS } from "../shared/contract/subjects.ts";
import { provision } from "../shared/nats/provision.ts";
import type { StreamsReport } from "../services/cli/commands/streams.ts";
import { startTestNats, type TestNats } from "./harness/nats.ts";
import { spawnCli } from "./harness/processes.ts";

let nats: TestNats;
const config = loadConfig(DEFAULT_CONFIG_PATH, {});

beforeAll(async () => {
  nats = await startTestNats({ ownServer: true });
  await provision(nats.jsm, config);
});

afterAll(async () => {
  await nats?.close();
});

async function streams(...args: string[]): Promise<string> {
  const cli = spawnCli(["streams", ...args], { NATS_URL: nats.url });
  const code = await cli.exited;
  expect(code, cli.output()).toBe(0);
  return cli.output();
}

const consumer = (r: StreamsReport, stream: string, name: string) => r.consumers.find((c) => c.stream === stream && c.name === name);
const stream = (r: StreamsReport, name: string) => r.streams.find((s) => s.name === name);

describe("switchyard streams", () => {
  it("--json lists every stream and shared consumer, what is missing marked as such", async () => {
    const r = JSON.parse(await streams("--json")) as StreamsReport;
    expect(r.streams.map((s) => s.name)).toEqual([STREAMS.jobs, STREAMS.results, STREAMS.dlq, BATCH_LINES_STREAM, BATCH_QUEUE_STREAM]);
    expect(stream(r, BATCH_QUEUE_STREAM)).toMatchObject({ present: true, messages: 0, subjects: ["batchq.>"] });
    expect(consumer(r, BATCH_QUEUE_STREAM, BATCHER_DURABLE)).toMatchObject({ present: true, num_pending: 0, ack_wait_ms: 60_000 });
    expect(stream(r, BATCH_LINES_STREAM)).toEqual({ name: BATCH_LINES_STREAM, present: false });
    expect(stream(r, STREAMS.jobs)).toMatchObject({ present: true, messages: 0, first_ts: null, subjects: ["jobs.>", "ijobs.>"] });
    expect(consumer(r, STREAMS.jobs, ROUTER_DURABLE)).toMatchObject({ present: true, num_pending: 0, ack_wait_ms: 30_000 });
    expect(consumer(r, STREAMS.jobs, INTERACTIVE_DURABLE)).toMatchObject({ present: true, num_pending: 0 });
    expect(consumer(r, STREAMS.results, GATEWAY_BATCH_DURABLE)).toMatchObject({ present: false });
  });

  it("counts each lane's backlog on its own consumer, and the gateway's batch lines", async () => {
    await provisionGateway(nats.nc, nats.jsm, config);
    for (let i = 0; i < 3; i++) await nats.js.publish("ijobs.moderation", JSON.stringify({ request: { messages: [{ role: "user", content: "hi" }] } }));
    await nats.js.publish("jobs.moderation", JSON.stringify({ request: { messages: [{ role: "user", content: "hi" }] } }));
    for (let i = 0; i < 2; i++) await nats.js.publish("batchlines.batch_x.ok", "{}");

    const r = JSON.parse(await streams("--json")) as StreamsReport;
    expect(stream(r, STREAMS.jobs)).toMatchObject({ present: true, messages: 4 });
    expect(stream(r, BATCH_LINES_STREAM)).toMatchObject({ present: true, messages: 2, subjects: ["batchlines.>"] });
    expect(consumer(r, STREAMS.jobs, INTERACTIVE_DURABLE)).toMatchObject({ present: true, num_pending: 3, num_ack_pending: 0 });
    expect(consumer(r, STREAMS.jobs, ROUTER_DURABLE)).toMatchObject({ present: true, num_pending: 1 });
    expect(consumer(r, STREAMS.results, GATEWAY_BATCH_DURABLE)).toMatchObject({ present: true });
    expect(consumer(r, STREAMS.dlq, GATEWAY_BATCH_DURABLE)).toMatchObject({ present: true });

    const text = await streams();
    expect(text).toMatch(/^BATCH_LINES\s+batchlines\.>\s+2\s/m);
    expect(text).toMatch(/^JOBS\/router-interactive\s+router workers, interactive lane \(ijobs\.>\)\s+3\s+0\s/m);
    expect(text).toMatch(/^JOBS\/router\s+router workers, batch lane \(jobs\.>\)\s+1\s/m);
    expect(text).toMatch(/^RESULTS\/gateway-batches\s/m);
  });
});

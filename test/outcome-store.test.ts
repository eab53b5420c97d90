/**
 * The outcome store on a real nats-server: an outcome that cannot be stored is kept for the
 * job's redelivery (so the provider is not paid twice), and nothing is published for a job
 * whose hold lapsed or whose call a stop cut off.
 */
import { jetstreamManager, type JsMsg } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CallCancel } from "../shared/adapters/http.ts";
import { parseConfig } from "../shared/config/load.ts";
import { ROUTER_DURABLE, STREAMS } from "../shared/contract/subjects.ts";
import { createLogger } from "../shared/log.ts";
import { provision } from "../shared/nats/provision.ts";
import type { Hold } from "../services/router/consumer.ts";
import { createOutcomeStore } from "../services/router/outcome-store.ts";
import { startTestNats, type TestNats } from "./harness/nats.ts";
import { testConfigYaml } from "./harness/stack.ts";

const ACK_WAIT = 5_000;
let nats: TestNats;
let now = 1_000_000;

beforeAll(async () => {
  nats = await startTestNats({ ownServer: true });
  await provision(await jetstreamManager(nats.nc), parseConfig(testConfigYaml("http://127.0.0.1:1"), "store-test.yaml", {}));
}, 30_000);

afterAll(async () => {
  await nats?.close();
}, 30_000);

const store = () =>
  createOutcomeStore({ nc: nats.nc, js: nats.js, logger: createLogger("test-store", "silent"), clock: () => now, ackWaitMs: ACK_WAIT, stopping: () => false, retryDelaysMs: [10, 10] });

/** A real delivered job, held as the consumer would hold it. */
async function held(id: string): Promise<Hold> {
  await nats.js.publish("jobs.moderation", JSON.stringify({ id, request: { messages: [{ role: "user", content: "x" }] } }), { msgID: id });
  const consumer = await nats.js.consumers.get(STREAMS.jobs, ROUTER_DURABLE);
  const m: JsMsg | null = await consumer.next({ expires: 2_000 });
  if (!m) throw new Error("no job delivered");
  return { m, startedAt: now, renewedAt: now, cancel: new CallCancel(), lane: "batch" };
}

const results = async () => (await nats.jsm.streams.info(STREAMS.results)).state.messages;
const outcome = (id: string) => ({ kind: "result" as const, subject: "results.moderation", payload: JSON.stringify({ id }), id });

describe("the outcome store", () => {
  it("stores the outcome, then acks the job", async () => {
    const hold = await held("stored-1");
    expect(await store().finish(hold, outcome("stored-1"))).toBe(true);
    expect(await results()).toBe(1);
  });

  it("publishes nothing when the hold lapsed past ack_wait, or a stop cut the job off", async () => {
    const lapsed = await held("lapsed-1");
    now += ACK_WAIT + 1;
    expect(await store().finish(lapsed, outcome("lapsed-1"))).toBe(false);
    const cut = await held("cut-1");
    cut.cancel.cancel();
    expect(await store().finish(cut, outcome("cut-1"))).toBe(false);
    expect(await results()).toBe(1);
  });

  it("keeps an outcome it could not store, for the job's redelivery, once", async () => {
    const s = store();
    const hold = await held("kept-1");
    await nats.jsm.streams.delete(STREAMS.results);
    await expect(s.finish(hold, outcome("kept-1"))).rejects.toThrow();
    expect(s.takeKept(hold.m.seq)).toEqual(outcome("kept-1"));
    expect(s.takeKept(hold.m.seq)).toBeUndefined();
  });
});

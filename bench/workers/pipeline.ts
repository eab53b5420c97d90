/**
 * Limit (a): the JetStream work the router does per job, and nothing else. It pulls the
 * way services/router/worker.ts pulls (fetch sized to free slots, at most 256, 1 s expiry),
 * publishes a result of a real result's size with msgID = the job's Nats-Msg-Id and awaits
 * the PubAck the way the router's outcome store does (`createPubAcks`: one subscription for
 * every PubAck), then acks. No parsing, no planning, no provider call.
 * Env: NATS_URL, MAX_IN_FLIGHT, RESULT_BYTES; PUBACKS=nats-js awaits each PubAck with nats.js's
 * `js.publish` instead (what the router did before; bench/compare.ts runs both). PROVIDER_URL (an
 * OpenAI-compatible base URL) makes one provider call per job before the publish, as plain as
 * undici's `request` makes it, its answer unread past the body: the router's floor, the same
 * NATS and HTTP work with none of the router's own. SIGTERM ends it.
 */
import { jetstream } from "@nats-io/jetstream";
import { natsFromEnvironment, connectNats } from "../../shared/nats/connect.ts";
import { ROUTER_DURABLE, STREAMS, SUBJECTS } from "../../shared/contract/subjects.ts";
import { createPubAcks } from "../../services/router/outcome-store.ts";
import { Pool } from "undici";
import { PRIMARY } from "../lib/stack.ts";

const maxInFlight = Number(process.env.MAX_IN_FLIGHT);
const result = new Uint8Array(Number(process.env.RESULT_BYTES)).fill(0x78);
const nc = await connectNats(natsFromEnvironment(), "switchyard-bench-pipeline");
const js = jetstream(nc);
const pubAcks = createPubAcks(nc);
const publish = process.env.PUBACKS === "nats-js" ? (subject: string, msgID: string) => js.publish(subject, result, { msgID }) : (subject: string, msgID: string) => pubAcks.publish(subject, result, msgID);
const providerUrl = process.env.PROVIDER_URL ? new URL(process.env.PROVIDER_URL) : undefined;
const provider = providerUrl && new Pool(providerUrl.origin, { connections: 256 });
const CALL_BODY = JSON.stringify({ model: PRIMARY.upstream, messages: [{ role: "user", content: "have a nice day" }] });
/** The provider call, when there is one: its body read whole, nothing parsed. */
const call = async (): Promise<void> => {
  if (provider === undefined) return;
  const r = await provider.request({ method: "POST", path: `${providerUrl!.pathname}/chat/completions`, headers: { "content-type": "application/json" }, body: CALL_BODY });
  await r.body.text();
};
const consumer = await js.consumers.get(STREAMS.jobs, ROUTER_DURABLE);
let inFlight = 0;
let wake: (() => void) | undefined;
let stopping = false;
process.once("SIGTERM", () => {
  stopping = true;
  wake?.();
});
process.stdout.write("ready\n");

while (!stopping) {
  const free = maxInFlight - inFlight;
  if (free <= 0) {
    await new Promise<void>((r) => (wake = r));
    continue;
  }
  const batch = await consumer.fetch({ max_messages: Math.min(free, 256), expires: 1_000 });
  for await (const m of batch) {
    inFlight++;
    const subject = `${SUBJECTS.results}.${m.subject.slice(SUBJECTS.jobs.length + 1)}`;
    call()
      .then(async () => {
        await publish(subject, m.headers!.get("Nats-Msg-Id"));
        m.ack();
      })
      .finally(() => {
        inFlight--;
        const w = wake;
        wake = undefined;
        w?.();
      });
  }
}
await nc.drain();

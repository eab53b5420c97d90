/**
 * `switchyard batches`: the batch lane's provider batches (README, "Batch lane"), read from
 * their records in the KV bucket: the open ones with their progress, and with `--all` the ones
 * ended in the last three days too.
 */
import { jetstream } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { connectNats, natsFromEnvironment } from "../../../shared/nats/connect.ts";
import { parseBatchRecord, type BatchRecord } from "../../batcher/records.ts";
import { parse } from "../args.ts";
import { cliNames } from "../names.ts";
import { table } from "../table.ts";
import { summaryOf } from "./catalog.ts";
import type { Command } from "./types.ts";

export const batchesCommand: Command = {
  name: "batches",
  summary: summaryOf("batches"),
  usage: `switchyard batches [--all] [--json]

The provider batches of the batch lane: for each, the task, the model, its state here
(submitting, running, finishing, done), the provider's batch id and state, its lines
(succeeded / errored / still processing, as the provider last reported them), how long ago it
was submitted, and when it will be given up for the live tiers if it has not ended. Open
batches only, unless --all (ended ones are kept three days, with how they ended: results
published, lines sent live, and why).

--json prints the records themselves, one JSON array.`,
  async run(argv) {
    const { values } = parse("batches", argv, { all: { type: "boolean" }, json: { type: "boolean" } });
    const nc = await connectNats(natsFromEnvironment(), "switchyard-batches");
    try {
      const n = cliNames();
      const records = await readRecords(nc, n.providerBatchesBucket, values.all === true);
      process.stdout.write(values.json ? `${JSON.stringify(records)}\n` : renderBatches(records, Date.now()));
    } finally {
      await nc.drain();
    }
    return 0;
  },
};

async function readRecords(nc: Parameters<typeof jetstream>[0], bucket: string, all: boolean): Promise<BatchRecord[]> {
  let kv;
  try {
    kv = await new Kvm(jetstream(nc, { checkAPI: false })).open(bucket);
    await kv.status();
  } catch {
    // The bucket is made with the router's resources: none yet means no batch yet.
    return [];
  }
  const keys: string[] = [];
  // One filter at a time: nats-server 2.9 takes a single filter subject per consumer.
  for (const filter of all ? ["open.>", "done.>"] : ["open.>"]) for await (const k of await kv.keys(filter)) keys.push(k);
  const out: BatchRecord[] = [];
  for (const k of keys) {
    const e = await kv.get(k);
    const r = e && e.operation === "PUT" ? parseBatchRecord(e.string()) : undefined;
    if (r) out.push(r);
  }
  return out.sort((a, b) => a.created_at - b.created_at);
}

/** One row per batch; an empty lane says so rather than printing an empty table. */
export function renderBatches(records: readonly BatchRecord[], now: number): string {
  if (records.length === 0) return "no provider batches open (jobs take the batch lane when their task has `batch:` and their deadline leaves the slack)\n";
  const ago = (t: number | undefined) => (t === undefined ? "-" : duration(now - t));
  return table(
    ["batch", "task", "model", "state", "provider batch", "provider state", "lines", "ok / err / running", "submitted", "given up in", "ended"],
    records.map((r) => [
      r.id,
      r.task,
      r.model,
      r.state,
      r.provider_batch_id ?? "-",
      r.provider_state ?? "-",
      String(r.lines.length),
      r.counts ? `${r.counts.succeeded} / ${r.counts.errored + r.counts.expired + r.counts.cancelled} / ${r.counts.processing}` : "-",
      r.submitted_at === undefined ? "-" : `${ago(r.submitted_at)} ago`,
      r.state === "done" || !Number.isFinite(r.abandon_at) ? "-" : duration(r.abandon_at - now),
      r.ended ? `${r.ended.results} results, ${r.ended.live} live${r.ended.why ? `: ${r.ended.why}` : ""}` : "-",
    ]),
  );
}

function duration(ms: number): string {
  if (ms < 0) return "now";
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s}s`;
  const m = Math.round(s / 60);
  if (m < 120) return `${m}m`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m`;
}

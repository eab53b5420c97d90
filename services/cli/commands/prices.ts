import { setTimeout as sleep } from "node:timers/promises";
import type { z } from "zod";
import { parseJsonOrUndefined } from "../../../shared/json.ts";
import { loadConfig } from "../../../shared/config/load.ts";
import { HeartbeatSchema, ModelStateSchema, type ModelState, type PriceOverride } from "../../../shared/contract/live.ts";
import { HEARTBEAT_KEY } from "../../../shared/contract/subjects.ts";
import { UsageError } from "../../../shared/errors.ts";
import { openBuckets, type LiveBuckets } from "../../../shared/nats/buckets.ts";
import { connectNats, natsFromEnvironment } from "../../../shared/nats/connect.ts";
import { buildCatalog } from "../../../shared/routing/catalog.ts";
import { STALE_AFTER_MS } from "../../../shared/routing/live-state.ts";
import { parse, untilSignal } from "../args.ts";
import { percent, table } from "../table.ts";
import type { Command } from "./types.ts";
import { summaryOf } from "./catalog.ts";

export const pricesCommand: Command = {
  name: "prices",
  summary: summaryOf("prices"),
  usage: `switchyard prices [--watch] [--json]
switchyard prices set <provider/model|alias> --input <USD per M tokens> --output <USD per M tokens>
switchyard prices unset <provider/model|alias>

The table: price in/out and its source, health, latency p50/p95, error and 429 rates over
the window, cooldown, the age of each entry, and the tasks the model is demoted for (its
answers miss the task's output contract: pass rate over the last 10 minutes and the number
of answers judged; routers skip it for that task while another candidate remains). --json
prints the raw KV entries instead: {"heartbeat": {...} | null, "models": [...]}. \`set\` stores an override (bucket
switchyard-prices) that the pricing service applies within about a second, and that
outlives restarts; \`unset\` returns the model to its file or config price.`,
  async run(argv) {
    const [sub, ...rest] = argv;
    if (sub === "set" || sub === "unset") return setPrice(sub, rest);
    const { values } = parse("prices", argv, { watch: { type: "boolean" }, json: { type: "boolean" } });
    if (values.watch && values.json) throw new UsageError("prices: --watch and --json do not go together");
    const nc = await connectNats(natsFromEnvironment(), "switchyard-prices");
    try {
      const buckets = await openBuckets(nc, loadConfig());
      if (values.json) {
        const { heartbeat, models } = await readEntries(buckets);
        process.stdout.write(`${JSON.stringify({ heartbeat: heartbeat ?? null, models })}\n`);
        return 0;
      }
      if (!values.watch) {
        process.stdout.write(await render(buckets));
        return 0;
      }
      const stop = untilSignal();
      let done = false;
      void stop.then(() => (done = true));
      while (!done) {
        process.stdout.write(`\x1b[2J\x1b[H${await render(buckets)}`);
        await Promise.race([sleep(1000), stop]);
      }
      return 0;
    } finally {
      await nc.drain();
    }
  },
};

async function setPrice(sub: "set" | "unset", argv: string[]): Promise<number> {
  const { values, positionals } = parse(`prices ${sub}`, argv, { input: { type: "string" }, output: { type: "string" } });
  const ref = positionals[0];
  if (!ref) throw new UsageError(`prices ${sub}: name the model (provider/model or alias)`);
  const id = buildCatalog(loadConfig()).resolve(ref);
  if (!id) throw new UsageError(`prices ${sub}: "${ref}" is not a configured model or alias`);
  const nc = await connectNats(natsFromEnvironment(), "switchyard-prices");
  try {
    const buckets = await openBuckets(nc, loadConfig());
    if (sub === "unset") {
      await buckets.prices.delete(id);
      process.stdout.write(`${id}: override removed\n`);
    } else {
      const price = (name: "input" | "output") => {
        const v = Number(values[name]);
        if (values[name] === undefined || !Number.isFinite(v) || v < 0) throw new UsageError(`prices set: --${name} must be a non-negative number of USD per million tokens`);
        return v;
      };
      const override: PriceOverride = { input_per_mtok: price("input"), output_per_mtok: price("output"), set_at: new Date().toISOString() };
      await buckets.prices.put(id, JSON.stringify(override));
      process.stdout.write(`${id}: $${override.input_per_mtok} in / $${override.output_per_mtok} out per million tokens\n`);
    }
    const hb = await buckets.models.get(HEARTBEAT_KEY);
    const at = hb ? HeartbeatSchema.safeParse(parseJsonOrUndefined(hb.string())) : undefined;
    if (!at?.success || Date.now() - Date.parse(at.data.at) > STALE_AFTER_MS) {
      process.stdout.write("note: no pricing service is running; the change is stored and applies when one starts (`switchyard pricing`)\n");
    }
    return 0;
  } finally {
    await nc.drain();
  }
}

/** Every model entry of the bucket (sorted by id) and the leader's heartbeat, as written. */
async function readEntries(buckets: LiveBuckets): Promise<{ heartbeat: z.infer<typeof HeartbeatSchema> | undefined; models: ModelState[] }> {
  let heartbeat: z.infer<typeof HeartbeatSchema> | undefined;
  const models: ModelState[] = [];
  const keys: string[] = [];
  for await (const k of await buckets.models.keys()) keys.push(k);
  keys.sort();
  for (const key of keys) {
    const e = await buckets.models.get(key);
    if (!e || e.operation !== "PUT") continue;
    const value = parseJsonOrUndefined(e.string());
    if (key === HEARTBEAT_KEY) {
      const hb = HeartbeatSchema.safeParse(value);
      if (hb.success) heartbeat = hb.data;
      continue;
    }
    const parsed = ModelStateSchema.safeParse(value);
    if (parsed.success) models.push(parsed.data);
  }
  return { heartbeat, models };
}

async function render(buckets: LiveBuckets): Promise<string> {
  const now = Date.now();
  const { heartbeat, models } = await readEntries(buckets);
  const head = heartbeat
    ? `pricing leader ${heartbeat.leader}, heard ${ago(now - Date.parse(heartbeat.at))} ago`
    : "no pricing service has written yet (start one: `switchyard pricing`)";
  if (models.length === 0) return `${head}\n`;
  const rows = models.map((m) => row(m, now));
  return `${head}\n${table(["model", "in $/M", "out $/M", "source", "health", "p50", "p95", "errors", "429s", "samples", "cooldown", "age", "demoted for"], rows)}`;
}

function row(s: ModelState, now: number): string[] {
  const cooldown = s.cooldown_until ? Date.parse(s.cooldown_until) - now : 0;
  return [
    s.id,
    s.input_per_mtok.toFixed(2),
    s.output_per_mtok.toFixed(2),
    s.price_source,
    s.health,
    s.latency_p50_ms === null ? "-" : `${s.latency_p50_ms}ms`,
    s.latency_p95_ms === null ? "-" : `${s.latency_p95_ms}ms`,
    percent(s.error_rate),
    percent(s.rate_limit_rate),
    String(s.samples),
    cooldown > 0 ? `${(cooldown / 1000).toFixed(1)}s` : "-",
    ago(now - Date.parse(s.updated_at)),
    demotions(s),
  ];
}

/** `classification 70.0% of 10, moderation 50.0% of 12`, or `-`. */
export function demotions(s: ModelState): string {
  const demoted = Object.entries(s.quality ?? {})
    .filter(([, q]) => q.status === "demoted")
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([task, q]) => `${task} ${percent(q.pass_rate)} of ${q.samples}`);
  return demoted.length > 0 ? demoted.join(", ") : "-";
}

function ago(ms: number): string {
  return ms < 60_000 ? `${(ms / 1000).toFixed(1)}s` : `${Math.round(ms / 60_000)}m`;
}


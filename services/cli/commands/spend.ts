import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { UsageError } from "../../../shared/errors.ts";
import { parseJsonOrUndefined } from "../../../shared/json.ts";
import { connectNats, natsFromEnvironment } from "../../../shared/nats/connect.ts";
import { scan } from "../../../shared/nats/read.ts";
import { formatUsd } from "../../../shared/usd.ts";
import { parseWhen } from "../../replay/filters.ts";
import { parse } from "../args.ts";
import { cliNames } from "../names.ts";
import { table } from "../table.ts";
import { summaryOf } from "./catalog.ts";
import { SPEND_GROUPINGS, SpendLedger, type SpendGroup, type SpendGrouping } from "./spend-ledger.ts";
import type { Command } from "./types.ts";

/** Without --since, the day before --until (or now). */
const DEFAULT_SPAN_MS = 24 * 3_600_000;

export const spendCommand: Command = {
  name: "spend",
  summary: summaryOf("spend"),
  usage: `switchyard spend [--by tenant|task|model|key] [--since <time>] [--until <time>] [--json]

What providers billed, from the ledger every outcome carries: each result and dead letter
lists its job's attempts, and each attempt a provider answered (an answer that failed the
output check too) carries its usage and cost_usd. Reads the RESULTS and DLQ streams.

--by      tenant (metadata.tenant), task (the default), model (provider/model of each
          billed attempt; its jobs are those it was billed for), or key (metadata.key: the
          gateway key's configured name). Jobs without the field count under "(none)".
--since   from this time (ISO-8601, or a duration ago such as 12h or 7d); default the
          24 hours before --until.
--until   up to this time, exclusive (same forms); default now. Both apply to the time the
          outcome was stored.
--json    one JSON object: {by, since, until, groups: [...], total}, each group with key,
          jobs, results, dead_letters, calls, billed_usd and tokens {prompt, cached,
          cache_write, completion, reasoning} (cached and cache_write are part of prompt,
          reasoning of completion).

Attempts of a job's earlier deliveries on another worker are not in its outcome, so the
ledger can fall short of a provider's invoice by those; switchyard_cost_usd_total counts
every call as it is made.`,
  async run(argv) {
    const { values } = parse("spend", argv, { by: { type: "string" }, since: { type: "string" }, until: { type: "string" }, json: { type: "boolean" } });
    const by = (values.by ?? "task") as SpendGrouping;
    if (!SPEND_GROUPINGS.includes(by)) throw new UsageError(`spend: --by must be one of ${SPEND_GROUPINGS.join(", ")}, got "${values.by}"`);
    const until = values.until === undefined ? undefined : when("until", values.until);
    const since = values.since !== undefined ? when("since", values.since) : new Date((until ?? new Date()).getTime() - DEFAULT_SPAN_MS);
    if (until !== undefined && until <= since) throw new UsageError("spend: --until must be after --since");

    const { streams } = cliNames();
    const ledger = new SpendLedger(by);
    const nc = await connectNats(natsFromEnvironment(), "switchyard-spend");
    const readUntil = until ?? new Date();
    try {
      const js = jetstream(nc);
      const jsm = await jetstreamManager(nc);
      for (const stream of [streams.results, streams.dlq]) {
        // Up to the last message when reading began: outcomes stored meanwhile are after `until` anyway.
        const info = await jsm.streams.info(stream).catch(() => undefined);
        if (info === undefined) {
          process.stderr.write(`spend: stream ${stream} not found (run \`switchyard provision\`); counted as empty\n`);
          continue;
        }
        const lastSeq = info.state.last_seq;
        if (lastSeq === 0) continue;
        for await (const m of scan(js, stream, { since, lastSeq })) {
          // A stream stores in time order: past --until, nothing later can count.
          if (m.time >= readUntil.getTime()) break;
          ledger.add(parseJsonOrUndefined(Buffer.from(m.data).toString("utf8")));
        }
      }
    } finally {
      await nc.drain();
    }

    const { groups, total } = ledger.report();
    if (values.json) {
      process.stdout.write(`${JSON.stringify({ by, since: since.toISOString(), until: readUntil.toISOString(), groups, total })}\n`);
      return 0;
    }
    const row = (g: SpendGroup) => [
      g.key,
      String(g.jobs),
      String(g.dead_letters),
      String(g.calls),
      formatUsd(g.billed_usd),
      String(g.tokens.prompt),
      String(g.tokens.cached),
      String(g.tokens.cache_write),
      String(g.tokens.completion),
      String(g.tokens.reasoning),
    ];
    process.stdout.write(table([by, "jobs", "dead_letters", "calls", "billed_usd", "prompt", "cached", "cache_write", "completion", "reasoning"], [...groups.map(row), row(total)]));
    process.stdout.write(`from ${since.toISOString()} to ${readUntil.toISOString()}\n`);
    return 0;
  },
};

function when(flag: string, value: string): Date {
  const d = parseWhen(value);
  if (!d) throw new UsageError(`spend: --${flag} "${value}" is neither an ISO-8601 time nor a duration such as 12h`);
  return d;
}

import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { configPath, loadConfig } from "../../../shared/config/load.ts";
import type { Config } from "../../../shared/config/schema.ts";
import { namesOf, TASK_PATTERN } from "../../../shared/contract/subjects.ts";
import { UsageError } from "../../../shared/errors.ts";
import { connectNats, natsFromEnvironment } from "../../../shared/nats/connect.ts";
import { buildCatalog } from "../../../shared/routing/catalog.ts";
import { resolveClaims, runReplay, type ReplayStats } from "../../replay/engine.ts";
import { parseDuration, parseMeta, parseWhen } from "../../replay/filters.ts";
import { openLedger, REPLAY_BUCKET } from "../../replay/ledger.ts";
import { defaultRunLabel, RUN_LABEL } from "../../replay/lineage.ts";
import { jobCandidates, type Scanned } from "../../replay/sources.ts";
import { intFlag, parse } from "../args.ts";
import { progress, type Progress } from "../progress.ts";
import type { Command } from "./types.ts";
import { summaryOf } from "./catalog.ts";

export const replayCommand: Command = {
  name: "replay",
  summary: summaryOf("replay"),
  usage: `switchyard replay --task <task> --since <time> [--until <time>] [--model <model>] [--run <label>]
                  [--meta key=value ...] [--deadline <duration>] [--limit <n>] [--dry-run]

Publishes again, as new jobs, the jobs published to jobs.<task> between --since and --until
(default: now). JOBS keeps jobs for streams.jobs_max_age (7d by default) after they are served.
Times are ISO-8601 (2026-11-24T18:00:00Z) or a duration ago (90m, 12h, 7d).

Each new job is the original with:
  id              <original id>~<run>; the run label defaults to --model, else "rerun". A
                  retry or replay of a job (metadata replay_root) counts as that job, so each
                  original is re-run once per label however many copies the range holds
  metadata        the original's plus replay_of, replay_root, replay_run, replay_source ("jobs")
                  and replayed_at, echoed back in its result or dead letter
  request.model   --model (an alias, provider/model or auto), when given
  deadline        dropped (the original's has passed), or now + --deadline (e.g. 30m)

Safe to interrupt (Ctrl-C, a crash) and to run again: every new id is recorded in the replay
ledger (KV bucket ${REPLAY_BUCKET}) and published once, however often the command runs. To re-run
the same jobs once more on purpose, pick another --run label. --dry-run counts what would be
published and changes nothing. A job names a model, not a tier: there is no tier override.`,
  async run(argv) {
    const { values } = parse("replay", argv, {
      task: { type: "string" },
      since: { type: "string" },
      until: { type: "string" },
      model: { type: "string" },
      run: { type: "string" },
      meta: { type: "string", multiple: true },
      deadline: { type: "string" },
      limit: { type: "string" },
      "dry-run": { type: "boolean" },
    });
    const task = values.task;
    if (task === undefined || !TASK_PATTERN.test(task)) throw new UsageError("replay: --task <task> is required and must match [a-z0-9_-]{1,64}");
    if (values.since === undefined) throw new UsageError("replay: --since <time> is required (ISO-8601, or a duration ago such as 12h)");
    const since = when("replay", "since", values.since);
    const until = values.until === undefined ? undefined : when("replay", "until", values.until);
    const meta = metaFlag("replay", values.meta);
    const run = values.run ?? defaultRunLabel(values.model);
    if (!RUN_LABEL.test(run)) throw new UsageError(`replay: the run label "${run}" must match ${RUN_LABEL.source} (set one with --run)`);
    const config = loadConfig();
    const model = modelFlag("replay", config, values.model);
    const deadline = deadlineFlag("replay", values.deadline);
    return executeReplay("replay", config, { dryRun: values["dry-run"] ?? false, limit: limitFlag("replay", values.limit) }, (js, jsm) =>
      jobCandidates(js, jsm, { task, since, until, meta, run }, { model, deadline, now: () => new Date(), names: namesOf(config) }),
    );
  },
};

export interface ReplayRunOptions {
  readonly dryRun: boolean;
  readonly limit: number | undefined;
}

/**
 * Connects, settles what an interrupted run left, replays with a progress bar on stderr and
 * prints the tally on stdout. SIGINT/SIGTERM stop the reading; jobs in flight are finished
 * and recorded first. Exit code 0, 1 when some were not confirmed, 130 when interrupted.
 */
export async function executeReplay(name: string, config: Config, opts: ReplayRunOptions, source: (js: JetStreamClient, jsm: JetStreamManager) => AsyncIterable<Scanned>): Promise<number> {
  const nc = await connectNats(natsFromEnvironment(), `switchyard-${name.replace(/ /g, "-")}`);
  const ac = new AbortController();
  const stop = () => ac.abort();
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  try {
    const js = jetstream(nc);
    const jsm = await jetstreamManager(nc);
    const ledger = await openLedger(nc, config);
    // A dry run changes nothing, the ledger included: its unsettled claims simply count as not replayed.
    const settled = opts.dryRun ? { confirmed: 0, released: 0, uncertain: new Set<string>() } : await resolveClaims(js, jsm, ledger, namesOf(config));
    if (settled.confirmed + settled.released + settled.uncertain.size > 0) {
      process.stderr.write(
        `${name}: an earlier run was interrupted: ${settled.confirmed} of its jobs had been published (recorded now), ${settled.released} had not (released, so this run replays them if selected)` +
          (settled.uncertain.size > 0 ? `, ${settled.uncertain.size} cannot be checked any more and are skipped: ${[...settled.uncertain].slice(0, 5).join(", ")}` : "") +
          "\n",
      );
    }
    let bar: Progress | undefined;
    const stats = await runReplay({
      js,
      ledger,
      source: source(js, jsm),
      uncertain: settled.uncertain,
      signal: ac.signal,
      dryRun: opts.dryRun,
      limit: opts.limit,
      names: namesOf(config),
      onProgress: (s, total) => {
        bar ??= progress(name, total);
        bar.update(s.scanned, tally(s));
      },
    });
    bar?.finish(tally(stats));
    process.stdout.write(summary(stats, opts.dryRun));
    if (stats.interrupted) {
      process.stdout.write(`interrupted: run the same command again to continue; nothing is published twice\n`);
      return 130;
    }
    return stats.failed > 0 ? 1 : 0;
  } finally {
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
    await nc.drain().catch(() => {});
  }
}

function tally(s: Readonly<ReplayStats>): string {
  return `replayed ${s.published}, already ${s.alreadyReplayed}${s.failed > 0 ? `, failed ${s.failed}` : ""}`;
}

function summary(s: ReplayStats, dryRun: boolean): string {
  const lines = [`scanned ${s.scanned} message(s), selected ${s.selected}`];
  if (dryRun) lines.push(`would publish ${s.wouldPublish} new job(s); ${s.alreadyReplayed} already replayed`);
  else lines.push(`published ${s.published} new job(s); ${s.alreadyReplayed} already replayed`);
  for (const [why, n] of s.skipped) lines.push(`skipped ${n}: ${why}`);
  if (s.failed > 0) lines.push(`${s.failed} not confirmed (NATS errors): run the same command again to settle them`);
  return `${lines.join("\n")}\n`;
}

export function when(command: string, flag: string, value: string): Date {
  const d = parseWhen(value);
  if (!d) throw new UsageError(`${command}: --${flag} "${value}" is neither an ISO-8601 time nor a duration such as 12h`);
  return d;
}

export function metaFlag(command: string, pairs: string[] | undefined): [string, string][] {
  const parsed = parseMeta(pairs ?? []);
  if ("bad" in parsed) throw new UsageError(`${command}: --meta "${parsed.bad}" must be key=value`);
  return parsed.meta;
}

export function modelFlag(command: string, config: Config, model: string | undefined): string | undefined {
  if (model === undefined || model === "auto") return model;
  if (!buildCatalog(config).resolve(model)) throw new UsageError(`${command}: --model "${model}" is not a model or alias of ${configPath()}`);
  return model;
}

export function deadlineFlag(command: string, value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const ms = parseDuration(value);
  if (ms === undefined || ms <= 0) throw new UsageError(`${command}: --deadline "${value}" must be a duration such as 30m`);
  return new Date(Date.now() + ms).toISOString();
}

export function limitFlag(command: string, value: string | undefined): number | undefined {
  return value === undefined ? undefined : intFlag(command, "limit", value, 0);
}

/**
 * `switchyard verify`: the acceptance suite a team runs before promoting a model into a tier.
 * Every sample job of a task goes to every candidate model of every tier, straight through
 * the adapters (no NATS, no routing), and each answer is judged by the task's output check —
 * the same check the router applies — and, where the sample carries one, against the
 * expected answer.
 */
import { isRecord } from "../../../shared/json.ts";
import { setTimeout as sleep } from "node:timers/promises";
import { isDeepStrictEqual } from "node:util";
import { bindContract, type TaskContract } from "../../../shared/acceptance/contract.ts";
import { readSamples, type Expected, type Sample } from "../../../shared/acceptance/samples.ts";
import { ProviderError } from "../../../shared/adapters/errors.ts";
import type { Dialect } from "../../../shared/adapters/types.ts";
import { configPath, loadConfig } from "../../../shared/config/load.ts";
import type { Config } from "../../../shared/config/schema.ts";
import { ATTEMPT_OUTCOMES, type AttemptOutcome } from "../../../shared/contract/job.ts";
import { UsageError } from "../../../shared/errors.ts";
import { createModelCaller, type ProviderLease } from "../../../shared/providers/caller.ts";
import type { ModelInfo } from "../../../shared/routing/catalog.ts";
import { costUsd } from "../../../shared/routing/cost.ts";
import { isTransient } from "../../../shared/routing/outcomes.ts";
import { intFlag, parse } from "../args.ts";
import { percent, table } from "../table.ts";
import { mapLimit } from "../../../shared/concurrency.ts";
import { percentile } from "../../../shared/stats.ts";
import type { Command } from "./types.ts";
import { summaryOf } from "./catalog.ts";

export type { Expected, Sample } from "../../../shared/acceptance/samples.ts";

export interface ModelReport {
  readonly model: string;
  readonly tier: number;
  readonly dialect: Dialect;
  readonly samples: number;
  /** Samples whose answer passed the output check. */
  readonly passed: number;
  readonly passRate: number;
  /** Samples with an expected answer whose answer passed the check, and how many of those agreed. */
  readonly judged: number;
  readonly agreed: number;
  /** agreed / judged; undefined when no sample carries an expected answer or none was answered. */
  readonly agreement: number | undefined;
  /** Of answered calls (the provider replied, whether or not the answer passed). */
  readonly latencyMs: { readonly p50: number; readonly p95: number } | undefined;
  readonly costUsd: number;
  readonly costPerJobUsd: number;
  /** Calls whose usage the provider omitted, so cost rests on Switchyard's token estimate. */
  readonly estimatedUsageCalls: number;
  /** Every call's outcome, retries included. */
  readonly outcomes: Partial<Record<AttemptOutcome, number>>;
  readonly belowFloor: boolean;
  /** Why the model is below the floor, and the first failure or disagreement seen. */
  readonly notes: string[];
}

export interface VerifyReport {
  readonly task: string;
  readonly samplesFile: string;
  readonly samples: number;
  readonly floor: number;
  readonly models: ModelReport[];
  readonly passed: boolean;
}

export interface VerifyOptions {
  readonly concurrency: number;
  /** Further calls after a transient failure (429, 5xx, timeout, connection error). */
  readonly retries: number;
}

/** Longest wait honoured from a Retry-After while verifying. */
const MAX_RETRY_WAIT_MS = 10_000;
const RETRY_BASE_MS = 250;

export const verifyCommand: Command = {
  name: "verify",
  summary: summaryOf("verify"),
  usage: `switchyard verify <task> --samples <file.jsonl> [--concurrency 8] [--retries 2] [--json]

The acceptance suite to run before promoting a model into a tier. Every sample job goes to
every candidate model of every tier of <task> (config from SWITCHYARD_CONFIG), straight
through the provider adapters: no NATS, no routing, so one model answers each call. Each
answer is judged by the task's output: check (json_schema, labels, max_chars,
forbidden_patterns — the router's own check) and, where the sample gives one, against the
expected answer.

Samples file: one JSON object per line (blank lines skipped), either
  a job in wire contract v1:   {"request": {"messages": [...]}}
  or a job with its answer:    {"job": {"request": {...}}, "expected": "billing"}
                               {"job": {...}, "expected": {"flagged": true}}
A string "expected" is compared with the answer's label (tasks with labels) or the whole
trimmed answer; an object lists fields the JSON output must have, each deep-equal. A job's
"task", when given, must be <task>; its "model", "routing" and "deadline" are ignored.

Per model it prints: tier, samples, pass rate (output check), agreement with the expected
answers (of the samples that passed the check), latency p50/p95 of answered calls, total
cost and cost per job (usage × the configured price; * marks usage the provider omitted,
estimated at 4 characters per token), and failed calls by outcome. A transient failure
(429, 5xx, timeout, connection) is retried up to --retries times, honouring Retry-After up
to 10 s; every call counts in the outcomes.

Exit status: 1 when a model falls below the task's floor (output.min_pass_rate, default
0.95) on pass rate or agreement, naming each; 0 when all meet it; 2 for a usage mistake.
--json prints the report as one JSON object instead of the table.`,
  async run(argv) {
    const { values, positionals } = parse("verify", argv, {
      samples: { type: "string" },
      concurrency: { type: "string" },
      retries: { type: "string" },
      json: { type: "boolean" },
    });
    const task = positionals[0];
    if (task === undefined || positionals.length > 1) throw new UsageError("verify: name one task: switchyard verify <task> --samples <file.jsonl>");
    if (values.samples === undefined) throw new UsageError("verify: --samples <file.jsonl> is required");
    const concurrency = intFlag("verify", "concurrency", values.concurrency, 8);
    if (concurrency < 1) throw new UsageError("verify: --concurrency must be at least 1");
    const retries = intFlag("verify", "retries", values.retries, 2);

    const config = loadConfig();
    if (config.tasks[task] === undefined) {
      throw new UsageError(`verify: no task "${task}" in ${configPath()} (tasks: ${Object.keys(config.tasks).join(", ")})`);
    }
    const samples = readSamples(values.samples, task);
    const report = await verify(config, task, samples, values.samples, { concurrency, retries });
    process.stdout.write(values.json ? `${JSON.stringify(report)}\n` : renderReport(report));
    return report.passed ? 0 : 1;
  },
};

interface Outcome {
  passed: boolean;
  /** True/false when the sample has an expected answer and the answer passed the check. */
  agreed: boolean | undefined;
  latencyMs: number | undefined;
  costUsd: number;
  usageEstimated: boolean;
  calls: AttemptOutcome[];
  /** Why it failed or disagreed, for the report's notes. */
  note: string | undefined;
}

/** Runs every sample against every candidate of the task's tiers (each model once, at its first tier). */
export async function verify(config: Config, task: string, samples: readonly Sample[], samplesFile: string, opts: VerifyOptions): Promise<VerifyReport> {
  const taskConfig = config.tasks[task]!;
  const caller = createModelCaller(config);
  const lease = caller.lease();
  const catalog = lease.catalog;
  const contract = catalog.tasks.get(task)!.contract;
  const floor = taskConfig.output?.min_pass_rate ?? 0.95;
  const candidates: { model: ModelInfo; tier: number }[] = [];
  // From the config rather than the routing policy: verify is how a model earns its place,
  // so models under the quality floor (which routing skips) are measured too.
  taskConfig.tiers.forEach((tier, i) => {
    for (const ref of tier.models) {
      const id = catalog.resolve(ref)!;
      if (!candidates.some((c) => c.model.id === id)) candidates.push({ model: catalog.models.get(id)!, tier: i });
    }
  });

  try {
    const models: ModelReport[] = [];
    for (const { model, tier } of candidates) {
      const provider = config.providers[model.provider]!;
      const call = callModel(lease, model, provider.timeout_ms, contract, opts.retries);
      const outcomes = await mapLimit(samples, opts.concurrency, call);
      models.push(summarise(model, tier, provider.dialect, samples, outcomes, floor));
    }
    return { task, samplesFile, samples: samples.length, floor, models, passed: models.every((m) => !m.belowFloor) };
  } finally {
    lease.release();
    await caller.close();
  }
}

/** Each sample as the router would send it: the task's contract bound to it, sent natively or as an instruction, judged the same way. */
function callModel(lease: ProviderLease, model: ModelInfo, timeoutMs: number, contract: TaskContract, retries: number) {
  return async (sample: Sample): Promise<Outcome> => {
    const calls: AttemptOutcome[] = [];
    const bound = bindContract(contract, sample.request);
    if ("kind" in bound) return { passed: false, agreed: undefined, latencyMs: undefined, costUsd: 0, usageEstimated: false, calls, note: `line ${sample.line}: ${bound.message}` };
    const request = bound.requestFor(model.structuredOutput);
    for (let attempt = 0; ; attempt++) {
      const t0 = performance.now();
      try {
        const completion = await lease.call(model, request, timeoutMs);
        const latencyMs = performance.now() - t0;
        const checked = bound.judge(completion.response.choices[0]?.message.content ?? null);
        const answered = { latencyMs, costUsd: costUsd(completion.usage, model), usageEstimated: completion.usageEstimated };
        if (!checked.ok) {
          calls.push("invalid_output");
          return { ...answered, passed: false, agreed: undefined, calls, note: `line ${sample.line}: invalid_output: ${checked.error}` };
        }
        calls.push("ok");
        if (sample.expected === undefined) return { ...answered, passed: true, agreed: undefined, calls, note: undefined };
        const got = checked.label ?? (checked.output !== undefined ? checked.output : (checked.content ?? "").trim());
        const agreed = agrees(sample.expected, got);
        return { ...answered, passed: true, agreed, calls, note: agreed ? undefined : `line ${sample.line}: expected ${brief(sample.expected)}, got ${brief(got)}` };
      } catch (err) {
        if (!(err instanceof ProviderError)) throw err;
        calls.push(err.kind);
        if (!isTransient(err.kind) || attempt >= retries) {
          return { passed: false, agreed: undefined, latencyMs: undefined, costUsd: 0, usageEstimated: false, calls, note: `line ${sample.line}: ${err.kind}: ${err.message}` };
        }
        const backoff = RETRY_BASE_MS * 2 ** attempt * (0.8 + Math.random() * 0.4);
        await sleep(Math.min(MAX_RETRY_WAIT_MS, err.retryAfterMs ?? backoff));
      }
    }
  };
}

/** A string expectation matches the label or text exactly; an object's every field must deep-equal the output's. */
function agrees(expected: Expected, got: unknown): boolean {
  if (typeof expected === "string") return got === expected;
  if (!isRecord(got)) return false;
  return Object.entries(expected).every(([k, v]) => isDeepStrictEqual(got[k], v));
}

function summarise(model: ModelInfo, tier: number, dialect: Dialect, samples: readonly Sample[], results: Outcome[], floor: number): ModelReport {
  const passed = results.filter((r) => r.passed).length;
  const judgedResults = results.filter((r) => r.agreed !== undefined);
  const agreed = judgedResults.filter((r) => r.agreed).length;
  const latencies = results.flatMap((r) => (r.latencyMs === undefined ? [] : [r.latencyMs])).sort((a, b) => a - b);
  const costUsd = results.reduce((s, r) => s + r.costUsd, 0);
  const outcomes: Partial<Record<AttemptOutcome, number>> = {};
  for (const r of results) for (const c of r.calls) outcomes[c] = (outcomes[c] ?? 0) + 1;
  const passRate = passed / samples.length;
  const agreement = judgedResults.length === 0 ? undefined : agreed / judgedResults.length;
  const notes: string[] = [];
  if (passRate < floor) notes.push(`pass rate ${percent(passRate)} < floor ${percent(floor)}`);
  if (agreement !== undefined && agreement < floor) notes.push(`agreement ${percent(agreement)} < floor ${percent(floor)}`);
  const firstFailure = results.find((r) => !r.passed)?.note;
  const firstDisagreement = results.find((r) => r.agreed === false)?.note;
  if (firstFailure) notes.push(`first failure: ${firstFailure}`);
  if (firstDisagreement) notes.push(`first disagreement: ${firstDisagreement}`);
  return {
    model: model.id,
    tier,
    dialect,
    samples: samples.length,
    passed,
    passRate,
    judged: judgedResults.length,
    agreed,
    agreement,
    latencyMs: latencies.length === 0 ? undefined : { p50: Math.round(percentile(latencies, 50)), p95: Math.round(percentile(latencies, 95)) },
    costUsd,
    costPerJobUsd: costUsd / samples.length,
    estimatedUsageCalls: results.filter((r) => r.usageEstimated).length,
    outcomes,
    belowFloor: passRate < floor || (agreement !== undefined && agreement < floor),
    notes,
  };
}

export function renderReport(r: VerifyReport): string {
  const rows = r.models.map((m) => {
    const star = m.estimatedUsageCalls > 0 ? "*" : "";
    const failures = ATTEMPT_OUTCOMES.filter((o) => o !== "ok" && m.outcomes[o]).map((o) => `${o} ${m.outcomes[o]}`);
    return [
      String(m.tier),
      m.model,
      m.dialect,
      String(m.samples),
      `${percent(m.passRate)} (${m.passed}/${m.samples})`,
      m.agreement === undefined ? "–" : `${percent(m.agreement)} (${m.agreed}/${m.judged})`,
      m.latencyMs ? `${m.latencyMs.p50} ms` : "–",
      m.latencyMs ? `${m.latencyMs.p95} ms` : "–",
      `${m.costUsd.toFixed(6)}${star}`,
      `${m.costPerJobUsd.toFixed(8)}${star}`,
      failures.length ? failures.join(", ") : "–",
      m.belowFloor ? "FAIL" : "ok",
    ];
  });
  const out = [
    `verify ${r.task}: ${r.samples} samples from ${r.samplesFile}, ${r.models.length} models, floor ${percent(r.floor)}\n\n`,
    table(["tier", "model", "dialect", "samples", "pass", "agreement", "p50", "p95", "cost (USD)", "per job", "failed calls", "verdict"], rows),
  ];
  const estimated = r.models.filter((m) => m.estimatedUsageCalls > 0);
  if (estimated.length > 0) {
    out.push(`* usage estimated (the provider sent none) for ${estimated.map((m) => `${m.model}: ${m.estimatedUsageCalls} calls`).join(", ")}\n`);
  }
  out.push("\n");
  for (const m of r.models) {
    if (m.notes.length > 0) out.push(`${m.belowFloor ? "FAIL" : "note"} ${m.model} (tier ${m.tier}): ${m.notes.join("; ")}\n`);
  }
  const failing = r.models.filter((m) => m.belowFloor).length;
  out.push(failing === 0 ? `All ${r.models.length} models meet the floor of ${percent(r.floor)}.\n` : `${failing} of ${r.models.length} models fall below the floor of ${percent(r.floor)}.\n`);
  return out.join("");
}

function brief(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 80 ? `${s.slice(0, 80)}…` : s;
}


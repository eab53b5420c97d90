/**
 * The router's metrics, recorded by its I/O layer (worker, consumer, outcome store), never by
 * the pure job machine. One instance per process, shared by every router worker in it
 * (`routerMetrics(ops)`), so `switchyard up --workers 4` reports one set of counters.
 *
 * Hot path: a job looks up its task's children once (one Map get), an attempt its model's by
 * the model's ordinal (an array index), a billed answer its (task, model, tenant) children
 * (two Map gets); after the first job of each combination nothing is allocated.
 *
 * Labels are bounded: task names are the config's (anything else, from a job published to a
 * subject no task has, is `other`); provider and model are the config's; outcome and reason
 * come from fixed lists; tenants are the first `tenantLimit` distinct `metadata.tenant`
 * strings, later ones `other`, and a job without one is `none`.
 */
import { ATTEMPT_OUTCOMES, DLQ_REASONS, type AttemptOutcome, type DlqReason } from "../contract/job.ts";
import type { ModelInfo } from "../routing/catalog.ts";
import type { PricedUsage } from "../routing/cost.ts";
import { BoundedLabel, Counter, Gauge, Histogram, LATENCY_BUCKETS, type CounterChild, type HistogramChild } from "./metrics.ts";
import type { Ops } from "./server.ts";

export type Lane = "interactive" | "batch";

/**
 * Token kinds of `switchyard_tokens_total`: `input` and `output` are every prompt and
 * completion token; the billing classes priced apart are parts of them, not additions
 * (`cached` and `cache_write` of `input`, `reasoning` of `output`), as in the usage's details.
 */
export const TOKEN_KINDS = ["input", "output", "cached", "cache_write", "reasoning"] as const;
export type TokenKind = (typeof TOKEN_KINDS)[number];
/** The parts, whose series are made on their first non-zero count: most models report none. */
type PartKind = Exclude<TokenKind, "input" | "output">;

export interface TaskChildren {
  readonly result: CounterChild;
  readonly deadLetter: CounterChild;
  /** By `DLQ_REASONS` index. */
  readonly deadLetterBy: readonly CounterChild[];
  readonly redeliveries: CounterChild;
  readonly overhead: HistogramChild;
  readonly queueWait: Readonly<Record<Lane, HistogramChild>>;
  /** (model ordinal → tenant → children), made on first use. */
  readonly usage: Map<number, Map<string, UsageChildren>>;
  readonly label: string;
}

export interface UsageChildren {
  readonly costUsd: CounterChild;
  readonly tokens: Readonly<Record<"input" | "output", CounterChild>>;
  readonly parts: Partial<Record<PartKind, CounterChild>>;
  readonly labels: readonly [string, string, string, string];
}

export interface AttemptChildren {
  readonly count: CounterChild;
  readonly seconds: HistogramChild;
}

const OUTCOME_INDEX = new Map<AttemptOutcome, number>(ATTEMPT_OUTCOMES.map((o, i) => [o, i]));
const REASON_INDEX = new Map<DlqReason, number>(DLQ_REASONS.map((r, i) => [r, i]));

/** How many distinct `metadata.tenant` values get their own label. @defaultValue 100 */
export const DEFAULT_TENANT_LIMIT = 100;

export class RouterMetrics {
  readonly #jobs: Counter;
  readonly #deadLetters: Counter;
  readonly #redeliveries: Counter;
  readonly #overhead: Histogram;
  readonly #queueWait: Histogram;
  readonly #attempts: Counter;
  readonly #callSeconds: Histogram;
  readonly #cost: Counter;
  readonly #tokens: Counter;
  readonly #cacheLookups: Counter;
  readonly #batchLines: Counter;
  readonly #providerBatches: Counter;
  readonly #tasks = new Map<string, TaskChildren>();
  /** By model ordinal, then outcome index. */
  readonly #byModel: (AttemptChildren | undefined)[][] = [];
  readonly #tenants: BoundedLabel;
  readonly #inFlight = new Set<() => Readonly<Record<Lane, number>>>();

  constructor(ops: Pick<Ops, "metrics">, { tenantLimit = DEFAULT_TENANT_LIMIT }: { tenantLimit?: number } = {}) {
    const m = ops.metrics;
    this.#tenants = new BoundedLabel(tenantLimit);
    this.#jobs = m.add(new Counter("switchyard_jobs_total", "Jobs finished by this process, by task and outcome (result: stored in RESULTS; dead_letter: stored in DLQ).", ["task", "outcome"]));
    this.#deadLetters = m.add(new Counter("switchyard_dead_letters_total", "Dead letters stored, by task and reason.", ["task", "reason"]));
    this.#redeliveries = m.add(new Counter("switchyard_redeliveries_total", "Deliveries of a job that had been delivered before (a backoff after transient failures, or ack_wait run out on a stopped worker).", ["task"]));
    this.#overhead = m.add(new Histogram("switchyard_router_overhead_seconds", "Router time per finished job: from delivery to the outcome stored and acknowledged, minus the time spent in provider calls.", ["task"], LATENCY_BUCKETS));
    this.#queueWait = m.add(new Histogram("switchyard_queue_wait_seconds", "From the job's publish to its delivery to a router (redelivery backoff included).", ["task", "lane"], LATENCY_BUCKETS));
    this.#attempts = m.add(new Counter("switchyard_attempts_total", "Provider calls, by provider, model and outcome (see the outcome table).", ["provider", "model", "outcome"]));
    this.#callSeconds = m.add(new Histogram("switchyard_provider_call_duration_seconds", "Provider call duration, by provider, model and outcome.", ["provider", "model", "outcome"], LATENCY_BUCKETS));
    this.#cost = m.add(new Counter("switchyard_cost_usd_total", "What providers billed, in USD: every answered call (invalid answers included) at the price it was routed at.", ["task", "provider", "model", "tenant"]));
    this.#cacheLookups = m.add(new Counter("switchyard_result_cache_lookups_total", "Result cache lookups of tasks with `cache:`, by task and outcome (hit: the stored answer served, no provider call; miss: the job routed).", ["task", "outcome"]));
    this.#batchLines = m.add(new Counter("switchyard_batch_lines_total", "Batch-lane jobs by task and what became of them: queued (sent toward a provider batch), result (answered by their batch line), live (handed back to the live tiers).", ["task", "outcome"]));
    this.#providerBatches = m.add(new Counter("switchyard_provider_batches_total", "Provider batches ended, by task, provider, model and ending: completed (its lines read), failed, refused (at submission), abandoned (given up for a deadline), interrupted (its submission cut off by a stop).", ["task", "provider", "model", "ending"]));
    this.#tokens = m.add(new Counter("switchyard_tokens_total", "Tokens of answered calls, by kind: input, output, and their parts priced apart (cached and cache_write of input, reasoning of output).", ["task", "provider", "model", "tenant", "kind"]));
    m.add(
      new Gauge("switchyard_jobs_in_flight", "Jobs held by this process's router workers now, by lane.", ["lane"], (set) => {
        let interactive = 0;
        let batch = 0;
        for (const f of this.#inFlight) {
          const n = f();
          interactive += n.interactive;
          batch += n.batch;
        }
        set(interactive, "interactive");
        set(batch, "batch");
      }),
    );
  }

  /** Adds a worker's in-flight count to the gauge; returns the removal. */
  addInFlight(source: () => Readonly<Record<Lane, number>>): () => void {
    this.#inFlight.add(source);
    return () => this.#inFlight.delete(source);
  }

  /** The children of a task; `known` false (a subject no task has) labels it `other`. */
  task(name: string, known: boolean): TaskChildren {
    const label = known ? name : "other";
    let t = this.#tasks.get(label);
    if (!t) {
      t = {
        label,
        result: this.#jobs.labels(label, "result"),
        deadLetter: this.#jobs.labels(label, "dead_letter"),
        deadLetterBy: DLQ_REASONS.map((r) => this.#deadLetters.labels(label, r)),
        redeliveries: this.#redeliveries.labels(label),
        overhead: this.#overhead.labels(label),
        queueWait: { interactive: this.#queueWait.labels(label, "interactive"), batch: this.#queueWait.labels(label, "batch") },
        usage: new Map(),
      };
      this.#tasks.set(label, t);
    }
    return t;
  }

  deadLettered(t: TaskChildren, reason: DlqReason): void {
    t.deadLetter.inc();
    t.deadLetterBy[REASON_INDEX.get(reason)!]!.inc();
  }

  /** One provider call: its outcome and duration in ms. */
  attempt(model: ModelInfo, outcome: AttemptOutcome, ms: number): void {
    const byOutcome = (this.#byModel[model.ordinal] ??= []);
    const i = OUTCOME_INDEX.get(outcome)!;
    let a = byOutcome[i];
    if (!a) byOutcome[i] = a = { count: this.#attempts.labels(model.provider, model.name, outcome), seconds: this.#callSeconds.labels(model.provider, model.name, outcome) };
    a.count.inc();
    a.seconds.observe(ms / 1000);
  }

  /**
   * A billed answer: its cost and tokens, under the job's tenant label (see `tenantOf`). The
   * cached, cache-write and reasoning counts are the parts of the input and output (0 or
   * undefined when the provider reported none).
   */
  billed(t: TaskChildren, model: ModelInfo, tenant: string, costUsd: number, usage: PricedUsage): void {
    let byTenant = t.usage.get(model.ordinal);
    if (!byTenant) t.usage.set(model.ordinal, (byTenant = new Map()));
    let u = byTenant.get(tenant);
    if (!u) {
      const l = [t.label, model.provider, model.name, tenant] as const;
      u = { costUsd: this.#cost.labels(...l), tokens: { input: this.#tokens.labels(...l, "input"), output: this.#tokens.labels(...l, "output") }, parts: {}, labels: l };
      byTenant.set(tenant, u);
    }
    u.costUsd.inc(costUsd);
    u.tokens.input.inc(usage.prompt_tokens);
    u.tokens.output.inc(usage.completion_tokens);
    const d = usage.prompt_tokens_details;
    if (d?.cached_tokens) this.#part(u, "cached", d.cached_tokens);
    if (d?.cache_write_tokens) this.#part(u, "cache_write", d.cache_write_tokens);
    const reasoning = usage.completion_tokens_details?.reasoning_tokens;
    if (reasoning) this.#part(u, "reasoning", reasoning);
  }

  #part(u: UsageChildren, kind: PartKind, tokens: number): void {
    (u.parts[kind] ??= this.#tokens.labels(...u.labels, kind)).inc(tokens);
  }

  /** A result cache lookup of a task with `cache:`. */
  cacheLookup(task: string, hit: boolean): void {
    this.#cacheLookups.labels(task, hit ? "hit" : "miss").inc();
  }

  /** A batch-lane job queued for a provider batch, answered by its line, or handed back to the live tiers. */
  batchLine(task: string, outcome: "queued" | "result" | "live", n = 1): void {
    this.#batchLines.labels(task, outcome).inc(n);
  }

  /** A provider batch ended. */
  providerBatch(task: string, model: ModelInfo | { readonly provider: string; readonly name: string }, ending: "completed" | "failed" | "refused" | "abandoned" | "interrupted"): void {
    this.#providerBatches.labels(task, model.provider, model.name, ending).inc();
  }

  /** The tenant label of a job's metadata: its `tenant` string, bounded; `none` without one. */
  tenantOf(metadata: Readonly<Record<string, unknown>> | undefined): string {
    const t = metadata?.tenant;
    if (t === undefined) return "none";
    return typeof t === "string" ? this.#tenants.of(t) : "other";
  }
}

const shared = new WeakMap<object, RouterMetrics>();

/** The process's router metrics in `ops`, registered on first use. */
export function routerMetrics(ops: Pick<Ops, "metrics">, opts: { tenantLimit?: number } = {}): RouterMetrics {
  let m = shared.get(ops.metrics);
  if (!m) shared.set(ops.metrics, (m = new RouterMetrics(ops, opts)));
  return m;
}

/**
 * The Switchyard configuration file (`config/switchyard.yaml`, or the path in
 * `SWITCHYARD_CONFIG`). One zod schema gives every section its types and defaults; the
 * README's config reference mirrors this file.
 */
import { z } from "zod";
import { NAMESPACE_PATTERN, TASK_PATTERN } from "../contract/subjects.ts";
import { gatewayConfigSchema } from "./gateway-schema.ts";
import { OutputConfigSchema } from "./output-schema.ts";
import { duplicateWindowProblem, retrySpan } from "./retry-span.ts";
import { DEFAULT_LANES, LanesSchema, type LaneShares } from "./lanes-schema.ts";
import { NatsConfigSchema } from "./nats-schema.ts";
import { OpsConfigSchema } from "../ops/config-schema.ts";
import { BudgetsConfigSchema } from "./budgets-schema.ts";
import { LimitsSchema, OnRateLimitedSchema } from "./limits-schema.ts";
import { batchConfigSchema, batchPriceFields } from "./batch-schema.ts";
import { RESULT_CACHE_MAX_AGE_MS } from "../cache/result-cache.ts";

const NAME = /^[a-z0-9][a-z0-9_.-]{0,63}$/;
const name = (what: string) =>
  z.string().regex(NAME, `${what} must match [a-z0-9][a-z0-9_.-]{0,63}`);

/** A duration such as `500ms`, `30s`, `15m`, `24h`, `7d`, or a number of milliseconds. */
const duration = z.union([z.int().nonnegative(), z.string()]).transform((s, ctx) => {
    if (typeof s === "number") return s;
    const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(s.trim());
    if (!m) {
      ctx.addIssue({ code: "custom", message: `"${s}" is not a duration (use e.g. 500ms, 30s, 15m, 24h, 7d)` });
      return z.NEVER;
    }
    const unit = { ms: 1, s: 1e3, m: 60e3, h: 3600e3, d: 86400e3 }[m[2] as "ms" | "s" | "m" | "h" | "d"];
    return Math.round(Number(m[1]) * unit);
  });

/** A size such as `1MiB`, `512KiB`, `10GiB`, or a number of bytes. */
const size = z.union([z.int().positive(), z.string()]).transform((s, ctx) => {
    if (typeof s === "number") return s;
    const m = /^(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|KB|MB|GB)$/.exec(s.trim());
    if (!m) {
      ctx.addIssue({ code: "custom", message: `"${s}" is not a size (use e.g. 512KiB, 1MiB, 10GiB)` });
      return z.NEVER;
    }
    const unit = { B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3, KB: 1e3, MB: 1e6, GB: 1e9 }[
      m[2] as "B" | "KiB" | "MiB" | "GiB" | "KB" | "MB" | "GB"
    ];
    return Math.round(Number(m[1]) * unit);
  });

export const ModelConfigSchema = z.strictObject({
  /** The model name the provider's API expects. Defaults to the key. */
  upstream: z.string().min(1).optional(),
  /** USD per million prompt (input) tokens. */
  input_per_mtok: z.number().nonnegative(),
  /** USD per million completion (output) tokens. */
  output_per_mtok: z.number().nonnegative(),
  /** USD per million prompt tokens read from the provider's prompt cache. @defaultValue input_per_mtok */
  cached_input_per_mtok: z.number().nonnegative().optional(),
  /** USD per million prompt tokens written to the prompt cache (Anthropic). @defaultValue input_per_mtok */
  cache_write_per_mtok: z.number().nonnegative().optional(),
  /** USD per million reasoning ("thinking") tokens. @defaultValue output_per_mtok */
  reasoning_per_mtok: z.number().nonnegative().optional(),
  /** Prompt plus completion tokens the model accepts. */
  context_window: z.int().positive(),
  /**
   * Whether the model takes a JSON Schema in its dialect's structured-output form. `false`:
   * a task's output contract goes to it as one instruction line in the system prompt instead.
   * @defaultValue true
   */
  structured_output: z.boolean().default(true),
  /** This model's requests and tokens per minute across every worker (see `limits-schema.ts`). */
  limits: LimitsSchema.optional(),
  /** Batch-API prices: `batch_discount`, or `batch_input_per_mtok` / `batch_output_per_mtok` (see `batch-schema.ts`). */
  ...batchPriceFields,
});

export const ProviderConfigSchema = z.strictObject({
  /** Wire dialect. `openai` covers OpenAI and every OpenAI-compatible API. */
  dialect: z.enum(["openai", "anthropic", "gemini"]),
  /** Base URL up to and including the API version, e.g. `https://api.openai.com/v1`. */
  base_url: z.url(),
  /** API key, usually `${ENV_VAR}`; resolved from the environment at start-up, never logged. */
  api_key: z.string().optional(),
  /** Per-attempt timeout: headers and body must arrive within it. */
  timeout_ms: duration.default(30_000),
  /**
   * Per-model timeouts from observed latency: min(`timeout_ms`, max(`floor`, p95 × `multiplier`))
   * once the pricing service has `min_samples` attempts of the model (`shared/routing/timeouts.ts`).
   * Absent: `timeout_ms` always.
   */
  adaptive_timeout: z.strictObject({
    multiplier: z.number().min(1).default(3),
    floor: duration.default(1_000),
    min_samples: z.int().positive().default(20),
  }).optional(),
  /** Connections (and so concurrent calls) to this provider per worker process. */
  max_concurrency: z.int().positive().default(256),
  /** Requests and tokens per minute for all of the provider's models together, across every worker (see `limits-schema.ts`). */
  limits: LimitsSchema.optional(),
  models: z.record(name("model name"), ModelConfigSchema).refine((m) => Object.keys(m).length > 0, {
    message: "a provider needs at least one model",
  }),
});

export const TierSchema = z.strictObject({
  /**
   * `ordered`: the list order. `cheapest`: lowest expected cost first. `fastest`: lowest
   * latency first. `weighted`: a random order drawn by `weights` (load share).
   */
  strategy: z.enum(["ordered", "cheapest", "fastest", "weighted"]).default("ordered"),
  /** Candidate model ids (`provider/model`) or aliases. */
  models: z.array(z.string().min(1)).min(1),
  /** For `weighted`: one positive weight per model, in the same order. */
  weights: z.array(z.number().positive()).optional(),
});

export const TaskConfigSchema = z.strictObject({
  /** Tiers are tried in order; a later tier only once every candidate of the earlier ones failed. */
  tiers: z.array(TierSchema).min(1),
  /** Provider calls per delivery, across all tiers. */
  max_attempts: z.int().positive().default(4),
  /** Deliveries (first try plus delayed redeliveries) before the job is dead-lettered. Defaults to `router.max_deliveries`. */
  max_deliveries: z.int().positive().optional(),
  /** Completion tokens expected when the job sets no `max_tokens`; used for expected cost and context fit. */
  expected_completion_tokens: z.int().positive().default(256),
  /** What an acceptable answer looks like, checked on every attempt (see `output-schema.ts`). */
  output: OutputConfigSchema.optional(),
  /** Candidates whose observed p95 latency exceeds this are skipped (a job's `routing.max_latency_ms` overrides it). */
  max_latency_ms: z.int().positive().optional(),
  /** Quality score per model for this task, 0–1 (e.g. from `switchyard verify`); an unscored model counts as 1. */
  quality: z.record(z.string().min(1), z.number().min(0).max(1)).default({}),
  /** Candidates scored below this are skipped. */
  min_quality: z.number().min(0).max(1).optional(),
  /** Models a job may name in `request.model` for this task; any configured model when absent. */
  allow_models: z.array(z.string().min(1)).optional(),
  /** When a candidate's provider limit is used up: `wait` for quota, or try the `next` candidate (see `limits-schema.ts`). @defaultValue "wait" */
  on_rate_limited: OnRateLimitedSchema.default("wait"),
  /** When jobs with slack may go through the providers' batch APIs, and how they group (see `batch-schema.ts`). Absent: always live. */
  batch: batchConfigSchema({ duration }).optional(),
  /**
   * Hedged requests: a call still unanswered `after` (`p95`: the model's live p95, no hedge
   * before the pricing service has one; or a duration) is raced by the next candidate, and
   * the first acceptable answer wins. `max_extra_cost_usd` caps the hedge call's expected
   * cost. Absent: no hedging. Never on the batch lane, where nobody waits.
   */
  hedge: z.strictObject({
    after: z.union([z.literal("p95"), duration]),
    max_extra_cost_usd: z.number().nonnegative().optional(),
  }).optional(),
  /** Serve a job identical to one served within `ttl` from the result cache (README, "Result cache"). Absent: never cached. */
  cache: z
    .strictObject({ ttl: duration.pipe(z.number().positive("cache.ttl must be above 0").max(RESULT_CACHE_MAX_AGE_MS, "cache.ttl must be at most 30d (the cache bucket's max age)")) })
    .optional(),
});

export const StreamsConfigSchema = z.strictObject({
  /** Replicas for JOBS, RESULTS and DLQ (3 on a cluster). */
  replicas: z.int().min(1).max(5).default(1),
  /** Largest message any of the three streams accepts. */
  max_msg_size: size.default(1024 * 1024),
  /** Window in which a repeated `Nats-Msg-Id` is dropped. Must outlast the whole retry span of a job. */
  duplicate_window: duration.default(15 * 60_000),
  /** How long served jobs stay in JOBS, for replay. */
  jobs_max_age: duration.default(7 * 86400_000),
  results_max_age: duration.default(7 * 86400_000),
  dlq_max_age: duration.default(30 * 86400_000),
  /** Cap on each stream's disk use; the oldest messages go first. */
  max_bytes: size.default(10 * 1024 ** 3),
});

export const RouterConfigSchema = z.strictObject({
  /** Jobs one worker process handles at once. */
  max_in_flight: z.int().positive().default(1024),
  /** How long a delivered job may go unacknowledged before JetStream redelivers it. */
  ack_wait: duration.default(30_000),
  /** Deliveries before a job that keeps failing transiently is dead-lettered. */
  max_deliveries: z.int().positive().default(5),
  /** Delay before redelivery n (the last value repeats). */
  redelivery_backoff: z.array(duration).min(1).default([1000, 5000, 15000, 30000]),
  /** Unacknowledged jobs across all workers. */
  max_ack_pending: z.int().positive().default(20_000),
  /** Jobs larger than this are dead-lettered as `invalid_job`. */
  max_job_bytes: size.default(256 * 1024),
  /** On SIGTERM, time given to in-flight jobs before the worker exits. */
  shutdown_grace: duration.default(10_000),
  /**
   * Whether the outcome of a fast-path request (`gateway.interactive: request`) is also
   * recorded in RESULTS or DLQ, fire-and-forget after the reply, for `switchyard tail` and
   * auditing. The store is most of nats-server's work per request (bench scenario 8). @defaultValue true
   */
  record_interactive: z.boolean().default(true),
  /** How each worker's slots are shared between the interactive and batch lanes (see `lanes-schema.ts`). @defaultValue {interactive_reserved: 0.25, batch_reserved: 0.1} */
  lanes: LanesSchema.optional(),
});

/** The OpenAI-compatible gateway and its priority lanes (see `gateway-schema.ts`). */
export const GatewayConfigSchema = gatewayConfigSchema({ duration, size });

export const ConfigSchema = z
  .strictObject({
    streams: StreamsConfigSchema.default(StreamsConfigSchema.parse({})),
    router: RouterConfigSchema.default(RouterConfigSchema.parse({})),
    providers: z.record(name("provider name"), ProviderConfigSchema),
    /** Short names for models: `small: budget/lite`. A job's `request.model` may name one. */
    aliases: z.record(z.string().min(1), z.string().min(1)).default({}),
    tasks: z.record(z.string().regex(TASK_PATTERN, "task name must match [a-z0-9_-]{1,64}"), TaskConfigSchema),
    gateway: GatewayConfigSchema.optional(),
    /** The NATS server and its credentials and TLS (see `nats-schema.ts`); NATS_* variables override it. */
    nats: NatsConfigSchema.optional(),
    /** Metrics, probes and the access log (see `shared/ops/config-schema.ts`). */
    ops: OpsConfigSchema.optional(),
    /** Spending limits per tenant, task and deployment, reserved before each call (see `budgets-schema.ts`, README "Budgets"). */
    budgets: BudgetsConfigSchema.optional(),
    /**
     * What each service does at start with the streams, consumers and buckets it uses:
     * `auto` creates and updates them (needs JetStream admin rights); `check` only reads their
     * info and stops, naming what is missing or different, so services can run with least
     * privilege while an admin runs `switchyard provision` (see shared/nats/provision.ts).
     * @defaultValue "auto"
     */
    provision: z.enum(["auto", "check"]).default("auto"),
    /**
     * A prefix for every subject, stream, consumer and bucket, so deployments (staging,
     * production) can share one NATS account: `staging` gives `staging.jobs.<task>`,
     * `STAGING_JOBS`, `staging-switchyard-models` (shared/contract/subjects.ts, `names`).
     * `SWITCHYARD_NAMESPACE` overrides it. @defaultValue none: the names of wire contract v1
     */
    namespace: z.string().regex(NAMESPACE_PATTERN, "namespace must match [a-z0-9_-]{1,32}").optional(),
  })
  .superRefine((cfg, ctx) => {
    const known = (ref: string) => {
      const id = cfg.aliases[ref] ?? ref;
      const [p, m] = splitModelId(id);
      return p !== undefined && m !== undefined && cfg.providers[p]?.models[m] !== undefined;
    };
    if (cfg.router.lanes !== undefined && cfg.gateway?.lanes !== undefined) {
      ctx.addIssue({ code: "custom", path: ["gateway", "lanes"], message: "lanes are set under router.lanes; remove gateway.lanes (deprecated)" });
    }
    for (const [alias, target] of Object.entries(cfg.aliases)) {
      if (!known(target)) ctx.addIssue({ code: "custom", path: ["aliases", alias], message: `alias points to unknown model "${target}"` });
    }
    for (const [task, t] of Object.entries(cfg.tasks)) {
      t.tiers.forEach((tier, i) => {
        tier.models.forEach((ref, j) => {
          if (!known(ref)) {
            ctx.addIssue({ code: "custom", path: ["tasks", task, "tiers", i, "models", j], message: `unknown model "${ref}" (use provider/model from providers, or an alias)` });
          }
        });
        if (tier.strategy === "weighted" && tier.weights?.length !== tier.models.length) {
          ctx.addIssue({ code: "custom", path: ["tasks", task, "tiers", i, "weights"], message: "a weighted tier needs one weight per model" });
        }
      });
      for (const ref of Object.keys(t.quality)) {
        if (!known(ref)) ctx.addIssue({ code: "custom", path: ["tasks", task, "quality", ref], message: `unknown model "${ref}"` });
      }
      t.allow_models?.forEach((ref, j) => {
        if (!known(ref)) ctx.addIssue({ code: "custom", path: ["tasks", task, "allow_models", j], message: `unknown model "${ref}"` });
      });
      if (t.max_deliveries !== undefined && t.max_deliveries > cfg.router.max_deliveries) {
        ctx.addIssue({ code: "custom", path: ["tasks", task, "max_deliveries"], message: `must not exceed router.max_deliveries (${cfg.router.max_deliveries})` });
      }
    }
    // The window must outlast a job's whole retry span, or a repeated outcome is stored twice (retry-span.ts).
    const tooShort = duplicateWindowProblem(cfg.streams.duplicate_window, retrySpan(cfg.router));
    if (tooShort) ctx.addIssue({ code: "custom", path: ["streams", "duplicate_window"], message: tooShort });
  });

export type Config = z.infer<typeof ConfigSchema>;
export type ProviderConfig = z.infer<typeof ProviderConfigSchema>;
export type ModelConfig = z.infer<typeof ModelConfigSchema>;
export type TaskConfig = z.infer<typeof TaskConfigSchema>;
export type TierConfig = z.infer<typeof TierSchema>;
export type StreamsConfig = z.infer<typeof StreamsConfigSchema>;
export type RouterConfig = z.infer<typeof RouterConfigSchema>;

/**
 * The lane shares a router worker uses: `router.lanes`, else the deprecated `gateway.lanes`,
 * else the defaults. Both at once is a config error (see ConfigSchema).
 */
export function routerLanes(cfg: Pick<Config, "router" | "gateway">): LaneShares {
  return cfg.router.lanes ?? cfg.gateway?.lanes ?? DEFAULT_LANES;
}

/** `provider/model` → [provider, model]; the model part may itself contain slashes. */
export function splitModelId(id: string): [string | undefined, string | undefined] {
  const i = id.indexOf("/");
  return i <= 0 ? [undefined, undefined] : [id.slice(0, i), id.slice(i + 1)];
}

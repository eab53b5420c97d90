/**
 * The sim-provider scenario file (`config/sim-scenario.yaml`): which simulated providers
 * exist, which models each serves, and how every model behaves (latency, faults, context
 * window). Loaded once at start-up; the control API overrides behaviour at run time.
 */
import { z } from "zod";
import { loadYaml, parseYaml } from "../../shared/config/load.ts";

/** Provider names are a URL path segment (`/<provider>/v1/...`, `/<provider>/v1beta/...`), so they keep to the config's name rule. */
const PROVIDER_NAME = /^[a-z0-9][a-z0-9_.-]{0,63}$/;

const probability = z.number().min(0).max(1);

/** A uniform range of milliseconds; `min` equal to `max` gives a fixed delay. */
export const LatencySchema = z
  .strictObject({
    min: z.number().nonnegative(),
    max: z.number().nonnegative(),
  })
  .refine((r) => r.min <= r.max, { message: "min must not exceed max", path: ["max"] });

/**
 * The fault fields without defaults: the scenario fills missing ones with 0, a control
 * override leaves missing ones as they are.
 */
const errorFields = {
  /** Share of requests answered 429 (OpenAI `rate_limit_exceeded`, Anthropic `rate_limit_error`, Gemini `RESOURCE_EXHAUSTED`). */
  rate_429: probability,
  /** Share of requests answered 500 (OpenAI `server_error`, Anthropic `api_error`, Gemini `INTERNAL`). */
  rate_500: probability,
  /** Share of requests answered as overloaded: OpenAI 503, Anthropic 529 `overloaded_error`, Gemini 503 `UNAVAILABLE`. */
  rate_503: probability,
  /** Share of requests never answered: the socket is held for `hang_ms`, then destroyed. */
  rate_hang: probability,
  /** Share of requests answered 200 with a body that is not JSON. */
  rate_malformed: probability,
  /** Share of requests answered 200 whose body stops halfway (Content-Length promises the whole), then the socket is destroyed. */
  rate_truncated: probability,
  /** Share of requests whose socket is destroyed without any response. */
  rate_reset: probability,
  /** Share of requests answered 200 at once whose (complete, valid) body then arrives in small pieces spread over `slow_body_ms`. */
  rate_slow_body: probability,
  /** Whole seconds to wait, sent on every 429 (scripted or forced by an outage) as `Retry-After`, or by Gemini as `RetryInfo.retryDelay`. */
  retry_after_s: z.int().nonnegative(),
};

/** Probability of each fault, drawn once per request; their sum is the model's failure rate. */
export const ErrorRatesSchema = z
  .strictObject({
    rate_429: errorFields.rate_429.default(0),
    rate_500: errorFields.rate_500.default(0),
    rate_503: errorFields.rate_503.default(0),
    rate_hang: errorFields.rate_hang.default(0),
    rate_malformed: errorFields.rate_malformed.default(0),
    rate_truncated: errorFields.rate_truncated.default(0),
    rate_reset: errorFields.rate_reset.default(0),
    rate_slow_body: errorFields.rate_slow_body.default(0),
    retry_after_s: errorFields.retry_after_s.default(1),
  })
  .refine((e) => faultRate(e) <= 1, { message: "the fault rates must add up to at most 1" });
export type ErrorRates = z.output<typeof ErrorRatesSchema>;

/** The share of requests that fail, all faults together. */
export function faultRate(e: Record<Exclude<keyof typeof errorFields, "retry_after_s">, number>): number {
  return e.rate_429 + e.rate_500 + e.rate_503 + e.rate_hang + e.rate_malformed + e.rate_truncated + e.rate_reset + e.rate_slow_body;
}

export const ModelBehaviourSchema = z.strictObject({
  /** Delay before a successful answer, drawn uniformly from the range. Faults answer at once. Default `{min: 0, max: 0}`. */
  latency_ms: LatencySchema.default({ min: 0, max: 0 }),
  /** Scripted fault probabilities; every field defaults to 0 (`retry_after_s` to 1). */
  errors: ErrorRatesSchema.default({
    rate_429: 0,
    rate_500: 0,
    rate_503: 0,
    rate_hang: 0,
    rate_malformed: 0,
    rate_truncated: 0,
    rate_reset: 0,
    rate_slow_body: 0,
    retry_after_s: 1,
  }),
  /** How long a hanging request holds its socket before destroying it. Default 120000 (two minutes: past any sane client timeout). */
  hang_ms: z.int().positive().default(120_000),
  /** How long a slow body takes from its first piece to its last. Default 10000. */
  slow_body_ms: z.int().positive().default(10_000),
  /**
   * Prompt plus completion tokens the model accepts. A request whose estimated prompt
   * tokens plus `max_tokens` exceed it gets 400 as each API words it: OpenAI
   * `context_length_exceeded`, Anthropic "prompt is too long" / "input length and `max_tokens`
   * exceed context limit"; Gemini counts the prompt alone ("The input token count ...").
   * Absent: no limit.
   */
  context_window: z.int().positive().optional(),
  /**
   * Share of otherwise-successful answers deliberately made invalid against the contract the
   * request carries, as a careless model would: with a schema (or forced tool call), a required
   * property dropped, an enum value outside the enum, or prose instead of JSON (instead of the
   * call); with offered choices or a `Labels:` line, a word that is none of them; in JSON mode,
   * prose. An answer to a request with no contract is unchanged. Drawn from the model's own
   * seeded stream (separate from its faults), so a run replays. Default 0.
   */
  disobey_rate: probability.default(0),
  /**
   * A streamed answer (`stream: true`, Gemini `streamGenerateContent`) sends its opening events
   * and first token after `latency_ms` (its time to first token), then each further token (a
   * word with the spaces before it; a tool call in two or three pieces) this many milliseconds
   * after the one before, then its closing events at once. Default 2.
   */
  stream_token_delay_ms: z.number().nonnegative().default(2),
  /**
   * A streamed answer breaks off after this many tokens with the API's mid-stream error event
   * (OpenAI's error chunk, Anthropic's `event: error` overloaded_error, Gemini's UNAVAILABLE
   * status) and the response ends: the failure a caller sees once it has the first tokens.
   * Absent: streams finish.
   */
  stream_fail_after_tokens: z.int().nonnegative().optional(),
  /**
   * Usage parts every answer reports, in the dialect's own fields, so cost ledgers meet cached
   * and reasoning tokens: `cached_tokens` of the prompt read from the prompt cache (at most
   * the prompt), `cache_write_tokens` written to it (reported by the anthropic dialect only;
   * the others count them as plain prompt), and `reasoning_tokens` of thinking on top of the
   * answer's own tokens. Fixed counts, so a test can price them by hand. Absent: none reported.
   */
  usage_details: z
    .strictObject({
      cached_tokens: z.int().nonnegative().default(0),
      cache_write_tokens: z.int().nonnegative().default(0),
      reasoning_tokens: z.int().nonnegative().default(0),
    })
    .optional(),
});
export type ModelBehaviour = z.output<typeof ModelBehaviourSchema>;
export type UsageDetails = NonNullable<ModelBehaviour["usage_details"]>;

export const SimProviderSchema = z.strictObject({
  /**
   * When set, requests must carry the key where their dialect puts it (`Authorization: Bearer`,
   * `x-api-key`, `x-goog-api-key` or `?key=`), else the API's own refusal. Usually `${ENV_VAR:-default}`.
   */
  api_key: z.string().min(1).optional(),
  /** Upstream model name (the request's `model` field) → its behaviour. */
  models: z
    .record(z.string().min(1), ModelBehaviourSchema)
    .refine((m) => Object.keys(m).length > 0, { message: "a provider needs at least one model" }),
  /** How the provider's batch APIs behave (see `batches.ts`). Default: 1 s turnaround, a 24 h window, no line errors. */
  batch: z
    .strictObject({
      /** Time from submission until every line is answered; lines finish evenly over it. Scaled down for tests. Default 1000. */
      turnaround_ms: z.int().nonnegative().default(1000),
      /** A batch whose turnaround exceeds this expires when it closes: finished lines keep their answers, the rest come back expired. Default 86400000 (24 h). */
      window_ms: z.int().positive().default(86_400_000),
      /** Share of lines answered with the dialect's server error instead of a completion, chosen by a hash of the seed and the line's id. Default 0. */
      line_error_rate: probability.default(0),
      /** Every Nth batch this provider receives fails as a whole (no line answered), as a provider outage would fail it. Default 0: none. */
      fail_every: z.int().nonnegative().default(0),
    })
    .default({ turnaround_ms: 1000, window_ms: 86_400_000, line_error_rate: 0, fail_every: 0 }),
});
export type SimProviderConfig = z.output<typeof SimProviderSchema>;
export type SimBatchBehaviour = SimProviderConfig["batch"];

export const ScenarioSchema = z.strictObject({
  /** Seeds every model's fault and latency draws, so a run replays exactly given the same request order. Default 0. */
  seed: z.int().default(0),
  /** Provider name → provider; each is served under `/<provider>/v1` (OpenAI, Anthropic) and `/<provider>/v1beta` (Gemini). */
  providers: z
    .record(z.string().regex(PROVIDER_NAME, "provider names must match [a-z0-9][a-z0-9_.-]{0,63}"), SimProviderSchema)
    .refine((p) => Object.keys(p).length > 0, { message: "the scenario needs at least one provider" }),
});
export type Scenario = z.output<typeof ScenarioSchema>;

export const OUTAGES = ["503", "429", "hang", "reset"] as const;
export type Outage = (typeof OUTAGES)[number];

/**
 * The body of `POST /control/<provider>/<model>`. Every field is optional; a field left out
 * keeps its current value.
 */
export const BehaviourOverrideSchema = z.strictObject({
  /** Forces every request into this failure until set back to `null`. */
  outage: z.enum(OUTAGES).nullable().optional(),
  /** Replaces the latency range. */
  latency_ms: LatencySchema.optional(),
  /** Merged into the current fault rates; the merged rates must still add up to at most 1. */
  errors: z.strictObject(errorFields).partial().optional(),
  /** Replaces the hang duration. */
  hang_ms: z.int().positive().optional(),
  /** Replaces the slow-body duration. */
  slow_body_ms: z.int().positive().optional(),
  /** Replaces the share of answers that break the request's contract (see `ModelBehaviourSchema.disobey_rate`). */
  disobey_rate: probability.optional(),
  /** Replaces the delay between streamed tokens. */
  stream_token_delay_ms: z.number().nonnegative().optional(),
  /** Streams break off after this many tokens; `null` lets them finish again. */
  stream_fail_after_tokens: z.int().nonnegative().nullable().optional(),
});
export type BehaviourOverride = z.input<typeof BehaviourOverrideSchema>;

/** Reads and validates a scenario file; mistakes are reported as `ConfigError` with file:line:column. */
export function loadScenario(file: string, env: NodeJS.ProcessEnv = process.env): Scenario {
  return loadYaml(file, ScenarioSchema, env);
}

/** The same, from text already in memory (tests, embedded scenarios). */
export function parseScenario(text: string, file: string, env: NodeJS.ProcessEnv = process.env): Scenario {
  return parseYaml(text, file, ScenarioSchema, env);
}

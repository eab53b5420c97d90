/**
 * Wire contract v1: the job, result and dead-letter messages, as zod schemas.
 *
 * Any NATS client in any language may publish and read these, so the shapes here are
 * public API. Inbound jobs are parsed once at the boundary (router); outbound messages are
 * built from typed values and serialised without re-validation on the hot path — the test
 * suite checks that what the router emits parses with these schemas.
 */
import { z } from "zod";
import { TASK_PATTERN } from "./subjects.ts";

export const ATTEMPT_OUTCOMES = [
  "ok",
  "rate_limited",
  "unavailable",
  "timeout",
  "invalid_output",
  "bad_request",
  "auth_failed",
  "network_error",
  // Added after v1 (additive): the provider's reply was not its API's shape.
  "malformed_response",
] as const;
export type AttemptOutcome = (typeof ATTEMPT_OUTCOMES)[number];

/** A job id is also the results' and dead letters' Nats-Msg-Id header, so no line breaks or other control characters. */
export const JOB_ID_PATTERN = /^[^\x00-\x1f\x7f]{1,128}$/;

export const DLQ_REASONS = [
  "exhausted",
  "invalid_job",
  "deadline_exceeded",
  "budget_exceeded",
  "no_route",
  // Added after v1 (additive): every model that answered failed the output contract.
  "invalid_output",
] as const;
export type DlqReason = (typeof DLQ_REASONS)[number];

/** A chat message in the OpenAI chat-completions shape. Unknown fields pass through to the provider. */
export const ChatMessageSchema = z.looseObject({
  role: z.enum(["system", "developer", "user", "assistant", "tool"]),
  content: z.union([z.string(), z.array(z.looseObject({ type: z.string() })), z.null()]).optional(),
  name: z.string().optional(),
  tool_call_id: z.string().optional(),
  tool_calls: z.array(z.looseObject({})).optional(),
});
export type ChatMessage = z.infer<typeof ChatMessageSchema>;

/** The OpenAI chat-completions request body. Only `messages` is required; other OpenAI fields pass through. */
export const ChatRequestSchema = z.looseObject({
  model: z.string().min(1).max(256).default("auto"),
  messages: z.array(ChatMessageSchema).min(1, "request.messages must hold at least one message"),
  temperature: z.number().min(0).max(2).optional(),
  top_p: z.number().min(0).max(1).optional(),
  max_tokens: z.int().positive().optional(),
  max_completion_tokens: z.int().positive().optional(),
  stop: z.union([z.string(), z.array(z.string()).max(4)]).optional(),
  response_format: z
    .looseObject({ type: z.enum(["text", "json_object", "json_schema"]) })
    .optional(),
  stream: z.literal(false).optional(),
});
export type ChatRequest = z.infer<typeof ChatRequestSchema>;

export const RoutingSchema = z.strictObject({
  strategy: z.enum(["cost", "cheapest", "latency", "fastest", "ordered", "weighted"]).optional(),
  max_cost_usd: z.number().positive().optional(),
  max_latency_ms: z.int().positive().optional(),
  allow_providers: z.array(z.string().min(1)).optional(),
  deny_providers: z.array(z.string().min(1)).optional(),
  /**
   * Added after v1: `true` sends the job through a provider batch whenever its deadline leaves
   * time to fall back live (even under the task's `batch.min_slack`); `false` keeps it live.
   * Only for a task with `batch:` (README, "Batch lane").
   */
  batch: z.boolean().optional(),
});
export type Routing = z.infer<typeof RoutingSchema>;

export const JobSchema = z.looseObject({
  id: z.string().regex(JOB_ID_PATTERN, "id must be 1–128 characters without control characters (it becomes the Nats-Msg-Id header)").optional(),
  task: z.string().regex(TASK_PATTERN, "task must match [a-z0-9_-]{1,64}").optional(),
  request: ChatRequestSchema,
  routing: RoutingSchema.optional(),
  deadline: z.iso.datetime({ offset: true }).optional(),
  metadata: z.record(z.string(), z.unknown()).optional(),
});
export type JobInput = z.infer<typeof JobSchema>;

/** A job after parsing: id and task are always known. */
export type Job = JobInput & { id: string; task: string };

/**
 * Token usage in one normal form whatever dialect served the call: OpenAI's. The parts in the
 * details are included in the totals, never added to them (added after v1, present only when
 * non-zero):
 * - `prompt_tokens`: every input token, cache reads and cache writes included.
 * - `prompt_tokens_details.cached_tokens`: of those, read from the provider's prompt cache.
 * - `prompt_tokens_details.cache_write_tokens`: of those, written to the cache (Anthropic).
 * - `completion_tokens`: every output token, reasoning ("thinking") included.
 * - `completion_tokens_details.reasoning_tokens`: of those, reasoning.
 */
export const UsageSchema = z.object({
  prompt_tokens: z.int().nonnegative(),
  completion_tokens: z.int().nonnegative(),
  total_tokens: z.int().nonnegative(),
  prompt_tokens_details: z.object({ cached_tokens: z.int().nonnegative().optional(), cache_write_tokens: z.int().nonnegative().optional() }).optional(),
  completion_tokens_details: z.object({ reasoning_tokens: z.int().nonnegative().optional() }).optional(),
});
export type Usage = z.infer<typeof UsageSchema>;

/**
 * What a call cost in USD, by part (added after v1). The parts are disjoint and add up to
 * `total`: `input` is the prompt tokens neither read from nor written to the cache, `output`
 * the completion tokens that are not reasoning.
 */
export const CostSchema = z.object({
  input: z.number().nonnegative(),
  cached_input: z.number().nonnegative(),
  cache_write: z.number().nonnegative(),
  output: z.number().nonnegative(),
  reasoning: z.number().nonnegative(),
  total: z.number().nonnegative(),
});
export type Cost = z.infer<typeof CostSchema>;

export const AttemptSchema = z.object({
  provider: z.string(),
  model: z.string(),
  tier: z.int().nonnegative(),
  outcome: z.enum(ATTEMPT_OUTCOMES),
  http_status: z.int().nullable(),
  latency_ms: z.number().nonnegative(),
  error: z.string().nullable(),
  /**
   * Added after v1: present when the provider answered (so billed the call), whatever became
   * of the answer (`ok`, `invalid_output`, a `timeout` that answered after the deadline).
   */
  usage: UsageSchema.optional(),
  cost_usd: z.number().nonnegative().optional(),
  /** Added after v1: present when the attempt was a line of a provider batch (README, "Batch lane"): that batch's id at the provider. */
  batch: z.string().optional(),
});
export type Attempt = z.infer<typeof AttemptSchema>;

export const ResultSchema = z.object({
  id: z.string(),
  task: z.string(),
  status: z.literal("succeeded"),
  provider: z.string(),
  model: z.string(),
  response: z.looseObject({ object: z.literal("chat.completion") }),
  output: z.unknown().optional(),
  usage: UsageSchema,
  /** Present (true) only when the provider sent no usage and the counts are Switchyard's estimate. */
  usage_estimated: z.literal(true).optional(),
  /** The answering call's cost: the same as `cost.total`. */
  cost_usd: z.number().nonnegative(),
  /** Added after v1: the answering call's cost by part. */
  cost: CostSchema.optional(),
  /**
   * Added after v1: what the provider billed for this job across every attempt in `attempts`
   * (the sum of their `cost_usd`), so at least `cost_usd`.
   */
  billed_usd: z.number().nonnegative().optional(),
  latency_ms: z.number().nonnegative(),
  queued_ms: z.number().nonnegative(),
  attempts: z.array(AttemptSchema).min(1),
  metadata: z.record(z.string(), z.unknown()),
  completed_at: z.iso.datetime(),
  /**
   * Added after v1: present (true) on a result served from the result cache (README, "Result
   * cache"): the answer of `cached_from.id`, costing nothing (`cost_usd` 0, usage 0); its last
   * attempt is a marker with `http_status` null and no cost.
   */
  cached: z.literal(true).optional(),
  /** Added after v1: on a cached result, the job whose answer it is, and when that was served. */
  cached_from: z.object({ id: z.string(), completed_at: z.iso.datetime() }).optional(),
});
export type Result = z.infer<typeof ResultSchema>;

export const DeadLetterSchema = z.object({
  id: z.string(),
  task: z.string(),
  status: z.literal("failed"),
  reason: z.enum(DLQ_REASONS),
  error: z.string(),
  attempts: z.array(AttemptSchema),
  /** Added after v1: what the provider billed across `attempts` (the sum of their `cost_usd`; 0 when none answered). */
  billed_usd: z.number().nonnegative().optional(),
  /**
   * Added after v1: on a `budget_exceeded` refused by a budget (README "Budgets"; absent when
   * the job's own `routing.max_cost_usd` ruled every candidate out), the budget that refused and
   * the ledger as it stood: settled, reserved by calls in flight, and what this call needed.
   */
  budget: z
    .object({
      // `key`: a gateway API key's budget (by `metadata.key`).
      scope: z.enum(["tenant", "key", "task", "global"]),
      name: z.string(),
      window: z.enum(["day", "month"]),
      period: z.string(),
      limit_usd: z.number(),
      spent_usd: z.number(),
      reserved_usd: z.number(),
      needed_usd: z.number(),
    })
    .optional(),
  job: z.record(z.string(), z.unknown()),
  metadata: z.record(z.string(), z.unknown()),
  failed_at: z.iso.datetime(),
});
export type DeadLetter = z.infer<typeof DeadLetterSchema>;

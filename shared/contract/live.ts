/**
 * Live-state messages: the per-model KV entry the pricing service writes and workers
 * route on, the per-attempt telemetry workers publish, and an operator price override.
 * Readers in other languages may watch the `switchyard-models` bucket; these are its shapes.
 */
import { z } from "zod";
import { ATTEMPT_OUTCOMES } from "./job.ts";

export const HEALTH_STATES = ["healthy", "degraded", "down"] as const;
export type HealthState = (typeof HEALTH_STATES)[number];

export const PRICE_SOURCES = ["config", "file", "cli"] as const;

/** A model's standing for one task: `demoted` while its answers fall short of the task's output contract. */
export const QUALITY_STATUSES = ["qualified", "demoted"] as const;
export type QualityStatus = (typeof QUALITY_STATUSES)[number];

/**
 * How well one model answers one task: the share of its answers, over a sliding window
 * (10 minutes by default), that met the task's output contract. An attempt that got no
 * answer (429, 5xx, timeout, a refused request) is not counted here: that is health.
 */
export const TaskQualitySchema = z.object({
  /**
   * Passed answers / answers in the window, 0–1. With no answer left in the window (a long
   * demotion outlives it), the rate that demoted the model.
   */
  pass_rate: z.number().min(0).max(1),
  /** Answers in the window, passed or failed. */
  samples: z.int().nonnegative(),
  /**
   * `demoted`: at least the minimum sample count (10 by default) and a pass rate under the
   * task's floor (`output.min_pass_rate`). Routers then skip the model for this task while
   * any other candidate remains; other tasks are unaffected, and so is `health`.
   * `qualified`: routed as usual (also while on trial after a demotion).
   */
  status: z.enum(QUALITY_STATUSES),
  /**
   * When demoted: when the pricing service next re-tests the model with the task's samples
   * (`config/samples/<task>.jsonl`), or, for a task without samples, lets it back in on
   * trial. Absent or null when qualified.
   */
  demoted_until: z.iso.datetime().nullable().optional(),
});
export type TaskQuality = z.infer<typeof TaskQualitySchema>;

export const ModelStateSchema = z.object({
  id: z.string(),
  provider: z.string(),
  model: z.string(),
  input_per_mtok: z.number().nonnegative(),
  output_per_mtok: z.number().nonnegative(),
  context_window: z.int().positive(),
  price_source: z.enum(PRICE_SOURCES),
  price_updated_at: z.iso.datetime(),
  health: z.enum(HEALTH_STATES),
  /**
   * Share of attempts in the window that failed for the provider's reasons (5xx, timeouts,
   * resets, malformed replies). An answer that misses a task's output contract is not an
   * outage and is not counted here: see `quality`.
   */
  error_rate: z.number().min(0).max(1),
  rate_limit_rate: z.number().min(0).max(1),
  /** Latency of successful calls in the window; null before the first one. */
  latency_p50_ms: z.number().nonnegative().nullable(),
  latency_p95_ms: z.number().nonnegative().nullable(),
  samples: z.int().nonnegative(),
  /** While in the future, the model gets no traffic; after it, traffic resumes and decides the health. */
  cooldown_until: z.iso.datetime().nullable(),
  health_updated_at: z.iso.datetime(),
  updated_at: z.iso.datetime(),
  /**
   * Per task (the task name is the key): the model's pass rate of the task's output contract
   * and whether it is demoted for that task. Only tasks with answers in the window, or a
   * demotion, appear; absent when there are none. Added after v1: readers must accept its
   * absence.
   */
  quality: z.record(z.string(), TaskQualitySchema).optional(),
});
export type ModelState = z.infer<typeof ModelStateSchema>;

/** One provider call, as a worker saw it. Small on purpose: one is sent per attempt. */
export const AttemptEventSchema = z.object({
  /** `provider/model` */
  m: z.string(),
  outcome: z.enum(ATTEMPT_OUTCOMES),
  status: z.int().nullable(),
  latency_ms: z.number().nonnegative(),
  prompt_tokens: z.int().nonnegative(),
  completion_tokens: z.int().nonnegative(),
  /** Epoch milliseconds at the worker. */
  at: z.number(),
  /** The job's task: lets the pricing service keep a pass rate per (task, model). Optional: older workers omit it. */
  t: z.string().optional(),
});
export type AttemptEvent = z.infer<typeof AttemptEventSchema>;

export const PriceOverrideSchema = z.object({
  input_per_mtok: z.number().nonnegative(),
  output_per_mtok: z.number().nonnegative(),
  set_at: z.iso.datetime(),
});
export type PriceOverride = z.infer<typeof PriceOverrideSchema>;

export const HeartbeatSchema = z.object({ leader: z.string(), at: z.iso.datetime() });

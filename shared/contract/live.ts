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
  /** Share of attempts in the window that failed for the provider's reasons (5xx, timeouts, resets, bad output). */
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
});
export type AttemptEvent = z.infer<typeof AttemptEventSchema>;

export const PriceOverrideSchema = z.object({
  input_per_mtok: z.number().nonnegative(),
  output_per_mtok: z.number().nonnegative(),
  set_at: z.iso.datetime(),
});
export type PriceOverride = z.infer<typeof PriceOverrideSchema>;

export const HeartbeatSchema = z.object({ leader: z.string(), at: z.iso.datetime() });

/**
 * The `budgets:` section: spending limits per tenant, per gateway API key, per task and for
 * the whole deployment, over UTC calendar days and months. Routers reserve each call's
 * worst-case cost against every budget that applies to its job before calling, and settle to
 * the real cost after (shared/spend/). Budgets set at run time (`switchyard budgets set`)
 * override these for the same scope, name and window.
 *
 * ```yaml
 * budgets:
 *   global: { month_usd: 2000 }
 *   tenants:
 *     acme: { day_usd: 5, month_usd: 100, on_exhausted: wait }
 *   keys:
 *     acme-batch: { day_usd: 1 }
 *   tasks:
 *     moderation: { day_usd: 20 }
 * ```
 */
import { z } from "zod";
import { TASK_PATTERN } from "../contract/subjects.ts";

/** A budget's limits, each over its own window; at least one is set. */
export const BudgetLimitsSchema = z
  .strictObject({
    /** USD per UTC day (midnight to midnight). */
    day_usd: z.number().positive().optional(),
    /** USD per UTC calendar month. */
    month_usd: z.number().positive().optional(),
    /**
     * What happens to a job whose worst-case cost no longer fits: `reject` dead-letters it as
     * `budget_exceeded` (the gateway answers 429 `insufficient_quota`); `wait` hands it back
     * to the queue until the window that ran out starts again (one delivery per wait), or
     * dead-letters it when its deadline comes first.
     * @defaultValue "reject"
     */
    on_exhausted: z.enum(["reject", "wait"]).default("reject"),
  })
  .refine((b) => b.day_usd !== undefined || b.month_usd !== undefined, { message: "a budget needs day_usd, month_usd or both" });

export const BudgetsConfigSchema = z.strictObject({
  /** Applies to every job. */
  global: BudgetLimitsSchema.optional(),
  /** By the job's `metadata.tenant` (the gateway writes its API key's `tenant` there). */
  tenants: z.record(z.string().min(1).max(128), BudgetLimitsSchema).default({}),
  /**
   * By the job's `metadata.key`: the gateway writes there the name of the API key a request
   * came in by (`gateway.keys.<name>`), so one key of a tenant can be held to less than
   * the tenant, across every gateway and router.
   */
  keys: z.record(z.string().min(1).max(64), BudgetLimitsSchema).default({}),
  /** By the job's task. */
  tasks: z.record(z.string().regex(TASK_PATTERN, "task name must match [a-z0-9_-]{1,64}"), BudgetLimitsSchema).default({}),
  /**
   * How long a worker's reservations stand without being renewed. A live worker renews its
   * own every third of this; a crashed worker's lapse after it, and the next writer drops
   * them. Keep it below `router.ack_wait`, so a crashed worker's jobs, redelivered, find
   * the budget freed. @defaultValue 10s
   */
  reservation_ttl_ms: z.int().min(500).default(10_000),
});

export type BudgetsConfig = z.output<typeof BudgetsConfigSchema>;
export type BudgetLimits = z.output<typeof BudgetLimitsSchema>;

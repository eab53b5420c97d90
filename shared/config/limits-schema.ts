/**
 * Provider limits shared by every router worker (`providers.<p>.limits`, a pool for all of the
 * provider's models together, and `providers.<p>.models.<m>.limits`, one model's own). A call
 * takes from each limit that applies; a limit left out is not enforced. The cluster stays within
 * each limit plus a small bounded slack (`shared/limits/slices.ts`; README "Provider limits").
 */
import { z } from "zod";

export const LimitsSchema = z
  .strictObject({
    /** Requests per minute across every worker. */
    rpm: z.number().positive().optional(),
    /**
     * Prompt plus completion tokens per minute across every worker. A call reserves its prompt
     * estimate plus `max_tokens` (or the task's `expected_completion_tokens`) and settles to the
     * provider's reported usage after.
     */
    tpm: z.number().positive().optional(),
    /**
     * Calls in flight at once across every worker (unlike the provider's own `max_concurrency`,
     * which is connections per worker process).
     */
    max_concurrency: z.int().positive().optional(),
  })
  .refine((l) => l.rpm !== undefined || l.tpm !== undefined || l.max_concurrency !== undefined, { message: "limits needs rpm, tpm or max_concurrency (or leave limits out)" });

export type LimitsConfig = z.infer<typeof LimitsSchema>;

/**
 * What a job does when a candidate's limit is used up: `wait` for quota (the job stays held; the
 * router renews its hold), at most the attempt's timeout, then counts it as rate-limited;
 * `next`: try the next candidate at once.
 */
export const OnRateLimitedSchema = z.enum(["wait", "next"]);

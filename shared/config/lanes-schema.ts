/**
 * `router.lanes`: how each router worker shares its `max_in_flight` slots between the
 * interactive lane (the gateway's requests, `ijobs.<task>`) and the batch lane (`jobs.<task>`).
 * The router owns it; `gateway.lanes`, where it used to live, is still read (with a
 * deprecation warning at start-up) when `router.lanes` is absent.
 */
import { z } from "zod";

export const LanesSchema = z
  .strictObject({
    /** Share of each worker's `router.max_in_flight` that batch-lane jobs may never take, so interactive jobs always find a free slot. @defaultValue 0.25 */
    interactive_reserved: z.number().min(0).max(0.9).default(0.25),
    /** Share that interactive jobs may never take, so batch work never starves. @defaultValue 0.1 */
    batch_reserved: z.number().min(0).max(0.9).default(0.1),
  })
  .refine((l) => l.interactive_reserved + l.batch_reserved < 1, { message: "interactive_reserved + batch_reserved must be below 1" });

export type LaneShares = z.output<typeof LanesSchema>;

export const DEFAULT_LANES: LaneShares = { interactive_reserved: 0.25, batch_reserved: 0.1 };

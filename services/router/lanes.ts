/**
 * Priority lanes inside one worker: how many jobs each lane may pull into the free handler
 * slots. Pure, so the reserve, the floor and the priority rule are unit-tested
 * (test/gateway-lanes.test.ts).
 *
 * - Batch jobs never hold the interactive reserve, so an interactive job always finds a slot.
 * - Interactive jobs never hold the batch reserve, so batch work never starves.
 * - While the interactive lane is busy (its last pull came back full: more are waiting), the
 *   batch lane pulls only up to its reserve and interactive jobs take every slot that frees.
 *   Otherwise the batch lane may use everything but the interactive reserve.
 */
import type { LaneShares } from "../../shared/config/lanes-schema.ts";

export type Lane = "interactive" | "batch";

export interface LaneSlots {
  readonly max: number;
  readonly interactiveReserved: number;
  readonly batchReserved: number;
}

/** Each lane's jobs in flight plus the size of its pull that is still open. */
export type LaneHeld = Record<Lane, number>;

/** Shares → whole slots, each reserve at least one while `max` allows both (max_in_flight ≥ 2). */
export function laneSlots(max: number, shares: LaneShares): LaneSlots {
  if (max < 2) return { max, interactiveReserved: 0, batchReserved: 0 };
  const batchReserved = Math.min(max - 1, Math.max(1, Math.round(shares.batch_reserved * max)));
  const interactiveReserved = Math.min(max - batchReserved, Math.max(1, Math.round(shares.interactive_reserved * max)));
  return { max, interactiveReserved, batchReserved };
}

/** How many jobs `lane` may pull now (0: wait until a slot frees or the other lane's pull ends). */
export function pullSize(lane: Lane, slots: LaneSlots, held: LaneHeld, interactiveBusy: boolean): number {
  const free = slots.max - held.interactive - held.batch;
  if (lane === "interactive") {
    const cap = slots.max - slots.batchReserved;
    // Idle, it keeps a pull open for its reserve, or for one job once its own jobs fill that:
    // the first arrival ends that pull full, which marks the lane busy.
    const want = interactiveBusy ? cap - held.interactive : Math.max(slots.interactiveReserved - held.interactive, 1);
    return Math.max(0, Math.min(free, want, cap - held.interactive));
  }
  const cap = interactiveBusy ? slots.batchReserved : slots.max - slots.interactiveReserved;
  return Math.max(0, Math.min(free, cap - held.batch));
}

/**
 * The one reader of the pricing service's `switchyard-models` bucket: every entry parsed at
 * the boundary, malformed ones skipped with a warning. Router workers route on what it
 * delivers; the gateway's `/v1/models` shows it.
 */
import type { KV } from "@nats-io/kv";
import { HeartbeatSchema, ModelStateSchema, type ModelState } from "../contract/live.ts";
import { HEARTBEAT_KEY } from "../contract/subjects.ts";
import { parseJsonOrUndefined } from "../json.ts";
import type { Logger } from "../log.ts";

export interface ModelStateEvents {
  state(state: ModelState): void;
  /** A model's entry was deleted or purged. */
  removed?(id: string): void;
  /** The pricing leader's heartbeat, as epoch ms (never later than `now()`). */
  heartbeat?(at: number): void;
}

export interface ModelWatch {
  /** Ends when the watch is stopped; rejects if the watch fails. */
  readonly done: Promise<void>;
  stop(): void;
}

export async function watchModelStates(kv: KV, on: ModelStateEvents, logger: Logger, now: () => number = Date.now): Promise<ModelWatch> {
  const watcher = await kv.watch();
  const done = (async () => {
    for await (const e of watcher) {
      if (e.operation !== "PUT") {
        if (e.key !== HEARTBEAT_KEY) on.removed?.(e.key);
        continue;
      }
      const value = parseJsonOrUndefined(e.string());
      if (e.key === HEARTBEAT_KEY) {
        const hb = HeartbeatSchema.safeParse(value);
        // A heartbeat left behind by a pricing service that died long ago must not read as fresh.
        if (hb.success) on.heartbeat?.(Math.min(now(), Date.parse(hb.data.at)));
        continue;
      }
      const parsed = ModelStateSchema.safeParse(value);
      if (parsed.success) on.state(parsed.data);
      else logger.warn({ key: e.key }, "ignoring a malformed model state entry");
    }
  })();
  return { done, stop: () => watcher.stop() };
}

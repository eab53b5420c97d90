/**
 * The live-state KV buckets, opened (and created when missing) the same way by the pricing
 * service, every worker and the CLI, so whoever starts first creates them.
 */
import { Kvm, type KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Config } from "../config/schema.ts";
import { BUCKETS } from "../contract/subjects.ts";

/** The leader lease lapses this long after its holder stops renewing it. */
export const LEASE_TTL_MS = 3_000;

export interface LiveBuckets {
  readonly models: KV;
  readonly prices: KV;
  readonly lease: KV;
}

export async function openBuckets(nc: NatsConnection, cfg: Config): Promise<LiveBuckets> {
  const kvm = new Kvm(nc);
  const replicas = cfg.streams.replicas;
  const [models, prices, lease] = await Promise.all([
    kvm.create(BUCKETS.models, { history: 1, replicas }),
    kvm.create(BUCKETS.prices, { history: 5, replicas }),
    kvm.create(BUCKETS.lease, { history: 1, replicas, ttl: LEASE_TTL_MS }),
  ]);
  return { models, prices, lease };
}

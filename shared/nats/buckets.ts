/**
 * The live-state KV buckets, opened the same way by the pricing service, every worker and the
 * CLI. Under `provision: auto` (the default) they are created when missing, so whoever starts
 * first creates them; under `provision: check` they are only bound, with no request at all
 * (the service's start-up check, shared/nats/provision.ts, has read their info), so a service
 * needs no right to create them, nor to read the account info.
 */
import { jetstream } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Config } from "../config/schema.ts";
import { namesOf } from "../contract/subjects.ts";
import { LEASE_TTL_MS } from "./provision.ts";

/** The leader lease lapses this long after its holder stops renewing it. */
export { LEASE_TTL_MS };

export interface LiveBuckets {
  readonly models: KV;
  readonly prices: KV;
  readonly lease: KV;
}

export async function openBuckets(nc: NatsConnection, cfg: Config): Promise<LiveBuckets> {
  const BUCKETS = namesOf(cfg).buckets;
  if (cfg.provision === "check") {
    // Bound as provisioned: direct get on (`switchyard provision` creates every bucket with allow_direct).
    const kvm = new Kvm(jetstream(nc, { checkAPI: false }));
    const [models, prices, lease] = await Promise.all([BUCKETS.models, BUCKETS.prices, BUCKETS.lease].map((b) => kvm.open(b, { allow_direct: true })));
    return { models: models!, prices: prices!, lease: lease! };
  }
  const kvm = new Kvm(nc);
  const replicas = cfg.streams.replicas;
  const [models, prices, lease] = await Promise.all([
    kvm.create(BUCKETS.models, { history: 1, replicas }),
    kvm.create(BUCKETS.prices, { history: 5, replicas }),
    kvm.create(BUCKETS.lease, { history: 1, replicas, ttl: LEASE_TTL_MS }),
  ]);
  return { models, prices, lease };
}

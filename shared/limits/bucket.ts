/**
 * The limits bucket (`switchyard-limits`), opened like the live-state buckets (`nats/buckets.ts`):
 * created when missing under `provision: auto`, only bound under `provision: check`.
 * One entry per limit, history 1: only the latest clock matters.
 */
import { jetstream } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Config } from "../config/schema.ts";
import { namesOf } from "../contract/subjects.ts";

export async function openLimitsBucket(nc: NatsConnection, cfg: Config): Promise<KV> {
  const bucket = namesOf(cfg).limitsBucket;
  if (cfg.provision === "check") return new Kvm(jetstream(nc, { checkAPI: false })).open(bucket, { allow_direct: true });
  return new Kvm(nc).create(bucket, { history: 1, replicas: cfg.streams.replicas });
}

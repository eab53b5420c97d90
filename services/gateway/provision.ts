/**
 * What the gateway needs beyond the core streams (shared/nats/provision.ts): the BATCH_LINES
 * stream, the batch outcome collectors' durable consumers on RESULTS and DLQ, the batches KV
 * bucket and the files object store. Idempotent, like the core provisioning.
 */
import { AckPolicy, DeliverPolicy, StorageType, type JetStreamManager, type StreamConfig } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import { Objm, type ObjectStore } from "@nats-io/obj";
import { nanos, type NatsConnection } from "@nats-io/transport-node";
import type { Config } from "../../shared/config/schema.ts";
import { ensureStream, streamDefaults } from "../../shared/nats/provision.ts";
import { BATCH_LINES_STREAM, BATCH_LINES_SUBJECT, GATEWAY_BATCH_DURABLE, GATEWAY_BUCKETS, STREAMS, SUBJECTS } from "../../shared/contract/subjects.ts";

export interface GatewayStores {
  readonly batches: KV;
  readonly files: ObjectStore;
}

export async function provisionGateway(nc: NatsConnection, jsm: JetStreamManager, cfg: Config): Promise<GatewayStores> {
  const s = cfg.streams;
  const lines = {
    ...streamDefaults(cfg),
    name: BATCH_LINES_STREAM,
    subjects: [`${BATCH_LINES_SUBJECT}.>`],
    // A line is kept until its batch's files are written (then purged); this only bounds strays.
    max_age: nanos(s.results_max_age),
  } as StreamConfig;
  await ensureStream(jsm, lines);
  for (const [stream, subject] of [
    [STREAMS.results, SUBJECTS.results],
    [STREAMS.dlq, SUBJECTS.dlq],
  ] as const) {
    await jsm.consumers.add(stream, {
      durable_name: GATEWAY_BATCH_DURABLE,
      ack_policy: AckPolicy.Explicit,
      // Batch outcomes only exist after a gateway has created this consumer.
      deliver_policy: DeliverPolicy.New,
      filter_subject: `${subject}.>`,
      ack_wait: nanos(30_000),
      max_ack_pending: 10_000,
    });
  }
  const [batches, files] = await Promise.all([
    new Kvm(nc).create(GATEWAY_BUCKETS.batches, { history: 1, replicas: s.replicas }),
    new Objm(nc).create(GATEWAY_BUCKETS.files, { replicas: s.replicas, storage: StorageType.File }),
  ]);
  return { batches, files };
}

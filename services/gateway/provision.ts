/**
 * What the gateway needs beyond the core streams: the BATCH_LINES stream, the batch outcome
 * collectors' durable consumers on RESULTS and DLQ, the batches and responses KV buckets and the
 * files object store (their configs: shared/nats/provision.ts, with every other resource). Under
 * `provision: auto` they are created or updated here, idempotently; under `provision: check`
 * the gateway's start-up check (`prepareNats("gateway", …)`) has already read them, and the
 * stores are only bound, with no request.
 */
import { jetstream, type JetStreamManager } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import { Objm, type ObjectStore } from "@nats-io/obj";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Config } from "../../shared/config/schema.ts";
import { applyResources, resourcesFor } from "../../shared/nats/provision.ts";
import { namesOf } from "../../shared/contract/subjects.ts";

export interface GatewayStores {
  readonly batches: KV;
  readonly files: ObjectStore;
  readonly responses: KV;
}

/** The gateway's own resources, as `resourcesFor("gateway")` lists them: all but the core streams and the models bucket, which others provision too. */
function gatewayOwn(cfg: Config) {
  const { batchLinesStream: BATCH_LINES_STREAM, gatewayBatchDurable: GATEWAY_BATCH_DURABLE, gatewayBuckets: GATEWAY_BUCKETS } = namesOf(cfg);
  return resourcesFor("gateway", cfg).filter(
    (r) =>
      (r.kind === "stream" && r.name === BATCH_LINES_STREAM) ||
      (r.kind === "consumer" && r.config.durable_name === GATEWAY_BATCH_DURABLE) ||
      ((r.kind === "kv" || r.kind === "obj") && Object.values(GATEWAY_BUCKETS).includes(r.bucket as never)),
  );
}

export async function provisionGateway(nc: NatsConnection, jsm: JetStreamManager, cfg: Config): Promise<GatewayStores> {
  if (cfg.provision !== "check") await applyResources(jsm, gatewayOwn(cfg));
  // No account-info request ($JS.API.INFO) on open: the stores were just provisioned or checked.
  const js = jetstream(nc, { checkAPI: false });
  const GATEWAY_BUCKETS = namesOf(cfg).gatewayBuckets;
  const [batches, files, responses] = await Promise.all([
    new Kvm(js).open(GATEWAY_BUCKETS.batches, { allow_direct: true }),
    new Objm(js).open(GATEWAY_BUCKETS.files, false),
    new Kvm(js).open(GATEWAY_BUCKETS.responses, { allow_direct: true }),
  ]);
  return { batches, files, responses };
}

/**
 * Idempotent provisioning of the three streams and the router's durable consumers (one per
 * priority lane). Every service calls it at start-up, so the first one up creates them and
 * later ones converge them to the config (streams.update for a changed stream: streams.add would fail on 2.9).
 */
import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  RetentionPolicy,
  StorageType,
  type ConsumerConfig,
  type JetStreamManager,
  type StreamConfig,
} from "@nats-io/jetstream";
import { nanos } from "@nats-io/transport-node";
import type { Config } from "../config/schema.ts";
import { INTERACTIVE_DURABLE, INTERACTIVE_SUBJECT, ROUTER_DURABLE, STREAMS, SUBJECTS } from "../contract/subjects.ts";

/** What every Switchyard stream shares, from the `streams` config section; each adds its name, subjects and max_age. */
export function streamDefaults(cfg: Config) {
  const s = cfg.streams;
  return {
    // Limits retention, not work-queue: served jobs stay for replay until max_age.
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    discard: DiscardPolicy.Old,
    num_replicas: s.replicas,
    max_msg_size: s.max_msg_size,
    max_bytes: s.max_bytes,
    duplicate_window: nanos(s.duplicate_window),
    max_msgs: -1,
    max_consumers: -1,
    max_msgs_per_subject: -1,
    allow_direct: true,
  } satisfies Partial<StreamConfig>;
}

export function streamConfigs(cfg: Config): StreamConfig[] {
  const s = cfg.streams;
  const common = streamDefaults(cfg);
  return [
    { ...common, name: STREAMS.jobs, subjects: [`${SUBJECTS.jobs}.>`, `${INTERACTIVE_SUBJECT}.>`], max_age: nanos(s.jobs_max_age) } as StreamConfig,
    { ...common, name: STREAMS.results, subjects: [`${SUBJECTS.results}.>`], max_age: nanos(s.results_max_age) } as StreamConfig,
    { ...common, name: STREAMS.dlq, subjects: [`${SUBJECTS.dlq}.>`], max_age: nanos(s.dlq_max_age) } as StreamConfig,
  ];
}

export function routerConsumerConfig(cfg: Config): Partial<ConsumerConfig> {
  const r = cfg.router;
  return {
    durable_name: ROUTER_DURABLE,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    filter_subject: `${SUBJECTS.jobs}.>`,
    ack_wait: nanos(r.ack_wait),
    // Unlimited: the delivery budget is enforced by the router, which dead-letters a job
    // delivered past it. A server-side cap would instead strand a job in the stream, never
    // delivered again, whenever its outcome could not be stored (RESULTS and DLQ unavailable).
    max_deliver: -1,
    max_ack_pending: r.max_ack_pending,
  };
}

/** Creates the stream, or brings an existing one to this config (on 2.9 `streams.add` with a changed config fails). */
export async function ensureStream(jsm: JetStreamManager, sc: StreamConfig): Promise<void> {
  try {
    await jsm.streams.info(sc.name);
    await jsm.streams.update(sc.name, sc);
  } catch (err) {
    if (!(err instanceof JetStreamApiError) || err.code !== JetStreamApiCodes.StreamNotFound) throw err;
    await jsm.streams.add(sc);
  }
}

export async function provision(jsm: JetStreamManager, cfg: Config): Promise<void> {
  for (const sc of streamConfigs(cfg)) await ensureStream(jsm, sc);
  await jsm.consumers.add(STREAMS.jobs, routerConsumerConfig(cfg));
  await jsm.consumers.add(STREAMS.jobs, interactiveConsumerConfig(cfg));
}

/** The interactive lane's consumer: the router's settings on `ijobs.>`, so workers can pull it first. */
export function interactiveConsumerConfig(cfg: Config): Partial<ConsumerConfig> {
  return { ...routerConsumerConfig(cfg), durable_name: INTERACTIVE_DURABLE, filter_subject: `${INTERACTIVE_SUBJECT}.>` };
}

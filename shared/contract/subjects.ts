/**
 * Every NATS name Switchyard uses, in one place. Producers in other languages rely on the
 * subject shapes; changing one of these is a wire-contract change (see README, "Wire contract v1").
 */
export const STREAMS = {
  jobs: "JOBS",
  results: "RESULTS",
  dlq: "DLQ",
} as const;

export const SUBJECTS = {
  jobs: "jobs",
  results: "results",
  dlq: "dlq",
} as const;

/**
 * Live state ("gossip"). MODELS: one entry per `provider/model`, written only by the
 * pricing-service leader, watched by every worker. PRICES: operator price overrides
 * (`switchyard prices set`), durable so they apply even when no pricing service runs.
 * PRICING_LEASE: the leader lease, a key that expires unless its holder renews it.
 */
export const BUCKETS = {
  models: "switchyard-models",
  prices: "switchyard-prices",
  lease: "switchyard-pricing-lease",
} as const;

/** The KV key the pricing leader refreshes about every second, so workers can tell it is alive. */
export const HEARTBEAT_KEY = "_heartbeat";
export const LEASE_KEY = "leader";

/** Per-attempt telemetry, core NATS (not stored): `telemetry.attempts.<provider>`. */
export const TELEMETRY_SUBJECT = "telemetry.attempts";

/** The durable pull consumer every router worker shares. */
export const ROUTER_DURABLE = "router";

/** Task names are one subject token: this keeps `jobs.<task>` a single, filterable level. */
export const TASK_PATTERN = /^[a-z0-9_-]{1,64}$/;

export const jobSubject = (task: string) => `${SUBJECTS.jobs}.${task}`;
export const resultSubject = (task: string) => `${SUBJECTS.results}.${task}`;
export const dlqSubject = (task: string) => `${SUBJECTS.dlq}.${task}`;

/**
 * The task token of a job subject, or null when the subject is not `jobs.<one token>`.
 * A subject with more tokens (`jobs.a.b`) is still captured by the JOBS stream, so it must
 * still end as a dead letter rather than vanish.
 */
export function taskOfSubject(subject: string): string | null {
  const prefix = `${SUBJECTS.jobs}.`;
  if (!subject.startsWith(prefix)) return null;
  const task = subject.slice(prefix.length);
  return TASK_PATTERN.test(task) ? task : null;
}

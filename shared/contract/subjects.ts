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

/**
 * Priority lanes. `jobs.<task>` (wire contract v1) is the batch lane; the interactive lane
 * is `ijobs.<task>`, the same job shape, captured by the same JOBS stream and pulled through
 * its own durable consumer, so a worker can serve it first (README, "Gateway").
 */
export const INTERACTIVE_SUBJECT = "ijobs";
export const INTERACTIVE_DURABLE = "router-interactive";
export const interactiveJobSubject = (task: string) => `${INTERACTIVE_SUBJECT}.${task}`;

/** A job subject of either lane as its `jobs.…` form, so intake treats both lanes alike. */
export function canonicalJobSubject(subject: string): string {
  return subject.startsWith(`${INTERACTIVE_SUBJECT}.`) ? `${SUBJECTS.jobs}.${subject.slice(INTERACTIVE_SUBJECT.length + 1)}` : subject;
}

/**
 * The interactive fast path (README, "Gateway"): a gateway sends a chat request's job as a core
 * NATS request to `switchyard.interactive.<task>`; the routers serve that subject in the queue
 * group INTERACTIVE_QUEUE, so each request reaches one router with a free slot, and one nobody
 * serves is answered "no responders" at once. The reply is the job's Result or DeadLetter.
 */
export const INTERACTIVE_REQUEST_SUBJECT = "switchyard.interactive";
export const INTERACTIVE_QUEUE = "switchyard-routers";
/**
 * Header on a fast-path reply with no body: the router stopped before the job finished and
 * published nothing for it, so the gateway may send the request again (another router takes it).
 */
export const HANDBACK_HEADER = "Switchyard-Handback";

/**
 * Streaming on the fast path (README, "Streaming"). On a request, asks the router to stream the
 * answer; the router then sends the answer's pieces to the request's reply subject, the first
 * at once and later ones gathered (services/router/stream.ts), each message with this header,
 * before the usual final reply (the Result or DeadLetter, without it).
 */
export const STREAM_HEADER = "Switchyard-Stream";
/**
 * Under the request prefix, two tokens so it never names a task: a gateway whose caller went
 * away publishes the request's reply subject here, and the router serving it cuts the call off.
 */
export const STREAM_CANCEL_SUFFIX = "stream.cancel";

/**
 * A job may carry this header naming a core-NATS subject under REPLY_PREFIX: after storing
 * the result (or dead letter), the router also publishes it there. A gateway instance listens
 * on its own subject, so it receives only the outcomes of its own requests.
 */
export const REPLY_HEADER = "Switchyard-Reply-To";
export const REPLY_PREFIX = "switchyard.reply.";

/** Only plain subjects under REPLY_PREFIX: a job must not make the router publish anywhere else. */
export function isReplySubject(subject: string): boolean {
  return subject.startsWith(REPLY_PREFIX) && /^[A-Za-z0-9_.-]{1,200}$/.test(subject) && !subject.includes("..") && !subject.endsWith(".");
}

/**
 * The gateway's Batch API state. FILES: an object store of uploaded and produced files.
 * BATCHES: one KV entry per batch (its OpenAI batch object plus bookkeeping).
 * BATCH_LINES: each finished line of a batch, `batchlines.<batch>.ok|err`, until the batch's
 * output and error files are written; `batchlines.<batch>.seqs` records the JOBS sequences a
 * batch published, so a cancel can withdraw the ones not yet served.
 * RESPONSES: the Responses API's stored responses, one KV entry per response id, kept for
 * RESPONSES_TTL_MS.
 */
export const GATEWAY_BUCKETS = {
  files: "switchyard-files",
  batches: "switchyard-batches",
  responses: "switchyard-responses",
} as const;
/** How long a stored response is kept (the bucket's max age): OpenAI keeps them 30 days. */
export const RESPONSES_TTL_MS = 30 * 86_400_000;
export const BATCH_LINES_STREAM = "BATCH_LINES";
export const BATCH_LINES_SUBJECT = "batchlines";
/** The durable consumers (one on RESULTS, one on DLQ) every gateway shares to collect batch outcomes. */
export const GATEWAY_BATCH_DURABLE = "gateway-batches";
/** The replay ledger (services/replay/ledger.ts): which replay ids were published. */
export const REPLAY_BUCKET = "switchyard-replays";

/**
 * Spend control (README, "Budgets"). BUDGETS: budgets set at run time (`switchyard budgets
 * set`), `<scope>.<name>.<window>`, watched by every router. SPEND: settled spend and the
 * workers' reservations per budget and window, `<scope>.<name>.<window>.<period>`, written
 * by routers with compare-and-set.
 */
export const SPEND_BUCKETS = {
  budgets: "switchyard-budgets",
  spend: "switchyard-spend",
} as const;

/**
 * Cluster-wide limits (shared/limits): one KV entry per provider, model or gateway key limit,
 * moved forward by compare-and-set. LIMITS_PAUSE_SUBJECT: core NATS, `<subject>.<provider>`, a
 * model a provider answered 429 with Retry-After, paused at every worker at once.
 */
export const LIMITS_BUCKET = "switchyard-limits";
export const LIMITS_PAUSE_SUBJECT = "switchyard.pause";

/**
 * The result cache (README, "Result cache"): one KV entry per distinct job of a task with
 * `cache:`, `<task>.<sha256>`, written by routers after a result, read before planning.
 */
export const RESULT_CACHE_BUCKET = "switchyard-result-cache";

/**
 * The batch lane (README, "Batch lane"): jobs with slack, sent through the providers' own
 * batch APIs. BATCH_QUEUE: each such job as a line for the batcher, `batchq.<task>.<key>` (`key`
 * a digest of the job id, so a redelivered job can read back whether an earlier delivery queued
 * it), kept (limits retention) while its provider batch runs, since the batch's record names its
 * lines by sequence. PROVIDER_BATCHES: one KV entry per provider batch, `open.<id>` while it runs
 * and `done.<id>` after.
 */
export const BATCH_QUEUE_STREAM = "BATCH_QUEUE";
export const BATCH_QUEUE_SUBJECT = "batchq";
export const BATCHER_DURABLE = "batcher";
export const PROVIDER_BATCHES_BUCKET = "switchyard-provider-batches";
/**
 * On a job the batcher hands back to the live path (its batch line failed, expired, came back
 * invalid, or its batch was given up for the deadline): why, so the router serves it live.
 */
export const LIVE_HEADER = "Switchyard-Live";
/** Beside LIVE_HEADER: the batch line's attempt as a JSON array, so the job's outcome lists (and bills) it. */
export const ATTEMPTS_HEADER = "Switchyard-Attempts";

/**
 * A namespace (config `namespace:`, env `SWITCHYARD_NAMESPACE`) lets several Switchyard
 * deployments share one NATS account. One token, so it never splits a subject level.
 */
export const NAMESPACE_PATTERN = /^[a-z0-9_-]{1,32}$/;

/**
 * Every NATS name of one deployment, derived from its namespace. Without one (undefined) they are
 * exactly the constants above (wire contract v1). With `staging`:
 * - subjects get the namespace as a first token: `staging.jobs.<task>`, `staging.ijobs.<task>`,
 *   `staging.results.<task>`, `staging.dlq.<task>`, `staging.batchlines.…`,
 *   `staging.telemetry.attempts.<provider>`, replies under `staging.switchyard.reply.`;
 * - streams (which cannot hold a dot) the namespace upper-cased and an underscore: `STAGING_JOBS`,
 *   `STAGING_RESULTS`, `STAGING_DLQ`, `STAGING_BATCH_LINES` (upper-casing `[a-z0-9_-]` keeps
 *   distinct namespaces distinct);
 * - durable consumers, KV buckets and the object store the namespace and a dash:
 *   `staging-router`, `staging-switchyard-models`, `staging-switchyard-files`.
 */
export function names(namespace?: string) {
  if (namespace !== undefined && !NAMESPACE_PATTERN.test(namespace)) throw new Error(`namespace "${namespace}" must match [a-z0-9_-]{1,32}`);
  const subject = (s: string) => (namespace ? `${namespace}.${s}` : s);
  const stream = (s: string) => (namespace ? `${namespace.toUpperCase()}_${s}` : s);
  const dashed = (s: string) => (namespace ? `${namespace}-${s}` : s);
  const subjects = { jobs: subject(SUBJECTS.jobs), results: subject(SUBJECTS.results), dlq: subject(SUBJECTS.dlq) };
  const interactiveSubject = subject(INTERACTIVE_SUBJECT);
  const replyPrefix = subject(REPLY_PREFIX);
  return {
    namespace,
    streams: { jobs: stream(STREAMS.jobs), results: stream(STREAMS.results), dlq: stream(STREAMS.dlq) },
    subjects,
    buckets: { models: dashed(BUCKETS.models), prices: dashed(BUCKETS.prices), lease: dashed(BUCKETS.lease) },
    telemetrySubject: subject(TELEMETRY_SUBJECT),
    routerDurable: dashed(ROUTER_DURABLE),
    interactiveSubject,
    interactiveDurable: dashed(INTERACTIVE_DURABLE),
    replyPrefix,
    gatewayBuckets: { files: dashed(GATEWAY_BUCKETS.files), batches: dashed(GATEWAY_BUCKETS.batches), responses: dashed(GATEWAY_BUCKETS.responses) },
    batchLinesStream: stream(BATCH_LINES_STREAM),
    batchLinesSubject: subject(BATCH_LINES_SUBJECT),
    gatewayBatchDurable: dashed(GATEWAY_BATCH_DURABLE),
    replayBucket: dashed(REPLAY_BUCKET),
    spendBuckets: { budgets: dashed(SPEND_BUCKETS.budgets), spend: dashed(SPEND_BUCKETS.spend) },
    limitsBucket: dashed(LIMITS_BUCKET),
    limitsPauseSubject: subject(LIMITS_PAUSE_SUBJECT),
    resultCacheBucket: dashed(RESULT_CACHE_BUCKET),
    batchQueueStream: stream(BATCH_QUEUE_STREAM),
    /** One job's line: `<ns>.batchq.<task>.<key>`, `key` a subject-safe digest of the job id, so whether a job was queued can be read back by subject. */
    batchQueueSubject: (task: string, key: string) => subject(`${BATCH_QUEUE_SUBJECT}.${task}.${key}`),
    batchQueueFilter: subject(`${BATCH_QUEUE_SUBJECT}.>`),
    batcherDurable: dashed(BATCHER_DURABLE),
    providerBatchesBucket: dashed(PROVIDER_BATCHES_BUCKET),
    jobSubject: (task: string) => `${subjects.jobs}.${task}`,
    resultSubject: (task: string) => `${subjects.results}.${task}`,
    dlqSubject: (task: string) => `${subjects.dlq}.${task}`,
    interactiveJobSubject: (task: string) => `${interactiveSubject}.${task}`,
    /** The fast path's request subjects, `<ns>.switchyard.interactive.<task>`. */
    interactiveRequestPrefix: subject(INTERACTIVE_REQUEST_SUBJECT),
    interactiveRequestSubject: (task: string) => `${subject(INTERACTIVE_REQUEST_SUBJECT)}.${task}`,
    /** The task token of `<ns>.jobs.<task>`, or null (see taskOfSubject). */
    taskOfSubject(s: string): string | null {
      const prefix = `${subjects.jobs}.`;
      if (!s.startsWith(prefix)) return null;
      const task = s.slice(prefix.length);
      return TASK_PATTERN.test(task) ? task : null;
    },
    /** `<ns>.ijobs.<task>` as `<ns>.jobs.<task>`, so intake treats both lanes alike. */
    canonicalJobSubject(s: string): string {
      return s.startsWith(`${interactiveSubject}.`) ? `${subjects.jobs}.${s.slice(interactiveSubject.length + 1)}` : s;
    },
    /** Only plain subjects under this deployment's reply prefix (see isReplySubject). */
    isReplySubject(s: string): boolean {
      return s.startsWith(replyPrefix) && /^[A-Za-z0-9_.-]{1,200}$/.test(s) && !s.includes("..") && !s.endsWith(".");
    },
  };
}
export type Names = ReturnType<typeof names>;

/** The names of a deployment from its config (`namespace`, already overridden by SWITCHYARD_NAMESPACE when the config was loaded). */
export const namesOf = (cfg: { readonly namespace?: string | undefined }): Names => names(cfg.namespace);

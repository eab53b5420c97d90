/**
 * The NATS permissions each Switchyard user needs, derived from what the code sends and
 * receives (subjects.ts; nats.js's `$JS.API` requests, `$KV`/`$O` subjects and `_INBOX.>`
 * replies), for services run with `provision: check` while an admin runs `switchyard
 * provision`. The README's nats-server snippet is `authorizationConfig()` verbatim, and
 * test/least-privilege.test.ts runs the stack on a server configured with exactly it.
 *
 * Every request's reply (a JetStream API answer, a PubAck, a pull's messages, a watch's
 * deliveries) comes to the client's inbox, `_INBOX.<nuid>…`, so every user subscribes to
 * `_INBOX.>`. Ordered consumers (a KV watch, reading a stream from the start) have names the
 * client makes up (`oc_<nuid>_<n>`), so they are allowed by stream, not by name.
 */
import { names, type Names } from "../contract/subjects.ts";

/** One user's rights: subjects it may publish to and subscribe to, and exceptions carved out of them. */
export interface PermissionSet {
  readonly publish: { readonly allow: readonly string[]; readonly deny?: readonly string[] };
  readonly subscribe: { readonly allow: readonly string[] };
}

/** Switchyard's NATS users, each with the environment variable its password comes from in the server config. */
export const USERS = {
  admin: "ADMIN_PASS",
  router: "ROUTER_PASS",
  pricing: "PRICING_PASS",
  gateway: "GATEWAY_PASS",
  producer: "PRODUCER_PASS",
} as const;
export type User = keyof typeof USERS;

const API = "$JS.API";
const INBOX = "_INBOX.>";

const streamInfo = (stream: string) => `${API}.STREAM.INFO.${stream}`;
/** A durable pull consumer: look it up, pull from it, and acknowledge what it delivered. */
const durable = (stream: string, name: string) => [`${API}.CONSUMER.INFO.${stream}.${name}`, `${API}.CONSUMER.MSG.NEXT.${stream}.${name}`, `$JS.ACK.${stream}.${name}.>`];
/** An ordered (ephemeral) pull consumer reading a stream: create, pull, delete. */
const orderedPull = (stream: string) => [`${API}.CONSUMER.CREATE.${stream}.>`, `${API}.CONSUMER.MSG.NEXT.${stream}.*`, `${API}.CONSUMER.DELETE.${stream}.*`];
/** A KV watch (an ordered push consumer with flow control). */
const kvWatch = (bucket: string) => [`${API}.CONSUMER.CREATE.KV_${bucket}.>`, `${API}.CONSUMER.DELETE.KV_${bucket}.*`, `$JS.FC.KV_${bucket}.>`];
/** A KV read (direct get) and write (a publish to `$KV.<bucket>.<key>`, answered by a PubAck). */
const kvGet = (bucket: string) => [`${API}.DIRECT.GET.KV_${bucket}.>`];
const kvPut = (bucket: string) => [`$KV.${bucket}.>`];

/** Each user's rights over one deployment's names (`names(namespace)`); PERMISSIONS is the one without a namespace. */
export function permissionsFor(n: Names): Readonly<Record<User, PermissionSet>> {
  const { streams: STREAMS, subjects: SUBJECTS, buckets: BUCKETS } = n;
  const FILES = n.gatewayBuckets.files;
  const BATCHES = n.gatewayBuckets.batches;
  const [BATCH_LINES_STREAM, BATCH_LINES_SUBJECT, INTERACTIVE_SUBJECT, REPLY_PREFIX, TELEMETRY_SUBJECT] = [n.batchLinesStream, n.batchLinesSubject, n.interactiveSubject, n.replyPrefix, n.telemetrySubject];
  const [ROUTER_DURABLE, INTERACTIVE_DURABLE, GATEWAY_BATCH_DURABLE] = [n.routerDurable, n.interactiveDurable, n.gatewayBatchDurable];
  return {
  /** `switchyard provision` (and `--check`): the whole JetStream API, nothing else. */
  admin: {
    publish: { allow: [`${API}.>`] },
    subscribe: { allow: [INBOX] },
  },
  router: {
    publish: {
      allow: [
        // The start-up check and the readiness probe.
        ...[STREAMS.jobs, STREAMS.results, STREAMS.dlq, `KV_${BUCKETS.models}`].map(streamInfo),
        // Both lanes' durables on JOBS: pull, ack, nak, working, term.
        ...durable(STREAMS.jobs, ROUTER_DURABLE),
        ...durable(STREAMS.jobs, INTERACTIVE_DURABLE),
        // Outcomes (JetStream publishes: the PubAck comes to _INBOX), the gateway's reply, telemetry.
        `${SUBJECTS.results}.>`,
        `${SUBJECTS.dlq}.>`,
        `${REPLY_PREFIX}>`,
        `${TELEMETRY_SUBJECT}.>`,
        // Fast-path replies go to the requesting gateway's inbox (nats.js requests reply to _INBOX.<nuid>.<n>).
        INBOX,
        // Whether a redelivered job's result is already stored: RESULTS read headers-only.
        ...orderedPull(STREAMS.results),
        // The pricing service's live state.
        ...kvWatch(BUCKETS.models),
        // Provider limits shared by every worker (read, compare-and-set), and the pauses a 429's Retry-After sets.
        streamInfo(`KV_${n.limitsBucket}`),
        ...kvGet(n.limitsBucket),
        ...kvPut(n.limitsBucket),
        `${n.limitsPauseSubject}.>`,
        // Budgets: the run-time ones watched, the spend ledger read and written by compare-and-set.
        ...[n.spendBuckets.budgets, n.spendBuckets.spend].map((b) => streamInfo(`KV_${b}`)),
        ...kvWatch(n.spendBuckets.budgets),
        ...kvGet(n.spendBuckets.spend),
        ...kvPut(n.spendBuckets.spend),
        // The result cache: read before planning, written (create or compare-and-set) after a result.
        streamInfo(`KV_${n.resultCacheBucket}`),
        ...kvGet(n.resultCacheBucket),
        ...kvPut(n.resultCacheBucket),
        // The batch lane: queue a line, pull and ack lines, read a batch's lines back by sequence,
        // keep the provider batches' records (listing them is an ordered consumer), and hand a
        // job whose line failed back to the live path on JOBS.
        streamInfo(n.batchQueueStream),
        `${n.batchQueueFilter}`,
        ...durable(n.batchQueueStream, n.batcherDurable),
        `${API}.STREAM.MSG.GET.${n.batchQueueStream}`,
        // Whether a redelivered job was queued before: the last message of its line's subject.
        `${API}.DIRECT.GET.${n.batchQueueStream}.>`,
        streamInfo(`KV_${n.providerBatchesBucket}`),
        ...kvGet(n.providerBatchesBucket),
        ...kvPut(n.providerBatchesBucket),
        ...kvWatch(n.providerBatchesBucket),
        `${SUBJECTS.jobs}.>`,
      ],
      // Reading RESULTS must not take the gateways' batch outcomes.
      deny: [`${API}.CONSUMER.MSG.NEXT.${STREAMS.results}.${GATEWAY_BATCH_DURABLE}`],
    },
    // The fast path's requests, served in a queue group.
    subscribe: { allow: [INBOX, `${n.interactiveRequestPrefix}.>`, `${n.limitsPauseSubject}.>`] },
  },
  pricing: {
    publish: {
      allow: [
        ...Object.values(BUCKETS).map((b) => streamInfo(`KV_${b}`)),
        // Writes the live state and holds the leader lease (create, update, delete; read back on a conflict).
        ...kvPut(BUCKETS.models),
        ...kvPut(BUCKETS.lease),
        ...kvGet(BUCKETS.lease),
        // Watches the operators' price overrides.
        ...kvWatch(BUCKETS.prices),
      ],
    },
    subscribe: { allow: [INBOX, `${TELEMETRY_SUBJECT}.>`] },
  },
  gateway: {
    publish: {
      allow: [
        ...[STREAMS.jobs, STREAMS.results, STREAMS.dlq, BATCH_LINES_STREAM, `KV_${BUCKETS.models}`, `KV_${BATCHES}`, `OBJ_${FILES}`].map(streamInfo),
        // Chat requests on the interactive lane, batch lines on the batch lane.
        `${INTERACTIVE_SUBJECT}.>`,
        `${SUBJECTS.jobs}.>`,
        // Chat requests on the fast path (core NATS request/reply to the routers).
        `${n.interactiveRequestPrefix}.>`,
        // A cancelled batch withdraws the jobs not yet served.
        `${API}.STREAM.MSG.DELETE.${STREAMS.jobs}`,
        // Batch outcomes collected from RESULTS and DLQ, filed as lines, read back and purged.
        ...durable(STREAMS.results, GATEWAY_BATCH_DURABLE),
        ...durable(STREAMS.dlq, GATEWAY_BATCH_DURABLE),
        `${BATCH_LINES_SUBJECT}.>`,
        ...orderedPull(BATCH_LINES_STREAM),
        `${API}.STREAM.PURGE.${BATCH_LINES_STREAM}`,
        // The batches bucket: read, create, compare-and-set, watch.
        ...kvPut(BATCHES),
        ...kvGet(BATCHES),
        ...kvWatch(BATCHES),
        // The model catalogue (/v1/models).
        ...kvWatch(BUCKETS.models),
        // Stored and background responses (the Responses API): read, create, compare-and-set, delete.
        streamInfo(`KV_${n.gatewayBuckets.responses}`),
        ...kvGet(n.gatewayBuckets.responses),
        ...kvPut(n.gatewayBuckets.responses),
        // Per-key limits shared by every gateway (read, compare-and-set).
        streamInfo(`KV_${n.limitsBucket}`),
        ...kvGet(n.limitsBucket),
        ...kvPut(n.limitsBucket),
        // The files object store: chunks and metadata written, read (metadata by message get, chunks by an ordered consumer), deleted (purge).
        `$O.${FILES}.>`,
        `${API}.STREAM.MSG.GET.OBJ_${FILES}`,
        `${API}.STREAM.PURGE.OBJ_${FILES}`,
        `${API}.CONSUMER.CREATE.OBJ_${FILES}.>`,
        `${API}.CONSUMER.DELETE.OBJ_${FILES}.*`,
        `$JS.FC.OBJ_${FILES}.>`,
      ],
    },
    // Its own reply subject (switchyard.reply.<nuid>): the outcomes of its chat requests.
    subscribe: { allow: [INBOX, `${REPLY_PREFIX}>`] },
  },
  /** An application that publishes jobs (JetStream publish: the PubAck comes to _INBOX). */
  producer: {
    publish: { allow: [`${SUBJECTS.jobs}.>`] },
    subscribe: { allow: [INBOX] },
  },
  };
}

export const PERMISSIONS: Readonly<Record<User, PermissionSet>> = permissionsFor(names());

/** A short list on one line, a long one a subject per line (as the README shows it). */
const list = (subjects: readonly string[], indent: string) =>
  subjects.length <= 2 ? `[${subjects.map((s) => `"${s}"`).join(", ")}]` : `[\n${subjects.map((s) => `${indent}  "${s}"`).join(",\n")}\n${indent}]`;

/**
 * The `authorization` block of a nats-server config giving each user its set, passwords read
 * from the variables of USERS (`password: $ROUTER_PASS`: nats-server takes them from the
 * environment). `users` picks whom to include; every user by default.
 */
export function authorizationConfig(users: readonly User[] = Object.keys(USERS) as User[], n: Names = names()): string {
  const sets = n.namespace === undefined ? PERMISSIONS : permissionsFor(n);
  return authorizationBlock(users.map((user) => userEntry(user, USERS[user], sets[user])));
}

/** One user of an `authorization { users = [...] }` block; its password from the variable `passwordVar`. */
export function userEntry(user: string, passwordVar: string, p: PermissionSet): string {
  const i = "        ";
  const publish = [`${i}  allow: ${list(p.publish.allow, `${i}  `)}`, ...(p.publish.deny?.length ? [`${i}  deny: ${list(p.publish.deny, `${i}  `)}`] : [])];
  return [
    `    { user: ${user}, password: $${passwordVar}, permissions: {`,
    `${i}publish: {`,
    ...publish,
    `${i}}`,
    `${i}subscribe: { allow: ${list(p.subscribe.allow, i)} }`,
    "    } }",
  ].join("\n");
}

export function authorizationBlock(entries: readonly string[]): string {
  return `authorization {\n  users = [\n${entries.join(",\n")}\n  ]\n}`;
}

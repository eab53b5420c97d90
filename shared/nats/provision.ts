/**
 * Every stream, durable consumer, KV bucket and object store Switchyard uses, as one desired
 * state derived from the config, and the two things done with it:
 *
 * - **provision** (`switchyard provision`, and every service under `provision: auto`, the
 *   default): create what is missing and bring what differs to the config. Idempotent; on 2.9
 *   `streams.add` with a changed config fails, so a changed stream goes through `streams.update`.
 * - **check** (a service under `provision: check`): read each resource's info — only
 *   `$JS.API.STREAM.INFO.<stream>` and `$JS.API.CONSUMER.INFO.<stream>.<durable>`, never the
 *   account info (`$JS.API.INFO`) — and stop with one error naming everything missing or
 *   different, so a service can run with read-only rights on the JetStream API.
 */
import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
  type ConsumerConfig,
  type ConsumerInfo,
  type JetStreamManager,
  type StreamConfig,
  type StreamInfo,
} from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { Objm } from "@nats-io/obj";
import { nanos, PermissionViolationError, type NatsConnection } from "@nats-io/transport-node";
import type { Config } from "../config/schema.ts";
import { SwitchyardError } from "../errors.ts";
import { GATEWAY_BATCH_DURABLE, namesOf, RESPONSES_TTL_MS } from "../contract/subjects.ts";
import { SPEND_TTL_MS } from "../spend/budgets-kv.ts";
import { RESULT_CACHE_MAX_AGE_MS } from "../cache/result-cache.ts";

/** `auto`: a service creates and updates what it needs at start (the default). `check`: it only checks, and stops on a difference. */
export type ProvisionMode = "auto" | "check";

/** The services that use NATS resources; `switchyard provision` provisions what all of them use. */
export type Role = "router" | "pricing" | "gateway";

/** What the leader lease of the pricing service lapses after (also in buckets.ts, which re-exports it). */
export const LEASE_TTL_MS = 3_000;

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
  const n = namesOf(cfg);
  return [
    { ...common, name: n.streams.jobs, subjects: [`${n.subjects.jobs}.>`, `${n.interactiveSubject}.>`], max_age: nanos(s.jobs_max_age) } as StreamConfig,
    { ...common, name: n.streams.results, subjects: [`${n.subjects.results}.>`], max_age: nanos(s.results_max_age) } as StreamConfig,
    { ...common, name: n.streams.dlq, subjects: [`${n.subjects.dlq}.>`], max_age: nanos(s.dlq_max_age) } as StreamConfig,
  ];
}

/** The gateway's BATCH_LINES stream: a line is kept until its batch's files are written (then purged); max_age only bounds strays. */
export function batchLinesStreamConfig(cfg: Config): StreamConfig {
  const n = namesOf(cfg);
  return { ...streamDefaults(cfg), name: n.batchLinesStream, subjects: [`${n.batchLinesSubject}.>`], max_age: nanos(cfg.streams.results_max_age) } as StreamConfig;
}

/** How long the batch lane's queue keeps a line: a provider batch's 24 h window, and a day of margin for its fallbacks. */
export const BATCH_QUEUE_MAX_AGE_MS = 3 * 86_400_000;
/** How long the batcher may hold a line unacked; it renews held lines well within it. */
export const BATCH_QUEUE_ACK_WAIT_MS = 60_000;

/** The batch lane's queue (README, "Batch lane"): a line stays readable while its provider batch runs, since the batch's record names it by sequence. */
export function batchQueueStreamConfig(cfg: Config): StreamConfig {
  const n = namesOf(cfg);
  // Full, it refuses new lines (the router then serves the job live) rather than dropping old ones a running batch still needs.
  return { ...streamDefaults(cfg), name: n.batchQueueStream, subjects: [n.batchQueueFilter], max_age: nanos(BATCH_QUEUE_MAX_AGE_MS), discard: DiscardPolicy.New } as StreamConfig;
}

/** The batchers' shared consumer on the queue: a line is acked once the record of its provider batch is stored. */
export function batcherConsumerConfig(cfg: Config): Partial<ConsumerConfig> {
  const n = namesOf(cfg);
  return {
    durable_name: n.batcherDurable,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    filter_subject: n.batchQueueFilter,
    ack_wait: nanos(BATCH_QUEUE_ACK_WAIT_MS),
    max_deliver: -1,
    // A group holds up to max_lines (50,000) until its window closes, several groups at once.
    max_ack_pending: -1,
  };
}

export function routerConsumerConfig(cfg: Config): Partial<ConsumerConfig> {
  const r = cfg.router;
  const n = namesOf(cfg);
  return {
    durable_name: n.routerDurable,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    filter_subject: `${n.subjects.jobs}.>`,
    ack_wait: nanos(r.ack_wait),
    // Unlimited: the delivery budget is enforced by the router, which dead-letters a job
    // delivered past it. A server-side cap would instead strand a job in the stream, never
    // delivered again, whenever its outcome could not be stored (RESULTS and DLQ unavailable).
    max_deliver: -1,
    max_ack_pending: r.max_ack_pending,
  };
}

/** The interactive lane's consumer: the router's settings on `ijobs.>`, so workers can pull it first. */
export function interactiveConsumerConfig(cfg: Config): Partial<ConsumerConfig> {
  const n = namesOf(cfg);
  return { ...routerConsumerConfig(cfg), durable_name: n.interactiveDurable, filter_subject: `${n.interactiveSubject}.>` };
}

/** The gateways' batch outcome collector on RESULTS or DLQ (`subject`: `results` or `dlq`, as the deployment's names have it). */
export function gatewayBatchConsumerConfig(subject: string, durable: string = GATEWAY_BATCH_DURABLE): Partial<ConsumerConfig> {
  return {
    durable_name: durable,
    ack_policy: AckPolicy.Explicit,
    // Batch outcomes only exist after a gateway has created this consumer.
    deliver_policy: DeliverPolicy.New,
    filter_subject: `${subject}.>`,
    ack_wait: nanos(30_000),
    max_ack_pending: 10_000,
  };
}

/** One resource and what it must look like; `keys` names the config key behind a field, for messages. */
export type Resource =
  | { readonly kind: "stream"; readonly name: string; readonly config: StreamConfig; readonly keys: Readonly<Record<string, string>> }
  | { readonly kind: "consumer"; readonly stream: string; readonly config: Partial<ConsumerConfig>; readonly keys: Readonly<Record<string, string>> }
  | { readonly kind: "kv"; readonly bucket: string; readonly history: number; readonly replicas: number; readonly ttlMs: number }
  | { readonly kind: "obj"; readonly bucket: string; readonly replicas: number };

/** `stream JOBS`, `consumer JOBS/router`, `KV bucket switchyard-models`, `object store switchyard-files`. */
export function describeResource(r: Resource): string {
  switch (r.kind) {
    case "stream":
      return `stream ${r.name}`;
    case "consumer":
      return `consumer ${r.stream}/${r.config.durable_name}`;
    case "kv":
      return `KV bucket ${r.bucket}`;
    case "obj":
      return `object store ${r.bucket}`;
  }
}

/** The stream that holds a resource (a KV bucket is the stream KV_<bucket>, an object store OBJ_<bucket>). */
function streamOf(r: Resource): string {
  return r.kind === "stream" ? r.name : r.kind === "consumer" ? r.stream : r.kind === "kv" ? `KV_${r.bucket}` : `OBJ_${r.bucket}`;
}

const STREAM_KEYS = { num_replicas: "streams.replicas", max_msg_size: "streams.max_msg_size", max_bytes: "streams.max_bytes", duplicate_window: "streams.duplicate_window" };
const ROUTER_CONSUMER_KEYS = { ack_wait: "router.ack_wait", max_ack_pending: "router.max_ack_pending" };

function streamResource(config: StreamConfig, maxAgeKey: string): Resource {
  return { kind: "stream", name: config.name, config, keys: { ...STREAM_KEYS, max_age: maxAgeKey } };
}

/** Every resource Switchyard uses, each with the roles that need it, in the order they are provisioned. */
export function allResources(cfg: Config): { readonly resource: Resource; readonly roles: readonly Role[] }[] {
  const [jobs, results, dlq] = streamConfigs(cfg);
  const replicas = cfg.streams.replicas;
  const n = namesOf(cfg);
  return [
    { resource: streamResource(jobs!, "streams.jobs_max_age"), roles: ["router", "gateway"] },
    { resource: streamResource(results!, "streams.results_max_age"), roles: ["router", "gateway"] },
    { resource: streamResource(dlq!, "streams.dlq_max_age"), roles: ["router", "gateway"] },
    { resource: streamResource(batchLinesStreamConfig(cfg), "streams.results_max_age"), roles: ["gateway"] },
    { resource: { kind: "consumer", stream: n.streams.jobs, config: routerConsumerConfig(cfg), keys: ROUTER_CONSUMER_KEYS }, roles: ["router"] },
    { resource: { kind: "consumer", stream: n.streams.jobs, config: interactiveConsumerConfig(cfg), keys: ROUTER_CONSUMER_KEYS }, roles: ["router"] },
    { resource: { kind: "consumer", stream: n.streams.results, config: gatewayBatchConsumerConfig(n.subjects.results, n.gatewayBatchDurable), keys: {} }, roles: ["gateway"] },
    { resource: { kind: "consumer", stream: n.streams.dlq, config: gatewayBatchConsumerConfig(n.subjects.dlq, n.gatewayBatchDurable), keys: {} }, roles: ["gateway"] },
    { resource: { kind: "kv", bucket: n.buckets.models, history: 1, replicas, ttlMs: 0 }, roles: ["router", "pricing", "gateway"] },
    { resource: { kind: "kv", bucket: n.buckets.prices, history: 5, replicas, ttlMs: 0 }, roles: ["pricing"] },
    { resource: { kind: "kv", bucket: n.buckets.lease, history: 1, replicas, ttlMs: LEASE_TTL_MS }, roles: ["pricing"] },
    { resource: { kind: "kv", bucket: n.gatewayBuckets.batches, history: 1, replicas, ttlMs: 0 }, roles: ["gateway"] },
    { resource: { kind: "kv", bucket: n.gatewayBuckets.responses, history: 1, replicas, ttlMs: RESPONSES_TTL_MS }, roles: ["gateway"] },
    { resource: { kind: "kv", bucket: n.spendBuckets.budgets, history: 5, replicas, ttlMs: 0 }, roles: ["router"] },
    { resource: { kind: "kv", bucket: n.spendBuckets.spend, history: 1, replicas, ttlMs: SPEND_TTL_MS }, roles: ["router"] },
    { resource: { kind: "kv", bucket: n.limitsBucket, history: 1, replicas, ttlMs: 0 }, roles: ["router", "gateway"] },
    { resource: { kind: "kv", bucket: n.resultCacheBucket, history: 1, replicas, ttlMs: RESULT_CACHE_MAX_AGE_MS }, roles: ["router"] },
    { resource: { kind: "obj", bucket: n.gatewayBuckets.files, replicas }, roles: ["gateway"] },
    ...batchLaneResources(cfg).map((resource) => ({ resource, roles: ["router"] as const })),
  ];
}

/** The batch lane's queue, its consumer and the provider batches' records (README, "Batch lane"); their max_age and ack_wait are fixed, not config. */
export function batchLaneResources(cfg: Config): Resource[] {
  const n = namesOf(cfg);
  return [
    { kind: "stream", name: n.batchQueueStream, config: batchQueueStreamConfig(cfg), keys: STREAM_KEYS },
    { kind: "consumer", stream: n.batchQueueStream, config: batcherConsumerConfig(cfg), keys: {} },
    { kind: "kv", bucket: n.providerBatchesBucket, history: 1, replicas: cfg.streams.replicas, ttlMs: BATCH_QUEUE_MAX_AGE_MS },
  ];
}

/** What one service needs to find on the server. */
export function resourcesFor(role: Role, cfg: Config): Resource[] {
  return allResources(cfg)
    .filter((e) => e.roles.includes(role))
    .map((e) => e.resource);
}

/** One field of a resource that differs from the config. */
export interface Difference {
  readonly field: string;
  /** As the server has it, and as the config wants it, both readable (`1d`, `10GiB`, `["jobs.>"]`). */
  readonly actual: string;
  readonly wanted: string;
  /** The config key behind the field, when there is one (`streams.jobs_max_age`). */
  readonly key: string | undefined;
}

/** A difference as one phrase: `max_age is 1d, the config says 7d (streams.jobs_max_age)`. */
export function describeDifference(d: Difference): string {
  return d.key ? `${d.field} is ${d.actual}, the config says ${d.wanted} (${d.key})` : `${d.field} is ${d.actual}, Switchyard needs ${d.wanted}`;
}

const DURATION_FIELDS = new Set(["max_age", "duplicate_window", "ack_wait"]);
const SIZE_FIELDS = new Set(["max_bytes", "max_msg_size"]);

/** Nanoseconds as the config writes them: `7d`, `15m`, `30s`, `500ms`; 0 is `unlimited`. */
export function formatNanos(ns: number): string {
  if (ns === 0) return "unlimited";
  const ms = ns / 1e6;
  for (const [unit, size] of [["d", 86400e3], ["h", 3600e3], ["m", 60e3], ["s", 1e3]] as const) if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  return `${ms}ms`;
}

/** Bytes as the config writes them: `10GiB`, `1MiB`, `512KiB`; -1 is `unlimited`. */
export function formatBytes(b: number): string {
  if (b < 0) return "unlimited";
  for (const [unit, size] of [["GiB", 1024 ** 3], ["MiB", 1024 ** 2], ["KiB", 1024]] as const) if (b >= size && b % size === 0) return `${b / size}${unit}`;
  return `${b}B`;
}

function show(field: string, v: unknown): string {
  if (typeof v === "number" && DURATION_FIELDS.has(field)) return formatNanos(v);
  if (typeof v === "number" && SIZE_FIELDS.has(field)) return formatBytes(v);
  return JSON.stringify(v ?? null);
}

function same(a: unknown, b: unknown): boolean {
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && [...a].sort().join("\u0000") === [...b].sort().join("\u0000");
  return a === b || (a == null && b == null);
}

/** The fields of `wanted` (leaving out the name) that `actual` holds differently. */
function compare(actual: Record<string, unknown>, wanted: Record<string, unknown>, keys: Readonly<Record<string, string>>, skip: readonly string[]): Difference[] {
  const out: Difference[] = [];
  for (const [field, w] of Object.entries(wanted)) {
    if (skip.includes(field) || w === undefined) continue;
    // The server leaves some fields out when they hold their zero value.
    const a = actual[field] ?? (typeof w === "boolean" ? false : typeof w === "number" ? 0 : undefined);
    if (!same(a, w)) out.push({ field, actual: show(field, a), wanted: show(field, w), key: keys[field] });
  }
  return out;
}

/** The stream fields that make a KV bucket or object store what Switchyard opens. */
function storeFields(r: Extract<Resource, { kind: "kv" | "obj" }>): Record<string, unknown> {
  return r.kind === "kv"
    ? { max_msgs_per_subject: r.history, num_replicas: r.replicas, max_age: nanos(r.ttlMs), allow_direct: true }
    : { num_replicas: r.replicas, storage: StorageType.File };
}
const STORE_KEYS = { num_replicas: "streams.replicas" };

/** What the server holds for a resource, or undefined when it does not exist. Reads only the stream or consumer info. */
async function readInfo(jsm: JetStreamManager, r: Resource): Promise<StreamInfo | ConsumerInfo | undefined> {
  try {
    return r.kind === "consumer" ? await jsm.consumers.info(r.stream, r.config.durable_name!) : await jsm.streams.info(streamOf(r));
  } catch (err) {
    if (err instanceof JetStreamApiError && (err.code === JetStreamApiCodes.StreamNotFound || err.code === JetStreamApiCodes.ConsumerNotFound)) return undefined;
    const violation = permissionViolation(err);
    if (violation) throw new SwitchyardError("config", `${describeResource(r)}: NATS refused reading its info: ${violation.message}`, { cause: err });
    throw err;
  }
}

function differences(r: Resource, info: StreamInfo | ConsumerInfo): Difference[] {
  const actual = info.config as unknown as Record<string, unknown>;
  switch (r.kind) {
    case "stream":
      return compare(actual, r.config as unknown as Record<string, unknown>, r.keys, ["name"]);
    case "consumer":
      return compare(actual, r.config as Record<string, unknown>, r.keys, ["durable_name"]);
    default:
      return compare(actual, storeFields(r), STORE_KEYS, []);
  }
}

/** A resource compared with the config: missing, different (with each field), or as the config says. */
export type Comparison =
  | { readonly resource: Resource; readonly state: "missing" }
  | { readonly resource: Resource; readonly state: "different"; readonly differences: readonly Difference[] }
  | { readonly resource: Resource; readonly state: "ok" };

/** Compares each resource with the server; reads only stream and consumer info. */
export async function compareResources(jsm: JetStreamManager, resources: readonly Resource[]): Promise<Comparison[]> {
  const out: Comparison[] = [];
  for (const resource of resources) {
    // A consumer of a missing stream is missing too; the server says "stream not found" for it.
    const info = await readInfo(jsm, resource);
    if (!info) out.push({ resource, state: "missing" });
    else {
      const diffs = differences(resource, info);
      out.push(diffs.length > 0 ? { resource, state: "different", differences: diffs } : { resource, state: "ok" });
    }
  }
  return out;
}

/** One line per problem: `stream JOBS: max_age is 1d, the config says 7d (streams.jobs_max_age)`, `consumer JOBS/router: missing`. */
export function describeProblems(comparisons: readonly Comparison[]): string[] {
  return comparisons.flatMap((c) =>
    c.state === "missing" ? [`${describeResource(c.resource)}: missing`] : c.state === "different" ? c.differences.map((d) => `${describeResource(c.resource)}: ${describeDifference(d)}`) : [],
  );
}

/** A service under `provision: check` found its NATS resources missing or different from the config. */
export class NotProvisionedError extends SwitchyardError {
  readonly problems: readonly string[];
  constructor(role: Role, problems: readonly string[]) {
    super(
      "config",
      problems.length === 1
        ? `${role}: ${problems[0]}; run \`switchyard provision\``
        : `${role}: NATS is not provisioned as the config says; run \`switchyard provision\`:\n  ${problems.join("\n  ")}`,
    );
    this.name = "NotProvisionedError";
    this.problems = problems;
  }
}

/** Throws NotProvisionedError naming every resource `role` needs that is missing or differs; reads only. */
export async function checkProvisioned(role: Role, jsm: JetStreamManager, cfg: Config): Promise<void> {
  let comparisons: Comparison[];
  try {
    comparisons = await compareResources(jsm, resourcesFor(role, cfg));
  } catch (err) {
    const violation = permissionViolation(err);
    if (!violation) throw err;
    throw new SwitchyardError(
      "config",
      `${role}: checking its NATS streams and buckets was refused: ${violation.message}; give the ${role}'s NATS user the permissions the README lists ("Least privilege")`,
      { cause: err },
    );
  }
  const problems = describeProblems(comparisons);
  if (problems.length > 0) throw new NotProvisionedError(role, problems);
}

/** The PermissionViolationError behind an error (nats.js wraps a refused request's in a RequestError), if any. */
export function permissionViolation(err: unknown): PermissionViolationError | undefined {
  for (let e = err; e instanceof Error; e = e.cause) if (e instanceof PermissionViolationError) return e;
  return undefined;
}

/** What `provision` did to one resource. */
export interface ProvisionAction {
  readonly resource: Resource;
  readonly action: "created" | "updated" | "unchanged";
  /** For `updated`: what was changed, as `describeDifference` says it. */
  readonly changes: readonly string[];
}

/** Creates a missing resource or brings a different one to the config; leaves one that matches alone. */
export async function applyResource(jsm: JetStreamManager, r: Resource): Promise<ProvisionAction> {
  const info = await readInfo(jsm, r);
  const diffs = info ? differences(r, info) : [];
  if (info && diffs.length === 0) return { resource: r, action: "unchanged", changes: [] };
  const changes = diffs.map(describeDifference);
  try {
    await write(jsm, r, info);
  } catch (err) {
    // Some changes a server refuses (a stream's storage or retention, replicas beyond the cluster): say which resource and what was asked.
    if (!(err instanceof JetStreamApiError) && !permissionViolation(err)) throw err;
    const what = info ? `updating it (${changes.join("; ")})` : "creating it";
    throw new SwitchyardError("config", `${describeResource(r)}: NATS refused ${what}: ${(permissionViolation(err) ?? (err as Error)).message}`, { cause: err });
  }
  return { resource: r, action: info ? "updated" : "created", changes };
}

async function write(jsm: JetStreamManager, r: Resource, info: StreamInfo | ConsumerInfo | undefined): Promise<void> {
  switch (r.kind) {
    case "stream":
      if (info) await jsm.streams.update(r.name, r.config);
      else await jsm.streams.add(r.config);
      break;
    case "consumer":
      // On 2.9 adding a durable with a changed config updates it.
      await jsm.consumers.add(r.stream, r.config);
      break;
    case "kv":
    case "obj":
      if (info) await jsm.streams.update(streamOf(r), { ...(info as StreamInfo).config, ...storeFields(r) });
      else if (r.kind === "kv") await new Kvm(jsm.jetstream()).create(r.bucket, { history: r.history, replicas: r.replicas, ...(r.ttlMs > 0 ? { ttl: r.ttlMs } : {}) });
      else await new Objm(jsm.jetstream()).create(r.bucket, { replicas: r.replicas, storage: StorageType.File });
      break;
  }
}

/** Provisions every resource given, in order; what was done to each. */
export async function applyResources(jsm: JetStreamManager, resources: readonly Resource[]): Promise<ProvisionAction[]> {
  const out: ProvisionAction[] = [];
  for (const r of resources) out.push(await applyResource(jsm, r));
  return out;
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

/** The three streams and the router's two durable consumers, created or updated: what a router or gateway does at start under `provision: auto`. */
export async function provision(jsm: JetStreamManager, cfg: Config): Promise<void> {
  for (const sc of streamConfigs(cfg)) await ensureStream(jsm, sc);
  const jobs = namesOf(cfg).streams.jobs;
  await jsm.consumers.add(jobs, routerConsumerConfig(cfg));
  await jsm.consumers.add(jobs, interactiveConsumerConfig(cfg));
  await applyResources(jsm, batchLaneResources(cfg));
}

/**
 * What a service does with its resources at start, as the config's `provision` says: under
 * `auto` the router and the gateway create or update the core streams, the router's
 * consumers and the batch lane's resources (other KV buckets and the gateway's own resources
 * are created where they are opened);
 * under `check` every resource `role` needs is checked, read-only, and a difference stops
 * start-up (NotProvisionedError). Returns a JetStream manager for the service's own use:
 * under `check` one that never asks for the account info ($JS.API.INFO).
 */
export async function prepareNats(role: Role, nc: NatsConnection, cfg: Config): Promise<JetStreamManager> {
  if (cfg.provision === "check") {
    const jsm = await jetstreamManager(nc, { checkAPI: false });
    await checkProvisioned(role, jsm, cfg);
    return jsm;
  }
  const jsm = await jetstreamManager(nc);
  if (role !== "pricing") await provision(jsm, cfg);
  return jsm;
}

/**
 * The pricing service: owns the price table, the health of every model and its pass rate per
 * task, and publishes them as one KV entry per model. Any number may run; one holds the
 * leader lease (a KV key created only when absent and kept alive by revision-checked
 * updates) and is the only writer, and the only one that calls providers (health probes,
 * quality re-tests). Followers aggregate the same telemetry, so a takeover starts warm.
 */
import { parseJsonOrUndefined } from "../../shared/json.ts";
import { existsSync, statSync } from "node:fs";
import type { KV } from "@nats-io/kv";
import { nuid, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { bindContract } from "../../shared/acceptance/contract.ts";
import { readSamples, samplesFile, type Sample } from "../../shared/acceptance/samples.ts";
import { ProviderError } from "../../shared/adapters/errors.ts";
import { createModelCaller } from "../../shared/providers/caller.ts";
import { loadYaml } from "../../shared/config/load.ts";
import { onFileChange } from "../../shared/config/watch.ts";
import type { Config } from "../../shared/config/schema.ts";
import { AttemptEventSchema, PriceOverrideSchema, type ModelState, type PriceOverride, type TaskQuality } from "../../shared/contract/live.ts";
import { HEARTBEAT_KEY, LEASE_KEY, namesOf } from "../../shared/contract/subjects.ts";
import { ConfigError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import { openBuckets, type LiveBuckets } from "../../shared/nats/buckets.ts";
import { buildCatalog, type Catalog } from "../../shared/routing/catalog.ts";
import { OUTCOMES } from "../../shared/routing/outcomes.ts";
import { DEFAULT_HEALTH_POLICY, ModelHealth, type HealthPolicy, type HealthSnapshot } from "./health.ts";
import { effectivePrices, PriceFileSchema, unknownModels, type Price, type PriceFile } from "./prices.ts";
import { DEFAULT_QUALITY_POLICY, QualityBook, qualityFloors, type QualityPolicy, type QualitySnapshot } from "./quality.ts";

export interface PricingDeps {
  readonly nc: NatsConnection;
  readonly config: Config;
  readonly logger: Logger;
  /** A YAML or JSON price file, reloaded when it changes. */
  readonly priceFile?: string;
  readonly healthPolicy?: HealthPolicy;
  readonly qualityPolicy?: QualityPolicy;
  /**
   * Where each task's samples are (`<dir>/<task>.jsonl`), to re-test a model demoted for the
   * task with; `startPricing` passes `samples/` beside the config file. Without it (or
   * without a task's file), a demoted model is readmitted on trial after its backoff.
   */
  readonly samplesDir?: string;
  readonly clock?: () => number;
}

export interface PricingService {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Takes the config's prices and models from now on (a YAML edit is a price source too). */
  reload(config: Config): void;
  isLeader(): boolean;
  readonly id: string;
  /**
   * What this instance last wrote per model (price, health, quality per task), for metrics:
   * the leader's view; empty on a follower, which writes nothing.
   */
  written(): ReadonlyMap<string, WrittenState>;
}

export interface WrittenState {
  readonly provider: string;
  readonly model: string;
  readonly price: Price;
  readonly health: HealthSnapshot;
  readonly quality: ReadonlyMap<string, QualitySnapshot>;
}

const TICK_MS = 250;
const LEASE_RENEW_MS = 1_000;
/** An unchanged entry is still rewritten this often, so readers can judge its age. */
const REFRESH_MS = 2_000;
const PROBE_TIMEOUT_MS = 5_000;

export function createPricingService({
  nc,
  config,
  logger,
  priceFile,
  healthPolicy = DEFAULT_HEALTH_POLICY,
  qualityPolicy = DEFAULT_QUALITY_POLICY,
  samplesDir,
  clock = Date.now,
}: PricingDeps): PricingService {
  const id = `pricing-${nuid.next().slice(-10)}`;
  let catalog: Catalog = buildCatalog(config);
  let configSetAt = clock();
  const health = new Map<string, ModelHealth>();
  for (const modelId of catalog.models.keys()) health.set(modelId, new ModelHealth(healthPolicy));
  const quality = new QualityBook(qualityPolicy);
  quality.configure(qualityFloors(config.tasks), catalog.models.keys());
  const overrides = new Map<string, PriceOverride>();
  let file: { prices: PriceFile; setAt: number } | undefined;
  let prices: Map<string, Price> = effectivePrices(catalog.models, configSetAt, file, overrides);
  const written = new Map<string, { key: string; at: number }>();
  const lastState = new Map<string, WrittenState>();
  const probing = new Set<string>();
  /** `task\0model` pairs being re-tested with the task's samples. */
  const retesting = new Set<string>();
  let stopped = false;
  // Two connections per provider: probes and re-tests are a handful of calls, never traffic.
  const caller = createModelCaller(config, { maxConcurrency: 2 });
  let buckets: LiveBuckets;
  let leaseRevision = 0;
  let leader = false;
  let sub: Subscription | undefined;
  const timers: NodeJS.Timeout[] = [];
  let stopWatch: (() => void) | undefined;
  let unwatchPriceFile: (() => void) | undefined;
  let badTelemetry = 0;
  let currentConfig = config;
  let lastHeartbeat = 0;

  function recomputePrices(reason: string): void {
    prices = effectivePrices(catalog.models, configSetAt, file, overrides);
    logger.info({ reason }, "price table updated");
    if (leader) void writeAll(true);
  }

  function loadPriceFile(path: string): void {
    try {
      const parsed = loadYaml(path, PriceFileSchema);
      const unknown = unknownModels(catalog.models, parsed);
      if (unknown.length > 0) throw new ConfigError(path, unknown.map((m) => ({ path: m, line: 0, column: 0, message: "no such model in the config" })));
      file = { prices: parsed, setAt: statSync(path).mtimeMs };
      recomputePrices(`price file ${path}`);
    } catch (err) {
      // The prices in force stay; the operator sees exactly what is wrong with the edit.
      logger.error({ file: path, err: (err as Error).message }, "price file rejected; keeping the previous prices");
    }
  }

  function entry(modelId: string, price: Price, h: HealthSnapshot, q: ReadonlyMap<string, QualitySnapshot>, now: number): ModelState {
    const m = catalog.models.get(modelId)!;
    const iso = new Date(now).toISOString();
    return {
      id: modelId,
      provider: m.provider,
      model: m.name,
      input_per_mtok: price.inputPerMtok,
      output_per_mtok: price.outputPerMtok,
      context_window: m.contextWindow,
      price_source: price.source,
      price_updated_at: new Date(price.setAt).toISOString(),
      health: h.health,
      error_rate: round(h.errorRate),
      rate_limit_rate: round(h.rateLimitRate),
      latency_p50_ms: h.latencyP50Ms,
      latency_p95_ms: h.latencyP95Ms,
      samples: h.samples,
      cooldown_until: h.cooldownUntil ? new Date(h.cooldownUntil).toISOString() : null,
      health_updated_at: iso,
      updated_at: iso,
      ...(q.size > 0 ? { quality: qualityField(q) } : {}),
    };
  }

  async function writeAll(force = false): Promise<void> {
    const now = clock();
    const puts: Promise<unknown>[] = [];
    for (const [modelId, h] of health) {
      const snap = h.snapshot(now);
      const q = quality.snapshot(modelId, now);
      let demotions = "";
      for (const [task, s] of q) {
        if (s.demotedNow) logger.warn({ model: modelId, task, pass_rate: round(s.passRate), samples: s.samples, floor: quality.floor(task), retest_at: new Date(s.demotedUntil).toISOString() }, "model demoted for the task: its answers fall short of the output contract");
        if (s.status === "demoted") demotions += `${task}@${s.demotedUntil},`;
        // A model that is down cannot answer samples: its health probe goes first.
        if (snap.health !== "down" && quality.get(task, modelId)?.requalifyDue(now)) void requalify(task, modelId);
      }
      const price = prices.get(modelId)!;
      const m = catalog.models.get(modelId);
      if (m) lastState.set(modelId, { provider: m.provider, model: m.name, price, health: snap, quality: q });
      // What routing depends on; latency and rates alone refresh at REFRESH_MS.
      const key = `${snap.health}|${snap.cooldownUntil}|${price.inputPerMtok}|${price.outputPerMtok}|${demotions}`;
      const last = written.get(modelId);
      if (!force && last && last.key === key && now - last.at < REFRESH_MS) continue;
      written.set(modelId, { key, at: now });
      puts.push(buckets.models.put(modelId, JSON.stringify(entry(modelId, price, snap, q, now))));
      if (h.needsProbe(now)) void probe(modelId);
    }
    await Promise.all(puts).catch((err: unknown) => logger.warn({ err: (err as Error).message }, "writing model state failed; retrying next tick"));
  }

  /** One tiny request to a model whose cooldown ran out: its answer decides whether traffic returns. */
  async function probe(modelId: string): Promise<void> {
    if (probing.has(modelId)) return;
    probing.add(modelId);
    const lease = caller.lease();
    const m = lease.catalog.models.get(modelId);
    const request = { model: "auto", messages: [{ role: "user" as const, content: "ping" }], max_tokens: 1 };
    const t0 = clock();
    let ok = false;
    try {
      if (m) await lease.call(m, request, PROBE_TIMEOUT_MS);
      ok = m !== undefined;
    } catch {
      ok = false;
    } finally {
      lease.release();
    }
    health.get(modelId)!.probed(ok, clock() - t0, clock());
    logger.info({ model: modelId, ok }, ok ? "probe answered: traffic resumes" : "probe failed: cooling down longer");
    probing.delete(modelId);
    written.delete(modelId);
  }

  /** The task's samples, or undefined when it has none (no directory, no file, or a file that does not parse). */
  function taskSamples(task: string): Sample[] | undefined {
    if (samplesDir === undefined) return undefined;
    const file = samplesFile(samplesDir, task);
    if (!existsSync(file)) return undefined;
    try {
      return readSamples(file, task);
    } catch (err) {
      logger.warn({ task, file, err: (err as Error).message }, "samples file unusable; a demoted model goes back on trial instead");
      return undefined;
    }
  }

  /**
   * Re-tests a model demoted for a task once its backoff has run out: the first samples of
   * the task, sent as the router would send them (the task's contract applied for this model)
   * and judged by the same contract. At or above the floor it is readmitted; under it, it
   * stays demoted for twice as long. A task without samples readmits the model on trial.
   */
  async function requalify(task: string, modelId: string): Promise<void> {
    const key = `${task}\0${modelId}`;
    if (retesting.has(key)) return;
    retesting.add(key);
    try {
      const q = quality.get(task, modelId);
      const policy = catalog.tasks.get(task);
      const m = catalog.models.get(modelId);
      const floor = quality.floor(task);
      if (q === undefined || policy === undefined || m === undefined || floor === undefined) return;
      const samples = taskSamples(task)?.slice(0, qualityPolicy.probeSamples);
      if (samples === undefined) {
        q.readmit(clock());
        logger.info({ model: modelId, task }, "no samples for the task: the demoted model is back on trial; live answers decide");
        return;
      }
      const timeoutMs = currentConfig.providers[m.provider]!.timeout_ms;
      let answered = 0;
      let passed = 0;
      let firstFailure: string | undefined;
      for (const sample of samples) {
        // Only the leader calls providers; a deposed one leaves the verdict to its successor.
        if (!leader || stopped) return;
        const contract = bindContract(policy.contract, sample.request);
        if ("kind" in contract) continue;
        const request = contract.requestFor(m.structuredOutput);
        const lease = caller.lease();
        try {
          const completion = await lease.call(m, request, timeoutMs);
          const judged = contract.judge(completion.response.choices[0]?.message.content ?? null);
          answered++;
          if (judged.ok) passed++;
          else firstFailure ??= `line ${sample.line}: ${judged.error}`;
        } catch (err) {
          // An answer the adapter itself rejects as unusable is a failed answer; anything else (429, 5xx, timeout) is no answer.
          if (err instanceof ProviderError && OUTCOMES[err.kind].quality === "fail") {
            answered++;
            firstFailure ??= `line ${sample.line}: ${err.message}`;
          }
        } finally {
          lease.release();
        }
      }
      if (!leader || stopped) return;
      const now = clock();
      const rate = answered > 0 ? passed / answered : 0;
      if (answered === 0) {
        q.retestInconclusive(now);
        logger.warn({ model: modelId, task, samples: samples.length }, "re-test got no answer from the model; it stays demoted and is re-tested later");
      } else if (rate >= floor) {
        q.readmit(now);
        logger.info({ model: modelId, task, pass_rate: round(rate), answered, floor }, "model re-qualified for the task by its samples: back on trial");
      } else {
        q.retestFailed(now);
        logger.warn({ model: modelId, task, pass_rate: round(rate), answered, floor, first_failure: firstFailure, retest_at: new Date(q.demotedUntil).toISOString() }, "re-test under the floor: the model stays demoted for the task, longer");
      }
    } finally {
      retesting.delete(key);
    }
  }

  async function leadership(): Promise<void> {
    try {
      if (leader) {
        leaseRevision = await buckets.lease.update(LEASE_KEY, id, leaseRevision);
      } else {
        leaseRevision = await buckets.lease.create(LEASE_KEY, id);
        leader = true;
        written.clear();
        logger.info({ id }, "pricing leader: this instance now writes model state");
      }
    } catch {
      if (leader) logger.warn({ id }, "lost the pricing lease; another instance writes now");
      leader = false;
      lastState.clear();
    }
  }

  async function watchOverrides(kv: KV): Promise<void> {
    const it = await kv.watch();
    stopWatch = () => it.stop();
    for await (const e of it) {
      if (e.operation !== "PUT") {
        overrides.delete(e.key);
      } else {
        const parsed = PriceOverrideSchema.safeParse(parseJsonOrUndefined(e.string()));
        if (!parsed.success) {
          logger.warn({ key: e.key }, "ignoring a malformed price override");
          continue;
        }
        overrides.set(e.key, parsed.data);
      }
      recomputePrices(`override ${e.key}`);
    }
  }

  function reload(next: Config): void {
    currentConfig = next;
    catalog = buildCatalog(next);
    configSetAt = clock();
    for (const modelId of catalog.models.keys()) if (!health.has(modelId)) health.set(modelId, new ModelHealth(healthPolicy));
    for (const modelId of [...health.keys()]) {
      if (catalog.models.has(modelId)) continue;
      health.delete(modelId);
      lastState.delete(modelId);
    }
    quality.configure(qualityFloors(next.tasks), catalog.models.keys());
    caller.reload(next);
    recomputePrices("config reloaded");
  }

  return {
    id,
    reload,
    isLeader: () => leader,
    written: () => lastState,
    async start() {
      buckets = await openBuckets(nc, config);
      if (priceFile) {
        loadPriceFile(priceFile);
        unwatchPriceFile = onFileChange(priceFile, () => loadPriceFile(priceFile));
      }
      void watchOverrides(buckets.prices).catch((err: unknown) => logger.error({ err: (err as Error).message }, "price override watch ended"));
      sub = nc.subscribe(`${namesOf(config).telemetrySubject}.>`, {
        callback: (err, msg) => {
          if (err) return;
          const parsed = AttemptEventSchema.safeParse(parseJsonOrUndefined(msg.string()));
          if (!parsed.success) {
            if (badTelemetry++ % 1000 === 0) logger.warn({ subject: msg.subject }, "ignoring malformed telemetry");
            return;
          }
          const e = parsed.data;
          health.get(e.m)?.record(e.outcome, e.latency_ms, e.at);
          if (e.t !== undefined) quality.record(e.t, e.m, e.outcome, e.at);
        },
      });
      await leadership();
      timers.push(setInterval(() => void leadership(), LEASE_RENEW_MS));
      timers.push(
        setInterval(() => {
          if (!leader) return;
          void writeAll();
          const now = clock();
          if (now - lastHeartbeat >= 1_000) {
            lastHeartbeat = now;
            void buckets.models.put(HEARTBEAT_KEY, JSON.stringify({ leader: id, at: new Date(now).toISOString() })).catch(() => {});
          }
        }, TICK_MS),
      );
      logger.info({ id, models: catalog.models.size, leader, price_file: priceFile ?? null }, "pricing service started");
    },
    async stop() {
      stopped = true;
      for (const t of timers) clearInterval(t);
      unwatchPriceFile?.();
      stopWatch?.();
      sub?.unsubscribe();
      if (leader) await buckets.lease.delete(LEASE_KEY).catch(() => {});
      leader = false;
      await caller.close();
    },
  };
}

/** The KV entry's `quality` map (see `TaskQualitySchema`). */
function qualityField(q: ReadonlyMap<string, QualitySnapshot>): Record<string, TaskQuality> {
  const out: Record<string, TaskQuality> = {};
  for (const [task, s] of q) {
    out[task] = {
      pass_rate: round(s.passRate),
      samples: s.samples,
      status: s.status,
      demoted_until: s.status === "demoted" ? new Date(s.demotedUntil).toISOString() : null,
    };
  }
  return out;
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}


/**
 * The pricing service: owns the price table and the health of every model, and publishes
 * both as one KV entry per model. Any number may run; one holds the leader lease (a KV key
 * created only when absent and kept alive by revision-checked updates) and is the only
 * writer. Followers aggregate the same telemetry, so a takeover starts warm.
 */
import { parseJsonOrUndefined } from "../../shared/json.ts";
import { statSync } from "node:fs";
import type { KV } from "@nats-io/kv";
import { nuid, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { ADAPTERS } from "../../shared/adapters/index.ts";
import { createProviderClient, type ProviderClient } from "../../shared/adapters/http.ts";
import { loadYaml } from "../../shared/config/load.ts";
import { onFileChange } from "../../shared/config/watch.ts";
import type { Config } from "../../shared/config/schema.ts";
import { AttemptEventSchema, PriceOverrideSchema, type ModelState, type PriceOverride } from "../../shared/contract/live.ts";
import { HEARTBEAT_KEY, LEASE_KEY, TELEMETRY_SUBJECT } from "../../shared/contract/subjects.ts";
import { ConfigError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import { openBuckets, type LiveBuckets } from "../../shared/nats/buckets.ts";
import { buildCatalog, type Catalog } from "../../shared/routing/catalog.ts";
import { DEFAULT_HEALTH_POLICY, ModelHealth, type HealthPolicy, type HealthSnapshot } from "./health.ts";
import { effectivePrices, PriceFileSchema, unknownModels, type Price, type PriceFile } from "./prices.ts";

export interface PricingDeps {
  readonly nc: NatsConnection;
  readonly config: Config;
  readonly logger: Logger;
  /** A YAML or JSON price file, reloaded when it changes. */
  readonly priceFile?: string;
  readonly healthPolicy?: HealthPolicy;
  readonly clock?: () => number;
}

export interface PricingService {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Takes the config's prices and models from now on (a YAML edit is a price source too). */
  reload(config: Config): void;
  isLeader(): boolean;
  readonly id: string;
}

const TICK_MS = 250;
const LEASE_RENEW_MS = 1_000;
/** An unchanged entry is still rewritten this often, so readers can judge its age. */
const REFRESH_MS = 2_000;
const PROBE_TIMEOUT_MS = 5_000;

export function createPricingService({ nc, config, logger, priceFile, healthPolicy = DEFAULT_HEALTH_POLICY, clock = Date.now }: PricingDeps): PricingService {
  const id = `pricing-${nuid.next().slice(-10)}`;
  let catalog: Catalog = buildCatalog(config);
  let configSetAt = clock();
  const health = new Map<string, ModelHealth>();
  for (const modelId of catalog.models.keys()) health.set(modelId, new ModelHealth(healthPolicy));
  const overrides = new Map<string, PriceOverride>();
  let file: { prices: PriceFile; setAt: number } | undefined;
  let prices: Map<string, Price> = effectivePrices(catalog.models, configSetAt, file, overrides);
  const written = new Map<string, { key: string; at: number }>();
  const probing = new Set<string>();
  const clients = new Map<string, ProviderClient>();
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

  function entry(modelId: string, price: Price, h: HealthSnapshot, now: number): ModelState {
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
    };
  }

  async function writeAll(force = false): Promise<void> {
    const now = clock();
    const puts: Promise<unknown>[] = [];
    for (const [modelId, h] of health) {
      const snap = h.snapshot(now);
      const price = prices.get(modelId)!;
      // What routing depends on; latency and rates alone refresh at REFRESH_MS.
      const key = `${snap.health}|${snap.cooldownUntil}|${price.inputPerMtok}|${price.outputPerMtok}`;
      const last = written.get(modelId);
      if (!force && last && last.key === key && now - last.at < REFRESH_MS) continue;
      written.set(modelId, { key, at: now });
      puts.push(buckets.models.put(modelId, JSON.stringify(entry(modelId, price, snap, now))));
      if (h.needsProbe(now)) void probe(modelId);
    }
    await Promise.all(puts).catch((err: unknown) => logger.warn({ err: (err as Error).message }, "writing model state failed; retrying next tick"));
  }

  /** One tiny request to a model whose cooldown ran out: its answer decides whether traffic returns. */
  async function probe(modelId: string): Promise<void> {
    if (probing.has(modelId)) return;
    probing.add(modelId);
    const m = catalog.models.get(modelId)!;
    const provider = currentConfig.providers[m.provider]!;
    let client = clients.get(m.provider);
    if (!client) clients.set(m.provider, (client = createProviderClient({ base_url: provider.base_url, max_concurrency: 2 })));
    const adapter = ADAPTERS[provider.dialect];
    const request = { model: "auto", messages: [{ role: "user" as const, content: "ping" }], max_tokens: 1 };
    const t0 = clock();
    let ok = false;
    try {
      const reply = await client.send(adapter.toRequest(request, { provider: m.provider, upstream: m.upstream, apiKey: provider.api_key }), PROBE_TIMEOUT_MS);
      adapter.fromResponse(reply, request);
      ok = true;
    } catch {
      ok = false;
    }
    health.get(modelId)!.probed(ok, clock() - t0, clock());
    logger.info({ model: modelId, ok }, ok ? "probe answered: traffic resumes" : "probe failed: cooling down longer");
    probing.delete(modelId);
    written.delete(modelId);
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
    for (const modelId of [...health.keys()]) if (!catalog.models.has(modelId)) health.delete(modelId);
    for (const c of clients.values()) void c.close().catch(() => {});
    clients.clear();
    recomputePrices("config reloaded");
  }

  return {
    id,
    reload,
    isLeader: () => leader,
    async start() {
      buckets = await openBuckets(nc, config);
      if (priceFile) {
        loadPriceFile(priceFile);
        unwatchPriceFile = onFileChange(priceFile, () => loadPriceFile(priceFile));
      }
      void watchOverrides(buckets.prices).catch((err: unknown) => logger.error({ err: (err as Error).message }, "price override watch ended"));
      sub = nc.subscribe(`${TELEMETRY_SUBJECT}.>`, {
        callback: (err, msg) => {
          if (err) return;
          const parsed = AttemptEventSchema.safeParse(parseJsonOrUndefined(msg.string()));
          if (!parsed.success) {
            if (badTelemetry++ % 1000 === 0) logger.warn({ subject: msg.subject }, "ignoring malformed telemetry");
            return;
          }
          const e = parsed.data;
          health.get(e.m)?.record(e.outcome, e.latency_ms, e.at);
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
      for (const t of timers) clearInterval(t);
      unwatchPriceFile?.();
      stopWatch?.();
      sub?.unsubscribe();
      if (leader) await buckets.lease.delete(LEASE_KEY).catch(() => {});
      leader = false;
      await Promise.all([...clients.values()].map((c) => c.close().catch(() => {})));
    },
  };
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}


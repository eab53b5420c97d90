/**
 * Wiring for one gateway instance: NATS, provisioning, the live model catalogue, the reply
 * subject, the Batch API service and the HTTP server. Any number of instances may run; they
 * share nothing but NATS. With `configFile`, edits to keys, tasks and limits apply while it
 * runs (`settings.ts`).
 */
import { jetstream } from "@nats-io/jetstream";
import type { Config } from "../../shared/config/schema.ts";
import type { Logger } from "../../shared/log.ts";
import { openBuckets } from "../../shared/nats/buckets.ts";
import { connectNats, displayUrl, type NatsTarget } from "../../shared/nats/connect.ts";
import { prepareNats } from "../../shared/nats/provision.ts";
import { namesOf } from "../../shared/contract/subjects.ts";
import { gatewayMetrics } from "../../shared/ops/gateway-metrics.ts";
import { watchNatsHealth } from "../../shared/ops/nats-health.ts";
import { Probes } from "../../shared/ops/probes.ts";
import type { Ops } from "../../shared/ops/server.ts";
import { startTracing } from "../../shared/ops/tracing.ts";
import { openLimitsBucket } from "../../shared/limits/bucket.ts";
import { createKeyLimits } from "./key-limits.ts";
import { createBatchService, type BatchTuning } from "./batches.ts";
import type { ChatDeps } from "./chat.ts";
import { createFastPath } from "./fast-path.ts";
import { FileStore } from "./files.ts";
import { watchModelCatalogue } from "./models.ts";
import { provisionGateway } from "./provision.ts";
import { createReplyInbox } from "./replies.ts";
import { createResponsesService } from "./responses.ts";
import { createGatewayServer, listenOn } from "./server.ts";
import { gatewaySettings, watchGatewaySettings, type GatewaySettings } from "./settings.ts";

/** On stop, how long open requests may still finish. */
const STOP_GRACE_MS = 10_000;

export interface StartGatewayOptions {
  /** A URL (its own user and password are used), or a target with credentials and TLS from `natsFromEnvironment()`. */
  readonly natsUrl: string | NatsTarget;
  readonly config: Config;
  readonly logger: Logger;
  /** Overrides `gateway.listen` (`host:port`; port 0 picks a free one). */
  readonly listen?: string;
  /** A development key accepted for tenant `dev` with `gateway.default_task` (`switchyard up` passes SWITCHYARD_DEV_API_KEY). */
  readonly devKey?: string;
  /**
   * The config file `config` was loaded from: it is watched, and an edit (keys, tasks, limits)
   * applies without a restart; an edit that does not load is logged and the config in force stays.
   */
  readonly configFile?: string;
  /** Batch machinery timings (tests shorten them). */
  readonly batchTuning?: BatchTuning;
  /** The process's metrics and probes (see shared/ops); without it the API port still answers /livez and /readyz. */
  readonly ops?: Ops;
  /** Where OTEL_* tracing settings are read (`shared/ops/tracing.ts`); tracing is off without an OTLP endpoint. @defaultValue process.env */
  readonly env?: NodeJS.ProcessEnv;
}

export interface RunningGateway {
  /** The base URL clients use, e.g. `http://127.0.0.1:8080/v1`. */
  readonly url: string;
  stop(): Promise<void>;
}

export async function startGateway(opts: StartGatewayOptions): Promise<RunningGateway> {
  const { logger } = opts;
  let settings: GatewaySettings = gatewaySettings(opts.config, opts.devKey);
  const current = () => settings;
  // Streams and buckets are provisioned from the config at start; a reload does not re-provision.
  const config = opts.config;
  const names = namesOf(config);

  const probes = opts.ops?.probes ?? new Probes();
  probes.ready("gateway:starting", "connecting and provisioning");
  const nc = await connectNats(opts.natsUrl, "switchyard-gateway");
  const health = watchNatsHealth(nc, { logger, probes, name: "gateway", required: { streams: Object.values(names.streams) } });
  const stops: (() => Promise<void> | void)[] = [() => nc.drain().catch(() => {}), () => health.stop()];
  const tracing = await startTracing("switchyard-gateway", opts.env);
  // Stops run last first: the spans are flushed once the server has closed.
  if (tracing) stops.push(() => tracing.shutdown());
  const stop = async () => {
    for (const s of stops.splice(0).reverse()) await s();
  };
  try {
    // `provision: check`: only checks, and stops naming what is missing or different.
    const jsm = await prepareNats("gateway", nc, config);
    const stores = await provisionGateway(nc, jsm, config);
    const js = jetstream(nc);
    const { models: modelsKv } = await openBuckets(nc, config);
    const models = await watchModelCatalogue(modelsKv, () => settings.catalog, () => settings.config.aliases, logger);
    stops.push(() => models.stop());
    const inbox = createReplyInbox(nc, logger, names);
    stops.push(() => inbox.close());
    const files = new FileStore(stores.files);
    const fastPath = createFastPath(nc, names);
    // Per-key limits shared by every gateway; the bucket is opened at start so a missing one (provision: check) stops it here.
    const limitsKv = await openLimitsBucket(nc, config);
    const keyLimits = createKeyLimits(async () => limitsKv);
    const chat: ChatDeps = {
      js,
      inbox,
      catalog: () => settings.catalog,
      get requestTimeoutMs() {
        return settings.gateway.request_timeout;
      },
      clock: Date.now,
      names,
      // Read per request, so a reload that switches `gateway.interactive` applies to the next one.
      get fastPath() {
        return settings.gateway.interactive === "request" ? fastPath : undefined;
      },
      keyLimits,
      logger,
    };
    const responses = createResponsesService({ chat, jsm, kv: stores.responses, logger });
    const batches = createBatchService({
      js,
      jsm,
      kv: stores.batches,
      files,
      catalog: () => settings.catalog,
      maxLines: () => settings.gateway.max_batch_lines,
      logger,
      tuning: opts.batchTuning,
      names,
      fileResponse: responses.file,
    });
    await batches.start();
    stops.push(() => batches.stop());
    const server = createGatewayServer({
      settings: current,
      limiter: keyLimits,
      chat,
      models,
      files,
      batches,
      responses,
      logger,
      probes,
      metrics: opts.ops ? gatewayMetrics(opts.ops) : undefined,
      accessLog: () => settings.config.ops?.access_log ?? true,
      tracing,
    });
    await health.check();
    probes.ready("gateway:starting", undefined);
    const url = await listenOn(server, opts.listen ?? settings.gateway.listen);
    stops.push(async () => {
      // Batches first: a stopping instance hands them over at once, while open requests still get their answers.
      await batches.stop();
      await new Promise<void>((resolve) => {
        // Open requests get their answers for a while; then whatever is left is cut off.
        const cut = setTimeout(() => server.closeAllConnections(), STOP_GRACE_MS);
        server.close(() => {
          clearTimeout(cut);
          resolve();
        });
        server.closeIdleConnections();
      });
    });
    if (opts.configFile) {
      const unwatch = watchGatewaySettings(opts.configFile, { logger, devKey: opts.devKey, current, apply: (s) => (settings = s) });
      stops.push(unwatch);
    }
    const keys = settings.keys;
    if (keys.size === 0) logger.warn("no API keys configured (gateway.keys) and no development key: every request will get 401");
    logger.info({ url, nats: displayUrl(opts.natsUrl), keys: keys.size }, "gateway listening");
    let stopped: Promise<void> | undefined;
    return {
      url,
      stop: () =>
        (stopped ??= (async () => {
          // Out of rotation before the server stops taking requests.
          probes.ready("gateway:shutdown", "shutting down");
          await stop();
        })()),
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

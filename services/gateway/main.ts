/**
 * Wiring for one gateway instance: NATS, provisioning, the live model catalogue, the reply
 * subject, the Batch API service and the HTTP server. Any number of instances may run; they
 * share nothing but NATS.
 */
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { Config } from "../../shared/config/schema.ts";
import { GatewayConfigSchema } from "../../shared/config/schema.ts";
import { SwitchyardError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import { openBuckets } from "../../shared/nats/buckets.ts";
import { connectNats } from "../../shared/nats/connect.ts";
import { provision } from "../../shared/nats/provision.ts";
import { buildCatalog } from "../../shared/routing/catalog.ts";
import { KeyTable, RateLimiter } from "./auth.ts";
import { createBatchService } from "./batches.ts";
import { FileStore } from "./files.ts";
import { watchModelCatalogue } from "./models.ts";
import { provisionGateway } from "./provision.ts";
import { createReplyInbox } from "./replies.ts";
import { createGatewayServer, listenOn } from "./server.ts";

/** On stop, how long open requests may still finish. */
const STOP_GRACE_MS = 10_000;

export interface StartGatewayOptions {
  readonly natsUrl: string;
  readonly config: Config;
  readonly logger: Logger;
  /** Overrides `gateway.listen` (`host:port`; port 0 picks a free one). */
  readonly listen?: string;
  /** A development key accepted for tenant `dev` with `gateway.default_task` (`switchyard up` passes SWITCHYARD_DEV_API_KEY). */
  readonly devKey?: string;
  /** How long a batch owner's claim lasts without renewal (tests shorten it). */
  readonly batchLeaseMs?: number;
}

export interface RunningGateway {
  /** The base URL clients use, e.g. `http://127.0.0.1:8080/v1`. */
  readonly url: string;
  stop(): Promise<void>;
}

export async function startGateway(opts: StartGatewayOptions): Promise<RunningGateway> {
  const { config, logger } = opts;
  const gw = config.gateway ?? GatewayConfigSchema.parse({});
  const catalog = buildCatalog(config, process.env);
  const defaultTask = gw.default_task ?? catalog.tasks.keys().next().value;
  if (defaultTask === undefined || !catalog.tasks.has(defaultTask)) throw new SwitchyardError("config", `gateway.default_task: task "${defaultTask ?? ""}" is not configured under tasks`);
  for (const [name, k] of Object.entries(gw.keys)) {
    for (const task of [k.task ?? defaultTask, ...(k.tasks ?? [])]) {
      if (!catalog.tasks.has(task)) throw new SwitchyardError("config", `gateway.keys.${name}: task "${task}" is not configured under tasks`);
    }
  }
  const keys = new KeyTable(gw.keys, defaultTask, opts.devKey);

  const nc = await connectNats(opts.natsUrl, "switchyard-gateway");
  const stops: (() => Promise<void> | void)[] = [() => nc.drain().catch(() => {})];
  const stop = async () => {
    for (const s of stops.splice(0).reverse()) await s();
  };
  try {
    const jsm = await jetstreamManager(nc);
    await provision(jsm, config);
    const stores = await provisionGateway(nc, jsm, config);
    const js = jetstream(nc);
    const { models: modelsKv } = await openBuckets(nc, config);
    const models = await watchModelCatalogue(modelsKv, () => catalog, () => config.aliases, logger);
    stops.push(() => models.stop());
    const inbox = createReplyInbox(nc, logger);
    stops.push(() => inbox.close());
    const files = new FileStore(stores.files);
    const batches = createBatchService({ js, jsm, kv: stores.batches, files, catalog: () => catalog, logger, maxLines: gw.max_batch_lines, leaseMs: opts.batchLeaseMs });
    await batches.start();
    stops.push(() => batches.stop());
    const server = createGatewayServer({
      keys,
      limiter: new RateLimiter(),
      chat: { js, inbox, catalog: () => catalog, requestTimeoutMs: gw.request_timeout, clock: Date.now },
      models,
      files,
      batches,
      maxBodyBytes: gw.max_body_bytes,
      maxFileBytes: gw.max_file_bytes,
      logger,
    });
    const url = await listenOn(server, opts.listen ?? gw.listen);
    stops.push(
      () =>
        new Promise<void>((resolve) => {
          // Open requests get their answers for a while; then whatever is left is cut off.
          const cut = setTimeout(() => server.closeAllConnections(), STOP_GRACE_MS);
          server.close(() => {
            clearTimeout(cut);
            resolve();
          });
          server.closeIdleConnections();
        }),
    );
    if (keys.size === 0) logger.warn("no API keys configured (gateway.keys) and no development key: every request will get 401");
    logger.info({ url, nats: opts.natsUrl, keys: keys.size }, "gateway listening");
    let stopped: Promise<void> | undefined;
    return { url, stop: () => (stopped ??= stop()) };
  } catch (err) {
    await stop();
    throw err;
  }
}

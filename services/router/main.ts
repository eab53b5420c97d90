/**
 * One router worker wired: connection, streams and consumers, the worker, the config watch,
 * and a stop that ends within `router.shutdown_grace` plus a second whatever NATS is doing.
 */
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Config } from "../../shared/config/schema.ts";
import { watchConfig } from "../../shared/config/watch.ts";
import { connectNats } from "../../shared/nats/connect.ts";
import { provision } from "../../shared/nats/provision.ts";
import type { Logger } from "../../shared/log.ts";
import { createRouter, type Router } from "./worker.ts";

export interface RunningRouter {
  readonly router: Router;
  stop(): Promise<void>;
}

export interface StartRouterOptions {
  /** Connect here; or give `nc`, a connection the caller owns (the bench does, to count its traffic). */
  natsUrl?: string;
  nc?: NatsConnection;
  config: Config;
  logger: Logger;
  /** Epoch milliseconds; the bench passes a finer clock. */
  clock?: () => number;
  name?: string;
  /** The config file to watch: an edit is applied without a restart, a bad edit is rejected and the old config stays. */
  configFile?: string;
}

/** How long a stop waits for the connection to flush once the jobs are done; NATS may be gone for good. */
const DRAIN_TIMEOUT_MS = 500;

/** Connects (unless given a connection), provisions streams and consumers, and starts one router worker. */
export async function startRouter(opts: StartRouterOptions): Promise<RunningRouter> {
  if (!opts.nc && !opts.natsUrl) throw new Error("startRouter needs natsUrl or nc");
  const owned = !opts.nc;
  const nc = opts.nc ?? (await connectNats(opts.natsUrl!, opts.name ?? "switchyard-router"));
  await provision(await jetstreamManager(nc), opts.config);
  if (opts.config.gateway?.lanes !== undefined) opts.logger.warn("gateway.lanes is deprecated: the lane shares are the router's, set them under router.lanes");
  const router = createRouter({ nc, config: opts.config, logger: opts.logger, clock: opts.clock });
  const loop = router.run();
  const unwatch = opts.configFile ? watchConfig(opts.configFile, opts.logger, (config) => router.reload(config)) : undefined;
  let stopped: Promise<void> | undefined;
  const stop = () =>
    (stopped ??= (async () => {
      unwatch?.();
      await router.stop();
      // The pull loops end within their pull's expiry once stopped; a dead NATS must not hold the stop.
      await Promise.race([loop.catch(() => {}), new Promise((r) => setTimeout(r, DRAIN_TIMEOUT_MS))]);
      if (owned) await closeWithin(nc, DRAIN_TIMEOUT_MS);
    })());
  loop.catch((err: unknown) => {
    opts.logger.error({ err: (err as Error).message }, "router consume loop failed");
    void stop();
  });
  opts.logger.info({ max_in_flight: opts.config.router.max_in_flight }, "router worker started");
  return { router, stop };
}

/** Drains the connection (flushing acks and outcomes), or closes it when draining takes too long. */
async function closeWithin(nc: NatsConnection, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const drained = await Promise.race([
    nc.drain().then(() => true, () => false),
    new Promise<boolean>((r) => (timer = setTimeout(() => r(false), ms))),
  ]);
  clearTimeout(timer);
  if (!drained) await nc.close().catch(() => {});
}

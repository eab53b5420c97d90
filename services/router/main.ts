/**
 * One router worker wired: connection, streams and consumers, the worker, the config watch,
 * and a stop that ends within `router.shutdown_grace` plus a second whatever NATS is doing.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import type { Config } from "../../shared/config/schema.ts";
import { watchConfig } from "../../shared/config/watch.ts";
import { connectNats, type NatsTarget } from "../../shared/nats/connect.ts";
import { prepareNats } from "../../shared/nats/provision.ts";
import type { Logger } from "../../shared/log.ts";
import { namesOf } from "../../shared/contract/subjects.ts";
import { watchNatsHealth } from "../../shared/ops/nats-health.ts";
import { routerMetrics } from "../../shared/ops/router-metrics.ts";
import type { Ops } from "../../shared/ops/server.ts";
import { startTracing } from "../../shared/ops/tracing.ts";
import { createRouter, type Router } from "./worker.ts";

export interface RunningRouter {
  readonly router: Router;
  stop(): Promise<void>;
  /**
   * Settles with the error when the pull loop has failed for good (its consumer stayed
   * missing): the worker has stopped and the process should exit non-zero. Never otherwise.
   */
  readonly failed: Promise<Error>;
}

export interface StartRouterOptions {
  /**
   * Connect here: a URL (its own user and password are used), or a target with credentials and
   * TLS from `natsFromEnvironment()`; or give `nc`, a connection the caller owns (the bench
   * does, to count its traffic).
   */
  natsUrl?: string | NatsTarget;
  nc?: NatsConnection;
  config: Config;
  logger: Logger;
  /** Epoch milliseconds; the bench passes a finer clock. */
  clock?: () => number;
  name?: string;
  /** The config file to watch: an edit is applied without a restart, a bad edit is rejected and the old config stays. */
  configFile?: string;
  /** The process's metrics and probes (see shared/ops); none recorded without it. */
  ops?: Ops;
  /** Where OTEL_* tracing settings are read (`shared/ops/tracing.ts`); tracing is off without an OTLP endpoint. @defaultValue process.env */
  env?: NodeJS.ProcessEnv;
}

/** How long a stop waits for the connection to flush once the jobs are done; NATS may be gone for good. */
const DRAIN_TIMEOUT_MS = 500;

/** Connects (unless given a connection), provisions streams and consumers, and starts one router worker. */
export async function startRouter(opts: StartRouterOptions): Promise<RunningRouter> {
  if (!opts.nc && !opts.natsUrl) throw new Error("startRouter needs natsUrl or nc");
  const name = opts.name ?? "switchyard-router";
  const probes = opts.ops?.probes;
  probes?.ready(`${name}:starting`, "connecting and provisioning");
  const owned = !opts.nc;
  const nc = opts.nc ?? (await connectNats(opts.natsUrl!, name));
  const n = namesOf(opts.config);
  const health = watchNatsHealth(nc, {
    logger: opts.logger,
    probes,
    name,
    required: { streams: Object.values(n.streams), consumers: [[n.streams.jobs, n.routerDurable], [n.streams.jobs, n.interactiveDurable]] },
  });
  // `provision: check`: only checks, and stops naming what is missing or different.
  await prepareNats("router", nc, opts.config).catch(async (err: unknown) => {
    health.stop();
    if (owned) await nc.close().catch(() => {});
    throw err;
  });
  await health.check();
  if (opts.config.gateway?.lanes !== undefined) opts.logger.warn("gateway.lanes is deprecated: the lane shares are the router's, set them under router.lanes");
  const tracing = await startTracing("switchyard-router", opts.env);
  const router = createRouter({
    nc,
    config: opts.config,
    logger: opts.logger,
    clock: opts.clock,
    metrics: opts.ops ? routerMetrics(opts.ops, { tenantLimit: opts.config.ops?.tenant_label_limit }) : undefined,
    onConsumerMissing: (lane, why) => probes?.ready(`${name}:consumer-${lane}`, why),
    tracing,
  });
  const loop = router.run();
  probes?.ready(`${name}:starting`, undefined);
  const unwatch = opts.configFile ? watchConfig(opts.configFile, opts.logger, (config) => router.reload(config)) : undefined;
  let stopped: Promise<void> | undefined;
  const stop = () =>
    (stopped ??= (async () => {
      // Out of rotation first: nothing should be sent to a worker that is going away.
      probes?.ready(`${name}:shutdown`, "shutting down");
      unwatch?.();
      await router.stop();
      // The pull loops end within their pull's expiry once stopped; a dead NATS must not hold the stop.
      await Promise.race([loop.catch(() => {}), new Promise((r) => setTimeout(r, DRAIN_TIMEOUT_MS))]);
      health.stop();
      if (owned) await closeWithin(nc, DRAIN_TIMEOUT_MS);
      await tracing?.shutdown();
    })());
  const failed = new Promise<Error>((resolve) => {
    loop.catch((err: unknown) => {
      const e = err instanceof Error ? err : new Error(String(err));
      opts.logger.error({ err: e.message }, "router consume loop failed for good; stopping the worker");
      probes?.live(`${name}:pull-loop`, e.message);
      void stop().then(() => resolve(e));
    });
  });
  opts.logger.info({ max_in_flight: opts.config.router.max_in_flight }, "router worker started");
  return { router, stop, failed };
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

import { dirname, join } from "node:path";
import { configPath } from "../../shared/config/load.ts";
import type { Config } from "../../shared/config/schema.ts";
import { watchConfig } from "../../shared/config/watch.ts";
import type { Logger } from "../../shared/log.ts";
import { connectNats, type NatsTarget } from "../../shared/nats/connect.ts";
import { namesOf } from "../../shared/contract/subjects.ts";
import { prepareNats } from "../../shared/nats/provision.ts";
import { watchNatsHealth } from "../../shared/ops/nats-health.ts";
import { registerPricingMetrics } from "../../shared/ops/pricing-metrics.ts";
import type { Ops } from "../../shared/ops/server.ts";
import { createPricingService, type PricingService } from "./service.ts";

export interface RunningPricing {
  readonly service: PricingService;
  stop(): Promise<void>;
}

/** The probe conditions' prefix. */
const NAME = "pricing";

export async function startPricing(opts: {
  natsUrl: string | NatsTarget;
  config: Config;
  logger: Logger;
  priceFile?: string;
  configFile?: string;
  samplesDir?: string;
  /** The process's metrics and probes (see shared/ops). */
  ops?: Ops;
}): Promise<RunningPricing> {
  const probes = opts.ops?.probes;
  probes?.ready(`${NAME}:starting`, "connecting");
  const nc = await connectNats(opts.natsUrl, "switchyard-pricing");
  // The KV buckets are streams: the live state, the price overrides and the leader lease.
  const health = watchNatsHealth(nc, { logger: opts.logger, probes, name: NAME, required: { streams: Object.values(namesOf(opts.config).buckets).map((b) => `KV_${b}`) } });
  // `provision: check`: the buckets are only checked (and then bound), and a difference stops start-up.
  await prepareNats("pricing", nc, opts.config).catch(async (err: unknown) => {
    health.stop();
    await nc.close().catch(() => {});
    throw err;
  });
  // Samples sit beside the config, as `switchyard verify` documents: <config dir>/samples/<task>.jsonl.
  const samplesDir = opts.samplesDir ?? join(dirname(opts.configFile ?? configPath()), "samples");
  const service = createPricingService({ nc, config: opts.config, logger: opts.logger, priceFile: opts.priceFile, samplesDir });
  await service.start();
  await health.check();
  // One pricing service per process exports its view; a second one in the same process (tests) does not.
  if (opts.ops && !opts.ops.metrics.has("switchyard_pricing_leader")) registerPricingMetrics(opts.ops, service);
  probes?.ready(`${NAME}:starting`, undefined);
  const unwatch = opts.configFile ? watchConfig(opts.configFile, opts.logger, (config) => service.reload(config)) : undefined;
  let stopped: Promise<void> | undefined;
  return {
    service,
    stop: () =>
      (stopped ??= (async () => {
        probes?.ready(`${NAME}:shutdown`, "shutting down");
        unwatch?.();
        await service.stop();
        health.stop();
        await nc.drain().catch(() => {});
      })()),
  };
}

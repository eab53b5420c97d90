import { dirname, join } from "node:path";
import { configPath } from "../../shared/config/load.ts";
import type { Config } from "../../shared/config/schema.ts";
import { watchConfig } from "../../shared/config/watch.ts";
import type { Logger } from "../../shared/log.ts";
import { connectNats } from "../../shared/nats/connect.ts";
import { createPricingService, type PricingService } from "./service.ts";

export interface RunningPricing {
  readonly service: PricingService;
  stop(): Promise<void>;
}

export async function startPricing(opts: { natsUrl: string; config: Config; logger: Logger; priceFile?: string; configFile?: string; samplesDir?: string }): Promise<RunningPricing> {
  const nc = await connectNats(opts.natsUrl, "switchyard-pricing");
  // Samples sit beside the config, as `switchyard verify` documents: <config dir>/samples/<task>.jsonl.
  const samplesDir = opts.samplesDir ?? join(dirname(opts.configFile ?? configPath()), "samples");
  const service = createPricingService({ nc, config: opts.config, logger: opts.logger, priceFile: opts.priceFile, samplesDir });
  await service.start();
  const unwatch = opts.configFile ? watchConfig(opts.configFile, opts.logger, (config) => service.reload(config)) : undefined;
  let stopped: Promise<void> | undefined;
  return {
    service,
    stop: () =>
      (stopped ??= (async () => {
        unwatch?.();
        await service.stop();
        await nc.drain().catch(() => {});
      })()),
  };
}

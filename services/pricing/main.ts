import type { Config } from "../../shared/config/schema.ts";
import { watchConfig } from "../../shared/config/watch.ts";
import type { Logger } from "../../shared/log.ts";
import { connectNats } from "../../shared/nats/connect.ts";
import { createPricingService, type PricingService } from "./service.ts";

export interface RunningPricing {
  readonly service: PricingService;
  stop(): Promise<void>;
}

export async function startPricing(opts: { natsUrl: string; config: Config; logger: Logger; priceFile?: string; configFile?: string }): Promise<RunningPricing> {
  const nc = await connectNats(opts.natsUrl, "switchyard-pricing");
  const service = createPricingService({ nc, config: opts.config, logger: opts.logger, priceFile: opts.priceFile });
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

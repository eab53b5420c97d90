import { unwatchFile, watchFile } from "node:fs";
import { loadConfig } from "../../shared/config/load.ts";
import type { Config } from "../../shared/config/schema.ts";
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
  const file = opts.configFile;
  if (file) {
    watchFile(file, { interval: 500 }, (cur, prev) => {
      if (cur.mtimeMs === prev.mtimeMs) return;
      try {
        service.reload(loadConfig(file));
      } catch (err) {
        opts.logger.error({ file, err: (err as Error).message }, "config edit rejected; the previous prices stay in force");
      }
    });
  }
  let stopped: Promise<void> | undefined;
  return {
    service,
    stop: () =>
      (stopped ??= (async () => {
        if (file) unwatchFile(file);
        await service.stop();
        await nc.drain().catch(() => {});
      })()),
  };
}

import { resolve } from "node:path";
import { configPath, loadConfig } from "../../../shared/config/load.ts";
import { createLogger } from "../../../shared/log.ts";
import { natsUrl } from "../../../shared/nats/connect.ts";
import { startPricing } from "../../pricing/main.ts";
import { parse, untilSignal } from "../args.ts";
import type { Command } from "./types.ts";

export const pricingCommand: Command = {
  name: "pricing",
  summary: "run the pricing service (price table + health → KV, watched by every worker)",
  usage: `switchyard pricing [--prices-file <prices.yaml|json>]

Owns the price table (the config's prices, a watched price file, and \`switchyard prices set\`
overrides; per model the most recent wins) and aggregates every worker's per-attempt
telemetry into health (healthy / degraded / down, with cooldown and recovery probing).
Writes one entry per model to the KV bucket switchyard-models. Several may run: one holds
the leader lease and writes; the others stand by warm. Price file format:
  budget/lite: { input_per_mtok: 0.04, output_per_mtok: 0.16 }
Environment: NATS_URL, SWITCHYARD_CONFIG, SWITCHYARD_PRICES_FILE, LOG_LEVEL.`,
  async run(argv) {
    const { values } = parse("pricing", argv, { "prices-file": { type: "string" } });
    const logger = createLogger("pricing");
    const priceFile = values["prices-file"] ?? process.env.SWITCHYARD_PRICES_FILE;
    const file = configPath();
    const running = await startPricing({ natsUrl: natsUrl(), config: loadConfig(file), logger, priceFile: priceFile ? resolve(priceFile) : undefined, configFile: file });
    await untilSignal();
    await running.stop();
    logger.flush();
    return 0;
  },
};

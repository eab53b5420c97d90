import { resolve } from "node:path";
import { configPath, loadConfig } from "../../../shared/config/load.ts";
import { createLogger } from "../../../shared/log.ts";
import { natsFromEnvironment } from "../../../shared/nats/connect.ts";
import { opsListen, startProcessOps } from "../../../shared/ops/process.ts";
import { startPricing } from "../../pricing/main.ts";
import { parse, untilSignal } from "../args.ts";
import type { Command } from "./types.ts";
import { summaryOf } from "./catalog.ts";

export const pricingCommand: Command = {
  name: "pricing",
  summary: summaryOf("pricing"),
  usage: `switchyard pricing [--prices-file <prices.yaml|json>] [--ops-listen 0.0.0.0:9464]

Owns the price table (the config's prices, a watched price file, and \`switchyard prices set\`
overrides; per model the most recent wins) and aggregates every worker's per-attempt
telemetry into health (healthy / degraded / down, with cooldown and recovery probing).
Writes one entry per model to the KV bucket switchyard-models. Several may run: one holds
the leader lease and writes; the others stand by warm. Price file format:
  budget/lite: { input_per_mtok: 0.04, output_per_mtok: 0.16 }
--ops-listen (or SWITCHYARD_OPS_LISTEN, or ops.listen) serves /metrics, /livez and /readyz.
Environment: NATS_URL, SWITCHYARD_CONFIG, SWITCHYARD_PRICES_FILE, SWITCHYARD_OPS_LISTEN, LOG_LEVEL.`,
  async run(argv) {
    const { values } = parse("pricing", argv, { "prices-file": { type: "string" }, "ops-listen": { type: "string" } });
    const logger = createLogger("pricing");
    const priceFile = values["prices-file"] ?? process.env.SWITCHYARD_PRICES_FILE;
    const file = configPath();
    const config = loadConfig(file);
    const ops = await startProcessOps(opsListen("pricing", values["ops-listen"], config), logger);
    try {
      const running = await startPricing({ natsUrl: natsFromEnvironment(), config, logger, priceFile: priceFile ? resolve(priceFile) : undefined, configFile: file, ops: ops?.ops });
      await untilSignal();
      await running.stop();
    } finally {
      await ops?.server.close();
    }
    logger.flush();
    return 0;
  },
};

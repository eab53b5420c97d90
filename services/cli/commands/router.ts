import { configPath, loadConfig } from "../../../shared/config/load.ts";
import { createLogger } from "../../../shared/log.ts";
import { natsUrl } from "../../../shared/nats/connect.ts";
import { startRouter } from "../../router/main.ts";
import { parse, untilSignal } from "../args.ts";
import type { Command } from "./types.ts";

export const routerCommand: Command = {
  name: "router",
  summary: "run one router worker (any number may share the job consumer)",
  usage: `switchyard router

Consumes jobs.> through the shared durable consumer "router", routes each job and publishes
its result or dead letter. Start as many as you like, on any machines.
The config file is watched: an edit applies to new jobs without a restart (an invalid edit
is logged with its file and line, and the config in force stays). SWITCHYARD_PIN_<TASK>
pins a task to a model (provider/model or alias) or a tier (tier:<n>).
Environment: NATS_URL (default nats://127.0.0.1:4222), SWITCHYARD_CONFIG, LOG_LEVEL.
SIGINT/SIGTERM: stop pulling, finish in-flight jobs within router.shutdown_grace, exit 0.`,
  async run(argv) {
    parse("router", argv, {});
    const logger = createLogger("router");
    const file = configPath();
    const running = await startRouter({ natsUrl: natsUrl(), config: loadConfig(file), logger, configFile: file });
    const sig = await untilSignal();
    logger.info({ signal: sig, in_flight: running.router.stats.inFlight }, "stopping: finishing in-flight jobs");
    await running.stop();
    logger.info(running.router.stats, "router stopped");
    logger.flush();
    return 0;
  },
};

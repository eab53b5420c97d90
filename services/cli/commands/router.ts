import { configPath, loadConfig } from "../../../shared/config/load.ts";
import { createLogger } from "../../../shared/log.ts";
import { natsFromEnvironment } from "../../../shared/nats/connect.ts";
import { opsListen, startProcessOps } from "../../../shared/ops/process.ts";
import { startRouter } from "../../router/main.ts";
import { parse, untilSignal } from "../args.ts";
import type { Command } from "./types.ts";
import { summaryOf } from "./catalog.ts";

export const routerCommand: Command = {
  name: "router",
  summary: summaryOf("router"),
  usage: `switchyard router [--ops-listen 0.0.0.0:9464]

Consumes jobs.> through the shared durable consumer "router", routes each job and publishes
its result or dead letter. Start as many as you like, on any machines.
The config file is watched: an edit applies to new jobs without a restart (an invalid edit
is logged with its file and line, and the config in force stays). SWITCHYARD_PIN_<TASK>
pins a task to a model (provider/model or alias) or a tier (tier:<n>).
Environment: NATS_URL (default nats://127.0.0.1:4222), SWITCHYARD_CONFIG, LOG_LEVEL.
--ops-listen (or SWITCHYARD_OPS_LISTEN, or ops.listen) serves /metrics, /livez and /readyz.
SIGINT/SIGTERM: stop pulling, finish in-flight jobs within router.shutdown_grace, exit 0.
Exits 1 when the pull loop fails for good (its durable consumer stays missing for 15 s): a
restart provisions it again (provision: auto) or names it missing (provision: check).`,
  async run(argv) {
    const { values } = parse("router", argv, { "ops-listen": { type: "string" } });
    const logger = createLogger("router");
    const file = configPath();
    const config = loadConfig(file);
    const ops = await startProcessOps(opsListen("router", values["ops-listen"], config), logger);
    try {
      const running = await startRouter({ natsUrl: natsFromEnvironment(), config, logger, configFile: file, ops: ops?.ops });
      const ended = await Promise.race([untilSignal().then((signal) => ({ signal })), running.failed.then((error) => ({ error }))]);
      if ("error" in ended) {
        logger.error({ err: ended.error.message, ...running.router.stats }, "router stopped: its pull loop failed");
        logger.flush();
        return 1;
      }
      logger.info({ signal: ended.signal, in_flight: running.router.stats.inFlight }, "stopping: finishing in-flight jobs");
      await running.stop();
      logger.info(running.router.stats, "router stopped");
      logger.flush();
      return 0;
    } finally {
      await ops?.server.close();
    }
  },
};

import { text } from "node:stream/consumers";
import { configPath, loadConfig } from "../../../shared/config/load.ts";
import { UsageError } from "../../../shared/errors.ts";
import { createLogger } from "../../../shared/log.ts";
import { natsFromEnvironment } from "../../../shared/nats/connect.ts";
import { hashKey } from "../../gateway/auth.ts";
import { opsListen, startProcessOps } from "../../../shared/ops/process.ts";
import { startGateway } from "../../gateway/main.ts";
import { parse, untilSignal } from "../args.ts";
import type { Command } from "./types.ts";
import { summaryOf } from "./catalog.ts";

export const gatewayCommand: Command = {
  name: "gateway",
  summary: summaryOf("gateway"),
  usage: `switchyard gateway [--listen 127.0.0.1:8080] [--ops-listen 0.0.0.0:9464]
switchyard gateway hash-key [key]

Serves the OpenAI API at http://<listen>/v1: POST /chat/completions (stream too), GET /models,
files and the Batch API, so the official OpenAI SDKs work with only baseURL and apiKey
changed. Chat requests become jobs on the interactive lane (ijobs.<task>); batch lines become
jobs on the batch lane (jobs.<task>). The task comes from the x-switchyard-task header or the
API key's default. Keys, limits and lane shares are the config's gateway: section; any
number of gateways may run, anywhere, sharing nothing but NATS.
hash-key prints the SHA-256 to put under gateway.keys.<name>.sha256 (the key is read from
stdin when not given, which keeps it out of the shell history).
Environment: NATS_URL, SWITCHYARD_CONFIG, LOG_LEVEL; SWITCHYARD_DEV_API_KEY, when set, is
accepted for tenant dev with the first configured task (for trials, not production).
/livez and /readyz answer on the API port; --ops-listen (or SWITCHYARD_OPS_LISTEN, or
ops.listen) serves them with /metrics on a port of their own. One access log line per request.
SIGINT/SIGTERM: stop accepting, finish open requests, hand batches over, exit 0.`,
  async run(argv) {
    const { values, positionals } = parse("gateway", argv, { listen: { type: "string" }, "ops-listen": { type: "string" } });
    if (positionals[0] === "hash-key") {
      const key = (positionals[1] ?? (await text(process.stdin))).trim();
      if (!key) throw new UsageError("gateway hash-key: give the key as an argument or on stdin");
      process.stdout.write(`${hashKey(key)}\n`);
      return 0;
    }
    if (positionals.length > 0) throw new UsageError(`gateway: unknown argument "${positionals[0]}". See \`switchyard gateway --help\`.`);
    const logger = createLogger("gateway");
    const devKey = process.env.SWITCHYARD_DEV_API_KEY || undefined;
    if (devKey) logger.warn("SWITCHYARD_DEV_API_KEY is set: the gateway accepts it for tenant dev");
    const file = configPath();
    const config = loadConfig(file);
    const ops = await startProcessOps(opsListen("gateway", values["ops-listen"], config), logger);
    try {
      const running = await startGateway({ natsUrl: natsFromEnvironment(), config, logger, listen: values.listen, devKey, configFile: file, ops: ops?.ops });
      process.stdout.write(`Switchyard gateway listening on ${running.url}\n`);
      await untilSignal();
      await running.stop();
    } finally {
      await ops?.server.close();
    }
    logger.flush();
    return 0;
  },
};

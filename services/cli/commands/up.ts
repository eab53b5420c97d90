import { resolve } from "node:path";
import { createLogger } from "../../../shared/log.ts";
import { interruption, intFlag, parse } from "../args.ts";
import { opsListen } from "../../../shared/ops/process.ts";
import { startLocalStack } from "../local-stack.ts";
import { simPort } from "./sim-provider.ts";
import type { Command } from "./types.ts";
import { summaryOf } from "./catalog.ts";

export const upCommand: Command = {
  name: "up",
  summary: summaryOf("up"),
  usage: `switchyard up [--workers 1] [--data .data] [--nats-port 4222] [--sim-port 8790] [--prices-file f] [--gateway-listen 127.0.0.1:8080] [--ops-listen 127.0.0.1:9464]

Without NATS_URL (or nats.url in the config), starts a local nats-server with JetStream storing in <data>/nats, on port
4222 when it is free (else a free port, printed). Then the sim-provider (--sim-port, or a
free port when that one is taken, printed), the pricing service, the router workers and the OpenAI-compatible gateway (http://127.0.0.1:8080/v1 by
default, or gateway.listen; a free port when that one is taken). With SWITCHYARD_DEV_API_KEY
set, the gateway also accepts that key (tenant dev). /metrics, /livez and /readyz of the whole
stack are served on --ops-listen (or SWITCHYARD_OPS_LISTEN, or ops.listen; 127.0.0.1:9464 by
default, a free port when that one is taken), printed. Runs until SIGINT/SIGTERM, then drains
everything and exits 0.`,
  async run(argv) {
    const { values } = parse("up", argv, {
      workers: { type: "string" },
      data: { type: "string" },
      "nats-port": { type: "string" },
      "sim-port": { type: "string" },
      "prices-file": { type: "string" },
      "gateway-listen": { type: "string" },
      "ops-listen": { type: "string" },
    });
    const logger = createLogger("switchyard");
    // Ctrl-C (from here on, start-up included) stops the stack in order: the services, then the
    // nats-server they use. A second Ctrl-C cuts that short.
    const interrupt = interruption();
    const { signal } = interrupt;
    try {
      const stack = await startLocalStack({
        dataDir: resolve(values.data ?? process.env.SWITCHYARD_DATA ?? ".data", "nats"),
        natsPort: intFlag("up", "nats-port", values["nats-port"], 4222),
        simPort: intFlag("up", "sim-port", values["sim-port"], simPort()),
        workers: Math.max(1, intFlag("up", "workers", values.workers, 1)),
        logger,
        priceFile: values["prices-file"] ? resolve(values["prices-file"]) : undefined,
        gatewayListen: values["gateway-listen"],
        devKey: process.env.SWITCHYARD_DEV_API_KEY || undefined,
        ops: { listen: opsListen("up", values["ops-listen"], undefined) },
      });
      try {
        if (!signal.aborted) {
          process.stdout.write(
            `Switchyard is up.\n  NATS_URL=${stack.nats.display}\n  sim-provider: ${stack.simUrl}\n  pricing service: ${stack.pricing.service.id}\n  router workers: ${stack.routers.length}\n  gateway (OpenAI API): ${stack.gateway.url}${process.env.SWITCHYARD_DEV_API_KEY ? "  (accepts SWITCHYARD_DEV_API_KEY)" : "  (set SWITCHYARD_DEV_API_KEY to try it without a config edit)"}\n` +
              (stack.ops ? `  metrics: ${stack.ops.server.url}/metrics  (probes: /livez, /readyz)\n` : "") +
              `Publish jobs to jobs.<task> (tasks: ${Object.keys(stack.config.tasks).join(", ")}); results on results.<task>, dead letters on dlq.<task>.\n` +
              `Try: ${stack.nats.display.includes("***") ? "" : `NATS_URL=${stack.nats.display} `}npx switchyard tail   (Ctrl-C stops the stack)\n`,
          );
          await new Promise((resolve) => signal.addEventListener("abort", resolve, { once: true }));
        }
        process.stdout.write("stopping…\n");
      } finally {
        await stack.stop();
      }
    } finally {
      interrupt.dispose();
    }
    return 0;
  },
};

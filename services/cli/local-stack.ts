/**
 * The pieces `up` and the demo start in one process: a local nats-server when no NATS URL is
 * configured (NATS_URL, or `nats.url` in the config), the sim-provider, the pricing service,
 * router workers and the gateway. Each is the same code its own command runs.
 */
import { createServer } from "node:net";
import { configPath, loadConfig } from "../../shared/config/load.ts";
import type { Config } from "../../shared/config/schema.ts";
import type { Logger } from "../../shared/log.ts";
import { loadNatsSection, natsSettings, natsTarget, type NatsTarget } from "../../shared/nats/auth.ts";
import { startNatsServer, type NatsServerHandle } from "../../shared/nats/server-process.ts";
import { allResources, applyResources } from "../../shared/nats/provision.ts";
import { connectNats } from "../../shared/nats/connect.ts";
import { jetstreamManager } from "@nats-io/jetstream";
import { startProcessOps, type ProcessOps } from "../../shared/ops/process.ts";
import { startGateway, type RunningGateway } from "../gateway/main.ts";
import { startPricing, type RunningPricing } from "../pricing/main.ts";
import { startRouter, type RunningRouter } from "../router/main.ts";
import { runSimProvider } from "../sim-provider/main.ts";
import type { SimProvider } from "../sim-provider/server.ts";
import { DEFAULT_SCENARIO } from "./commands/sim-provider.ts";

export interface LocalStack {
  /** Where the services connect; print `nats.display`, never the servers with credentials. */
  readonly nats: NatsTarget;
  readonly natsServer: NatsServerHandle | undefined;
  readonly sim: SimProvider;
  readonly simUrl: string;
  readonly config: Config;
  readonly routers: RunningRouter[];
  readonly pricing: RunningPricing;
  readonly gateway: RunningGateway;
  /** The process's ops endpoint (/metrics, /livez, /readyz), when asked for. */
  readonly ops: ProcessOps | undefined;
  stop(): Promise<void>;
}

export interface LocalStackOptions {
  /** JetStream store of the local nats-server; a temporary one (deleted at stop) when absent. */
  readonly dataDir?: string;
  /** Preferred client port of the local nats-server; a free one is used when it is taken. */
  readonly natsPort?: number;
  /** Preferred port of the sim-provider; a free one is used when it is taken (0: any). */
  readonly simPort: number;
  readonly workers: number;
  readonly logger: Logger;
  readonly priceFile?: string;
  /** The gateway's `host:port` (default: the config's gateway.listen); a free port is used when that one is taken. */
  readonly gatewayListen?: string;
  /** Accepted by the gateway for tenant `dev` (SWITCHYARD_DEV_API_KEY), so a local trial needs no config edit. */
  readonly devKey?: string;
  /**
   * Serve /metrics, /livez and /readyz for every service of the stack, on `listen` (else
   * `ops.listen`, else 127.0.0.1:9464); a free port when that one is taken. Absent: no ops endpoint.
   */
  readonly ops?: { readonly listen?: string };
}

/** Where `switchyard up` serves its ops endpoint when nothing says otherwise (the OpenTelemetry Prometheus exporter's port). */
export const DEFAULT_OPS_LISTEN = "127.0.0.1:9464";

/** The whole stack stops within this (docker-compose and a user's patience both give ~15 s). */
const STOP_BUDGET_MS = 14_000;
/** Kept for the nats-server at the end: it flushes its store on SIGTERM. */
const NATS_STOP_MS = 2_000;

export async function startLocalStack(opts: LocalStackOptions): Promise<LocalStack> {
  const started: { stop(): Promise<void> }[] = [];
  // In reverse order of start: gateway, routers, pricing, sim-provider, then NATS, which the
  // others need until they are done. Each service gets what is left of the budget, so the
  // whole stop ends within STOP_BUDGET_MS even if one of them hangs.
  const stopAll = async () => {
    const deadline = Date.now() + STOP_BUDGET_MS - NATS_STOP_MS;
    const order = started.splice(0).reverse();
    for (const [i, s] of order.entries()) {
      const left = i === order.length - 1 ? NATS_STOP_MS : Math.max(0, deadline - Date.now());
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([s.stop().catch(() => {}), new Promise<void>((r) => (timer = setTimeout(r, left)))]);
      clearTimeout(timer);
    }
  };
  try {
    let natsServer: NatsServerHandle | undefined;
    const file = configPath();
    // Only the nats: section now: the rest of the config needs SIM_PROVIDER_URL, known once the sim-provider runs.
    const settings = natsSettings(process.env, loadNatsSection(file), file);
    // A configured server is used with its credentials and TLS; the local one has neither.
    let nats = settings.url ? natsTarget(settings) : undefined;
    if (!nats) {
      const port = opts.natsPort !== undefined && opts.natsPort !== 0 && (await portFree(opts.natsPort)) ? opts.natsPort : undefined;
      // Its own process group: Ctrl-C reaches only this process, which stops the services
      // before the server they use (they would otherwise wait on a vanished broker).
      natsServer = await startNatsServer({ storeDir: opts.dataDir, port, ownProcessGroup: true });
      started.push({ stop: () => natsServer!.stop() });
      nats = natsTarget(natsServer.url);
      opts.logger.info({ url: nats.display, store: natsServer.storeDir }, "local nats-server with JetStream started");
    }
    // A second `up` on the same machine finds the port taken: a free one, like NATS and the gateway.
    const simPort = opts.simPort === 0 || (await portFree(opts.simPort)) ? opts.simPort : 0;
    const { sim, url: simUrl } = await runSimProvider({ scenarioFile: process.env.SIM_SCENARIO ?? DEFAULT_SCENARIO, port: simPort, host: "127.0.0.1", logger: opts.logger });
    started.push({ stop: () => sim.close() });
    // The embedded config reaches the sim-provider through SIM_PROVIDER_URL, so a random port still lines up.
    process.env.SIM_PROVIDER_URL = simUrl;
    const config = loadConfig(file);
    // A nats-server this stack started itself is empty: under `provision: check` the services
    // would only find nothing, so the stack provisions it first, as an admin would.
    if (natsServer && config.provision === "check") {
      const nc = await connectNats(nats, "switchyard-up-provision");
      try {
        await applyResources(await jetstreamManager(nc), allResources(config).map((r) => r.resource));
      } finally {
        await nc.close();
      }
    }
    let ops: ProcessOps | undefined;
    if (opts.ops) {
      // Started before the services and stopped after them, so /readyz says 503 while they shut down.
      const listen = opts.ops.listen ?? config.ops?.listen ?? DEFAULT_OPS_LISTEN;
      // Taken (a second `up`, another exporter): any free port on the same host, printed.
      const onFreePort = (err: NodeJS.ErrnoException) => {
        if (err.code !== "EADDRINUSE") throw err;
        return startProcessOps(`${listen.slice(0, listen.lastIndexOf(":"))}:0`, opts.logger);
      };
      ops = (await startProcessOps(listen, opts.logger).catch(onFreePort))!;
      started.push({ stop: () => ops!.server.close() });
    }
    const pricing = await startPricing({ natsUrl: nats, config, logger: opts.logger.child({ service: "pricing" }), priceFile: opts.priceFile, configFile: file, ops: ops?.ops });
    started.push({ stop: () => pricing.stop() });
    const routers: RunningRouter[] = [];
    // Together: each drains within router.shutdown_grace, so the stack's stop takes one grace period, not one per worker.
    started.push({ stop: async () => void (await Promise.all(routers.map((r) => r.stop()))) });
    for (let i = 0; i < opts.workers; i++) {
      routers.push(await startRouter({ natsUrl: nats, config, logger: opts.logger.child({ worker: i + 1 }), name: `switchyard-router-${i + 1}`, configFile: file, ops: ops?.ops }));
    }
    const listen = opts.gatewayListen ?? config.gateway?.listen ?? "127.0.0.1:8080";
    const [host, port] = [listen.slice(0, listen.lastIndexOf(":")), Number(listen.slice(listen.lastIndexOf(":") + 1))];
    const free = port === 0 || (await portFree(port, host.replace(/^\[|\]$/g, "")));
    const gateway = await startGateway({ natsUrl: nats, config, logger: opts.logger.child({ service: "gateway" }), listen: free ? listen : `${host}:0`, devKey: opts.devKey, configFile: file, ops: ops?.ops });
    started.push({ stop: () => gateway.stop() });
    return { nats, natsServer, sim, simUrl, config, routers, pricing, gateway, ops, stop: stopAll };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

function portFree(port: number, host = "127.0.0.1"): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once("error", () => resolve(false));
    srv.listen(port, host, () => srv.close(() => resolve(true)));
  });
}

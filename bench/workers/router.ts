/**
 * One router worker wired as `switchyard router` wires it (services/router/main.ts: connect,
 * provision, createRouter, run), with one difference: its clock. Date.now() resolves whole
 * milliseconds, so a result's latency_ms and attempt latencies could not show a 0.3 ms
 * overhead; this clock resolves microseconds and agrees with the bench and nats-server's
 * timestamps (bench/lib/clock.ts). Prints "ready" once consuming; SIGTERM stops it as the CLI does.
 */
import { jetstreamManager } from "@nats-io/jetstream";
import { loadConfig } from "../../shared/config/load.ts";
import { createLogger } from "../../shared/log.ts";
import { connectNats, natsUrl } from "../../shared/nats/connect.ts";
import { provision } from "../../shared/nats/provision.ts";
import { createRouter } from "../../services/router/worker.ts";
import { calibratedWallClock } from "../lib/clock.ts";

const config = loadConfig();
const logger = createLogger("bench-router", "warn");
const nc = await connectNats(natsUrl(), "switchyard-bench-router");
await provision(await jetstreamManager(nc), config);
const router = createRouter({ nc, config, logger, clock: calibratedWallClock() });
const loop = router.run();
process.stdout.write("ready\n");
await new Promise((resolve) => process.once("SIGTERM", resolve));
await router.stop();
await loop;
await nc.drain();

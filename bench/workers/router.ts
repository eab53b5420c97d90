/**
 * One router worker wired as `switchyard router` wires it (services/router/main.ts
 * `startRouter`), with one difference: its clock. Date.now() resolves whole milliseconds, so
 * a result's latency_ms and attempt latencies could not show a 0.3 ms overhead; this clock
 * resolves microseconds and agrees with the bench and nats-server's timestamps
 * (bench/lib/clock.ts). Prints "ready" once consuming; SIGTERM stops it as the CLI does.
 */
import { loadConfig } from "../../shared/config/load.ts";
import { createLogger } from "../../shared/log.ts";
import { natsFromEnvironment } from "../../shared/nats/connect.ts";
import { startRouter } from "../../services/router/main.ts";
import { calibratedWallClock } from "../lib/clock.ts";

const running = await startRouter({ natsUrl: natsFromEnvironment(), config: loadConfig(), logger: createLogger("bench-router", "warn"), clock: calibratedWallClock(), name: "switchyard-bench-router" });
process.stdout.write("ready\n");
await new Promise((resolve) => process.once("SIGTERM", resolve));
await running.stop();

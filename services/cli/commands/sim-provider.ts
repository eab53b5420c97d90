import { createLogger } from "../../../shared/log.ts";
import { packagePath } from "../../../shared/package-root.ts";
import { runSimProvider } from "../../sim-provider/main.ts";
import { intFlag, parse, untilSignal } from "../args.ts";
import type { Command } from "./types.ts";
import { summaryOf } from "./catalog.ts";

export const DEFAULT_SCENARIO = packagePath("config", "sim-scenario.yaml");
export const DEFAULT_SIM_PORT = 8790;

/** The port in SIM_PROVIDER_URL, which the embedded config also reads, so both agree. */
export function simPort(env: NodeJS.ProcessEnv = process.env): number {
  return env.SIM_PROVIDER_URL ? Number(new URL(env.SIM_PROVIDER_URL).port) || DEFAULT_SIM_PORT : DEFAULT_SIM_PORT;
}

export const simProviderCommand: Command = {
  name: "sim-provider",
  summary: summaryOf("sim-provider"),
  usage: `switchyard sim-provider [--port 8790] [--host 127.0.0.1] [--scenario config/sim-scenario.yaml]

Serves every provider of the scenario at http://<host>:<port>/<provider>/v1 (OpenAI dialect).
Control API: GET /control/state, GET /control/stats, POST /control/<provider>/<model>
({"outage": "503"|"429"|"hang"|"reset"|null, "latency_ms": {"min","max"}}), POST /control/reset.
Environment: SIM_PROVIDER_URL (its port is the default port), SIM_SCENARIO.`,
  async run(argv) {
    const { values } = parse("sim-provider", argv, { port: { type: "string" }, host: { type: "string" }, scenario: { type: "string" } });
    const logger = createLogger("sim-provider");
    const { sim } = await runSimProvider({
      scenarioFile: values.scenario ?? process.env.SIM_SCENARIO ?? DEFAULT_SCENARIO,
      port: intFlag("sim-provider", "port", values.port, simPort()),
      host: values.host ?? "127.0.0.1",
      logger,
    });
    await untilSignal();
    await sim.close();
    return 0;
  },
};

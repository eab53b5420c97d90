/**
 * Wiring for `switchyard sim-provider`: load the scenario, start serving. The caller (the
 * CLI) owns the process: signals, exit codes, and calling `sim.close()`.
 */
import type { Logger } from "../../shared/log.ts";
import { loadScenario } from "./scenario.ts";
import { createSimProvider, type SimProvider } from "./server.ts";

export interface RunSimProviderOptions {
  scenarioFile: string;
  port: number;
  host: string;
  logger?: Logger;
}

/** Throws `ConfigError` (file:line:column) for a bad scenario, or the listen error (e.g. EADDRINUSE). */
export async function runSimProvider(opts: RunSimProviderOptions): Promise<{ sim: SimProvider; url: string }> {
  const scenario = loadScenario(opts.scenarioFile);
  const sim = createSimProvider(scenario);
  const url = await sim.listen(opts.port, opts.host);
  opts.logger?.info({ url, scenario: opts.scenarioFile, providers: Object.keys(scenario.providers) }, "sim-provider listening");
  return { sim, url };
}

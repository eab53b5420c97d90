/**
 * A whole Switchyard on loopback for a test: spawned nats-server, sim-provider on a free
 * port, a config pointing at it, and router workers in this process.
 */
import { jetstreamManager } from "@nats-io/jetstream";
import { parseConfig } from "../../shared/config/load.ts";
import type { Config } from "../../shared/config/schema.ts";
import { jobSubject } from "../../shared/contract/subjects.ts";
import { createLogger } from "../../shared/log.ts";
import { provision } from "../../shared/nats/provision.ts";
import { startRouter, type RunningRouter } from "../../services/router/main.ts";
import { parseScenario } from "../../services/sim-provider/scenario.ts";
import { createSimProvider, type SimProvider } from "../../services/sim-provider/server.ts";
import { startTestNats, type TestNats } from "./nats.ts";

/** Three providers, cheapest first; tasks `moderation` (cheapest tier, then premium) and `classification`. */
export const TEST_SCENARIO = `
seed: 7
providers:
  budget:
    models:
      budget-lite: { latency_ms: { min: 1, max: 5 } }
  swift:
    models:
      swift-mini: { latency_ms: { min: 1, max: 5 } }
  premium:
    models:
      premium-large: { latency_ms: { min: 1, max: 5 } }
`;

const TEST_ROUTER = { max_in_flight: "256", ack_wait: "5s", max_deliveries: "3", redelivery_backoff: "[200ms, 400ms]", shutdown_grace: "5s" };

const block = (entries: Record<string, string>) =>
  Object.entries(entries)
    .map(([k, v]) => `  ${k}: ${v}`)
    .join("\n");

/**
 * Three providers on the sim-provider at `simUrl` and the tasks `moderation` and
 * `classification`; `router` and `streams` override single settings, `providerTimeout` every
 * provider's per-attempt timeout.
 */
export function testConfigYaml(
  simUrl: string,
  router: Partial<Record<keyof typeof TEST_ROUTER, string>> = {},
  opts: { streams?: Record<string, string>; providerTimeout?: string } = {},
): string {
  const timeout = opts.providerTimeout ?? "2s";
  return `
streams:
${block({ duplicate_window: "2m", ...opts.streams })}
router:
${block({ ...TEST_ROUTER, ...router })}
providers:
  budget:
    dialect: openai
    base_url: ${simUrl}/budget/v1
    timeout_ms: ${timeout}
    models:
      lite: { upstream: budget-lite, input_per_mtok: 0.05, output_per_mtok: 0.20, context_window: 16000 }
  swift:
    dialect: openai
    base_url: ${simUrl}/swift/v1
    timeout_ms: ${timeout}
    models:
      mini: { upstream: swift-mini, input_per_mtok: 0.15, output_per_mtok: 0.60, context_window: 128000 }
  premium:
    dialect: openai
    base_url: ${simUrl}/premium/v1
    timeout_ms: ${timeout}
    models:
      large: { upstream: premium-large, input_per_mtok: 2.5, output_per_mtok: 10, context_window: 128000 }
tasks:
  moderation:
    expected_completion_tokens: 32
    tiers:
      - strategy: cheapest
        models: [budget/lite, swift/mini]
      - models: [premium/large]
  classification:
    tiers:
      - strategy: weighted
        models: [budget/lite, swift/mini]
        weights: [3, 1]
      - models: [premium/large]
`;
}

export interface TestStack {
  readonly nats: TestNats;
  readonly sim: SimProvider;
  readonly simUrl: string;
  readonly config: Config;
  readonly configYaml: string;
  readonly routers: RunningRouter[];
  addRouter(): Promise<RunningRouter>;
  publishJobs(task: string, jobs: Record<string, unknown>[]): Promise<void>;
  close(): Promise<void>;
}

export interface StackOptions {
  routers?: number;
  router?: Parameters<typeof testConfigYaml>[1];
  scenario?: string;
  ownServer?: boolean;
  /** The whole config, given the sim-provider's URL; `testConfigYaml` when absent. */
  configYaml?: (simUrl: string) => string;
}

export async function startStack(opts: StackOptions = {}): Promise<TestStack> {
  const nats = await startTestNats({ ownServer: opts.ownServer });
  const sim = createSimProvider(parseScenario(opts.scenario ?? TEST_SCENARIO, "test-scenario.yaml"));
  const simUrl = await sim.listen(0);
  const configYaml = opts.configYaml?.(simUrl) ?? testConfigYaml(simUrl, opts.router);
  const config = parseConfig(configYaml, "test-config.yaml", {});
  await provision(await jetstreamManager(nats.nc), config);
  const logger = createLogger("test-router", process.env.LOG_LEVEL ?? "silent");
  const routers: RunningRouter[] = [];
  const addRouter = async () => {
    const r = await startRouter({ natsUrl: nats.url, config, logger });
    routers.push(r);
    return r;
  };
  for (let i = 0; i < (opts.routers ?? 1); i++) await addRouter();
  return {
    nats,
    sim,
    simUrl,
    config,
    configYaml,
    routers,
    addRouter,
    async publishJobs(task, jobs) {
      const pending = [];
      for (const job of jobs) {
        pending.push(nats.js.publish(jobSubject(task), JSON.stringify(job), typeof job.id === "string" ? { msgID: job.id } : undefined));
        if (pending.length >= 256) await Promise.all(pending.splice(0));
      }
      await Promise.all(pending);
    },
    async close() {
      await Promise.all(routers.map((r) => r.stop()));
      await sim.close();
      await nats.close();
    },
  };
}

export function moderationJob(i: number, extra: Record<string, unknown> = {}) {
  const texts = ["have a nice day", "I will kill you", "buy now, free money", "what a lovely garden", "you stupid loser"];
  return {
    id: `mod-${i}`,
    request: { messages: [{ role: "system", content: "You are a content moderation classifier. Answer with JSON." }, { role: "user", content: texts[i % texts.length] }], response_format: { type: "json_object" } },
    metadata: { n: i },
    ...extra,
  };
}

/**
 * A test stack with the gateway in front: nats-server, sim-provider and router workers
 * (test/harness/stack.ts), a gateway on a free loopback port, and OpenAI SDK clients for it.
 */
import OpenAI from "openai";
import { parse, stringify } from "yaml";
import { hashKey } from "../../services/gateway/auth.ts";
import type { BatchTuning } from "../../services/gateway/batches.ts";
import { startGateway, type RunningGateway } from "../../services/gateway/main.ts";
import { createLogger } from "../../shared/log.ts";
import { startStack, testConfigYaml, type StackOptions, type TestStack } from "./stack.ts";

export const KEYS = {
  acme: "sk-acme-test-key",
  /** Tenant globex, limited to the moderation task. */
  globex: "sk-globex-test-key",
  /** One request per second, a burst of two. */
  slow: "sk-slow-test-key",
} as const;

export interface GatewayStackOptions extends Omit<StackOptions, "configYaml"> {
  /** Extra config merged over the test config (e.g. more providers and tasks). */
  extra?: (simUrl: string) => Record<string, Record<string, unknown>>;
  lanes?: { interactive_reserved?: number; batch_reserved?: number };
  /** Settings merged over the harness's `gateway:` section (e.g. `{ interactive: "request" }`). */
  gateway?: Record<string, unknown>;
  /** Batch machinery timings for every gateway instance the stack starts (the lease is 2 s unless set). */
  batchTuning?: BatchTuning;
}

/**
 * The harness's three providers for streaming tests: budget, the cheapest, streams slowly
 * (20 ms a token), so a stream is still open while its first chunks reach the client.
 */
export const STREAM_SCENARIO = `
seed: 7
providers:
  budget:
    models:
      budget-lite: { latency_ms: { min: 1, max: 1 }, stream_token_delay_ms: 20 }
  swift:
    models:
      swift-mini: { latency_ms: { min: 1, max: 1 }, stream_token_delay_ms: 1 }
  premium:
    models:
      premium-large: { latency_ms: { min: 1, max: 1 }, stream_token_delay_ms: 1 }
`;

/**
 * The streaming tests' providers on STREAM_SCENARIO: its budget model in OpenAI's dialect, and
 * its swift model spoken to in Anthropic's (`claude`) and Gemini's (`gem`).
 */
function streamProviders(simUrl: string): Record<string, unknown> {
  return {
    // A call that only the client's going away can end within a test (a request's own deadline is 20 s).
    budget: { dialect: "openai", base_url: `${simUrl}/budget/v1`, timeout_ms: "120s", models: { lite: { upstream: "budget-lite", input_per_mtok: 0.05, output_per_mtok: 0.2, context_window: 16000 } } },
    claude: { dialect: "anthropic", base_url: `${simUrl}/swift/v1`, timeout_ms: "2s", models: { mini: { upstream: "swift-mini", input_per_mtok: 0.15, output_per_mtok: 0.6, context_window: 128000 } } },
    gem: { dialect: "gemini", base_url: `${simUrl}/swift/v1beta`, timeout_ms: "2s", models: { mini: { upstream: "swift-mini", input_per_mtok: 0.15, output_per_mtok: 0.6, context_window: 128000 } } },
  };
}

/** The standard test config plus a gateway section with three keys. */
export function gatewayConfigYaml(simUrl: string, opts: GatewayStackOptions = {}): string {
  const cfg = parse(testConfigYaml(simUrl, opts.router)) as Record<string, Record<string, unknown>>;
  for (const [section, entries] of Object.entries(opts.extra?.(simUrl) ?? {})) cfg[section] = { ...cfg[section], ...entries };
  cfg.gateway = {
    listen: "127.0.0.1:0",
    request_timeout: "20s",
    max_body_bytes: "64KiB",
    keys: {
      acme: { sha256: hashKey(KEYS.acme), tenant: "acme", task: "moderation", requests_per_second: 10_000 },
      globex: { sha256: hashKey(KEYS.globex), tenant: "globex", task: "moderation", tasks: ["moderation"] },
      slow: { sha256: hashKey(KEYS.slow), tenant: "slow", task: "moderation", requests_per_second: 1, burst: 2 },
    },
  };
  if (opts.gateway) cfg.gateway = { ...cfg.gateway, ...opts.gateway };
  if (opts.lanes) cfg.router = { ...cfg.router, lanes: opts.lanes };
  return stringify(cfg);
}

export interface GatewayStack {
  readonly stack: TestStack;
  gateway: RunningGateway;
  client(key?: string, opts?: ConstructorParameters<typeof OpenAI>[0]): OpenAI;
  /** Stops this gateway and starts a new instance (a new port) on the same NATS. */
  restartGateway(): Promise<RunningGateway>;
  close(): Promise<void>;
}

/** A stack for the streaming tests: STREAM_SCENARIO, the fast path, streamProviders, and `tasks`. */
export function startStreamStack(tasks: Record<string, unknown>): Promise<GatewayStack> {
  return startGatewayStack({ scenario: STREAM_SCENARIO, gateway: { interactive: "request" }, extra: (simUrl) => ({ providers: streamProviders(simUrl), tasks }) });
}

export async function startGatewayStack(opts: GatewayStackOptions = {}): Promise<GatewayStack> {
  const stack = await startStack({ ...opts, configYaml: (simUrl) => gatewayConfigYaml(simUrl, opts) });
  const logger = createLogger("test-gateway", process.env.LOG_LEVEL ?? "silent");
  const start = () => startGateway({ natsUrl: stack.nats.url, config: stack.config, logger, batchTuning: { leaseMs: 2_000, ...opts.batchTuning } });
  const gs: GatewayStack = {
    stack,
    gateway: await start(),
    client(key = KEYS.acme, o = {}) {
      return new OpenAI({ apiKey: key, baseURL: gs.gateway.url, maxRetries: 0, ...o });
    },
    async restartGateway() {
      await gs.gateway.stop();
      gs.gateway = await start();
      return gs.gateway;
    },
    async close() {
      await gs.gateway.stop();
      await stack.close();
    },
  };
  return gs;
}

/**
 * The loopback stack every process-based scenario runs on: one nats-server (its own store),
 * one sim-provider process, and a config per run written to a temporary file; the bench
 * process publishes jobs and watches the streams.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { parseConfig } from "../../shared/config/load.ts";
import { interactiveJobSubject, jobSubject, names, ROUTER_DURABLE, STREAMS } from "../../shared/contract/subjects.ts";
import { connectNats } from "../../shared/nats/connect.ts";
import { provision } from "../../shared/nats/provision.ts";
import { startNatsServer, type NatsServerHandle } from "../../shared/nats/server-process.ts";
import { jobPayload, TASK } from "./jobs.ts";
import { spawnCli, spawnWorker, type Child } from "./procs.ts";
import { boundedWindow } from "../../shared/concurrency.ts";

/** The model every moderation job goes to first: the cheapest of its tier (swift/mini is next). */
export const PRIMARY = { provider: "budget", upstream: "budget-lite-1" } as const;

const SCENARIO = `
seed: 1
providers:
  budget:
    api_key: sim-budget-key
    models:
      budget-lite-1: {}
  swift:
    api_key: sim-swift-key
    models:
      swift-mini: {}
  premium:
    api_key: sim-premium-key
    models:
      premium-large: {}
`;

export interface RouterSettings {
  readonly maxInFlight: number;
  readonly maxAckPending: number;
  /** Connections per provider per worker. */
  readonly maxConcurrency: number;
  /** The primary's per-attempt timeout. */
  readonly primaryTimeoutMs: number;
  /** The task's `hedge.after` (ms); no hedging when absent. */
  readonly hedgeAfterMs?: number;
}

export const DEFAULT_ROUTER: RouterSettings = { maxInFlight: 1024, maxAckPending: 20_000, maxConcurrency: 256, primaryTimeoutMs: 5_000 };

/** The embedded config's shape (three providers, moderation: cheapest tier, then premium) with the run's limits. */
function configYaml(simUrl: string, r: RouterSettings, namespace?: string): string {
  const provider = (name: string, model: string, upstream: string, price: string, timeoutMs: number) => `
  ${name}:
    dialect: openai
    base_url: ${simUrl}/${name}/v1
    api_key: sim-${name}-key
    timeout_ms: ${timeoutMs}
    max_concurrency: ${r.maxConcurrency}
    models:
      ${model}: { upstream: ${upstream}, ${price}, context_window: 131072 }`;
  return `${namespace ? `namespace: ${namespace}\n` : ""}
streams:
  duplicate_window: 15m${namespace ? "\n  max_bytes: 1GiB" : ""}
router:
  max_in_flight: ${r.maxInFlight}
  ack_wait: 30s
  max_deliveries: 5
  redelivery_backoff: [1s, 5s]
  max_ack_pending: ${r.maxAckPending}
  shutdown_grace: 10s
providers:${provider("budget", "lite", PRIMARY.upstream, "input_per_mtok: 0.05, output_per_mtok: 0.20", r.primaryTimeoutMs)}${provider("swift", "mini", "swift-mini", "input_per_mtok: 0.15, output_per_mtok: 0.60", 5_000)}${provider("premium", "large", "premium-large", "input_per_mtok: 2.5, output_per_mtok: 10", 10_000)}
tasks:
  ${TASK}:
    expected_completion_tokens: 32
    max_attempts: 4
    tiers:
      - strategy: cheapest
        models: [budget/lite, swift/mini]
      - strategy: ordered
        models: [premium/large]
${r.hedgeAfterMs === undefined ? "" : `    hedge: { after: ${Math.round(r.hedgeAfterMs)}ms }\n`}`;
}

export interface Spawned {
  readonly child: Child;
  readonly ready: Promise<unknown>;
}

export interface Stack {
  readonly natsUrl: string;
  readonly nats: NatsServerHandle;
  readonly sim: Child;
  readonly simUrl: string;
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  /**
   * Empty streams and a fresh router consumer with these settings; returns the config file for
   * the workers. With a namespace, that deployment's streams (several can run side by side,
   * their streams smaller so that the server's storage holds them all).
   */
  reset(settings: RouterSettings, namespace?: string): Promise<string>;
  /**
   * A router worker process: `switchyard router` as users run it, or with `timed` the same
   * worker with a sub-millisecond clock (bench/workers/router.ts). `ready` resolves once it consumes.
   */
  spawnRouter(configFile: string, label: string, opts?: { timed?: boolean; env?: Record<string, string> }): Spawned;
  /** POST /control/<provider>/<model> on the sim-provider. */
  simControl(target: { provider: string; upstream: string }, override: Record<string, unknown>): Promise<void>;
  /** Clears every sim-provider override. */
  simReset(): Promise<void>;
  close(): Promise<void>;
}

export interface StackOptions {
  /** Write a V8 CPU profile of every router worker into this folder (node --cpu-prof). */
  readonly cpuProfDir?: string;
}

export async function startStack(opts: StackOptions = {}): Promise<Stack> {
  const dir = await mkdtemp(join(tmpdir(), "switchyard-bench-"));
  const nats = await startNatsServer();
  const scenarioFile = join(dir, "scenario.yaml");
  await writeFile(scenarioFile, SCENARIO);
  const sim = spawnCli("sim-provider", ["sim-provider", "--port", "0", "--scenario", scenarioFile], { LOG_LEVEL: "info" });
  const listening = await sim.waitFor(/sim-provider listening/);
  const simUrl = (JSON.parse(listening) as { url: string }).url;
  const nc = await connectNats(nats.url, "switchyard-bench");
  const jsm = await jetstreamManager(nc);
  let runs = 0;

  const control = async (path: string, body: unknown) => {
    const res = await fetch(`${simUrl}/control/${path}`, { method: "POST", body: JSON.stringify(body) });
    if (!res.ok) throw new Error(`sim-provider control ${path}: ${res.status} ${await res.text()}`);
  };

  return {
    natsUrl: nats.url,
    nats,
    sim,
    simUrl,
    nc,
    js: jetstream(nc),
    jsm,
    async reset(settings, namespace) {
      for (const name of Object.values(names(namespace).streams)) await jsm.streams.delete(name).catch(() => {});
      const yaml = configYaml(simUrl, settings, namespace);
      await provision(jsm, parseConfig(yaml, "bench-config.yaml", {}));
      const file = join(dir, `config-${++runs}.yaml`);
      await writeFile(file, yaml);
      return file;
    },
    spawnRouter(configFile, label, { timed = false, env: extra = {} } = {}) {
      const env = { NATS_URL: nats.url, SWITCHYARD_CONFIG: configFile, LOG_LEVEL: "info", ...extra };
      const nodeArgs = opts.cpuProfDir ? ["--cpu-prof", `--cpu-prof-dir=${opts.cpuProfDir}`] : [];
      const child = timed ? spawnWorker(label, "router.ts", env, nodeArgs) : spawnCli(label, ["router"], env, nodeArgs);
      return { child, ready: child.waitFor(timed ? /^ready$/ : /router worker started/) };
    },
    simControl: (t, override) => control(`${encodeURIComponent(t.provider)}/${encodeURIComponent(t.upstream)}`, override),
    simReset: () => control("reset", {}),
    async close() {
      await nc.close().catch(() => {});
      await sim.stop();
      await nats.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Publishes jobs `0..n-1` as fast as PubAcks allow, a bounded window of them outstanding (as `switchyard publish` does). */
export async function publishBacklog(js: JetStreamClient, runId: string, n: number, namespace?: string): Promise<void> {
  const subject = names(namespace).jobSubject(TASK);
  const pending = boundedWindow(512);
  for (let i = 0; i < n; i++) {
    const id = `${runId}-${i}`;
    await pending.add(js.publish(subject, jobPayload(id, i), { msgID: id }));
  }
  await pending.drain();
}

/**
 * Publishes at a fixed rate for `durationMs`, one job at a time rather than in bursts, so a
 * job's latency holds no wait behind its burst-mates. Returns the number published.
 */
/** `interactive`: on the interactive lane (`ijobs.<task>`, as the gateway sends), else the batch lane. */
export async function publishAtRate(js: JetStreamClient, runId: string, rate: number, durationMs: number, interactive = false): Promise<number> {
  const subject = interactive ? interactiveJobSubject(TASK) : jobSubject(TASK);
  const total = Math.round((rate * durationMs) / 1000);
  const pending: Promise<unknown>[] = [];
  const t0 = performance.now();
  let sent = 0;
  while (sent < total) {
    const due = Math.min(total, Math.floor(((performance.now() - t0) * rate) / 1000) + 1);
    for (; sent < due; sent++) {
      const id = `${runId}-${sent}`;
      pending.push(js.publish(subject, jobPayload(id, sent), { msgID: id }));
    }
    await sleep(Math.max(0, ((sent * 1000) / rate) - (performance.now() - t0)));
  }
  await Promise.all(pending);
  return total;
}

/** Messages in a stream now. */
export async function streamCount(jsm: JetStreamManager, stream: string): Promise<number> {
  return (await jsm.streams.info(stream)).state.messages;
}

/** The router consumer's jobs delivered and unacknowledged (in flight at the workers) and still undelivered. */
export async function consumerState(jsm: JetStreamManager): Promise<{ inFlight: number; undelivered: number }> {
  const info = await jsm.consumers.info(STREAMS.jobs, ROUTER_DURABLE);
  return { inFlight: info.num_ack_pending, undelivered: info.num_pending };
}

/** Polls until the stream holds `count` messages; throws after `timeoutMs`. */
export async function waitForCount(jsm: JetStreamManager, stream: string, count: number, timeoutMs: number, everyMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const n = await streamCount(jsm, stream);
    if (n >= count) return;
    if (Date.now() > deadline) throw new Error(`${stream} holds ${n} of ${count} messages after ${timeoutMs} ms`);
    await sleep(everyMs);
  }
}

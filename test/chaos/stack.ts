/**
 * One chaos scenario's world: real nats-server process(es), the sim-provider (in this
 * process, so faults switch instantly), router workers and the pricing service as real
 * `switchyard` processes, a publisher that keeps retrying through outages, and the
 * bookkeeping the invariant needs (what was published, which faults were injected when).
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { parseConfig } from "../../shared/config/load.ts";
import type { Config } from "../../shared/config/schema.ts";
import { jobSubject, STREAMS } from "../../shared/contract/subjects.ts";
import { provision } from "../../shared/nats/provision.ts";
import { parseScenario } from "../../services/sim-provider/scenario.ts";
import { createSimProvider, type SimProvider } from "../../services/sim-provider/server.ts";
import { spawnCli, type CliProcess } from "../harness/processes.ts";
import { testConfigYaml } from "../harness/stack.ts";
import { startChaosNats, type ChaosNats } from "./nats.ts";

/** Three providers answering in 5–30 ms, no scripted faults: each scenario injects its own. */
export const CHAOS_SCENARIO = `
seed: 11
providers:
  budget: { models: { budget-lite: { latency_ms: { min: 5, max: 30 } } } }
  swift: { models: { swift-mini: { latency_ms: { min: 5, max: 30 } } } }
  premium: { models: { premium-large: { latency_ms: { min: 5, max: 30 } } } }
`;

export interface ChaosConfigOptions {
  replicas?: number;
  /** Short, so a killed worker's jobs come back within the scenario. */
  ackWait?: string;
  duplicateWindow?: string;
  maxDeliveries?: number;
  backoff?: string;
  timeout?: string;
  maxInFlight?: number;
}

/** The router config of the chaos runs: the test config's providers and tasks, tuned so faults resolve in seconds. */
export function chaosConfigYaml(simUrl: string, o: ChaosConfigOptions = {}): string {
  return testConfigYaml(
    simUrl,
    {
      max_in_flight: String(o.maxInFlight ?? 128),
      ack_wait: o.ackWait ?? "2s",
      max_deliveries: String(o.maxDeliveries ?? 5),
      redelivery_backoff: o.backoff ?? "[250ms, 500ms, 1s]",
      shutdown_grace: "2s",
    },
    { streams: { replicas: String(o.replicas ?? 1), duplicate_window: o.duplicateWindow ?? "10m" }, providerTimeout: o.timeout ?? "1s" },
  );
}


export interface Fault {
  /** ms since the epoch, when it was injected. */
  readonly at: number;
  readonly what: string;
}

export interface PublishTally {
  /** Acks that said "duplicate": the same Nats-Msg-Id again, or a retry of a publish that had landed. */
  duplicates: number;
  /** Publishes the stream refused for good (e.g. over max_msg_size), with the error. */
  readonly refused: { id: string; error: string }[];
  /** Retries through outages. */
  retries: number;
}

export interface OutgoingJob {
  readonly subject: string;
  readonly data: string | Uint8Array;
  /** The Nats-Msg-Id; omitted for a plain core-NATS publish without headers (see `anonymous`). */
  readonly msgId?: string;
  /** The id its result or dead letter will carry; undefined when none can be known in advance. */
  readonly expectId: string | undefined;
  /** Published with core NATS (no PubAck, no header), as `nats pub` would. */
  readonly core?: boolean;
}

export interface ChaosStack {
  readonly nats: ChaosNats;
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  readonly sim: SimProvider;
  readonly simUrl: string;
  readonly config: Config;
  readonly env: Record<string, string>;
  readonly faults: Fault[];
  /** Ids every outcome must account for. */
  readonly expected: Set<string>;
  /** Jobs published without any id: each must still end as exactly one outcome. */
  anonymous: number;
  readonly tally: PublishTally;
  workers: (CliProcess | undefined)[];
  fault(what: string): void;
  startWorker(i: number): Promise<void>;
  killWorker(i: number): Promise<void>;
  spawn(args: string[]): CliProcess;
  /** Publishes at `rate` jobs/s (0: as fast as acks come), retrying each through outages with its Nats-Msg-Id. */
  publish(jobs: readonly OutgoingJob[], rate: number): Promise<void>;
  close(): Promise<void>;
}

export interface ChaosStackOptions {
  nodes?: 1 | 3;
  workers: number;
  config?: ChaosConfigOptions;
  scenario?: string;
}

/** Retrying one publish gives up after this long: the scenario has failed by then. */
const PUBLISH_GIVE_UP_MS = 90_000;
const PUBLISH_WINDOW = 256;

export async function startChaosStack(opts: ChaosStackOptions): Promise<ChaosStack> {
  const nats = await startChaosNats(opts.nodes ?? 1);
  try {
    return await buildStack(nats, opts);
  } catch (err) {
    // Nobody holds the stack yet: left running, its nats-server(s) would outlive the run.
    await nats.stop();
    throw err;
  }
}

async function buildStack(nats: ChaosNats, opts: ChaosStackOptions): Promise<ChaosStack> {
  const sim = createSimProvider(parseScenario(opts.scenario ?? CHAOS_SCENARIO, "chaos-scenario.yaml"));
  const simUrl = await sim.listen(0);
  const yaml = chaosConfigYaml(simUrl, { replicas: opts.nodes ?? 1, ...opts.config });
  const config = parseConfig(yaml, "chaos.yaml", {});
  const dir = mkdtempSync(join(tmpdir(), "sy-chaos-"));
  const configFile = join(dir, "switchyard.yaml");
  writeFileSync(configFile, yaml);
  const nc = await connect({ servers: nats.url.split(","), maxReconnectAttempts: -1, reconnectTimeWait: 100, noAsyncTraces: true });
  // Short API timeouts: polling a cluster through a leader election must notice the new leader promptly.
  const jsm = await jetstreamManager(nc, { timeout: 2_000 });
  await provision(jsm, config);
  const js = jetstream(nc);
  const env = { NATS_URL: nats.url, SWITCHYARD_CONFIG: configFile, LOG_LEVEL: "info" };
  const tally: PublishTally = { duplicates: 0, refused: [], retries: 0 };
  const processes = new Set<CliProcess>();
  const allProcesses: CliProcess[] = [];

  const stack: ChaosStack = {
    nats,
    nc,
    js,
    jsm,
    sim,
    simUrl,
    config,
    env,
    faults: [],
    expected: new Set(),
    anonymous: 0,
    tally,
    workers: [],
    fault(what) {
      stack.faults.push({ at: Date.now(), what });
    },
    spawn(args) {
      const p = spawnCli(args, env);
      processes.add(p);
      allProcesses.push(p);
      void p.exited.then(() => processes.delete(p));
      return p;
    },
    async startWorker(i) {
      const p = stack.spawn(["router"]);
      stack.workers[i] = p;
      const deadline = Date.now() + 30_000;
      while (!p.output().includes("router worker started")) {
        if (p.child.exitCode !== null || Date.now() > deadline) throw new Error(`router worker ${i} did not start:\n${p.output().slice(-2000)}`);
        await sleep(50);
      }
    },
    async killWorker(i) {
      const p = stack.workers[i];
      if (!p || p.child.exitCode !== null) return;
      p.child.kill("SIGKILL");
      await p.exited;
    },
    async publish(jobs, rate) {
      const started = Date.now();
      const pending = new Set<Promise<void>>();
      let sent = 0;
      for (const job of jobs) {
        if (job.expectId !== undefined) stack.expected.add(job.expectId);
        if (job.core) {
          nc.publish(job.subject, job.data);
          stack.anonymous++;
        } else {
          const p = publishOne(js, job, tally);
          pending.add(p);
          void p.finally(() => pending.delete(p));
          if (pending.size >= PUBLISH_WINDOW) await Promise.race(pending);
        }
        sent++;
        if (rate > 0) {
          const ahead = (sent / rate) * 1000 - (Date.now() - started);
          if (ahead > 1) await sleep(ahead);
        }
      }
      await Promise.all(pending);
      await nc.flush();
    },
    async close() {
      if (process.env.CHAOS_LOGS) writeFileSync(join(process.env.CHAOS_LOGS, `${Date.now()}.log`), [...allProcesses].map((p) => p.output()).join("\n=====\n"));
      for (const p of processes) p.child.kill("SIGKILL");
      await Promise.all([...processes].map((p) => p.exited));
      await nc.close().catch(() => {});
      await sim.close();
      await nats.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await Promise.all(Array.from({ length: opts.workers }, (_, i) => stack.startWorker(i)));
  } catch (err) {
    await stack.close();
    throw err;
  }
  return stack;
}

async function publishOne(js: JetStreamClient, job: OutgoingJob, tally: PublishTally): Promise<void> {
  const giveUp = Date.now() + PUBLISH_GIVE_UP_MS;
  for (;;) {
    try {
      const ack = await js.publish(job.subject, job.data, { ...(job.msgId === undefined ? {} : { msgID: job.msgId }), timeout: 3_000 });
      if (ack.duplicate) tally.duplicates++;
      return;
    } catch (err) {
      const message = (err as Error).message;
      // The stream refusing the message itself is final; anything else is the outage under test.
      if (/maximum|exceeds/i.test(message)) {
        tally.refused.push({ id: job.msgId ?? "", error: message });
        return;
      }
      if (Date.now() > giveUp) throw new Error(`publishing ${job.msgId} kept failing for ${PUBLISH_GIVE_UP_MS / 1000} s: ${message}`);
      tally.retries++;
      await sleep(200);
    }
  }
}

/**
 * The router's backlog over every durable consumer on JOBS (one per priority lane): jobs not
 * yet delivered plus jobs delivered and not acknowledged. Undefined while JetStream cannot answer.
 */
export async function backlog(jsm: JetStreamManager): Promise<{ pending: number; ackPending: number } | undefined> {
  try {
    let pending = 0;
    let ackPending = 0;
    for await (const c of jsm.consumers.list(STREAMS.jobs)) {
      if (!c.config.durable_name) continue;
      pending += c.num_pending;
      ackPending += c.num_ack_pending;
    }
    return { pending, ackPending };
  } catch {
    return undefined;
  }
}

/** Waits until every job is acknowledged (twice in a row, 250 ms apart); returns what is left at the timeout. */
export async function drained(jsm: JetStreamManager, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let zeroes = 0;
  let left = -1;
  while (Date.now() < deadline) {
    const b = await backlog(jsm);
    left = b ? b.pending + b.ackPending : -1;
    zeroes = left === 0 ? zeroes + 1 : 0;
    if (zeroes >= 2) return 0;
    await sleep(250);
  }
  return left;
}

/** A well-formed moderation job with a known id. */
export function moderationJob(id: string, extra: Record<string, unknown> = {}): OutgoingJob {
  const texts = ["have a nice day", "I will kill you", "buy now, free money", "what a lovely garden", "you stupid loser"];
  const n = Number.parseInt(id.replace(/\D+/g, "").slice(-6) || "0", 10);
  const job = {
    id,
    request: { messages: [{ role: "system", content: "You are a content moderation classifier. Answer with JSON." }, { role: "user", content: texts[n % texts.length] }], response_format: { type: "json_object" } },
    metadata: { chaos: true },
    ...extra,
  };
  return { subject: jobSubject("moderation"), data: JSON.stringify(job), msgId: id, expectId: id };
}

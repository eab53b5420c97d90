/**
 * Test NATS: a fresh nats-server per test file (random ports, temporary store), as nats.js's
 * own test kit does. With NATS_URL set, tests that need no kill/restart use that server
 * instead and reset Switchyard's streams on it first — point it at a throwaway server.
 */
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { STREAMS } from "../../shared/contract/subjects.ts";
import { startNatsServer, type NatsServerHandle } from "../../shared/nats/server-process.ts";

export interface TestNats {
  readonly url: string;
  /** Present when the harness spawned the server (so a test can kill and restart it). */
  readonly server: NatsServerHandle | undefined;
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  close(): Promise<void>;
}

export async function startTestNats(opts: { ownServer?: boolean } = {}): Promise<TestNats> {
  const external = process.env.NATS_URL;
  const server = external && !opts.ownServer ? undefined : await startNatsServer();
  const url = server?.url ?? (external as string);
  const nc = await connect({ servers: url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  const jsm = await jetstreamManager(nc);
  if (!server) {
    for (const name of Object.values(STREAMS)) await jsm.streams.delete(name).catch(() => {});
  }
  return {
    url,
    server,
    nc,
    js: jetstream(nc),
    jsm,
    async close() {
      await nc.close().catch(() => {});
      await server?.stop();
    },
  };
}

/**
 * Messages of a stream (optionally one subject) from its start, read with an ordered
 * consumer until `count` have arrived or `timeoutMs` passed; returns what arrived, parsed.
 */
export async function readStream<T = Record<string, unknown>>(
  js: JetStreamClient,
  stream: string,
  opts: { count: number; timeoutMs?: number; subject?: string },
): Promise<T[]> {
  const consumer = await js.consumers.get(stream, opts.subject ? { filter_subjects: opts.subject } : {});
  const out: T[] = [];
  if (opts.count <= 0) return out;
  const messages = await consumer.consume();
  const timer = setTimeout(() => void messages.stop(), opts.timeoutMs ?? 20_000);
  for await (const m of messages) {
    out.push(m.json<T>());
    if (out.length >= opts.count) break;
  }
  clearTimeout(timer);
  await messages.close().catch(() => {});
  return out;
}

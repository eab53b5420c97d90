/**
 * Test NATS: a fresh nats-server per test file (random ports, temporary store), as nats.js's
 * own test kit does. With NATS_URL set, tests that need no kill/restart use that server
 * instead and reset Switchyard's streams on it first — point it at a throwaway server.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { STREAMS } from "../../shared/contract/subjects.ts";
import { scan } from "../../shared/nats/read.ts";
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

/**
 * Every message of a stream (optionally one subject), parsed: from the first up to the last
 * sequence the stream held when called. Unlike `readStream`, nothing is cut off by a count or
 * a time limit, so an absence (no second result for an id) is checked against all of it.
 */
export async function readAll<T = Record<string, unknown>>(js: JetStreamClient, stream: string, opts: { subject?: string } = {}): Promise<T[]> {
  const out: T[] = [];
  for await (const m of scanAll(js, stream, opts.subject, false)) out.push(JSON.parse(Buffer.from(m.data).toString("utf8")) as T);
  return out;
}

/** The `Nats-Msg-Id` of every message of a stream, as `readAll` reads it (payloads need not be JSON). */
export async function readMsgIds(js: JetStreamClient, stream: string, opts: { subject?: string } = {}): Promise<(string | undefined)[]> {
  const out: (string | undefined)[] = [];
  for await (const m of scanAll(js, stream, opts.subject, true)) out.push(m.msgId);
  return out;
}

async function* scanAll(js: JetStreamClient, stream: string, subject: string | undefined, headersOnly: boolean) {
  const jsm = await js.jetstreamManager(false);
  const info = await jsm.streams.info(stream, subject ? { subjects_filter: subject } : {});
  if (info.state.messages === 0 || (subject && Object.keys(info.state.subjects ?? {}).length === 0)) return;
  yield* scan(js, stream, { subject, lastSeq: info.state.last_seq, headersOnly });
}

/**
 * Resolves once JOBS holds nothing unfinished: no durable consumer on it has a job left to
 * deliver, or delivered and not acknowledged (a job nak'ed for a delayed redelivery counts as
 * unacknowledged). A router acks a job only after storing its outcome, so from then on no
 * outcome of the jobs published so far is on its way: the end of the window in which a
 * duplicate could still appear. (A worker holding a job past ack_wait, as a paused process
 * does, can still publish late: a test that pauses workers must end them itself.) Rejects,
 * naming the backlog, after `timeoutMs`.
 */
export async function jobsSettled(jsm: JetStreamManager, timeoutMs = 20_000, stream: string = STREAMS.jobs): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left: string[] = [];
    for await (const c of jsm.consumers.list(stream)) {
      if (!c.config.durable_name) continue;
      if (c.num_pending + c.num_ack_pending > 0) left.push(`${c.config.durable_name}: ${c.num_pending} undelivered, ${c.num_ack_pending} unacknowledged`);
    }
    if (left.length === 0) return;
    if (Date.now() > deadline) throw new Error(`${stream} not settled within ${timeoutMs} ms (${left.join("; ")})`);
    await sleep(25);
  }
}

/**
 * NATS for chaos scenarios: one nats-server with file storage, or a 3-node JetStream cluster
 * on loopback, each node a real process that can be SIGKILLed and restarted on the same
 * ports and store.
 */
import { createServer } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import type { JetStreamManager } from "@nats-io/jetstream";
import { startNatsServer, type NatsServerHandle } from "../../shared/nats/server-process.ts";

export interface ChaosNode {
  readonly name: string;
  readonly server: NatsServerHandle;
  alive: boolean;
}

export interface ChaosNats {
  readonly nodes: readonly ChaosNode[];
  /** Every node's client URL, comma-separated (what NATS_URL takes). */
  readonly url: string;
  /** Resolves once the live nodes agree on a JetStream meta leader. */
  ready(timeoutMs?: number): Promise<void>;
  kill(node: ChaosNode): Promise<void>;
  restart(node: ChaosNode): Promise<void>;
  stop(): Promise<void>;
}

export async function startChaosNats(size: 1 | 3): Promise<ChaosNats> {
  const nodes: ChaosNode[] = [];
  if (size === 1) {
    nodes.push({ name: "n1", server: await startNatsServer(), alive: true });
  } else {
    const clusterPorts = await freePorts(size);
    const routes = clusterPorts.map((p) => `nats-route://127.0.0.1:${p}`);
    // Nodes start together: each waits for its routes, and JetStream needs a quorum to elect a meta leader.
    const servers = await Promise.all(
      clusterPorts.map((port, i) => startNatsServer({ cluster: { name: "chaos", serverName: `n${i + 1}`, port, routes } })),
    );
    servers.forEach((server, i) => nodes.push({ name: `n${i + 1}`, server, alive: true }));
  }
  const chaos: ChaosNats = {
    nodes,
    get url() {
      return nodes.map((n) => n.server.url).join(",");
    },
    async ready(timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const leaders = await Promise.all(nodes.filter((n) => n.alive).map((n) => metaLeader(n.server.httpPort)));
        if (leaders.every((l) => l !== undefined && l === leaders[0])) return;
        if (Date.now() > deadline) throw new Error(`no JetStream meta leader agreed within ${timeoutMs} ms (saw ${JSON.stringify(leaders)})`);
        await sleep(100);
      }
    },
    async kill(node) {
      node.alive = false;
      await node.server.kill();
    },
    async restart(node) {
      await node.server.restart();
      node.alive = true;
    },
    async stop() {
      await Promise.all(nodes.map((n) => n.server.stop({ clean: true })));
    },
  };
  await chaos.ready();
  return chaos;
}

/** The server name the node's `/jsz` reports as JetStream meta leader, or undefined. */
async function metaLeader(httpPort: number): Promise<string | undefined> {
  try {
    const res = await fetch(`http://127.0.0.1:${httpPort}/jsz`, { signal: AbortSignal.timeout(1_000) });
    const body = (await res.json()) as { meta_cluster?: { leader?: string }; config?: unknown };
    // A single server has no meta cluster: JetStream being on is all there is to agree on.
    return body.meta_cluster ? body.meta_cluster.leader || undefined : body.config ? "standalone" : undefined;
  } catch {
    return undefined;
  }
}

/** The node leading a stream's Raft group (the node to kill), once one is elected. */
export async function streamLeader(jsm: JetStreamManager, chaos: ChaosNats, stream: string, timeoutMs = 30_000, not?: string): Promise<ChaosNode> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const info = await jsm.streams.info(stream).catch(() => undefined);
    const leader = info?.cluster?.leader;
    const node = chaos.nodes.find((n) => n.name === leader && n.alive);
    if (node && node.name !== not) return node;
    if (Date.now() > deadline) throw new Error(`stream ${stream} elected no new leader within ${timeoutMs} ms`);
    await sleep(100);
  }
}

/** Waits until every follower of the stream is current, so losing one more node keeps a quorum. */
export async function replicasCurrent(jsm: JetStreamManager, chaos: ChaosNats, stream: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const info = await jsm.streams.info(stream).catch(() => undefined);
    const replicas = info?.cluster?.replicas ?? [];
    if (info?.cluster?.leader && replicas.length === chaos.nodes.length - 1 && replicas.every((r) => r.current && !r.offline)) return;
    if (Date.now() > deadline) throw new Error(`replicas of ${stream} not current within ${timeoutMs} ms`);
    await sleep(200);
  }
}

function freePorts(n: number): Promise<number[]> {
  return Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<number>((resolve, reject) => {
          const srv = createServer();
          srv.once("error", reject);
          srv.listen(0, "127.0.0.1", () => {
            const port = (srv.address() as { port: number }).port;
            srv.close(() => resolve(port));
          });
        }),
    ),
  );
}

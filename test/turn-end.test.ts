/**
 * shared/nats/turn-end.ts: what the callbacks of one event-loop turn publish leaves in one
 * socket write. Counted at the socket (Node's own write, spied on and passed through) against a
 * real nats-server, while twenty publishes are made from twenty separate callbacks of one turn
 * (as a router answers twenty provider calls that came back together).
 */
import { Socket } from "node:net";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { startNatsServer, type NatsServerHandle } from "../shared/nats/server-process.ts";
import { atNextTurnEnd, atTurnEnd, deferredRan } from "../shared/nats/turn-end.ts";

let nats: NatsServerHandle;
beforeAll(async () => {
  nats = await startNatsServer();
});
afterAll(async () => {
  await nats.stop();
});

/** Socket writes carrying a publish to `subject` while twenty publishes are made, each from its own callback of one turn (immediates queued together run in one check phase, a microtask checkpoint after each). */
async function writesFor(nc: NatsConnection, subject: string, publish: (i: number) => void): Promise<number> {
  await nc.flush();
  const write = vi.spyOn(Socket.prototype, "write");
  try {
    await new Promise<void>((done) => {
      for (let i = 0; i < 20; i++) setImmediate(() => publish(i));
      setImmediate(done);
    });
    await deferredRan();
    await nc.flush();
    return write.mock.calls.filter(([chunk]) => Buffer.from(chunk as Uint8Array).includes(`PUB ${subject} `)).length;
  } finally {
    write.mockRestore();
  }
}

describe("publishes deferred to the turn's end", () => {
  it("leave in one socket write where twenty callbacks publishing at once take twenty, and arrive in order", async () => {
    const nc = await connect({ servers: nats.url });
    const got: string[] = [];
    nc.subscribe("turn.test", { callback: (_e, m) => void got.push(m.string()) });
    await nc.flush();

    expect(await writesFor(nc, "turn.test", (i) => nc.publish("turn.test", `plain ${i}`))).toBe(20);
    expect(await writesFor(nc, "turn.test", (i) => atTurnEnd(() => nc.publish("turn.test", `deferred ${i}`)))).toBe(1);

    await nc.flush();
    expect(got).toEqual([...Array.from({ length: 20 }, (_, i) => `plain ${i}`), ...Array.from({ length: 20 }, (_, i) => `deferred ${i}`)]);
    await nc.close();
  });

  it("runs what waits for the next turn after everything of this turn, in the order it was deferred", async () => {
    const order: string[] = [];
    atNextTurnEnd(() => order.push("record"));
    atTurnEnd(() => order.push("reply 1"));
    atTurnEnd(() => order.push("reply 2"));
    await deferredRan();
    expect(order).toEqual(["reply 1", "reply 2", "record"]);
  });
});

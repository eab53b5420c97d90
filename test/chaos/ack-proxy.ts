/**
 * A loopback TCP proxy in front of nats-server that can drop the acknowledgements clients
 * send to JetStream (`PUB $JS.ACK.…`) while passing everything else. It stands in for the
 * ways an ack is lost for real — a worker killed between publishing a result and its ack
 * reaching the server, a server killed before it stored the ack — which a SIGKILL hits only
 * now and then; here the loss is deterministic.
 */
import { createConnection, createServer, type Socket } from "node:net";

export interface AckProxy {
  /** nats://127.0.0.1:<port> */
  readonly url: string;
  /** While on, every `$JS.ACK.` publish (ack, nak, working, term) from every client is dropped. */
  dropAcks(on: boolean): void;
  /** Acknowledgements dropped so far. */
  dropped(): number;
  close(): Promise<void>;
}

const ACK_PREFIX = "$JS.ACK.";

export async function startAckProxy(upstreamPort: number): Promise<AckProxy> {
  let dropping = false;
  let dropped = 0;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = createConnection({ host: "127.0.0.1", port: upstreamPort });
    sockets.add(client).add(upstream);
    upstream.pipe(client);
    let pending = Buffer.alloc(0);
    client.on("data", (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      // Forward whole protocol frames; hold back a frame until all of it has arrived.
      for (;;) {
        const eol = pending.indexOf("\r\n");
        if (eol === -1) return;
        const line = pending.subarray(0, eol).toString("latin1");
        const [op, subject] = line.split(" ", 2);
        let frame = eol + 2;
        if (op === "PUB" || op === "HPUB" || op === "pub" || op === "hpub") {
          const size = Number(line.slice(line.lastIndexOf(" ") + 1));
          frame += size + 2;
          if (pending.length < frame) return;
        }
        const out = pending.subarray(0, frame);
        pending = pending.subarray(frame);
        if (dropping && subject?.startsWith(ACK_PREFIX) && (op === "PUB" || op === "HPUB" || op === "pub" || op === "hpub")) dropped++;
        else upstream.write(out);
      }
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on("close", end).on("error", end);
    upstream.on("close", end).on("error", end);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  return {
    url: `nats://127.0.0.1:${port}`,
    dropAcks(on) {
      dropping = on;
    },
    dropped: () => dropped,
    close() {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * A second `switchyard up` on the same machine: every port the first one holds is taken, and
 * each service moves to a free one (NATS and the gateway did already; the sim-provider too).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type AddressInfo, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestNats, type TestNats } from "./harness/nats.ts";
import { printed, spawnCli } from "./harness/processes.ts";

let nats: TestNats;
let data: string;
let held: Server;

beforeAll(async () => {
  nats = await startTestNats({ ownServer: true });
  data = await mkdtemp(join(tmpdir(), "switchyard-up-ports-"));
  held = createServer();
  await new Promise<void>((resolve) => held.listen(0, "127.0.0.1", resolve));
});

afterAll(async () => {
  await new Promise((resolve) => held?.close(resolve));
  await nats?.close();
  await rm(data, { recursive: true, force: true });
});

describe("switchyard up when the sim-provider's port is taken", () => {
  it("serves the sim-provider on a free port instead of crashing, and the stack works on it", async () => {
    const taken = (held.address() as AddressInfo).port;
    const up = spawnCli(["up", "--sim-port", String(taken), "--gateway-listen", "127.0.0.1:0", "--data", data], { NATS_URL: nats.url });
    try {
      const simUrl = (await printed(up, /sim-provider: (http:\/\/\S+)/))[1]!;
      expect(Number(new URL(simUrl).port)).not.toBe(taken);
      const state = await request(`${simUrl}/control/state`);
      expect(state.statusCode).toBe(200);
      await state.body.dump();
    } finally {
      up.child.kill("SIGTERM");
    }
    expect(await up.exited).toBe(0);
  });
});


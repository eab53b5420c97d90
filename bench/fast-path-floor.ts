/**
 * The floor under the interactive fast path: the same hops with none of Switchyard's logic. A
 * bare gateway (node:http, the body passed on as it came) sends each request as a core NATS
 * request; a bare router (a queue-group subscription) posts it to the sim-provider with undici
 * and replies with the provider's answer as it came. Each runs as its own process, as the real
 * ones do, on a nats-server and sim-provider of their own, driven by the same client as
 * bench/gateway-measure.ts (added latency at c=1 against the sim-provider directly in the
 * same run; throughput at c=64; CPU ms per request of each process). What the fast path adds
 * over these figures is Switchyard's own work; what these add over the direct call is the price
 * of the hops themselves.
 *
 *   npx tsx bench/fast-path-floor.ts [--seconds 5] [--rounds 3] [--concurrency 64]
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer as createHttpServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { connect } from "@nats-io/transport-node";
import { Pool } from "undici";
import { startNatsServer } from "../shared/nats/server-process.ts";
import { DIRECT_BODY, drive, freePort, ready, SIM_SCENARIO } from "./lib/drive.ts";
import { cpuMs } from "./lib/procs.ts";
import { spread } from "./lib/stats.ts";

const SUBJECT = "floor.chat";

const [role, natsUrl, arg] = process.argv.slice(2);
if (role === "gateway") {
  const nc = await connect({ servers: natsUrl });
  createHttpServer((req, res) => {
    const parts: Buffer[] = [];
    req.on("data", (b: Buffer) => parts.push(b));
    req.on("end", () => {
      nc.request(SUBJECT, Buffer.concat(parts), { timeout: 30_000 }).then(
        (m) => {
          res.writeHead(200, { "content-type": "application/json", "content-length": m.data.length });
          res.end(m.data);
        },
        () => {
          res.writeHead(503);
          res.end();
        },
      );
    });
  }).listen(Number(arg), "127.0.0.1");
} else if (role === "router") {
  const nc = await connect({ servers: natsUrl });
  const sim = new Pool(arg!, { connections: 256 });
  nc.subscribe(SUBJECT, {
    queue: "routers",
    callback: (_err, msg) => {
      sim.request({ method: "POST", path: "/budget/v1/chat/completions", headers: { "content-type": "application/json" }, body: msg.data }).then(
        async (r) => msg.respond(new Uint8Array(await r.body.arrayBuffer())),
        () => msg.respond(new Uint8Array()),
      );
    },
  });
} else {
  await main();
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { seconds: { type: "string", default: "5" }, rounds: { type: "string", default: "3" }, concurrency: { type: "string", default: "64" } } });
  const ms = Number(values.seconds) * 1000;
  const concurrency = Number(values.concurrency);
  const children: ChildProcess[] = [];
  const self = fileURLToPath(import.meta.url);
  const child = (args: string[]) => {
    const c = spawn(process.execPath, ["--import", "tsx", ...args], { stdio: ["ignore", "ignore", "inherit"], env: { ...process.env, LOG_LEVEL: "warn" } });
    children.push(c);
    return c;
  };
  const tmp = await mkdtemp(join(tmpdir(), "switchyard-floor-"));
  const nats = await startNatsServer();
  try {
    const [simPort, gatewayPort] = [await freePort(), await freePort()];
    const simUrl = `http://127.0.0.1:${simPort}`;
    await writeFile(join(tmp, "scenario.yaml"), SIM_SCENARIO);
    child([fileURLToPath(new URL("../bin/switchyard.js", import.meta.url)), "sim-provider", "--port", String(simPort), "--scenario", join(tmp, "scenario.yaml")]);
    const router = child([self, "router", nats.url, simUrl]);
    const gateway = child([self, "gateway", nats.url, String(gatewayPort)]);
    const origin = `http://127.0.0.1:${gatewayPort}`;
    await ready(`${origin}/`, { method: "POST", body: DIRECT_BODY });
    await drive(origin, "/", {}, DIRECT_BODY, concurrency, 3_000);
    const rows = [];
    for (let r = 1; r <= Number(values.rounds); r++) {
      const pids = [gateway.pid!, router.pid!, nats.pid()!];
      const before = pids.map(cpuMs);
      const many = await drive(origin, "/", {}, DIRECT_BODY, concurrency, ms);
      const [g, ro, n] = pids.map((pid, i) => (cpuMs(pid) - before[i]!) / (many.rps * (ms / 1000)));
      const direct = await drive(simUrl, "/budget/v1/chat/completions", {}, DIRECT_BODY, 1, ms / 2);
      const one = await drive(origin, "/", {}, DIRECT_BODY, 1, ms / 2);
      const row = { rps: many.rps, g: g!, ro: ro!, n: n!, p50: one.p50 - direct.p50, p99: one.p99 - direct.p99 };
      rows.push(row);
      process.stdout.write(`round ${r} floor c=${concurrency} ${row.rps.toFixed(0)} req/s  CPU ms/req gateway ${row.g.toFixed(3)} router ${row.ro.toFixed(3)} nats ${row.n.toFixed(3)}  c=1 added p50 ${row.p50.toFixed(2)} p99 ${row.p99.toFixed(2)} ms\n`);
    }
    const fmt = (xs: number[], d: number) => {
      const s = spread(xs);
      return `${s.median.toFixed(d)} (${s.min.toFixed(d)}–${s.max.toFixed(d)})`;
    };
    process.stdout.write(
      `floor: c=${concurrency} ${fmt(rows.map((x) => x.rps), 0)} req/s; CPU ms/req gateway ${fmt(rows.map((x) => x.g), 3)}, router ${fmt(rows.map((x) => x.ro), 3)}, nats-server ${fmt(rows.map((x) => x.n), 3)}; c=1 added p50 ${fmt(rows.map((x) => x.p50), 2)}, p99 ${fmt(rows.map((x) => x.p99), 2)} ms\n`,
    );
  } finally {
    for (const c of children) c.kill("SIGTERM");
    await Promise.all(children.map((c) => (c.exitCode === null && c.signalCode === null ? new Promise((r) => c.once("exit", r)) : undefined)));
    await nats.stop();
    await rm(tmp, { recursive: true, force: true });
  }
}

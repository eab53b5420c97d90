/**
 * Measures the gateway against calling the provider directly, on loopback:
 *
 *   npx tsx services/gateway/measure.ts [--seconds 10] [--concurrency 64]
 *
 * Starts a nats-server, a sim-provider answering at once (no simulated latency), one router
 * worker and one gateway, each its own process as in production; then drives the same chat
 * request (a) straight at the sim-provider and (b) through the gateway with undici, at the
 * given concurrency (throughput) and at concurrency 1 (added latency). CPU per request comes
 * from /proc for the gateway and router processes. Everything is stopped at the end.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { Pool } from "undici";
import { startNatsServer } from "../../shared/nats/server-process.ts";
import { hashKey } from "./auth.ts";
import { percentile } from "../../shared/stats.ts";

const BIN = fileURLToPath(new URL("../../bin/switchyard.js", import.meta.url));
const KEY = "sk-measure";
const MESSAGES = [
  { role: "system", content: "You are a content moderation classifier. Answer with JSON." },
  { role: "user", content: "have a nice day" },
];
/** The same request; the gateway's caller names no model (the task's policy picks), the direct one names the provider's. */
const GATEWAY_BODY = JSON.stringify({ model: "auto", messages: MESSAGES });
const DIRECT_BODY = JSON.stringify({ model: "budget-lite-1", messages: MESSAGES });

const { values } = parseArgs({ options: { seconds: { type: "string" }, concurrency: { type: "string" } } });
const seconds = Number(values.seconds ?? 10);
const concurrency = Number(values.concurrency ?? 64);

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });

const cpuMs = (pid: number) => {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
};

const children: ChildProcess[] = [];
function cli(args: string[], env: Record<string, string>): ChildProcess {
  const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, LOG_LEVEL: "warn", ...env }, stdio: ["ignore", "ignore", "inherit"] });
  children.push(child);
  return child;
}

async function ready(url: string, headers: Record<string, string> = {}): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const ok = await fetch(url, { headers }).then((r) => r.ok, () => false);
    if (ok) return;
    await sleep(100);
  }
  throw new Error(`${url} did not come up`);
}

interface Run {
  readonly rps: number;
  readonly p50: number;
  readonly p99: number;
  readonly errors: number;
}

/** `c` callers, each sending the next request as soon as the last one answered, for `ms`. */
async function drive(origin: string, path: string, headers: Record<string, string>, body: string, c: number, ms: number): Promise<Run> {
  const pool = new Pool(origin, { connections: c, pipelining: 1 });
  const latencies: number[] = [];
  let errors = 0;
  const end = performance.now() + ms;
  await Promise.all(
    Array.from({ length: c }, async () => {
      while (performance.now() < end) {
        const t0 = performance.now();
        const res = await pool.request({ method: "POST", path, headers: { "content-type": "application/json", ...headers }, body });
        await res.body.text();
        if (res.statusCode === 200) latencies.push(performance.now() - t0);
        else errors++;
      }
    }),
  );
  await pool.close();
  latencies.sort((a, b) => a - b);
  const at = (p: number) => percentile(latencies, p);
  return { rps: latencies.length / (ms / 1000), p50: at(50), p99: at(99), errors };
}

const dir = await mkdtemp(join(tmpdir(), "switchyard-measure-"));
const nats = await startNatsServer();
try {
  const [simPort, gatewayPort] = [await freePort(), await freePort()];
  const simUrl = `http://127.0.0.1:${simPort}`;
  await writeFile(join(dir, "scenario.yaml"), "seed: 1\nproviders:\n  budget:\n    models:\n      budget-lite-1: {}\n");
  await writeFile(
    join(dir, "config.yaml"),
    `router: { max_in_flight: 1024, ack_wait: 30s }
providers:
  budget:
    dialect: openai
    base_url: ${simUrl}/budget/v1
    timeout_ms: 5s
    models:
      lite: { upstream: budget-lite-1, input_per_mtok: 0.05, output_per_mtok: 0.2, context_window: 16000 }
tasks:
  moderation:
    tiers: [{ models: [budget/lite] }]
gateway:
  listen: 127.0.0.1:${gatewayPort}
  keys:
    measure: { sha256: ${hashKey(KEY)}, tenant: measure, task: moderation, requests_per_second: 1000000 }
`,
  );
  const env = { NATS_URL: nats.url, SWITCHYARD_CONFIG: join(dir, "config.yaml") };
  cli(["sim-provider", "--port", String(simPort), "--scenario", join(dir, "scenario.yaml")], env);
  const router = cli(["router"], env);
  const gateway = cli(["gateway"], env);
  const auth = { authorization: `Bearer ${KEY}` };
  await ready(`${simUrl}/control/state`);
  await ready(`http://127.0.0.1:${gatewayPort}/v1/models`, auth);

  const direct = (c: number, ms: number) => drive(simUrl, "/budget/v1/chat/completions", {}, DIRECT_BODY, c, ms);
  const viaGateway = (c: number, ms: number) => drive(`http://127.0.0.1:${gatewayPort}`, "/v1/chat/completions", auth, GATEWAY_BODY, c, ms);
  process.stderr.write("warming up…\n");
  await direct(concurrency, 2_000);
  await viaGateway(concurrency, 3_000);

  process.stderr.write(`throughput: ${seconds} s each at concurrency ${concurrency}…\n`);
  const d64 = await direct(concurrency, seconds * 1000);
  const cpu0 = { gateway: cpuMs(gateway.pid!), router: cpuMs(router.pid!) };
  const g64 = await viaGateway(concurrency, seconds * 1000);
  const served = g64.rps * seconds;
  const cpu = { gateway: (cpuMs(gateway.pid!) - cpu0.gateway) / served, router: (cpuMs(router.pid!) - cpu0.router) / served };
  process.stderr.write(`added latency: ${seconds} s each at concurrency 1…\n`);
  const d1 = await direct(1, seconds * 1000);
  const g1 = await viaGateway(1, seconds * 1000);

  const row = (name: string, r: Run) => `${name.padEnd(34)} ${r.rps.toFixed(0).padStart(7)}  ${r.p50.toFixed(2).padStart(7)}  ${r.p99.toFixed(2).padStart(7)}  ${String(r.errors).padStart(6)}`;
  process.stdout.write(
    [
      `${"".padEnd(34)} ${"req/s".padStart(7)}  ${"p50 ms".padStart(7)}  ${"p99 ms".padStart(7)}  ${"errors".padStart(6)}`,
      row(`direct to sim-provider, c=${concurrency}`, d64),
      row(`through the gateway, c=${concurrency}`, g64),
      row("direct to sim-provider, c=1", d1),
      row("through the gateway, c=1", g1),
      "",
      `added latency at c=1: p50 ${(g1.p50 - d1.p50).toFixed(2)} ms, p99 ${(g1.p99 - d1.p99).toFixed(2)} ms`,
      `CPU per request through the gateway: gateway ${cpu.gateway.toFixed(3)} ms, router ${cpu.router.toFixed(3)} ms`,
      "",
    ].join("\n"),
  );
} finally {
  for (const c of children) c.kill("SIGTERM");
  await Promise.all(children.map((c) => (c.exitCode === null && c.signalCode === null ? new Promise((r) => c.once("exit", r)) : undefined)));
  await nats.stop();
  await rm(dir, { recursive: true, force: true });
}

/**
 * Measures the gateway against calling the provider directly, on loopback:
 *
 *   npx tsx bench/gateway-measure.ts [--seconds 10] [--concurrency 64] [--cpu-prof <dir>]
 *
 * Starts a nats-server, a sim-provider answering at once (no simulated latency), one router
 * worker and two gateways — one sending chat requests through the JetStream interactive lane
 * (`gateway.interactive: queue`), one over the core NATS fast path (`request`) — each its own
 * process as in production; then drives the same chat request (a) straight at the
 * sim-provider and (b) through each gateway with undici, at the given concurrency
 * (throughput) and at concurrency 1 (added latency), all in the same run so the two paths are
 * compared on the same machine load. A peer runs beside them on the same sim-provider with the
 * same client: the Portkey OSS gateway, installed by the bench into bench/out/peers on first
 * use (not a project dependency; left out, with a note, when it cannot be installed). CPU per
 * request comes from /proc for the gateway, router and nats-server processes. Everything is
 * stopped at the end.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { startNatsServer } from "../shared/nats/server-process.ts";
import { hashKey } from "../services/gateway/auth.ts";
import { DIRECT_BODY, drive, freePort, GATEWAY_BODY, gatewayConfig, ready, SIM_SCENARIO, type Run } from "./lib/drive.ts";
import { cpuMs } from "./lib/procs.ts";

const BIN = fileURLToPath(new URL("../bin/switchyard.js", import.meta.url));
const KEY = "sk-measure";

const { values } = parseArgs({ options: { seconds: { type: "string" }, concurrency: { type: "string" }, "cpu-prof": { type: "string" } } });
/** `--cpu-prof <dir>`: a V8 profile of every gateway and router, named by its role (profiling slows them: not for figures). */
const profDir = values["cpu-prof"];
const seconds = Number(values.seconds ?? 10);
const concurrency = Number(values.concurrency ?? 64);

const PORTKEY_VERSION = "1.15.2";

/** The peer's entry point, installed into bench/out/peers on first use; undefined when npm cannot install it (offline). */
function portkeyEntry(): string | undefined {
  const dir = fileURLToPath(new URL(`./out/peers/portkey-${PORTKEY_VERSION}/`, import.meta.url));
  const entry = join(dir, "node_modules/@portkey-ai/gateway/build/start-server.js");
  if (!existsSync(entry)) {
    process.stderr.write(`installing the Portkey gateway ${PORTKEY_VERSION} into ${dir}…\n`);
    try {
      execFileSync("npm", ["install", "--prefix", dir, "--no-audit", "--no-fund", "--ignore-scripts", `@portkey-ai/gateway@${PORTKEY_VERSION}`], { stdio: "ignore" });
    } catch {
      return undefined;
    }
  }
  return existsSync(entry) ? entry : undefined;
}

const children: ChildProcess[] = [];
function cli(args: string[], env: Record<string, string>, role?: string): ChildProcess {
  const prof = profDir !== undefined && role !== undefined ? ["--cpu-prof", `--cpu-prof-dir=${profDir}`, `--cpu-prof-name=${role}.cpuprofile`] : [];
  const child = spawn(process.execPath, [...prof, BIN, ...args], { env: { ...process.env, LOG_LEVEL: "warn", ...env }, stdio: ["ignore", "ignore", "inherit"] });
  children.push(child);
  return child;
}

const dir = await mkdtemp(join(tmpdir(), "switchyard-measure-"));
const nats = await startNatsServer();
try {
  const [simPort, gatewayPort, fastPort, bareFastPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const simUrl = `http://127.0.0.1:${simPort}`;
  await writeFile(join(dir, "scenario.yaml"), SIM_SCENARIO);
  // `namespace` keeps the unrecorded fast path's router and gateway apart from the other two (their own queue group);
  // two deployments' streams at the default 10 GiB each would not fit the server's JetStream storage.
  const config = (port: number, interactive: "queue" | "request", record = true) =>
    gatewayConfig({ simUrl, port, interactive, key: "measure", sha256: hashKey(KEY), maxBytes: "512MiB", record, ...(record ? {} : { namespace: "bare" }) });
  await writeFile(join(dir, "config.yaml"), config(gatewayPort, "queue"));
  await writeFile(join(dir, "config-fast.yaml"), config(fastPort, "request"));
  await writeFile(join(dir, "config-bare.yaml"), config(bareFastPort, "request", false));
  const env = { NATS_URL: nats.url, SWITCHYARD_CONFIG: join(dir, "config.yaml") };
  cli(["sim-provider", "--port", String(simPort), "--scenario", join(dir, "scenario.yaml")], env);
  const router = cli(["router"], env, "router");
  const queueGateway = cli(["gateway"], env, "gateway-queue");
  const fastGateway = cli(["gateway"], { ...env, SWITCHYARD_CONFIG: join(dir, "config-fast.yaml") }, "gateway-fast");
  const bareEnv = { ...env, SWITCHYARD_CONFIG: join(dir, "config-bare.yaml") };
  const bareRouter = cli(["router"], bareEnv, "router-unrecorded");
  const bareGateway = cli(["gateway"], bareEnv, "gateway-fast-unrecorded");
  const auth = { authorization: `Bearer ${KEY}` };
  await ready(`${simUrl}/control/state`);
  await ready(`http://127.0.0.1:${gatewayPort}/v1/models`, { headers: auth });
  await ready(`http://127.0.0.1:${fastPort}/v1/models`, { headers: auth });
  await ready(`http://127.0.0.1:${bareFastPort}/v1/models`, { headers: auth });

  const direct = (c: number, ms: number) => drive(simUrl, "/budget/v1/chat/completions", {}, DIRECT_BODY, c, ms);
  const via = (port: number) => (c: number, ms: number) => drive(`http://127.0.0.1:${port}`, "/v1/chat/completions", auth, GATEWAY_BODY, c, ms);
  const paths = [
    { name: "JetStream lane", gateway: queueGateway, router, drive: via(gatewayPort) },
    { name: "fast path", gateway: fastGateway, router, drive: via(fastPort) },
    { name: "fast path, unrecorded", gateway: bareGateway, router: bareRouter, drive: via(bareFastPort) },
  ];
  const portkey = portkeyEntry();
  if (portkey !== undefined) {
    const port = await freePort();
    const peer = spawn(process.execPath, [portkey, `--port=${port}`, "--headless"], { env: { ...process.env, NODE_ENV: "production" }, stdio: ["ignore", "ignore", "inherit"] });
    children.push(peer);
    await ready(`http://127.0.0.1:${port}/`);
    // The same request as the direct one, relayed to the sim-provider as an OpenAI-compatible host.
    const headers = { authorization: "Bearer sim-key", "x-portkey-provider": "openai", "x-portkey-custom-host": `${simUrl}/budget/v1` };
    paths.push({ name: `Portkey ${PORTKEY_VERSION}`, gateway: peer, router, drive: (c: number, ms: number) => drive(`http://127.0.0.1:${port}`, "/v1/chat/completions", headers, DIRECT_BODY, c, ms) });
  }
  process.stderr.write("warming up…\n");
  await direct(concurrency, 2_000);
  for (const p of paths) await p.drive(concurrency, 3_000);

  /** A run through one path, with the CPU each process spent per request served. */
  const measured = async (p: (typeof paths)[number], c: number) => {
    const pids = { gateway: p.gateway.pid!, router: p.router.pid!, nats: nats.pid()! };
    const cpu0 = { gateway: cpuMs(pids.gateway), router: cpuMs(pids.router), nats: cpuMs(pids.nats) };
    const run = await p.drive(c, seconds * 1000);
    const served = run.rps * seconds;
    const per = (k: keyof typeof pids) => (cpuMs(pids[k]) - cpu0[k]) / served;
    return { run, cpu: { gateway: per("gateway"), router: per("router"), nats: per("nats") } };
  };
  process.stderr.write(`throughput: ${seconds} s each at concurrency ${concurrency}…\n`);
  const d64 = await direct(concurrency, seconds * 1000);
  const many: Awaited<ReturnType<typeof measured>>[] = [];
  for (const p of paths) many.push(await measured(p, concurrency));
  process.stderr.write(`added latency: ${seconds} s each at concurrency 1…\n`);
  const d1 = await direct(1, seconds * 1000);
  const one: Awaited<ReturnType<typeof measured>>[] = [];
  for (const p of paths) one.push(await measured(p, 1));

  const row = (name: string, r: Run) => `${name.padEnd(40)} ${r.rps.toFixed(0).padStart(7)}  ${r.p50.toFixed(2).padStart(7)}  ${r.p99.toFixed(2).padStart(7)}  ${String(r.errors).padStart(6)}`;
  // The peer has no router or NATS: only its own process counts.
  const cpuRow = (name: string, c: { gateway: number; router: number; nats: number }) =>
    name.startsWith("Portkey") ? `  ${name.padEnd(22)} gateway ${c.gateway.toFixed(3)}` : `  ${name.padEnd(22)} gateway ${c.gateway.toFixed(3)}, router ${c.router.toFixed(3)}, nats-server ${c.nats.toFixed(3)}`;
  const ratio = (a: number, b: number) => (b > 0 ? (a / b).toFixed(2) : "–");
  const added = (r: Run) => `p50 ${(r.p50 - d1.p50).toFixed(2)} ms, p99 ${(r.p99 - d1.p99).toFixed(2)} ms`;
  const queue64 = many[0]!;
  const peer = paths.findIndex((p) => p.name.startsWith("Portkey"));
  /** Each fast path's figures against its goals, the JetStream lane and the peer, all from this run. */
  const fastLines = (i: number) => {
    const [m, o, name] = [many[i]!.run, one[i]!.run, paths[i]!.name];
    return [
      `${name}: added latency at c=1 ${added(o)} (goal: p50 ≤ 0.5 ms, p99 ≤ 2 ms); c=${concurrency} ${m.rps.toFixed(0)} req/s (goal: ≥ 4,000), ${(m.rps / queue64.run.rps).toFixed(2)}× the JetStream lane`,
      ...(peer < 0
        ? []
        : [`  against ${paths[peer]!.name}: c=${concurrency} throughput ${ratio(m.rps, many[peer]!.run.rps)}×; added latency at c=1 p50 ${ratio(o.p50 - d1.p50, one[peer]!.run.p50 - d1.p50)}×, p99 ${ratio(o.p99 - d1.p99, one[peer]!.run.p99 - d1.p99)}×`]),
    ];
  };
  process.stdout.write(
    [
      `${"".padEnd(40)} ${"req/s".padStart(7)}  ${"p50 ms".padStart(7)}  ${"p99 ms".padStart(7)}  ${"errors".padStart(6)}`,
      row(`direct to sim-provider, c=${concurrency}`, d64),
      ...paths.map((p, i) => row(`gateway, ${p.name}, c=${concurrency}`, many[i]!.run)),
      row("direct to sim-provider, c=1", d1),
      ...paths.map((p, i) => row(`gateway, ${p.name}, c=1`, one[i]!.run)),
      "",
      `JetStream lane: added latency at c=1 ${added(one[0]!.run)}`,
      ...fastLines(1),
      ...fastLines(2),
      ...(peer < 0 ? ["the Portkey peer was not measured: npm could not install it"] : []),
      `CPU ms per request at c=${concurrency}:`,
      ...paths.map((p, i) => cpuRow(p.name, many[i]!.cpu)),
      "CPU ms per request at c=1:",
      ...paths.map((p, i) => cpuRow(p.name, one[i]!.cpu)),
      "",
    ].join("\n"),
  );
} finally {
  for (const c of children) c.kill("SIGTERM");
  await Promise.all(children.map((c) => (c.exitCode === null && c.signalCode === null ? new Promise((r) => c.once("exit", r)) : undefined)));
  await nats.stop();
  await rm(dir, { recursive: true, force: true });
}

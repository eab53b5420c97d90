/**
 * A/B runs of the interactive fast path (one gateway and one router per source tree, on one
 * nats-server and one sim-provider), alternating trees round by round so each sees the same
 * machine load; bench/gateway-measure.ts measures one tree against its peer, this one a
 * change against its parent:
 *
 *   npx tsx bench/gateway-compare.ts --tree before=/tmp/old-checkout --tree now=. [--rounds 4] [--seconds 5]
 *     [--concurrency 64] [--cpu-prof <dir>]
 *
 * A tree is a checkout (its node_modules may be a link to this one's); each tree's gateway and
 * router run its `bin/switchyard.js` in a namespace of its own. Every round drives each tree at
 * the given concurrency (req/s, CPU ms per request of its gateway and router and of the shared
 * nats-server) and at concurrency 1 (p50 / p99 of the whole request, and the same request straight
 * at the sim-provider in the same round, so "added" is against the same minute). Prints every
 * run, then per tree the median and range of each figure.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { hashKey } from "../services/gateway/auth.ts";
import { startNatsServer } from "../shared/nats/server-process.ts";
import { DIRECT_BODY, drive, freePort, GATEWAY_BODY, gatewayConfig, ready, SIM_SCENARIO } from "./lib/drive.ts";
import { cpuMs } from "./lib/procs.ts";
import { spread } from "./lib/stats.ts";

const { values } = parseArgs({
  options: {
    tree: { type: "string", multiple: true, default: [] },
    rounds: { type: "string", default: "4" },
    seconds: { type: "string", default: "5" },
    concurrency: { type: "string", default: "64" },
    "cpu-prof": { type: "string" },
  },
});
const trees = values.tree.map((t) => {
  const at = t.indexOf("=");
  if (at <= 0) throw new Error(`--tree label=path, not "${t}"`);
  return { label: t.slice(0, at), dir: resolve(t.slice(at + 1)) };
});
if (trees.length === 0) throw new Error("at least one --tree label=path");
const rounds = Number(values.rounds);
const ms = Number(values.seconds) * 1000;
const concurrency = Number(values.concurrency);
const profDir = values["cpu-prof"] === undefined ? undefined : resolve(values["cpu-prof"]);
if (profDir !== undefined) mkdirSync(profDir, { recursive: true });

const KEY = "sk-compare";

const rssMb = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? NaN) / 1024;
const children: ChildProcess[] = [];
function run(tree: { dir: string }, args: string[], env: Record<string, string>, role?: string): ChildProcess {
  const prof = profDir !== undefined && role !== undefined ? ["--cpu-prof", `--cpu-prof-dir=${profDir}`, `--cpu-prof-name=${role}.cpuprofile`] : [];
  const child = spawn(process.execPath, [...prof, join(tree.dir, "bin/switchyard.js"), ...args], { env: { ...process.env, LOG_LEVEL: "warn", ...env }, stdio: ["ignore", "ignore", "inherit"] });
  children.push(child);
  return child;
}
const tmp = await mkdtemp(join(tmpdir(), "switchyard-gateway-compare-"));
const nats = await startNatsServer();
try {
  const simPort = await freePort();
  const simUrl = `http://127.0.0.1:${simPort}`;
  await writeFile(join(tmp, "scenario.yaml"), SIM_SCENARIO);
  run(trees[0]!, ["sim-provider", "--port", String(simPort), "--scenario", join(tmp, "scenario.yaml")], { NATS_URL: nats.url });
  await ready(`${simUrl}/control/state`);
  const stacks = [];
  for (const [i, t] of trees.entries()) {
    const port = await freePort();
    const file = join(tmp, `config-${i}.yaml`);
    await writeFile(file, gatewayConfig({ simUrl, port, interactive: "request", key: "compare", sha256: hashKey(KEY), namespace: `t${i}`, maxBytes: "256MiB" }));
    const env = { NATS_URL: nats.url, SWITCHYARD_CONFIG: file };
    const router = run(t, ["router"], env, `router-${t.label}`);
    const gateway = run(t, ["gateway"], env, `gateway-${t.label}`);
    await ready(`http://127.0.0.1:${port}/v1/models`, { headers: { authorization: `Bearer ${KEY}` } });
    stacks.push({ ...t, port, router, gateway });
  }
  const via = (port: number, c: number, forMs: number) => drive(`http://127.0.0.1:${port}`, "/v1/chat/completions", { authorization: `Bearer ${KEY}` }, GATEWAY_BODY, c, forMs);
  process.stderr.write("warming up…\n");
  for (const s of stacks) await via(s.port, concurrency, 6_000);

  const rows: { label: string; rps: number; gateway: number; router: number; nats: number; p50: number; p99: number }[] = [];
  for (let r = 1; r <= rounds; r++) {
    const order = r % 2 === 1 ? stacks : [...stacks].reverse();
    for (const s of order) {
      const pids = [s.gateway.pid!, s.router.pid!, nats.pid()!];
      const before = pids.map(cpuMs);
      const many = await via(s.port, concurrency, ms);
      const served = many.rps * (ms / 1000);
      const [gateway, router, natsCpu] = pids.map((pid, i) => (cpuMs(pid) - before[i]!) / served);
      const direct = await drive(simUrl, "/budget/v1/chat/completions", {}, DIRECT_BODY, 1, ms / 2);
      const one = await via(s.port, 1, ms / 2);
      const row = { label: s.label, rps: many.rps, gateway: gateway!, router: router!, nats: natsCpu!, p50: one.p50 - direct.p50, p99: one.p99 - direct.p99 };
      rows.push(row);
      process.stdout.write(
        `round ${r} ${s.label.padEnd(10)} c=${concurrency} ${row.rps.toFixed(0).padStart(6)} req/s  CPU ms/req gateway ${row.gateway.toFixed(3)} router ${row.router.toFixed(3)} nats ${row.nats.toFixed(3)}  c=1 added p50 ${row.p50.toFixed(2)} p99 ${row.p99.toFixed(2)} ms  errors ${many.errors + one.errors}  RSS MB gateway ${rssMb(s.gateway.pid!).toFixed(0)} router ${rssMb(s.router.pid!).toFixed(0)}\n`,
      );
    }
  }
  const fmt = (xs: number[], d: number) => {
    const s = spread(xs);
    return `${s.median.toFixed(d)} (${s.min.toFixed(d)}–${s.max.toFixed(d)})`;
  };
  for (const s of stacks) {
    const mine = rows.filter((x) => x.label === s.label);
    process.stdout.write(
      `${s.label}: c=${concurrency} ${fmt(mine.map((x) => x.rps), 0)} req/s; CPU ms/req gateway ${fmt(mine.map((x) => x.gateway), 3)}, router ${fmt(mine.map((x) => x.router), 3)}, nats-server ${fmt(mine.map((x) => x.nats), 3)}; c=1 added p50 ${fmt(mine.map((x) => x.p50), 2)}, p99 ${fmt(mine.map((x) => x.p99), 2)} ms\n`,
    );
  }
} finally {
  for (const c of children) c.kill("SIGTERM");
  await Promise.all(children.map((c) => (c.exitCode === null && c.signalCode === null ? new Promise((r) => c.once("exit", r)) : undefined)));
  await nats.stop();
  await rm(tmp, { recursive: true, force: true });
}

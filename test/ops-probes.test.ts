/**
 * Truthful probes on real processes and servers: /readyz follows the NATS connection and the
 * shutdown, and a router whose pull loop fails for good (its durable consumer deleted and
 * never provisioned again) exits 1.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { ROUTER_DURABLE, STREAMS } from "../shared/contract/subjects.ts";
import { createLogger } from "../shared/log.ts";
import { createOps, startOpsServer, type OpsServer } from "../shared/ops/server.ts";
import { startRouter, type RunningRouter } from "../services/router/main.ts";
import { natsServersUnder, spawnCli } from "./harness/processes.ts";
import { parseScrape, sample } from "./harness/scrape.ts";
import { moderationJob, startStack, testConfigYaml, type TestStack } from "./harness/stack.ts";

const logger = createLogger("test-probes", process.env.LOG_LEVEL ?? "silent");

async function probe(url: string): Promise<{ status: number; body: string }> {
  const res = await fetch(url);
  return { status: res.status, body: await res.text() };
}

/** Polls `url` until it answers `status`; returns the body. */
async function until(url: string, status: number, timeoutMs = 15_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let last = { status: 0, body: "" };
  while (Date.now() < deadline) {
    last = await probe(url).catch(() => ({ status: 0, body: "" }));
    if (last.status === status) return last.body;
    await sleep(50);
  }
  throw new Error(`${url} still answers ${last.status} (${last.body.trim()}), not ${status}, after ${timeoutMs} ms`);
}

describe("a router's probes", () => {
  let stack: TestStack | undefined;
  let server: OpsServer | undefined;
  let router: RunningRouter | undefined;

  afterEach(async () => {
    await router?.stop();
    await server?.close();
    await stack?.close();
    stack = server = router = undefined;
  });

  /** The router's log lines, parsed. */
  const logged: { level: number; msg: string }[] = [];

  async function start() {
    stack = await startStack({ routers: 0, ownServer: true });
    const ops = createOps({ processMetrics: false });
    server = await startOpsServer(ops, "127.0.0.1:0", logger);
    logged.length = 0;
    const routerLogger = pino({ level: "info" }, { write: (line: string) => void logged.push(JSON.parse(line) as { level: number; msg: string }) });
    router = await startRouter({ natsUrl: stack.nats.url, config: stack.config, logger: routerLogger, ops });
    return { stack, server, router };
  }

  it("/readyz is 503 while the nats-server is down and 200 once it is back; /livez stays 200", async () => {
    const { stack, server } = await start();
    expect(await until(`${server.url}/readyz`, 200)).toBe("ok\n");
    await stack.nats.server!.kill();
    expect(await until(`${server.url}/readyz`, 503)).toMatch(/disconnected from NATS/);
    expect((await probe(`${server.url}/livez`)).status).toBe(200);
    await stack.nats.server!.restart();
    await until(`${server.url}/readyz`, 200, 30_000);
    expect((await probe(`${server.url}/livez`)).status).toBe(200);
    // Logged: the disconnect as a warning, the reconnect as info.
    expect(logged.filter((l) => l.msg === "NATS disconnected; reconnecting").map((l) => l.level)).toEqual([40]);
    expect(logged.filter((l) => l.msg === "NATS reconnected").map((l) => l.level)).toEqual([30]);
  });

  it("/readyz is 503 while the router shuts down, jobs still in flight", async () => {
    const { stack, server, router } = await start();
    stack.sim.control("budget", "budget-lite", { latency_ms: { min: 1_500, max: 1_500 } });
    await stack.publishJobs("moderation", [moderationJob(1)]);
    const deadline = Date.now() + 10_000;
    while (router.router.stats.inFlight === 0 && Date.now() < deadline) await sleep(10);
    expect(router.router.stats.inFlight).toBe(1);
    const stopping = router.stop();
    const during = await probe(`${server.url}/readyz`);
    expect(during.status).toBe(503);
    expect(during.body).toMatch(/shutting down/);
    // The drain is still going on: the job in flight finishes within the grace period.
    expect(router.router.stats.inFlight).toBe(1);
    await stopping;
    expect(router.router.stats.succeeded).toBe(1);
  });
});

describe("a router process whose pull loop fails for good", () => {
  let stack: TestStack | undefined;
  let dir: string | undefined;

  afterEach(async () => {
    await stack?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
    stack = dir = undefined;
  });

  it("exits 1 when its durable consumer is deleted and nobody provisions it again", async () => {
    stack = await startStack({ routers: 0 });
    dir = await mkdtemp(join(tmpdir(), "switchyard-probes-"));
    const configFile = join(dir, "config.yaml");
    await writeFile(configFile, testConfigYaml(stack.simUrl));
    const proc = spawnCli(["router", "--ops-listen", "127.0.0.1:0"], { NATS_URL: stack.nats.url, SWITCHYARD_CONFIG: configFile, LOG_LEVEL: "info" });
    try {
      const deadline = Date.now() + 20_000;
      while (!proc.output().includes("router worker started") && Date.now() < deadline) await sleep(50);
      expect(proc.output()).toContain("router worker started");
      await stack.nats.jsm.consumers.delete(STREAMS.jobs, ROUTER_DURABLE);
      // Missing for 15 s (the grace), then the worker stops.
      const code = await Promise.race([proc.exited, sleep(40_000).then(() => "still running")]);
      expect(code).toBe(1);
      expect(proc.output()).toContain(`consumer ${STREAMS.jobs}/${ROUTER_DURABLE} is missing`);
    } finally {
      proc.child.kill("SIGKILL");
    }
  });
});

describe("switchyard up", () => {
  let dir: string | undefined;

  afterEach(async () => {
    if (dir) {
      for (const pid of natsServersUnder(dir)) process.kill(pid, "SIGKILL");
      await rm(dir, { recursive: true, force: true });
    }
    dir = undefined;
  });

  it("prints one ops endpoint for the whole stack, ready, with router and pricing metrics", async () => {
    dir = await mkdtemp(join(tmpdir(), "switchyard-up-ops-"));
    const env: Record<string, string> = { TMPDIR: dir, NATS_URL: "", SWITCHYARD_OPS_LISTEN: "" };
    const proc = spawnCli(["up", "--data", join(dir, "data"), "--nats-port", "0", "--sim-port", "0", "--gateway-listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0"], env);
    try {
      const deadline = Date.now() + 30_000;
      let url: string | undefined;
      while (!(url = /metrics: (http:\/\/\S+)\/metrics/.exec(proc.output())?.[1]) && Date.now() < deadline) await sleep(100);
      expect(url, proc.output()).toBeDefined();
      expect(await until(`${url}/readyz`, 200)).toBe("ok\n");
      const s = parseScrape(await (await fetch(`${url}/metrics`)).text());
      expect(sample(s, "switchyard_jobs_in_flight", { lane: "batch" })).toBe(0);
      expect(sample(s, "switchyard_pricing_leader")).toBe(1);
      expect(sample(s, "process_resident_memory_bytes")).toBeGreaterThan(0);
    } finally {
      proc.child.kill("SIGTERM");
      await Promise.race([proc.exited, sleep(20_000)]);
    }
  });
});

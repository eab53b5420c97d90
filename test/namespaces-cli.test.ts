/**
 * Namespaced deployments through the commands an operator runs (README, "Namespaces"): two
 * deployments on one nats-server, `a` named by the config's `namespace:` key and `b` by
 * SWITCHYARD_NAMESPACE over a config without one. `switchyard provision`, `dlq list`, `dlq
 * replay`, `streams`, `tail` and `prices` run as processes and see and change only their own
 * deployment; the gateway's Batch API and the pricing service keep to their namespace's
 * streams and buckets; and nothing is ever created under the names of no namespace.
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Kvm, type KV } from "@nats-io/kv";
import OpenAI, { toFile } from "openai";
import { parse, stringify } from "yaml";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import type { StreamsReport } from "../services/cli/commands/streams.ts";
import { startGateway, type RunningGateway } from "../services/gateway/main.ts";
import { startPricing, type RunningPricing } from "../services/pricing/main.ts";
import { startRouter, type RunningRouter } from "../services/router/main.ts";
import { parseScenario } from "../services/sim-provider/scenario.ts";
import { createSimProvider, type SimProvider } from "../services/sim-provider/server.ts";
import { parseConfig } from "../shared/config/load.ts";
import type { DeadLetter, Result } from "../shared/contract/job.ts";
import { HEARTBEAT_KEY, LEASE_KEY, names } from "../shared/contract/subjects.ts";
import { createLogger } from "../shared/log.ts";
import { gatewayConfigYaml, KEYS } from "./harness/gateway.ts";
import { jobsSettled, readAll, readMsgIds, startTestNats, type TestNats } from "./harness/nats.ts";
import { printed, spawnCli } from "./harness/processes.ts";
import { moderationJob, TEST_SCENARIO } from "./harness/stack.ts";

type Ns = "a" | "b";
interface Deployment {
  readonly router: RunningRouter;
  readonly pricing: RunningPricing;
}

let nats: TestNats;
let sim: SimProvider;
let gateway: RunningGateway;
const deployments = {} as Record<Ns, Deployment>;
const provisioned = {} as Record<Ns, string>;
const logger = createLogger("test-namespaces-cli", process.env.LOG_LEVEL ?? "silent");
const SERVED = 4;
const DEAD = 3;

/** What every CLI process of a deployment gets. */
const envOf = {} as Record<Ns, Record<string, string>>;
const cli = async (ns: Ns, ...args: string[]) => {
  const p = spawnCli(args, envOf[ns]);
  const code = await p.exited;
  return { code, out: p.output() };
};
const other = (ns: Ns): Ns => (ns === "a" ? "b" : "a");
const ids = (ns: Ns, kind: "ok" | "dead", n: number) => Array.from({ length: n }, (_, i) => `${ns}-${kind}-${i}`);
/** A job naming an unknown model: dead-lettered at once (no_route), and a replay naming a real model serves it. */
const unroutable = (id: string) => {
  const j = moderationJob(0, { id });
  return { ...j, request: { ...j.request, model: "nowhere/model" } };
};
const kv = (bucket: string): Promise<KV> => new Kvm(nats.nc).open(bucket);
async function streamNames(): Promise<string[]> {
  const out: string[] = [];
  for await (const s of nats.jsm.streams.list()) out.push(s.config.name);
  return out.sort();
}

beforeAll(async () => {
  nats = await startTestNats({ ownServer: true });
  sim = createSimProvider(parseScenario(TEST_SCENARIO, "test-scenario.yaml"));
  const simUrl = await sim.listen(0);
  const dir = mkdtempSync(join(tmpdir(), "sy-ns-cli-"));
  const cfg = parse(gatewayConfigYaml(simUrl)) as Record<string, any>;
  // Small streams: two deployments' streams share the test server's storage.
  cfg.streams.max_bytes = "64MiB";
  const plain = join(dir, "plain.yaml");
  writeFileSync(plain, stringify(cfg));
  const withA = join(dir, "a.yaml");
  writeFileSync(withA, stringify({ namespace: "a", ...cfg }));
  envOf.a = { NATS_URL: nats.url, SWITCHYARD_CONFIG: withA };
  envOf.b = { NATS_URL: nats.url, SWITCHYARD_CONFIG: plain, SWITCHYARD_NAMESPACE: "b" };

  for (const ns of ["a", "b"] as const) {
    // An admin's `switchyard provision` creates each deployment's resources; the services then only check them.
    const run = await cli(ns, "provision");
    expect(run.code, run.out).toBe(0);
    provisioned[ns] = run.out;
    const file = envOf[ns].SWITCHYARD_CONFIG!;
    const config = parseConfig(`${readFileSync(file, "utf8")}provision: check\n`, file, envOf[ns]);
    expect(config.namespace).toBe(ns);
    const router = await startRouter({ natsUrl: nats.url, config, logger, name: `router-${ns}` });
    const pricing = await startPricing({ natsUrl: nats.url, config, logger, configFile: file });
    deployments[ns] = { router, pricing };
    if (ns === "a") gateway = await startGateway({ natsUrl: nats.url, config, logger, batchTuning: { leaseMs: 2_000 } });
    const n = names(ns);
    const jobs = [...ids(ns, "ok", SERVED).map((id, i) => moderationJob(i, { id })), ...ids(ns, "dead", DEAD).map(unroutable)];
    for (const job of jobs) await nats.js.publish(n.jobSubject("moderation"), JSON.stringify(job), { msgID: job.id });
  }
  for (const ns of ["a", "b"] as const) await jobsSettled(nats.jsm, 20_000, names(ns).streams.jobs);
});

afterAll(async () => {
  await gateway?.stop();
  for (const d of Object.values(deployments)) {
    await d.router.stop();
    await d.pricing.stop();
  }
  await sim?.close();
  await nats?.close();
});

describe.each(["a", "b"] as const)("deployment %s", (ns) => {
  const n = names(ns);
  const N = ns.toUpperCase();

  it("`switchyard provision` created its resources under its names only, and `provision --check` finds them as configured", async () => {
    expect(provisioned[ns]).toMatch(new RegExp(`^stream ${N}_JOBS\\s+created$`, "m"));
    expect(provisioned[ns]).toMatch(new RegExp(`^consumer ${N}_JOBS/${ns}-router\\s+created$`, "m"));
    expect(provisioned[ns]).toMatch(new RegExp(`^KV bucket ${ns}-switchyard-models\\s+created$`, "m"));
    expect(provisioned[ns]).not.toMatch(/[\s/](JOBS|switchyard-models)\s/);
    const check = await cli(ns, "provision", "--check");
    expect(check.code, check.out).toBe(0);
    expect(check.out).toContain("everything as the config says");
    expect(check.out).toContain(`${N}_RESULTS`);
    expect(check.out).not.toContain(`${other(ns).toUpperCase()}_`);
    const perms = await cli(ns, "provision", "--permissions");
    expect(perms.out).toContain(`"${ns}.jobs.>"`);
    expect(perms.out).not.toMatch(/"jobs\.>"/);
  });

  it("`switchyard dlq list` lists its dead letters and none of the other deployment's", async () => {
    const listed = await cli(ns, "dlq", "list", "--json");
    expect(listed.code, listed.out).toBe(0);
    const letters = listed.out.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as DeadLetter);
    expect(letters.map((d) => d.id).filter((id) => !id.includes("~")).sort()).toEqual(ids(ns, "dead", DEAD));
    expect(letters.every((d) => d.reason === "no_route")).toBe(true);
    const table = await cli(ns, "dlq", "list", "--reason", "no_route");
    expect(table.out).toContain(`${ns}-dead-0`);
    expect(table.out).not.toContain(`${other(ns)}-dead-`);
  });

  it("`switchyard dlq replay` publishes into its own JOBS, served by its own router, its ledger in its own bucket", async () => {
    const run = await cli(ns, "dlq", "replay", "--id", `${ns}-dead-0`, "--model", "swift/mini");
    expect(run.code, run.out).toBe(0);
    expect(run.out).toContain("published 1 new job(s)");
    // The other deployment's dead letter is not this one's to replay.
    const foreign = await cli(ns, "dlq", "replay", "--id", `${other(ns)}-dead-0`);
    expect(foreign.out).toContain("published 0 new job(s)");
    await jobsSettled(nats.jsm, 20_000, n.streams.jobs);
    const results = await readAll<Result>(nats.js, n.streams.results);
    expect(results.find((r) => r.id === `${ns}-dead-0~r1`)).toMatchObject({ provider: "swift", model: "mini", metadata: { replay_of: `${ns}-dead-0` } });
    expect(results.some((r) => r.id.startsWith(`${other(ns)}-`))).toBe(false);
    const ledger: string[] = [];
    for await (const k of await (await kv(n.replayBucket)).keys("done.>")) ledger.push(k);
    expect(ledger).toHaveLength(1);
    expect(await streamNames()).not.toContain("KV_switchyard-replays");
  });

  it("`switchyard streams --json` reports its streams and consumers with its own counts", async () => {
    const r = await cli(ns, "streams", "--json");
    expect(r.code, r.out).toBe(0);
    const report = JSON.parse(r.out) as StreamsReport;
    expect(report.streams.map((s) => s.name)).toEqual([n.streams.jobs, n.streams.results, n.streams.dlq, n.batchLinesStream, n.batchQueueStream]);
    const jobs = report.streams.find((s) => s.name === n.streams.jobs);
    expect(jobs).toMatchObject({ present: true, subjects: [`${ns}.jobs.>`, `${ns}.ijobs.>`] });
    expect(jobs).toHaveProperty("messages", (await readMsgIds(nats.js, n.streams.jobs)).length);
    expect(report.consumers.find((c) => c.name === n.routerDurable)).toMatchObject({ stream: n.streams.jobs, present: true, num_pending: 0 });
  });

  it("`switchyard tail --all` prints its results and none of the other deployment's", async () => {
    const tail = spawnCli(["tail", "--results", "--all", "--brief"], envOf[ns]);
    try {
      for (const id of ids(ns, "ok", SERVED)) await printed(tail, new RegExp(`^ok\\s+moderation ${id} `, "m"));
    } finally {
      tail.child.kill("SIGINT");
      await tail.exited;
    }
    expect(tail.output()).not.toContain(`${other(ns)}-ok-`);
  });

  it("`switchyard prices` reads its own pricing service's entries; `prices set` writes its own bucket", async () => {
    const leader = deployments[ns].pricing.service.id;
    await vi.waitFor(async () => expect((await kv(n.buckets.models)).get(HEARTBEAT_KEY).then((e) => e?.json<{ leader: string }>().leader)).resolves.toBe(leader), { timeout: 10_000 });
    const json = await cli(ns, "prices", "--json");
    expect(json.code, json.out).toBe(0);
    const parsed = JSON.parse(json.out) as { heartbeat: { leader: string }; models: { id: string }[] };
    expect(parsed.heartbeat.leader).toBe(leader);
    expect(parsed.models.map((m) => m.id)).toContain("budget/lite");

    const set = await cli(ns, "prices", "set", "swift/mini", "--input", ns === "a" ? "0.01" : "0.02", "--output", "0.04");
    expect(set.code, set.out).toBe(0);
    expect((await (await kv(n.buckets.prices)).get("swift/mini"))?.json()).toMatchObject({ input_per_mtok: ns === "a" ? 0.01 : 0.02 });
  });
});

describe("the services under a namespace", () => {
  it("the pricing service keeps its model state and lease in its namespace's buckets", async () => {
    for (const ns of ["a", "b"] as const) {
      const n = names(ns);
      const models = await kv(n.buckets.models);
      await vi.waitFor(async () => expect((await models.get("budget/lite"))?.json()).toMatchObject({ id: "budget/lite" }), { timeout: 10_000 });
      expect((await (await kv(n.buckets.lease)).get(LEASE_KEY))?.string()).toContain(deployments[ns].pricing.service.id);
      // Its price override (set above through the CLI) is the one it applies.
      await vi.waitFor(async () => expect((await models.get("swift/mini"))?.json()).toMatchObject({ input_per_mtok: ns === "a" ? 0.01 : 0.02, price_source: "cli" }), { timeout: 10_000 });
    }
  });

  it("a Batch API batch through the OpenAI SDK runs on its namespace's streams and buckets and returns its results", async () => {
    const n = names("a");
    const client = new OpenAI({ apiKey: KEYS.acme, baseURL: gateway.url, maxRetries: 0 });
    const lines = Array.from({ length: 6 }, (_, i) =>
      JSON.stringify({ custom_id: `line-${i}`, method: "POST", url: "/v1/chat/completions", body: { model: "gpt-4o-mini", messages: [{ role: "user", content: `hello ${i}` }] } }),
    );
    const file = await client.files.create({ file: await toFile(Buffer.from(`${lines.join("\n")}\n`), "requests.jsonl"), purpose: "batch" });
    let batch = await client.batches.create({ input_file_id: file.id, endpoint: "/v1/chat/completions", completion_window: "24h" });
    const deadline = Date.now() + 60_000;
    while (!["completed", "failed", "expired", "cancelled"].includes(batch.status) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      batch = await client.batches.retrieve(batch.id);
    }
    expect(batch.status).toBe("completed");
    expect(batch.request_counts).toEqual({ total: 6, completed: 6, failed: 0 });
    const out = (await (await client.files.content(batch.output_file_id!)).text()).trim().split("\n").map((l) => JSON.parse(l) as { custom_id: string; response: { status_code: number } });
    expect(out.map((l) => l.custom_id).sort()).toEqual(lines.map((_, i) => `line-${i}`));
    expect(out.every((l) => l.response.status_code === 200)).toBe(true);

    // Its jobs went through a's JOBS and a's router, its record and files are in a's bucket and object store.
    expect((await readMsgIds(nats.js, n.streams.jobs)).filter((id) => id?.startsWith(`${batch.id}-`))).toHaveLength(6);
    expect((await readAll<Result>(nats.js, n.streams.results)).filter((r) => r.id.startsWith(`${batch.id}-`))).toHaveLength(6);
    expect(await (await kv(n.gatewayBuckets.batches)).get(batch.id)).not.toBeNull();
    const streams = await streamNames();
    expect(streams).toContain(`OBJ_${n.gatewayBuckets.files}`);
    expect(streams).toContain(n.batchLinesStream);
    // b's deployment saw none of it.
    expect((await readMsgIds(nats.js, names("b").streams.jobs)).some((id) => id?.startsWith("batch_"))).toBe(false);
  });

  it("nothing on the server carries the names of a deployment without a namespace", async () => {
    const streams = await streamNames();
    expect(streams.filter((s) => !/^(A_|B_|KV_[ab]-|OBJ_[ab]-)/.test(s))).toEqual([]);
    expect(streams.filter((s) => s.startsWith("KV_") || s.startsWith("OBJ_")).length).toBeGreaterThan(0);
  });
});

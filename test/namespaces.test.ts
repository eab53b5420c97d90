/**
 * Namespaces (README, "Namespaces"): one module turns a namespace into every NATS name, the
 * default is exactly wire contract v1, and two deployments with different namespaces share
 * one nats-server without seeing each other's jobs.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cliNames } from "../services/cli/names.ts";
import { parseConfig } from "../shared/config/load.ts";
import type { Config } from "../shared/config/schema.ts";
import type { Result } from "../shared/contract/job.ts";
import {
  BATCH_LINES_STREAM,
  BATCH_LINES_SUBJECT,
  BUCKETS,
  canonicalJobSubject,
  GATEWAY_BATCH_DURABLE,
  GATEWAY_BUCKETS,
  INTERACTIVE_DURABLE,
  INTERACTIVE_SUBJECT,
  isReplySubject,
  jobSubject,
  names,
  REPLAY_BUCKET,
  REPLY_PREFIX,
  ROUTER_DURABLE,
  STREAMS,
  SUBJECTS,
  taskOfSubject,
  TELEMETRY_SUBJECT,
} from "../shared/contract/subjects.ts";
import { createLogger } from "../shared/log.ts";
import { allResources, provision } from "../shared/nats/provision.ts";
import { permissionsFor, PERMISSIONS } from "../shared/nats/permissions.ts";
import { intake } from "../services/router/intake.ts";
import { startRouter, type RunningRouter } from "../services/router/main.ts";
import { parseScenario } from "../services/sim-provider/scenario.ts";
import { createSimProvider, type SimProvider } from "../services/sim-provider/server.ts";
import { jobsSettled, readAll, readMsgIds, startTestNats, type TestNats } from "./harness/nats.ts";
import { moderationJob, TEST_SCENARIO, testConfigYaml } from "./harness/stack.ts";
import { gatewayConfigYaml, KEYS } from "./harness/gateway.ts";
import OpenAI from "openai";
import { parse, stringify } from "yaml";
import { startGateway, type RunningGateway } from "../services/gateway/main.ts";

describe("names(namespace)", () => {
  it("without a namespace gives exactly today's names (wire contract v1)", () => {
    const n = names(undefined);
    expect(n.namespace).toBeUndefined();
    expect(n.streams).toEqual({ jobs: "JOBS", results: "RESULTS", dlq: "DLQ" });
    expect(n.streams).toEqual({ ...STREAMS });
    expect(n.subjects).toEqual({ jobs: "jobs", results: "results", dlq: "dlq" });
    expect(n.subjects).toEqual({ ...SUBJECTS });
    expect(n.buckets).toEqual({ models: "switchyard-models", prices: "switchyard-prices", lease: "switchyard-pricing-lease" });
    expect(n.buckets).toEqual({ ...BUCKETS });
    expect(n.gatewayBuckets).toEqual({ files: "switchyard-files", batches: "switchyard-batches", responses: "switchyard-responses" });
    expect(n.gatewayBuckets).toEqual({ ...GATEWAY_BUCKETS });
    expect([n.telemetrySubject, n.routerDurable, n.interactiveSubject, n.interactiveDurable, n.replyPrefix]).toEqual([
      "telemetry.attempts",
      "router",
      "ijobs",
      "router-interactive",
      "switchyard.reply.",
    ]);
    expect([n.telemetrySubject, n.routerDurable, n.interactiveSubject, n.interactiveDurable, n.replyPrefix]).toEqual([TELEMETRY_SUBJECT, ROUTER_DURABLE, INTERACTIVE_SUBJECT, INTERACTIVE_DURABLE, REPLY_PREFIX]);
    expect([n.batchLinesStream, n.batchLinesSubject, n.gatewayBatchDurable, n.replayBucket]).toEqual(["BATCH_LINES", "batchlines", "gateway-batches", "switchyard-replays"]);
    expect([n.batchLinesStream, n.batchLinesSubject, n.gatewayBatchDurable, n.replayBucket]).toEqual([BATCH_LINES_STREAM, BATCH_LINES_SUBJECT, GATEWAY_BATCH_DURABLE, REPLAY_BUCKET]);
    expect(n.jobSubject("moderation")).toBe(jobSubject("moderation"));
    expect([n.resultSubject("x"), n.dlqSubject("x"), n.interactiveJobSubject("x")]).toEqual(["results.x", "dlq.x", "ijobs.x"]);
    for (const s of ["jobs.moderation", "jobs.a.b", "ijobs.x", "x.jobs.moderation", "jobs."]) {
      expect(n.taskOfSubject(s)).toBe(taskOfSubject(s));
      expect(n.canonicalJobSubject(s)).toBe(canonicalJobSubject(s));
    }
    expect(n.isReplySubject("switchyard.reply.abc")).toBe(isReplySubject("switchyard.reply.abc"));
    // The permission sets of a deployment without a namespace are the ones the README shows.
    expect(permissionsFor(n)).toEqual(PERMISSIONS);
  });

  it("with a namespace prefixes subjects with a token, streams upper-cased with _, durables and buckets with -", () => {
    const n = names("staging");
    expect(n.streams).toEqual({ jobs: "STAGING_JOBS", results: "STAGING_RESULTS", dlq: "STAGING_DLQ" });
    expect(n.subjects).toEqual({ jobs: "staging.jobs", results: "staging.results", dlq: "staging.dlq" });
    expect(n.buckets).toEqual({ models: "staging-switchyard-models", prices: "staging-switchyard-prices", lease: "staging-switchyard-pricing-lease" });
    expect(n.gatewayBuckets).toEqual({ files: "staging-switchyard-files", batches: "staging-switchyard-batches", responses: "staging-switchyard-responses" });
    expect([n.telemetrySubject, n.routerDurable, n.interactiveSubject, n.interactiveDurable, n.replyPrefix]).toEqual([
      "staging.telemetry.attempts",
      "staging-router",
      "staging.ijobs",
      "staging-router-interactive",
      "staging.switchyard.reply.",
    ]);
    expect([n.batchLinesStream, n.batchLinesSubject, n.gatewayBatchDurable, n.replayBucket]).toEqual(["STAGING_BATCH_LINES", "staging.batchlines", "staging-gateway-batches", "staging-switchyard-replays"]);
    expect(n.jobSubject("moderation")).toBe("staging.jobs.moderation");
    expect(n.taskOfSubject("staging.jobs.moderation")).toBe("moderation");
    expect(n.taskOfSubject("jobs.moderation")).toBeNull();
    expect(n.taskOfSubject("other.jobs.moderation")).toBeNull();
    expect(n.canonicalJobSubject("staging.ijobs.moderation")).toBe("staging.jobs.moderation");
    expect(n.isReplySubject("staging.switchyard.reply.abc")).toBe(true);
    expect(n.isReplySubject("switchyard.reply.abc")).toBe(false);
    expect(names("my-ns_1").streams.jobs).toBe("MY-NS_1_JOBS");
    expect(() => names("Staging")).toThrow(/namespace/);
    expect(() => names("a.b")).toThrow(/namespace/);
    expect(() => names("x".repeat(33))).toThrow(/namespace/);
  });

  it("intake of a namespaced router takes the task from the token after jobs.", () => {
    const opts = { maxBytes: 1 << 20, isKnownTask: () => true, newId: () => "gen-1", names: names("a") };
    const job = JSON.stringify(moderationJob(1));
    expect(intake("a.jobs.moderation", undefined, Buffer.from(job), opts)).toMatchObject({ kind: "job", job: { task: "moderation", id: "mod-1" } });
    expect(intake("a.jobs.x.y", undefined, Buffer.from(job), opts)).toMatchObject({ kind: "reject", reason: "invalid_job", dlqSubject: "a.dlq.x.y" });
  });

  it("the permission sets of a namespace name only its own subjects, streams and buckets", () => {
    const p = permissionsFor(names("a"));
    expect(p.producer.publish.allow).toEqual(["a.jobs.>"]);
    expect(p.router.publish.allow).toContain("$JS.API.CONSUMER.MSG.NEXT.A_JOBS.a-router");
    expect(p.router.publish.allow).toContain("a.results.>");
    expect(p.router.publish.allow).toContain("a.telemetry.attempts.>");
    expect(p.pricing.publish.allow).toContain("$KV.a-switchyard-models.>");
    expect(p.gateway.subscribe.allow).toContain("a.switchyard.reply.>");
    const all = Object.values(p).flatMap((s) => [...s.publish.allow, ...s.subscribe.allow]);
    expect(all.filter((s) => /(^|\.)(jobs|results|dlq|ijobs)\.>$/.test(s) && !s.startsWith("a."))).toEqual([]);
  });
});

describe("the namespace setting", () => {
  const yaml = (extra: string) => `${testConfigYaml("http://127.0.0.1:1")}${extra}`;

  it("is none by default, read from the config, and overridden by SWITCHYARD_NAMESPACE", () => {
    expect(parseConfig(yaml(""), "c.yaml", {}).namespace).toBeUndefined();
    expect(parseConfig(yaml("namespace: staging\n"), "c.yaml", {}).namespace).toBe("staging");
    expect(parseConfig(yaml("namespace: staging\n"), "c.yaml", { SWITCHYARD_NAMESPACE: "prod" }).namespace).toBe("prod");
    expect(parseConfig(yaml(""), "c.yaml", { SWITCHYARD_NAMESPACE: "prod" }).namespace).toBe("prod");
  });

  it("rejects a namespace that is not one lower-case token", () => {
    expect(() => parseConfig(yaml("namespace: Staging.eu\n"), "c.yaml", {})).toThrow(/namespace must match \[a-z0-9_-\]\{1,32\}/);
    expect(() => parseConfig(yaml(""), "c.yaml", { SWITCHYARD_NAMESPACE: "a b" })).toThrow(/SWITCHYARD_NAMESPACE "a b" must match/);
  });

  it("names every provisioned resource", () => {
    const cfg = parseConfig(yaml("namespace: staging\n"), "c.yaml", {});
    const described = allResources(cfg).map(({ resource: r }) => (r.kind === "stream" ? `${r.name} ${r.config.subjects.join(",")}` : r.kind === "consumer" ? `${r.stream}/${r.config.durable_name} ${r.config.filter_subject}` : r.bucket));
    expect(described).toEqual([
      "STAGING_JOBS staging.jobs.>,staging.ijobs.>",
      "STAGING_RESULTS staging.results.>",
      "STAGING_DLQ staging.dlq.>",
      "STAGING_BATCH_LINES staging.batchlines.>",
      "STAGING_JOBS/staging-router staging.jobs.>",
      "STAGING_JOBS/staging-router-interactive staging.ijobs.>",
      "STAGING_RESULTS/staging-gateway-batches staging.results.>",
      "STAGING_DLQ/staging-gateway-batches staging.dlq.>",
      "staging-switchyard-models",
      "staging-switchyard-prices",
      "staging-switchyard-pricing-lease",
      "staging-switchyard-batches",
      "staging-switchyard-responses",
      "staging-switchyard-budgets",
      "staging-switchyard-spend",
      "staging-switchyard-limits",
      "staging-switchyard-result-cache",
      "staging-switchyard-files",
      "STAGING_BATCH_QUEUE staging.batchq.>",
      "STAGING_BATCH_QUEUE/staging-batcher staging.batchq.>",
      "staging-switchyard-provider-batches",
    ]);
  });
});

describe("the CLI's names", () => {
  it("come from SWITCHYARD_NAMESPACE, else the config's namespace key, else none", () => {
    const dir = mkdtempSync(join(tmpdir(), "switchyard-ns-"));
    const file = join(dir, "c.yaml");
    // Only the key is read: a provider key missing from this shell does not hide the namespace.
    writeFileSync(file, "namespace: staging\nproviders: { x: { api_key: ${NOT_SET_ANYWHERE} } }\n");
    expect(cliNames({ SWITCHYARD_CONFIG: file }).streams.jobs).toBe("STAGING_JOBS");
    expect(cliNames({ SWITCHYARD_CONFIG: file, SWITCHYARD_NAMESPACE: "prod" }).subjects.jobs).toBe("prod.jobs");
    expect(cliNames({ SWITCHYARD_CONFIG: join(dir, "none.yaml") }).namespace).toBeUndefined();
    expect(cliNames({}).namespace).toBeUndefined();
    expect(() => cliNames({ SWITCHYARD_NAMESPACE: "A.B" })).toThrow(/SWITCHYARD_NAMESPACE/);
  });
});

describe("two namespaces on one nats-server", () => {
  let nats: TestNats;
  let sim: SimProvider;
  const stacks: { ns: "a" | "b"; config: Config; router: RunningRouter; gateway: RunningGateway }[] = [];
  const logger = createLogger("test-namespaces", process.env.LOG_LEVEL ?? "silent");
  const JOBS = 20;

  beforeAll(async () => {
    nats = await startTestNats({ ownServer: true });
    sim = createSimProvider(parseScenario(TEST_SCENARIO, "test-scenario.yaml"));
    const simUrl = await sim.listen(0);
    for (const ns of ["a", "b"] as const) {
      const cfg = parse(gatewayConfigYaml(simUrl)) as Record<string, any>;
      cfg.namespace = ns;
      // Small streams: eight of them share the test server's storage.
      cfg.streams.max_bytes = "64MiB";
      // Same tasks, different routing: stack a serves moderation from the cheap tier, stack b only from premium/large.
      if (ns === "b") cfg.tasks.moderation.tiers = [{ models: ["premium/large"] }];
      const config = parseConfig(stringify(cfg), `${ns}.yaml`, {});
      await provision(nats.jsm, config);
      const router = await startRouter({ natsUrl: nats.url, config, logger, name: `router-${ns}` });
      const gateway = await startGateway({ natsUrl: nats.url, config, logger });
      stacks.push({ ns, config, router, gateway });
    }
  });

  afterAll(async () => {
    await Promise.all(stacks.map((s) => s.gateway.stop()));
    await Promise.all(stacks.map((s) => s.router.stop()));
    await sim?.close();
    await nats?.close();
  });

  it("jobs published to a.jobs.moderation are served only by stack a, results only in A_RESULTS; the same for b", async () => {
    const pending = [];
    for (let i = 0; i < JOBS; i++) {
      for (const ns of ["a", "b"]) pending.push(nats.js.publish(`${ns}.jobs.moderation`, JSON.stringify(moderationJob(i, { id: `${ns}-${i}` })), { msgID: `${ns}-${i}` }));
    }
    await Promise.all(pending);
    for (const s of stacks) await jobsSettled(nats.jsm, 20_000, names(s.ns).streams.jobs);

    const ids = (prefix: string) => Array.from({ length: JOBS }, (_, i) => `${prefix}-${i}`).sort();
    for (const { ns, router } of stacks) {
      const n = names(ns);
      const other = ns === "a" ? "b" : "a";
      // The whole streams: every job of this namespace, and nothing of the other's.
      expect((await readMsgIds(nats.js, n.streams.jobs)).sort()).toEqual(ids(ns));
      const results = await readAll<Result>(nats.js, n.streams.results);
      expect(results.map((r) => r.id).sort()).toEqual(ids(ns));
      expect(results.every((r) => r.task === "moderation")).toBe(true);
      expect(await readMsgIds(nats.js, n.streams.dlq)).toEqual([]);
      expect((await readAll(nats.js, n.streams.results, { subject: `${n.subjects.results}.moderation` })).length).toBe(JOBS);
      // Served by this stack's router, by this stack's routing policy.
      expect(router.router.stats.received).toBe(JOBS);
      expect(router.router.stats.succeeded).toBe(JOBS);
      const models = new Set(results.map((r) => `${r.provider}/${r.model}`));
      if (ns === "b") expect([...models]).toEqual(["premium/large"]);
      else expect(models.has("premium/large")).toBe(false);
      expect(results.some((r) => r.id.startsWith(`${other}-`))).toBe(false);
    }
    // Nothing went to the names of a deployment without a namespace.
    const streams: string[] = [];
    for await (const s of nats.jsm.streams.list()) streams.push(s.config.name);
    expect(streams.filter((s) => !s.startsWith("KV_") && !s.startsWith("OBJ_")).sort()).toEqual(["A_BATCH_LINES", "A_BATCH_QUEUE", "A_DLQ", "A_JOBS", "A_RESULTS", "B_BATCH_LINES", "B_BATCH_QUEUE", "B_DLQ", "B_JOBS", "B_RESULTS"]);
    expect(streams.filter((s) => s.startsWith("KV_") || s.startsWith("OBJ_")).every((s) => /^(KV|OBJ)_[ab]-switchyard-/.test(s))).toBe(true);
  });

  it("each namespace's gateway sends its chat requests to its own routers and gets their replies", async () => {
    for (const { ns, gateway } of stacks) {
      const client = new OpenAI({ apiKey: KEYS.acme, baseURL: gateway.url, maxRetries: 0 });
      const completion = await client.chat.completions.create({ model: "auto", messages: [{ role: "user", content: `hello from ${ns}` }] });
      expect(completion.choices[0]?.message).toBeDefined();
    }
    // Each gateway's one request became a job of its namespace only, served by that namespace's router.
    for (const { ns, router } of stacks) {
      const n = names(ns);
      const isGateways = (id: string | undefined) => id !== undefined && !/^[ab]-\d+$/.test(id);
      expect((await readMsgIds(nats.js, n.streams.jobs)).filter(isGateways)).toHaveLength(1);
      const fromGateway = (await readAll<Result>(nats.js, n.streams.results)).filter((r) => isGateways(r.id));
      expect(fromGateway).toHaveLength(1);
      if (ns === "b") expect(`${fromGateway[0]!.provider}/${fromGateway[0]!.model}`).toBe("premium/large");
      else expect(fromGateway[0]!.provider).not.toBe("premium");
      expect(router.router.stats.succeeded).toBe(JOBS + 1);
    }
  });
});

/**
 * Least privilege (README, "Least privilege"): a nats-server whose users have exactly the
 * permission sets of shared/nats/permissions.ts — the snippet the README shows, checked here
 * to be the same — `switchyard provision` run as the admin user, then the pricing service, a
 * router and a gateway each as its own user under `provision: check`. A producer's job comes
 * back as a result, a chat request and a batch are served through the gateway, and the server
 * logged no permission violation. A stream that differs from the config stops a service with
 * the difference named; a router user missing a permission stops with the violation named.
 * The same permission sets on nkey users (keys made in the test) serve the same traffic.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstream, jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { errors, nanos, nkeys, type NatsConnection } from "@nats-io/transport-node";
import OpenAI, { toFile } from "openai";
import { parse, stringify } from "yaml";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { startGateway, type RunningGateway } from "../services/gateway/main.ts";
import { startPricing, type RunningPricing } from "../services/pricing/main.ts";
import { startRouter, type RunningRouter } from "../services/router/main.ts";
import { parseScenario } from "../services/sim-provider/scenario.ts";
import { createSimProvider, type SimProvider } from "../services/sim-provider/server.ts";
import { parseConfig } from "../shared/config/load.ts";
import type { Config } from "../shared/config/schema.ts";
import type { Result } from "../shared/contract/job.ts";
import { BUCKETS, HEARTBEAT_KEY, STREAMS } from "../shared/contract/subjects.ts";
import { SwitchyardError } from "../shared/errors.ts";
import { createLogger } from "../shared/log.ts";
import { connectNats } from "../shared/nats/connect.ts";
import { natsSettings, natsTarget, type NatsTarget } from "../shared/nats/auth.ts";
import { authorizationBlock, authorizationConfig, PERMISSIONS, USERS, userEntry, type User } from "../shared/nats/permissions.ts";
import { allResources, compareResources, NotProvisionedError, permissionViolation, resourcesFor } from "../shared/nats/provision.ts";
import { startNatsServer, type NatsServerHandle } from "../shared/nats/server-process.ts";
import { gatewayConfigYaml, KEYS } from "./harness/gateway.ts";
import { readAll } from "./harness/nats.ts";
import { spawnCli } from "./harness/processes.ts";
import { moderationJob, TEST_SCENARIO } from "./harness/stack.ts";

const NO_NATS_ENV = { NATS_URL: "", NATS_CREDS: "", NATS_NKEY: "", NATS_USER: "", NATS_PASSWORD: "", NATS_TOKEN: "", NATS_CA: "", NATS_CERT: "", NATS_KEY: "" };

const dir = mkdtempSync(join(tmpdir(), "sy-least-privilege-"));
const logFile = join(dir, "nats.log");
const logger = createLogger("test-least-privilege", process.env.LOG_LEVEL ?? "silent");
const passwords = Object.fromEntries(Object.keys(USERS).map((u) => [u, `pw-${u}-${randomBytes(6).toString("hex")}`])) as Record<User, string>;
/** A router user without the right to read the JOBS stream's info. */
const LIMITED = { user: "router-limited", password: `pw-limited-${randomBytes(6).toString("hex")}` };

let sim: SimProvider;
let simUrl: string;
let nats: NatsServerHandle;
let config: Config;
let configFile: string;
let admin: NatsConnection;
let jsm: JetStreamManager;

const as = (user: User): NatsTarget => natsTarget(`nats://${user}:${passwords[user]}@127.0.0.1:${nats.port}`);
const envOf = (user: string, password: string) => ({ ...NO_NATS_ENV, SWITCHYARD_CONFIG: configFile, NATS_URL: nats.url, NATS_USER: user, NATS_PASSWORD: password });

async function cli(args: string[], env: Record<string, string>): Promise<{ code: number | string; out: string }> {
  const p = spawnCli(args, env);
  const code = await p.exited;
  return { code, out: p.output() };
}

/** Permission violations the server has logged so far. */
function violations(file = logFile): string[] {
  let text = "";
  try {
    text = readFileSync(file, "utf8");
  } catch {
    return [];
  }
  return text.split("\n").filter((l) => /violation/i.test(l));
}

/**
 * What the stack's users must be able to do together: a producer's job comes back as a result
 * and a broken one as a dead letter (read by `admin`), and the gateway serves a chat request,
 * the model list (from the pricing service's bucket), a Batch API batch (the files object
 * store, the batches bucket, BATCH_LINES and the collectors) and a background response. Job
 * ids start with `prefix`.
 */
async function servesTraffic(as: (user: User) => NatsTarget, admin: NatsConnection, gateway: RunningGateway, prefix: string): Promise<void> {
  const producer = await connectNats(as("producer"), "test-producer");
  try {
    await jetstream(producer).publish("jobs.moderation", JSON.stringify(moderationJob(0, { id: `${prefix}-1` })), { msgID: `${prefix}-1` });
    // A broken job: dead-lettered (dlq.>), and seen by the gateways' collector on DLQ.
    await jetstream(producer).publish("jobs.moderation", "not json", { msgID: `${prefix}-bad` });
  } finally {
    await producer.close();
  }
  await vi.waitFor(
    async () => {
      const result = (await readAll<Result>(jetstream(admin), STREAMS.results)).find((r) => r.id === `${prefix}-1`);
      expect(result?.status).toBe("succeeded");
      expect((await readAll<{ id: string; reason: string }>(jetstream(admin), STREAMS.dlq)).find((d) => d.id === `${prefix}-bad`)?.reason).toBe("invalid_job");
    },
    { timeout: 20_000, interval: 100 },
  );

  const client = new OpenAI({ apiKey: KEYS.acme, baseURL: gateway.url, maxRetries: 0 });
  const chat = await client.chat.completions.create({ model: "auto", messages: [{ role: "user", content: "I will kill you" }], response_format: { type: "json_object" } });
  expect(chat.choices[0]!.message.content).toContain("I will kill you");
  await vi.waitFor(async () => expect((await client.models.list()).data.length).toBeGreaterThan(0), { timeout: 10_000 });

  const lines = [0, 1, 2].map((i) =>
    JSON.stringify({ custom_id: `req-${i}`, method: "POST", url: "/v1/chat/completions", body: { model: "auto", messages: [{ role: "user", content: ["have a nice day", "I will kill you", "buy now"][i] }] } }),
  );
  const file = await client.files.create({ file: await toFile(Buffer.from(`${lines.join("\n")}\n`), "requests.jsonl"), purpose: "batch" });
  let batch = await client.batches.create({ input_file_id: file.id, endpoint: "/v1/chat/completions", completion_window: "24h" });
  await vi.waitFor(
    async () => {
      batch = await client.batches.retrieve(batch.id);
      expect(batch.status).toBe("completed");
    },
    { timeout: 30_000, interval: 200 },
  );
  expect(batch.request_counts).toMatchObject({ total: 3, completed: 3, failed: 0 });
  const output = await (await client.files.content(batch.output_file_id!)).text();
  expect(output.trim().split("\n")).toHaveLength(3);
  await client.files.delete(file.id);

  // A background response: its entry in the responses bucket, its job on the batch lane, settled by the collectors.
  const queued = await client.responses.create({ model: "auto", input: "have a nice day", background: true });
  await vi.waitFor(async () => expect((await client.responses.retrieve(queued.id)).status).toBe("completed"), { timeout: 20_000, interval: 100 });
  await client.responses.delete(queued.id);
}

beforeAll(async () => {
  sim = createSimProvider(parseScenario(TEST_SCENARIO, "test-scenario.yaml"));
  simUrl = await sim.listen(0);
  // The batch lane on: the gateway's Batch API jobs (due in 24 h) and producers' jobs with slack go through provider batches, under the router's own rights.
  const withBatches = parse(gatewayConfigYaml(simUrl)) as { providers: Record<string, { models: Record<string, Record<string, unknown>> }>; tasks: Record<string, Record<string, unknown>> };
  for (const p of Object.values(withBatches.providers)) for (const m of Object.values(p.models)) m.batch_discount = 0.5;
  withBatches.tasks.moderation!.batch = { min_slack: "1h", window: "300ms", poll_interval: "100ms" };
  const yaml = `${stringify(withBatches)}provision: check\n`;
  config = parseConfig(yaml, "test-config.yaml", {});
  configFile = join(dir, "switchyard.yaml");
  writeFileSync(configFile, yaml);
  const limitedSet = { ...PERMISSIONS.router, publish: { ...PERMISSIONS.router.publish, allow: PERMISSIONS.router.publish.allow.filter((s) => s !== "$JS.API.STREAM.INFO.JOBS") } };
  // The passwords as config variables: the README's block reads them as $ADMIN_PASS, … (from the environment there).
  const variables = [...Object.entries(USERS).map(([u, v]) => `${v}: "${passwords[u as User]}"`), `LIMITED_PASS: "${LIMITED.password}"`];
  const users = authorizationConfig()
    .split("\n")
    .slice(2, -2)
    .join("\n");
  nats = await startNatsServer({
    extraConfig: [`log_file: "${logFile}"`, ...variables, authorizationBlock([users, userEntry(LIMITED.user, "LIMITED_PASS", limitedSet)])].join("\n"),
  });
  admin = await connectNats(as("admin"), "test-admin");
  jsm = await jetstreamManager(admin, { checkAPI: false });
});

afterAll(async () => {
  await admin?.close();
  await nats?.stop();
  await sim?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("the permission sets", () => {
  it("are what the README shows, verbatim", () => {
    const readme = readFileSync(join(import.meta.dirname, "..", "README.md"), "utf8");
    expect(readme).toContain(`\`\`\`conf\n${authorizationConfig()}\n\`\`\``);
  });

  it("name every stream, consumer and bucket a service checks at start", () => {
    for (const { resource, roles } of allResources(config)) {
      const stream = resource.kind === "stream" ? resource.name : resource.kind === "consumer" ? resource.stream : `${resource.kind === "kv" ? "KV" : "OBJ"}_${resource.bucket}`;
      for (const role of roles) {
        const allowed = PERMISSIONS[role].publish.allow;
        expect(allowed, `${role} / ${stream}`).toContain(`$JS.API.STREAM.INFO.${stream}`);
        if (resource.kind === "consumer") expect(allowed).toContain(`$JS.API.CONSUMER.INFO.${resource.stream}.${resource.config.durable_name}`);
      }
    }
  });
});

describe("a stack whose services each have only their own permissions", () => {
  let pricing: RunningPricing | undefined;
  let router: RunningRouter | undefined;
  let gateway: RunningGateway | undefined;

  afterAll(async () => {
    await gateway?.stop();
    await router?.stop();
    await pricing?.stop();
  });

  it("a service under `provision: check` on an empty server stops, naming what is missing", async () => {
    const err = await startRouter({ natsUrl: as("router"), config, logger }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(NotProvisionedError);
    expect((err as Error).message).toContain("router: NATS is not provisioned as the config says; run `switchyard provision`:");
    expect((err as Error).message).toContain("stream JOBS: missing");
    expect((err as Error).message).toContain("consumer JOBS/router: missing");
    expect((err as Error).message).toContain("KV bucket switchyard-models: missing");
  });

  it("`switchyard provision --check` reports what is missing and exits 1; `switchyard provision` as admin creates it all, then leaves it", async () => {
    const check = await cli(["provision", "--check"], envOf("admin", passwords.admin));
    expect(check.code, check.out).toBe(1);
    expect(check.out).toMatch(/stream JOBS\s+missing/);
    // Every resource of every service: counted from the one list, so a bucket added there needs no edit here.
    const all = allResources(config).length;
    expect(check.out).toContain(`${all} to provision: run \`switchyard provision\``);

    const first = await cli(["provision"], envOf("admin", passwords.admin));
    expect(first.code, first.out).toBe(0);
    expect(first.out).toMatch(/stream JOBS\s+created/);
    expect(first.out).toMatch(/consumer JOBS\/router-interactive\s+created/);
    expect(first.out).toMatch(/object store switchyard-files\s+created/);
    expect(first.out).toContain(`${all} created, 0 updated, 0 unchanged`);

    const again = await cli(["provision"], envOf("admin", passwords.admin));
    expect(again.code, again.out).toBe(0);
    expect(again.out).toContain(`0 created, 0 updated, ${all} unchanged`);
    const clean = await cli(["provision", "--check"], envOf("admin", passwords.admin));
    expect(clean.code, clean.out).toBe(0);
    expect(clean.out).toContain("everything as the config says");
  });

  it("a router user may not provision: `switchyard provision` as the router is refused by the server", async () => {
    const r = await cli(["provision"], envOf("router", passwords.router));
    expect(r.code).not.toBe(0);
    expect(r.code).toBe(1);
    expect(r.out).toContain('switchyard: stream BATCH_LINES: NATS refused reading its info: Permissions Violation for Publish to "$JS.API.STREAM.INFO.BATCH_LINES"');
    // The server logs each violation: what the stack test below counts on to find none.
    await vi.waitFor(() => expect(violations().some((l) => l.includes("$JS.API.STREAM.INFO.BATCH_LINES"))).toBe(true), { timeout: 5_000 });
  });

  it("pricing, router and gateway start as their own users; a producer's job and a chat request are served", async () => {
    const before = violations().length;
    pricing = await startPricing({ natsUrl: as("pricing"), config, logger, configFile });
    router = await startRouter({ natsUrl: as("router"), config, logger });
    gateway = await startGateway({ natsUrl: as("gateway"), config, logger, batchTuning: { leaseMs: 2_000 } });

    await servesTraffic(as, admin, gateway, "lp");

    // A producer's job due tomorrow: through a provider batch, under the router's rights.
    const producer = await connectNats(as("producer"), "test-producer");
    await jetstream(producer).publish("jobs.moderation", JSON.stringify(moderationJob(2, { id: "lp-night", deadline: new Date(Date.now() + 86_400_000).toISOString() })), { msgID: "lp-night" });
    await producer.close();
    await vi.waitFor(async () => expect((await readAll<Result>(jetstream(admin), STREAMS.results)).find((r) => r.id === "lp-night")?.attempts.at(-1)?.batch).toMatch(/^batch_sim/), { timeout: 20_000, interval: 200 });

    // Every provider down: the job is redelivered, then dead-lettered, after the router has read RESULTS for an earlier result.
    const models = [["budget", "budget-lite"], ["swift", "swift-mini"], ["premium", "premium-large"]] as const;
    for (const [p, m] of models) sim.control(p, m, { outage: "503" });
    try {
      const producer2 = await connectNats(as("producer"), "test-producer");
      await jetstream(producer2).publish("jobs.moderation", JSON.stringify(moderationJob(1, { id: "lp-down" })), { msgID: "lp-down" });
      await producer2.close();
      await vi.waitFor(async () => expect((await readAll<{ id: string }>(jetstream(admin), STREAMS.dlq)).some((d) => d.id === "lp-down")).toBe(true), { timeout: 30_000, interval: 200 });
    } finally {
      for (const [p, m] of models) sim.control(p, m, { outage: null });
    }

    // The pricing service leads: its heartbeat is in the models bucket. A few lease renewals (compare-and-set) later, still no violation.
    const live = await new Kvm(admin).open(BUCKETS.models);
    await vi.waitFor(async () => expect(await live.get(HEARTBEAT_KEY)).not.toBeNull(), { timeout: 10_000 });
    await new Promise((r) => setTimeout(r, 2_500));
    expect(violations().slice(before), "the server logged permission violations").toEqual([]);
  });

  it("a stream that differs from the config stops a service under `provision: check`, with the difference named", async () => {
    const info = await jsm.streams.info(STREAMS.jobs);
    await jsm.streams.update(STREAMS.jobs, { ...info.config, max_age: nanos(86_400_000) });
    try {
      const err = await startRouter({ natsUrl: as("router"), config, logger }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(NotProvisionedError);
      expect((err as Error).message).toBe("router: stream JOBS: max_age is 1d, the config says 7d (streams.jobs_max_age); run `switchyard provision`");

      // The same as a `switchyard router` process: exit 1, the message printed.
      const p = await cli(["router"], envOf("router", passwords.router));
      expect(p.code).toBe(1);
      expect(p.out).toContain("stream JOBS: max_age is 1d, the config says 7d (streams.jobs_max_age); run `switchyard provision`");

      const check = await cli(["provision", "--check"], envOf("admin", passwords.admin));
      expect(check.code).toBe(1);
      expect(check.out).toContain("stream JOBS: max_age is 1d, the config says 7d (streams.jobs_max_age)");
    } finally {
      const fixed = await cli(["provision"], envOf("admin", passwords.admin));
      expect(fixed.code, fixed.out).toBe(0);
      expect(fixed.out).toMatch(/stream JOBS\s+updated/);
      expect(fixed.out).toContain(`0 created, 1 updated, ${allResources(config).length - 1} unchanged`);
    }
    expect((await jsm.streams.info(STREAMS.jobs)).config.max_age).toBe(nanos(7 * 86_400_000));
  });

  it("a router user lacking a permission it needs stops with the permission violation named", async () => {
    const err = await startRouter({ natsUrl: natsTarget(`nats://${LIMITED.user}:${LIMITED.password}@127.0.0.1:${nats.port}`), config, logger }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(SwitchyardError);
    expect(permissionViolation(err)).toBeInstanceOf(errors.PermissionViolationError);
    expect((err as Error).message).toContain('Permissions Violation for Publish to "$JS.API.STREAM.INFO.JOBS"');
    expect((err as Error).message).toContain("give the router's NATS user the permissions the README lists");
  });
});

describe("provision: auto (the default)", () => {
  it("a gateway and a router create what they use at start, as before, on a server without users", async () => {
    const open = await startNatsServer();
    const yaml = gatewayConfigYaml(simUrl);
    const auto = parseConfig(yaml, "auto.yaml", {});
    expect(auto.provision).toBe("auto");
    const gateway = await startGateway({ natsUrl: open.url, config: auto, logger });
    const router = await startRouter({ natsUrl: open.url, config: auto, logger });
    const nc = await connectNats(open.url, "test-auto");
    try {
      const m = await jetstreamManager(nc);
      // The router opens its KV buckets as its worker starts, just after startRouter returns.
      await vi.waitFor(async () => {
        for (const role of ["gateway", "router"] as const) expect((await compareResources(m, resourcesFor(role, auto))).filter((c) => c.state !== "ok")).toEqual([]);
      }, { timeout: 10_000, interval: 100 });
    } finally {
      await nc.close();
      await router.stop();
      await gateway.stop();
      await open.stop();
    }
  });
});

describe("the same permission sets on nkey users", () => {
  const keys = Object.fromEntries(Object.keys(USERS).map((u) => [u, nkeys.createUser()])) as Record<User, ReturnType<typeof nkeys.createUser>>;
  const seedFile = (user: User) => join(dir, `${user}.nk`);
  const nkeyLog = join(dir, "nats-nkey.log");
  let server: NatsServerHandle;
  let nkeyAdmin: NatsConnection;
  const asNkey = (user: User): NatsTarget => natsTarget(natsSettings({ NATS_URL: server.url, NATS_NKEY: seedFile(user) }));
  const nkeyEnv = (user: User) => ({ ...NO_NATS_ENV, SWITCHYARD_CONFIG: configFile, NATS_URL: server.url, NATS_NKEY: seedFile(user) });

  beforeAll(async () => {
    for (const user of Object.keys(USERS) as User[]) writeFileSync(seedFile(user), `${new TextDecoder().decode(keys[user].getSeed())}\n`);
    // The README's entries with the user and password swapped for the user's public nkey, the permissions untouched.
    const entries = (Object.keys(USERS) as User[]).map((user) => {
      const entry = userEntry(user, USERS[user], PERMISSIONS[user]);
      const swapped = entry.replace(`{ user: ${user}, password: $${USERS[user]},`, `{ nkey: "${keys[user].getPublicKey()}",`);
      expect(swapped).not.toBe(entry);
      return swapped;
    });
    server = await startNatsServer({ extraConfig: [`log_file: "${nkeyLog}"`, authorizationBlock(entries)].join("\n") });
    nkeyAdmin = await connectNats(asNkey("admin"), "test-nkey-admin");
  });

  afterAll(async () => {
    await nkeyAdmin?.close();
    await server?.stop();
  });

  it("the router's nkey may not provision; the admin's provisions, and pricing, router and gateway on their own nkeys serve everything with no violation", async () => {
    const refused = await cli(["provision"], nkeyEnv("router"));
    expect(refused.code).toBe(1);
    expect(refused.out).toContain('switchyard: stream JOBS: NATS refused creating it: Permissions Violation for Publish to "$JS.API.STREAM.CREATE.JOBS"');

    const provisioned = await cli(["provision"], nkeyEnv("admin"));
    expect(provisioned.code, provisioned.out).toBe(0);
    expect(provisioned.out).toMatch(/^\d+ created, 0 updated, 0 unchanged$/m);
    expect(provisioned.out).toMatch(/stream JOBS\s+created/);
    expect(provisioned.out).not.toContain(new TextDecoder().decode(keys.admin.getSeed()));

    const before = violations(nkeyLog).length;
    const pricing = await startPricing({ natsUrl: asNkey("pricing"), config, logger, configFile });
    const router = await startRouter({ natsUrl: asNkey("router"), config, logger });
    const gateway = await startGateway({ natsUrl: asNkey("gateway"), config, logger, batchTuning: { leaseMs: 2_000 } });
    try {
      await servesTraffic(asNkey, nkeyAdmin, gateway, "nk");
      const live = await new Kvm(nkeyAdmin).open(BUCKETS.models);
      await vi.waitFor(async () => expect(await live.get(HEARTBEAT_KEY)).not.toBeNull(), { timeout: 10_000 });
    } finally {
      await gateway.stop();
      await router.stop();
      await pricing.stop();
    }
    expect(violations(nkeyLog).slice(before), "the server logged permission violations").toEqual([]);
  });
});

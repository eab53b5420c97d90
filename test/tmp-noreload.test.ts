/**
 * The gateway reloads its config file like the router and the pricing service: a task added
 * at run time is served (not refused 400 `unknown_task`), a key added authenticates, a
 * tightened limit applies — all without a restart — and an edit that does not load is logged
 * with its file and line while the config in force keeps serving.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse, stringify } from "yaml";
import { hashKey } from "../services/gateway/auth.ts";
import { startGateway, type RunningGateway } from "../services/gateway/main.ts";
import { startRouter, type RunningRouter } from "../services/router/main.ts";
import { parseScenario } from "../services/sim-provider/scenario.ts";
import { createSimProvider, type SimProvider } from "../services/sim-provider/server.ts";
import { loadConfig } from "../shared/config/load.ts";
import { KEYS, gatewayConfigYaml } from "./harness/gateway.ts";
import { startTestNats, type TestNats } from "./harness/nats.ts";
import { TEST_SCENARIO } from "./harness/stack.ts";

let nats: TestNats;
let sim: SimProvider;
let dir: string;
let file: string;
let router: RunningRouter;
let gateway: RunningGateway;
let cfg: Record<string, Record<string, unknown>>;
const logs: Record<string, unknown>[] = [];

const NEW_KEY = "sk-added-at-run-time";

beforeAll(async () => {
  nats = await startTestNats();
  sim = createSimProvider(parseScenario(TEST_SCENARIO, "test-scenario.yaml"));
  const simUrl = await sim.listen(0);
  dir = await mkdtemp(join(tmpdir(), "switchyard-gateway-reload-"));
  file = join(dir, "switchyard.yaml");
  cfg = parse(gatewayConfigYaml(simUrl)) as typeof cfg;
  await writeFile(file, stringify(cfg));
  const silent = pino({ level: "silent" });
  const logger = pino({ level: "info" }, { write: (line: string) => void logs.push(JSON.parse(line) as Record<string, unknown>) });
  router = await startRouter({ natsUrl: nats.url, config: loadConfig(file), logger: silent, configFile: file });
  gateway = await startGateway({ natsUrl: nats.url, config: loadConfig(file), logger });
});
afterAll(async () => {
  await gateway?.stop();
  await router?.stop();
  await sim?.close();
  await nats?.close();
  await rm(dir, { recursive: true, force: true });
});

const client = (key: string = KEYS.acme) => new OpenAI({ apiKey: key, baseURL: gateway.url, maxRetries: 0 });
const ask = (c: OpenAI, task: string, content = "my invoice is wrong") =>
  c.chat.completions.create({ model: "auto", messages: [{ role: "user", content }] }, { headers: { "x-switchyard-task": task } });
/** "ok", or the error code (or status) the request failed with. */
const outcome = (p: Promise<unknown>) => p.then(() => "ok", (e: unknown) => (e instanceof OpenAI.APIError ? (e.code ?? String(e.status)) : String(e)));

/** Rewrites the config file; the watchers poll its modification time. */
async function edit(change: (c: typeof cfg) => void): Promise<void> {
  change(cfg);
  await writeFile(file, stringify(cfg));
}

const rejections = () => logs.filter((l) => l.msg === "config edit rejected; the config in force stays");

describe("the gateway reloads its config file", () => {
  it("a task added to the file is served by the same request that was refused with unknown_task", async () => {
    const before = await ask(client(), "triage").catch((e: unknown) => e);
    expect(before).toBeInstanceOf(OpenAI.BadRequestError);
    expect((before as InstanceType<typeof OpenAI.BadRequestError>).code).toBe("unknown_task");

    await edit((c) => {
      c.tasks = { ...c.tasks, triage: { tiers: [{ models: ["swift/mini"] }] } };
    });
    // Served once both the gateway (the task is known) and the router (it has a route) have the edit.
    await expect.poll(() => outcome(ask(client(), "triage")), { timeout: 10_000, interval: 200 }).toBe("ok");
    const { response } = await ask(client(), "triage").withResponse();
    expect(response.headers.get("x-switchyard-task")).toBe("triage");
    expect(response.headers.get("x-switchyard-model")).toBe("swift/mini");
    expect(logs.some((l) => l.msg === "config reloaded")).toBe(true);
  });

  it("a key added to the file authenticates; a tightened body limit applies", async () => {
    await expect(client(NEW_KEY).models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    const long = "x".repeat(4_000);
    expect(await outcome(ask(client(), "moderation", long))).toBe("ok");

    await edit((c) => {
      const gw = c.gateway as { keys: Record<string, unknown>; max_body_bytes: string };
      gw.keys = { ...gw.keys, added: { sha256: hashKey(NEW_KEY), tenant: "initech", task: "triage" } };
      gw.max_body_bytes = "2KiB";
    });
    await expect.poll(() => outcome(ask(client(NEW_KEY), "triage")), { timeout: 10_000, interval: 200 }).toBe("ok");
    // The key's own task (no header) is the one the file gave it.
    const { response } = await client(NEW_KEY).chat.completions.create({ model: "auto", messages: [{ role: "user", content: "hello" }] }).withResponse();
    expect(response.headers.get("x-switchyard-task")).toBe("triage");
    expect(await outcome(ask(client(), "moderation", long))).toBe("request_too_large");
  });

  it("a broken edit is logged with its file and line, and the config in force keeps serving", async () => {
    const rejectedBefore = rejections().length;
    // A key naming a task that does not exist: the schema is fine, the gateway's own check is not.
    await edit((c) => {
      (c.gateway as { keys: Record<string, { tasks?: string[] }> }).keys.globex!.tasks = ["moderation", "no-such-task"];
    });
    await expect.poll(() => rejections().length, { timeout: 10_000, interval: 100 }).toBe(rejectedBefore + 1);
    const err = String(rejections().at(-1)!.err);
    const text = stringify(cfg).split("\n");
    const line = text.findIndex((l) => l.includes("no-such-task")) + 1;
    expect(line).toBeGreaterThan(0);
    expect(err).toContain(`${file}:${line}:`);
    expect(err).toContain('gateway.keys.globex.tasks.1: task "no-such-task" is not configured under tasks');

    // Not YAML at all.
    await writeFile(file, `${stringify(cfg)}\ntasks: [unclosed\n`);
    await expect.poll(() => rejections().length, { timeout: 10_000, interval: 100 }).toBe(rejectedBefore + 2);
    expect(String(rejections().at(-1)!.err)).toMatch(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}:\\d+:\\d+: `));

    // What the last good edit set is still in force: the added task, the added key, the tightened limit.
    expect(await outcome(ask(client(), "triage"))).toBe("ok");
    expect(await outcome(ask(client(NEW_KEY), "triage"))).toBe("ok");
    expect(await outcome(ask(client(), "moderation", "x".repeat(4_000)))).toBe("request_too_large");
  });
});

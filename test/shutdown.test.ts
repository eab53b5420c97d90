import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { jetstreamManager } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../shared/config/load.ts";
import type { DeadLetter, Result } from "../shared/contract/job.ts";
import { STREAMS } from "../shared/contract/subjects.ts";
import { provision } from "../shared/nats/provision.ts";
import { parseScenario } from "../services/sim-provider/scenario.ts";
import { createSimProvider, type SimProvider } from "../services/sim-provider/server.ts";
import { readStream, startTestNats, type TestNats } from "./harness/nats.ts";
import { spawnCli } from "./harness/processes.ts";
import { moderationJob, testConfigYaml } from "./harness/stack.ts";

let nats: TestNats;
let sim: SimProvider;
let env: Record<string, string>;

beforeAll(async () => {
  nats = await startTestNats({ ownServer: true });
  sim = createSimProvider(
    parseScenario(
      `seed: 3
providers:
  budget: { models: { budget-lite: { latency_ms: { min: 20, max: 60 } } } }
  swift: { models: { swift-mini: { latency_ms: { min: 20, max: 60 } } } }
  premium: { models: { premium-large: { latency_ms: { min: 20, max: 60 } } } }
`,
      "shutdown-scenario.yaml",
    ),
  );
  const simUrl = await sim.listen(0);
  // ack_wait 60s × 3 deliveries needs a duplicate window over 3 minutes (config load checks it).
  const yaml = testConfigYaml(simUrl, { max_in_flight: "64", ack_wait: "60s" }, { streams: { duplicate_window: "5m" } });
  const dir = mkdtempSync(join(tmpdir(), "sy-shutdown-"));
  writeFileSync(join(dir, "switchyard.yaml"), yaml);
  await provision(await jetstreamManager(nats.nc), parseConfig(yaml, "x", {}));
  env = { NATS_URL: nats.url, SWITCHYARD_CONFIG: join(dir, "switchyard.yaml") };
});

afterAll(async () => {
  await sim?.close();
  await nats?.close();
});

const count = async (stream: string) => (await nats.jsm.streams.info(stream)).state.messages;

describe("router process lifecycle", () => {
  it("SIGTERM mid-batch: exits 0 after finishing in-flight jobs; a new worker finishes the rest; nothing lost or duplicated", async () => {
    const n = 1500;
    const pending = [];
    for (let i = 0; i < n; i++) pending.push(nats.js.publish("jobs.moderation", JSON.stringify(moderationJob(i)), { msgID: `mod-${i}` }));
    await Promise.all(pending);

    const first = spawnCli(["router"], env);
    while ((await count(STREAMS.results)) < 100) await sleep(20);
    first.child.kill("SIGTERM");
    expect(await first.exited).toBe(0);
    const afterFirst = await count(STREAMS.results);
    expect(afterFirst).toBeLessThan(n);
    // ack_wait is 60 s here: the new worker finishing everything within 20 s proves the stopped
    // one handed back every job it had pulled instead of leaving them to time out.
    const second = spawnCli(["router"], env);
    const results = await readStream<Result>(nats.js, STREAMS.results, { count: n, timeoutMs: 20_000 });
    second.child.kill("SIGTERM");
    expect(await second.exited).toBe(0);
    const ids = new Set(results.map((r) => r.id));
    expect(ids.size).toBe(n);
    expect(await count(STREAMS.results)).toBe(n);
    expect(await count(STREAMS.dlq)).toBe(0);
    expect(second.output()).not.toMatch(/unexpected error/);
  });

  it("a config mistake stops start-up with the file, line and problem, and exit code 1", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sy-badcfg-"));
    const file = join(dir, "bad.yaml");
    writeFileSync(file, "providers: {}\ntasks:\n  moderation:\n    tiers:\n      - models: [nowhere/model]\n");
    const p = spawnCli(["router"], { ...env, SWITCHYARD_CONFIG: file });
    expect(await p.exited).toBe(1);
    expect(p.output()).toContain(`${file}:5:`);
    expect(p.output()).toContain('unknown model "nowhere/model"');
  });

  it("an unreachable NATS gives a clear error, not a stack trace", async () => {
    const p = spawnCli(["streams"], { NATS_URL: "nats://127.0.0.1:1" });
    expect(await p.exited).toBe(1);
    expect(p.output()).toContain("cannot reach NATS at nats://127.0.0.1:1");
    expect(p.output()).not.toContain("    at ");
  });

  it("dead letters are listed by `switchyard dlq list`", async () => {
    await nats.js.publish("jobs.nosuchtask", JSON.stringify({ id: "dl-1", request: { messages: [{ role: "user", content: "x" }] } }));
    const r = spawnCli(["router"], env);
    await readStream<DeadLetter>(nats.js, STREAMS.dlq, { count: 1 });
    r.child.kill("SIGTERM");
    await r.exited;
    const list = spawnCli(["dlq", "list", "--reason", "no_route"], env);
    expect(await list.exited).toBe(0);
    expect(list.output()).toContain("dl-1");
    expect(list.output()).toContain("1 dead letter(s) matched");
  });
});

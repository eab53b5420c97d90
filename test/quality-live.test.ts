/**
 * Quality is not availability, end to end on a real nats-server: telemetry saying a model
 * answers one task invalidly demotes it for that task alone (the KV entry shows it, its
 * health stays `healthy`), and the pricing service re-tests it with the task's samples
 * through the sim-provider. Telemetry is published straight onto its subject, as workers do,
 * so no router is involved.
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { KvWatchEntry } from "@nats-io/kv";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { watchModelCatalogue } from "../services/gateway/models.ts";
import { DEFAULT_QUALITY_POLICY } from "../services/pricing/quality.ts";
import { createPricingService, type PricingService } from "../services/pricing/service.ts";
import { parseScenario } from "../services/sim-provider/scenario.ts";
import { createSimProvider, type SimProvider } from "../services/sim-provider/server.ts";
import { parseConfig } from "../shared/config/load.ts";
import type { Config } from "../shared/config/schema.ts";
import type { AttemptOutcome } from "../shared/contract/job.ts";
import { ModelStateSchema, type AttemptEvent, type ModelState } from "../shared/contract/live.ts";
import { TELEMETRY_SUBJECT } from "../shared/contract/subjects.ts";
import { openBuckets } from "../shared/nats/buckets.ts";
import { buildCatalog } from "../shared/routing/catalog.ts";
import { LocalHealth } from "../shared/routing/health.ts";
import { LiveState } from "../shared/routing/live-state.ts";
import { startTestNats, type TestNats } from "./harness/nats.ts";
import { spawnCli } from "./harness/processes.ts";
import { TEST_SCENARIO } from "./harness/stack.ts";

const CLASSIFICATION_SAMPLES = fileURLToPath(new URL("../config/samples/classification.jsonl", import.meta.url));
const LABELS = "[billing, technical, account, shipping, other]";

function configYaml(simUrl: string): string {
  const provider = (name: string, model: string, upstream: string) => `  ${name}:
    dialect: openai
    base_url: ${simUrl}/${name}/v1
    timeout_ms: 2s
    models:
      ${model}: { upstream: ${upstream}, input_per_mtok: 0.1, output_per_mtok: 0.2, context_window: 16000 }`;
  return `
providers:
${provider("budget", "lite", "budget-lite")}
${provider("swift", "mini", "swift-mini")}
tasks:
  # The sim-provider answers these samples with one of the offered labels: a re-test passes.
  classification:
    tiers: [{ strategy: cheapest, models: [budget/lite, swift/mini] }]
    output: { labels: ${LABELS} }
  moderation:
    tiers: [{ strategy: cheapest, models: [budget/lite, swift/mini] }]
    output: { format: json }
  # Every answer has a letter in it, so every answer fails: a re-test keeps the model demoted.
  hopeless:
    tiers: [{ models: [budget/lite, swift/mini] }]
    output: { labels: ${LABELS}, forbidden_patterns: ["[a-z]"] }
  # No samples file: after the backoff the model goes back on trial.
  untested:
    tiers: [{ models: [budget/lite, swift/mini] }]
    output: { labels: [yes, no] }
`;
}

let nats: TestNats;
let sim: SimProvider;
let simUrl: string;
let config: Config;
let service: PricingService;
const logs: Record<string, unknown>[] = [];
/** Every value the pricing service wrote for budget/lite, in order. */
const history: ModelState[] = [];
let stopWatch: (() => void) | undefined;

beforeAll(async () => {
  nats = await startTestNats();
  sim = createSimProvider(parseScenario(TEST_SCENARIO, "test-scenario.yaml"));
  simUrl = await sim.listen(0);
  config = parseConfig(configYaml(simUrl), "quality-live.yaml", {});
  const samplesDir = mkdtempSync(join(tmpdir(), "sy-quality-samples-"));
  const ten = readFileSync(CLASSIFICATION_SAMPLES, "utf8").split("\n").filter((l) => l.trim() !== "").slice(0, 10).join("\n");
  writeFileSync(join(samplesDir, "classification.jsonl"), `${ten}\n`);
  writeFileSync(join(samplesDir, "hopeless.jsonl"), `${ten}\n`);
  const logger = pino({ level: "info" }, { write: (line: string) => void logs.push(JSON.parse(line) as Record<string, unknown>) });
  service = createPricingService({ nc: nats.nc, config, logger, samplesDir, qualityPolicy: { ...DEFAULT_QUALITY_POLICY, minSamples: 10, requalifyAfterMs: 1_000, maxRequalifyAfterMs: 8_000 } });
  await service.start();
  await vi.waitFor(() => expect(service.isLeader()).toBe(true), { timeout: 5_000 });
  const { models } = await openBuckets(nats.nc, config);
  const watcher = await models.watch({ key: "budget/lite" });
  stopWatch = () => watcher.stop();
  void (async () => {
    for await (const e of watcher as AsyncIterable<KvWatchEntry>) if (e.operation === "PUT") history.push(ModelStateSchema.parse(e.json()));
  })();
});

afterAll(async () => {
  stopWatch?.();
  await service?.stop();
  await sim?.close();
  await nats?.close();
});

function telemetry(model: string, task: string | undefined, outcome: AttemptOutcome, n: number): void {
  for (let i = 0; i < n; i++) {
    const event: AttemptEvent = { m: model, ...(task ? { t: task } : {}), outcome, status: outcome === "ok" || outcome === "invalid_output" ? 200 : 503, latency_ms: 5, prompt_tokens: 10, completion_tokens: 2, at: Date.now() };
    nats.nc.publish(`${TELEMETRY_SUBJECT}.${model.split("/")[0]}`, JSON.stringify(event));
  }
}

const latest = () => history.at(-1);

describe("quality is not availability (pricing service on a real nats-server)", () => {
  it("invalid answers for one task demote the model for that task only; its health stays healthy; samples re-qualify it", async () => {
    const before = sim.stats().models["budget/budget-lite"]?.requests ?? 0;
    telemetry("budget/lite", "classification", "invalid_output", 12);
    telemetry("budget/lite", "hopeless", "invalid_output", 12);
    telemetry("budget/lite", "untested", "invalid_output", 12);
    telemetry("budget/lite", "moderation", "ok", 12);
    telemetry("swift/mini", "classification", "ok", 12);
    await nats.nc.flush();

    // Demoted for the three tasks at once, with the health untouched.
    await vi.waitFor(() => expect(history.find((s) => s.quality?.classification?.status === "demoted")).toBeDefined(), { timeout: 3_000, interval: 20 });
    const demoted = history.find((s) => s.quality?.classification?.status === "demoted")!;
    expect(demoted).toMatchObject({ health: "healthy", error_rate: 0, cooldown_until: null, samples: 12 });
    expect(demoted.quality).toMatchObject({
      classification: { status: "demoted", pass_rate: 0, samples: 12 },
      hopeless: { status: "demoted", pass_rate: 0, samples: 12 },
      untested: { status: "demoted", pass_rate: 0, samples: 12 },
      moderation: { status: "qualified", pass_rate: 1, samples: 12, demoted_until: null },
    });
    const due = Date.parse(demoted.quality!.classification!.demoted_until!);
    expect(due - Date.parse(demoted.updated_at)).toBeGreaterThan(500);
    expect(due - Date.parse(demoted.updated_at)).toBeLessThanOrEqual(1_000);

    // Another model for the same task is not touched.
    const { models } = await openBuckets(nats.nc, config);
    await vi.waitFor(async () => expect(ModelStateSchema.parse((await models.get("swift/mini"))!.json()).quality?.classification).toMatchObject({ status: "qualified", pass_rate: 1 }), { timeout: 3_000 });

    // A worker reading the entry skips budget/lite for classification only.
    const view = new LiveState(new LocalHealth());
    view.heartbeat(Date.now());
    view.apply(demoted);
    expect(view.demotedFor("classification")).toBeDefined();
    expect(view.demotedFor("moderation")).toBeUndefined();

    // After the backoff: the samples pass, so it is back for classification (window reset),
    // and back on trial for the task without samples; the hopeless task's re-test fails.
    await vi.waitFor(
      () => {
        const s = latest()!;
        expect(s.quality?.classification?.status ?? "qualified").toBe("qualified");
        expect(s.quality?.untested?.status ?? "qualified").toBe("qualified");
        expect(s.quality?.hopeless?.status).toBe("demoted");
      },
      { timeout: 5_000, interval: 50 },
    );
    const now = latest()!;
    expect(now.health).toBe("healthy");
    // Readmitted with a fresh window: no answers yet, so the task is not listed.
    expect(now.quality?.classification).toBeUndefined();
    expect(now.quality?.untested).toBeUndefined();
    // Two re-tests' worth of samples went to the sim-provider: classification and hopeless (untested has none).
    expect(sim.stats().models["budget/budget-lite"]!.requests - before).toBeGreaterThanOrEqual(20);

    // The failed re-test demotes it for longer: twice the first backoff.
    await vi.waitFor(
      () => {
        const hopeless = latest()!.quality!.hopeless!;
        expect(Date.parse(hopeless.demoted_until!) - Date.parse(latest()!.updated_at)).toBeGreaterThan(1_000);
      },
      { timeout: 3_000, interval: 50 },
    );

    const messages = logs.map((l) => `${l.msg as string} ${l.task as string} ${l.model as string}`);
    expect(messages).toContain("model demoted for the task: its answers fall short of the output contract classification budget/lite");
    expect(messages).toContain("model re-qualified for the task by its samples: back on trial classification budget/lite");
    expect(messages).toContain("no samples for the task: the demoted model is back on trial; live answers decide untested budget/lite");
    expect(messages).toContain("re-test under the floor: the model stays demoted for the task, longer hopeless budget/lite");
    expect(messages.filter((m) => m.startsWith("model demoted") && m.includes("classification"))).toHaveLength(1);

    // Live answers decide again: a relapse demotes it again, at once.
    telemetry("budget/lite", "classification", "invalid_output", 10);
    await nats.nc.flush();
    await vi.waitFor(() => expect(latest()!.quality?.classification).toMatchObject({ status: "demoted", samples: 10 }), { timeout: 3_000, interval: 20 });
    expect(latest()!.health).toBe("healthy");
  });

  it("shows in `switchyard prices` (table and --json) and in the gateway's /v1/models", async () => {
    // The relapse above, again if a re-test has re-qualified the model since: its samples pass
    // and its backoff is 1 s, less than a loaded machine may take between two tests.
    const relapsed = async () => {
      if (latest()?.quality?.classification?.status === "demoted") return;
      telemetry("budget/lite", "classification", "invalid_output", 10);
      await nats.nc.flush();
      await vi.waitFor(() => expect(latest()!.quality?.classification?.status).toBe("demoted"), { timeout: 3_000, interval: 20 });
    };
    const { models } = await openBuckets(nats.nc, config);
    const catalogue = await watchModelCatalogue(models, () => buildCatalog(config), () => ({ small: "budget/lite" }), pino({ level: "silent" }));
    try {
      await vi.waitFor(
        async () => {
          await relapsed();
          expect(catalogue.get("budget/lite").quality).toMatchObject({ classification: { status: "demoted", samples: 10, pass_rate: 0 }, moderation: { status: "qualified" } });
          expect(catalogue.get("small")).toMatchObject({ alias_for: "budget/lite", health: "healthy", quality: { classification: { status: "demoted" } } });
        },
        { timeout: 20_000, interval: 50 },
      );
      expect(catalogue.get("auto").quality).toBeNull();
    } finally {
      catalogue.stop();
    }

    const dir = mkdtempSync(join(tmpdir(), "sy-quality-cli-"));
    writeFileSync(join(dir, "switchyard.yaml"), configYaml(simUrl));
    const env = { NATS_URL: nats.url, SWITCHYARD_CONFIG: join(dir, "switchyard.yaml") };
    await vi.waitFor(
      async () => {
        await relapsed();
        const table = spawnCli(["prices"], env);
        expect(await table.exited).toBe(0);
        expect(table.output()).toContain("demoted for");
        const row = table.output().split("\n").find((l) => l.startsWith("budget/lite"))!;
        expect(row).toContain("healthy");
        expect(row).toMatch(/classification 0\.0% of 10, hopeless 0\.0% of \d+$/);
        expect(table.output().split("\n").find((l) => l.startsWith("swift/mini"))).toMatch(/ -$/);
      },
      { timeout: 20_000, interval: 100 },
    );

    await vi.waitFor(
      async () => {
        await relapsed();
        const json = spawnCli(["prices", "--json"], env);
        expect(await json.exited).toBe(0);
        const parsed = JSON.parse(json.output()) as { heartbeat: { leader: string }; models: ModelState[] };
        expect(parsed.heartbeat.leader).toBe(service.id);
        expect(parsed.models.find((m) => m.id === "budget/lite")!.quality!.classification).toMatchObject({ status: "demoted", samples: 10 });
      },
      { timeout: 20_000, interval: 100 },
    );
  });
});

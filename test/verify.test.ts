/**
 * `switchyard verify` as a user runs it: its own process, the embedded config and the shipped
 * samples, against an in-process sim-provider that serves all five embedded providers
 * without scripted faults (so the verdicts are deterministic).
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { parseScenario } from "../services/sim-provider/scenario.ts";
import { createSimProvider, type SimProvider } from "../services/sim-provider/server.ts";
import { spawnCli } from "./harness/processes.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const SAMPLES = (task: string) => join(ROOT, "config", "samples", `${task}.jsonl`);
const EMBEDDED = readFileSync(join(ROOT, "config", "switchyard.yaml"), "utf8");

const SCENARIO = `
seed: 11
providers:
  budget: { api_key: sim-budget-key, models: { budget-lite-1: { latency_ms: { min: 1, max: 5 } } } }
  swift: { api_key: sim-swift-key, models: { swift-mini: { latency_ms: { min: 1, max: 5 } } } }
  premium: { api_key: sim-premium-key, models: { premium-large: { latency_ms: { min: 1, max: 5 } } } }
  claude-sim: { api_key: sim-claude-key, models: { claude-sim-haiku: { latency_ms: { min: 1, max: 5 } } } }
  gemini-sim: { api_key: sim-gemini-key, models: { gemini-sim-flash: { latency_ms: { min: 1, max: 5 } } } }
`;

let sim: SimProvider;
let simUrl: string;
let dir: string;

beforeAll(async () => {
  sim = createSimProvider(parseScenario(SCENARIO, "verify-scenario.yaml"));
  simUrl = await sim.listen(0);
  dir = mkdtempSync(join(tmpdir(), "sy-verify-"));
});
afterAll(async () => {
  await sim?.close();
});
beforeEach(() => sim.reset());

/** Runs verify with the embedded config (or an edited copy of it) pointed at the test's sim-provider. */
async function verify(args: string[], config = EMBEDDED) {
  const file = join(dir, `switchyard-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, config);
  const p = spawnCli(["verify", ...args], {
    SWITCHYARD_CONFIG: file,
    SIM_PROVIDER_URL: simUrl,
    BUDGET_API_KEY: "",
    SWIFT_API_KEY: "",
    PREMIUM_API_KEY: "",
    CLAUDE_SIM_API_KEY: "",
    GEMINI_SIM_API_KEY: "",
  });
  const code = await p.exited;
  return { code, out: p.output() };
}

/** The table row of one model, split on its column gaps. */
function row(out: string, model: string): string[] {
  const line = out.split("\n").find((l) => l.split(/\s{2,}/)[1] === model);
  if (!line) throw new Error(`no row for ${model} in:\n${out}`);
  return line.split(/\s{2,}/);
}

const COLUMNS = ["tier", "model", "dialect", "samples", "pass", "agreement", "p50", "p95", "cost (USD)", "per job", "failed calls", "verdict"];

describe("switchyard verify", () => {
  it("moderation: every candidate passes the JSON-schema check and agrees with every expected verdict → exit 0", async () => {
    const { code, out } = await verify(["moderation", "--samples", SAMPLES("moderation")]);
    expect(out).toContain(`verify moderation: 20 samples from ${SAMPLES("moderation")}, 3 models, floor 95.0%`);
    expect(out.split("\n").find((l) => l.startsWith("tier"))!.split(/\s{2,}/)).toEqual(COLUMNS);
    for (const [model, tier] of [["budget/lite", "0"], ["swift/mini", "0"], ["premium/large", "1"]] as const) {
      const r = row(out, model);
      expect(r.slice(0, 6)).toEqual([tier, model, "openai", "20", "100.0% (20/20)", "100.0% (20/20)"]);
      expect(r[6]).toMatch(/^\d+ ms$/);
      expect(r[7]).toMatch(/^\d+ ms$/);
      expect(Number(r[8])).toBeGreaterThan(0);
      expect(r.slice(10)).toEqual(["–", "ok"]);
    }
    // Usage × price: premium costs 50× budget per token, and the same prompts go to both.
    expect(Number(row(out, "premium/large")[8])).toBeGreaterThan(Number(row(out, "budget/lite")[8]) * 20);
    expect(out).toContain("All 3 models meet the floor of 95.0%.");
    expect(code).toBe(0);
  });

  it("extraction: tiers across the openai, anthropic and gemini dialects all pass through the real adapters", async () => {
    const { code, out } = await verify(["extraction", "--samples", SAMPLES("extraction")]);
    expect(row(out, "gemini-sim/flash").slice(0, 6)).toEqual(["0", "gemini-sim/flash", "gemini", "10", "100.0% (10/10)", "–"]);
    expect(row(out, "swift/mini").slice(0, 5)).toEqual(["0", "swift/mini", "openai", "10", "100.0% (10/10)"]);
    expect(row(out, "claude-sim/haiku").slice(0, 5)).toEqual(["1", "claude-sim/haiku", "anthropic", "10", "100.0% (10/10)"]);
    expect(code).toBe(0);
  });

  it("classification: labels agree with the expected answers; --json gives the same report as data", async () => {
    const { code, out } = await verify(["classification", "--samples", SAMPLES("classification"), "--json"]);
    expect(code).toBe(0);
    const report = JSON.parse(out);
    expect(report).toMatchObject({ task: "classification", samples: 20, floor: 0.95, passed: true });
    expect(report.models.map((m: { model: string }) => m.model)).toEqual(["budget/lite", "swift/mini", "premium/large"]);
    for (const m of report.models) {
      expect(m).toMatchObject({ passed: 20, passRate: 1, judged: 20, agreed: 20, agreement: 1, estimatedUsageCalls: 0, outcomes: { ok: 20 }, belowFloor: false, notes: [] });
      expect(m.costPerJobUsd).toBeCloseTo(m.costUsd / 20, 12);
    }
  });

  it("a model in an outage falls below the floor → exit 1, named with its first failure", async () => {
    sim.control("swift", "swift-mini", { outage: "503" });
    const { code, out } = await verify(["classification", "--samples", SAMPLES("classification"), "--retries", "1"]);
    const r = row(out, "swift/mini");
    expect(r.slice(4, 8)).toEqual(["0.0% (0/20)", "–", "–", "–"]);
    expect(r.slice(10)).toEqual(["unavailable 40", "FAIL"]);
    expect(row(out, "budget/lite").at(-1)).toBe("ok");
    expect(out).toMatch(/FAIL swift\/mini \(tier 0\): pass rate 0\.0% < floor 95\.0%; first failure: line 1: unavailable: HTTP 503/);
    expect(out).toContain("1 of 3 models fall below the floor of 95.0%.");
    expect(code).toBe(1);
  });

  it("answers that fail the task's output check count as invalid_output and lower the pass rate", async () => {
    sim.control("premium", "premium-large", { disobey_rate: 1 });
    const { code, out } = await verify(["classification", "--samples", SAMPLES("classification")]);
    sim.control("premium", "premium-large", { disobey_rate: 0 });
    const r = row(out, "premium/large");
    expect(r.slice(4, 5)).toEqual(["0.0% (0/20)"]);
    expect(r.slice(10)).toEqual(["invalid_output 20", "FAIL"]);
    expect(out).toMatch(/first failure: line 1: invalid_output: the answer "[^"]+" is not one of the labels \(billing, technical, account, shipping, other\)/);
    expect(code).toBe(1);
  });

  it("the task's labels reach the model: with \"other\" no longer allowed, every answer is one of the four, and the samples expecting \"other\" disagree", async () => {
    const config = EMBEDDED.replace("labels: [billing, technical, account, shipping, other]", "labels: [billing, technical, account, shipping]");
    expect(config).not.toBe(EMBEDDED);
    const { code, out } = await verify(["classification", "--samples", SAMPLES("classification")], config);
    const r = row(out, "premium/large");
    expect(r.slice(4, 6)).toEqual(["100.0% (20/20)", "80.0% (16/20)"]);
    expect(code).toBe(1);
  });

  it("a sample whose expected label disagrees with the answer lowers agreement below the floor → exit 1", async () => {
    const file = join(dir, "disagree.jsonl");
    const lines = readFileSync(SAMPLES("classification"), "utf8").trim().split("\n").slice(0, 9);
    // A billing ticket labelled "shipping" by the sample's author: the models say "billing".
    lines.push(lines[0]!.replace('"expected":"billing"', '"expected":"shipping"'));
    writeFileSync(file, `${lines.join("\n")}\n`);
    const { code, out } = await verify(["classification", "--samples", file]);
    for (const model of ["budget/lite", "swift/mini", "premium/large"]) {
      expect(row(out, model).slice(4, 6)).toEqual(["100.0% (10/10)", "90.0% (9/10)"]);
      expect(out).toContain(`FAIL ${model} (tier ${model === "premium/large" ? 1 : 0}): agreement 90.0% < floor 95.0%; first disagreement: line 10: expected "shipping", got "billing"`);
    }
    expect(code).toBe(1);
  });

  it("accepts bare wire-contract jobs and object expectations; min_pass_rate sets the floor", async () => {
    const file = join(dir, "mixed.jsonl");
    const system = { role: "system", content: "You are a content moderation classifier." };
    writeFileSync(
      file,
      [
        JSON.stringify({ task: "moderation", request: { messages: [system, { role: "user", content: "nice garden" }], response_format: { type: "json_object" } } }),
        "",
        JSON.stringify({ job: { request: { messages: [system, { role: "user", content: "I will kill you" }] } }, expected: { flagged: true, categories: ["violence"] } }),
        JSON.stringify({ job: { request: { messages: [system, { role: "user", content: "buy now" }] } }, expected: { flagged: false } }),
      ].join("\n"),
    );
    const config = EMBEDDED.replace("    output:\n      json_schema:\n        type: object\n        required: [flagged", "    output:\n      min_pass_rate: 0.5\n      json_schema:\n        type: object\n        required: [flagged");
    expect(config).not.toBe(EMBEDDED);
    const { code, out } = await verify(["moderation", "--samples", file], config);
    expect(out).toContain("3 samples");
    expect(out).toContain("floor 50.0%");
    expect(row(out, "swift/mini").slice(4, 6)).toEqual(["100.0% (3/3)", "50.0% (1/2)"]);
    expect(out).toContain('note swift/mini (tier 0): first disagreement: line 4: expected {"flagged":false}, got {"flagged":true,"categories":["spam"],"score":0.4}');
    expect(code).toBe(0);
  });

  it("reports a bad samples line with its file and line, and an unknown task as a usage error", async () => {
    const file = join(dir, "bad.jsonl");
    writeFileSync(file, `${JSON.stringify({ request: { messages: [{ role: "user", content: "hi" }] } })}\n{"request": {"messages": []}}\nnot json\n${JSON.stringify({ task: "classification", request: { messages: [{ role: "user", content: "x" }] } })}\n`);
    const bad = await verify(["moderation", "--samples", file]);
    expect(bad.code).toBe(1);
    expect(bad.out).toContain(`${file}:2:1: request.messages: request.messages must hold at least one message`);
    expect(bad.out).toContain(`${file}:3:1: not JSON`);
    expect(bad.out).toContain(`${file}:4:1: task: the job is for task "classification", not "moderation"`);
    const unknown = await verify(["translation", "--samples", file]);
    expect(unknown.code).toBe(2);
    expect(unknown.out).toContain('verify: no task "translation"');
    expect(unknown.out).toContain("tasks: chat, moderation, classification, extraction");
  });
});

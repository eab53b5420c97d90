/**
 * One task whose tiers span all three dialects, end to end: jobs on a real nats-server, the
 * router, the OpenAI, Anthropic and Gemini adapters, and the sim-provider speaking each
 * dialect. Whichever dialect serves, the result carries a normalised chat.completion and the
 * output checked by the task's `output:` section.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { DeadLetterSchema, ResultSchema, type DeadLetter, type Result } from "../shared/contract/job.ts";
import { STREAMS } from "../shared/contract/subjects.ts";
import { jobsSettled, readAll, readStream } from "./harness/nats.ts";
import { startStack, type TestStack } from "./harness/stack.ts";

const SCENARIO = `
seed: 5
providers:
  oai: { models: { oai-mini: { latency_ms: { min: 1, max: 5 } } } }
  claude: { models: { claude-haiku: { latency_ms: { min: 1, max: 5 } } } }
  gem: { models: { gem-flash: { latency_ms: { min: 1, max: 5 } } } }
`;

const PRICES = {
  "oai/mini": { input: 0.15, output: 0.6 },
  "claude/haiku": { input: 0.8, output: 4 },
  "gem/flash": { input: 0.1, output: 0.4 },
} as const;

/** The sim-provider answers an extraction prompt in JSON mode with {"reply": "Simulated <upstream> reply: <text>"}. */
const configYaml = (simUrl: string) => `
streams:
  duplicate_window: 2m
router:
  ack_wait: 5s
  max_deliveries: 3
  redelivery_backoff: [200ms, 400ms]
  shutdown_grace: 5s
providers:
  oai:
    dialect: openai
    base_url: ${simUrl}/oai/v1
    timeout_ms: 2s
    models:
      mini: { upstream: oai-mini, input_per_mtok: ${PRICES["oai/mini"].input}, output_per_mtok: ${PRICES["oai/mini"].output}, context_window: 128000 }
  claude:
    dialect: anthropic
    base_url: ${simUrl}/claude/v1
    timeout_ms: 2s
    models:
      haiku: { upstream: claude-haiku, input_per_mtok: ${PRICES["claude/haiku"].input}, output_per_mtok: ${PRICES["claude/haiku"].output}, context_window: 200000 }
  gem:
    dialect: gemini
    base_url: ${simUrl}/gem/v1beta
    timeout_ms: 2s
    models:
      flash: { upstream: gem-flash, input_per_mtok: ${PRICES["gem/flash"].input}, output_per_mtok: ${PRICES["gem/flash"].output}, context_window: 1000000 }
tasks:
  extraction:
    max_attempts: 4
    tiers:
      - models: [oai/mini]
      - models: [claude/haiku]
      - models: [gem/flash]
    output:
      format: json
      json_schema:
        type: object
        required: [reply]
        properties:
          reply: { type: string, pattern: "^Simulated " }
        additionalProperties: false
  # The same tiers, but an answer naming the OpenAI-dialect model is forbidden: its answers
  # fail the check and the job moves on, whoever would have served it.
  guarded:
    max_attempts: 4
    tiers:
      - models: [oai/mini]
      - models: [claude/haiku]
      - models: [gem/flash]
    output:
      json_schema: { type: object, required: [reply] }
      forbidden_patterns: ["/oai-mini/i"]
`;

let stack: TestStack;
let prefix = 0;
let tag = "";

beforeAll(async () => {
  stack = await startStack({ routers: 0, scenario: SCENARIO, configYaml });
});
afterAll(async () => {
  await stack?.close();
});
beforeEach(async () => {
  stack.sim.reset();
  // A fresh worker per test: no local failure count or cooldown carried over from the previous test.
  await Promise.all(stack.routers.splice(0).map((r) => r.stop()));
  await stack.addRouter();
  tag = `d${++prefix}`;
});

const totalResults = async () => (await stack.nats.jsm.streams.info(STREAMS.results)).state.messages;
const totalDlq = async () => (await stack.nats.jsm.streams.info(STREAMS.dlq)).state.messages;
const results = async (count: number) => (await readStream<Result>(stack.nats.js, STREAMS.results, { count, timeoutMs: 20_000 })).filter((r) => r.id.startsWith(`${tag}-`));
const deadLetters = async (count: number) => (await readStream<DeadLetter>(stack.nats.js, STREAMS.dlq, { count, timeoutMs: 20_000 })).filter((d) => d.id.startsWith(`${tag}-`));

const TEXT = "Order 1182 from Dana Smith, deliver to 12 Elm St.";
const extractionJob = (id: string, extra: Record<string, unknown> = {}, json = true) => ({
  id: `${tag}-${id}`,
  request: {
    messages: [
      // The sim-provider's Anthropic dialect, like a real model, answers in JSON when the system prompt asks for a JSON object.
      { role: "system", content: json ? "Extract the order details. Respond with a JSON object." : "Extract the order details." },
      { role: "user", content: TEXT },
    ],
    max_tokens: 128,
    ...(json ? { response_format: { type: "json_object" } } : {}),
    ...extra,
  },
  metadata: { case: id },
});

describe("one task across the openai, anthropic and gemini dialects", () => {
  it("each dialect, named explicitly, serves a normalised chat.completion with the parsed output and its cost", async () => {
    const before = await totalResults();
    const models = ["oai/mini", "claude/haiku", "gem/flash"] as const;
    await stack.publishJobs(
      "extraction",
      models.map((m) => extractionJob(m.replace("/", "-"), { model: m })),
    );
    const got = await results(before + models.length);
    expect(got).toHaveLength(3);
    for (const model of models) {
      const r = got.find((x) => x.metadata.case === model.replace("/", "-"))!;
      ResultSchema.parse(r);
      const [provider, name] = model.split("/");
      const upstream = { "oai/mini": "oai-mini", "claude/haiku": "claude-haiku", "gem/flash": "gem-flash" }[model];
      expect(r).toMatchObject({ provider, model: name, status: "succeeded" });
      expect(r.attempts).toEqual([expect.objectContaining({ provider, model: name, tier: 0, outcome: "ok", http_status: 200 })]);
      expect(r.response).toMatchObject({
        object: "chat.completion",
        model: upstream,
        choices: [{ index: 0, message: { role: "assistant", content: expect.any(String) }, finish_reason: "stop" }],
      });
      const content = (r.response as unknown as { choices: { message: { content: string } }[] }).choices[0]!.message.content;
      const reply = `Simulated ${upstream} reply: ${TEXT}`;
      expect(JSON.parse(content)).toEqual({ reply });
      expect(r.output).toEqual({ reply });
      expect(r.usage.prompt_tokens).toBeGreaterThan(0);
      expect(r.usage.completion_tokens).toBeGreaterThan(0);
      expect(r.usage.total_tokens).toBe(r.usage.prompt_tokens + r.usage.completion_tokens);
      expect(r.cost_usd).toBeCloseTo((r.usage.prompt_tokens * PRICES[model].input + r.usage.completion_tokens * PRICES[model].output) / 1e6, 12);
      // Every dialect reports usage, so none of it is an estimate.
      expect((r as Record<string, unknown>).usage_estimated).toBeUndefined();
    }
  });

  it("with the openai and anthropic tiers down, gemini serves, and the attempts cross all three dialects", async () => {
    stack.sim.control("oai", "oai-mini", { outage: "503" });
    stack.sim.control("claude", "claude-haiku", { outage: "503" });
    const before = await totalResults();
    await stack.publishJobs("extraction", [extractionJob("failover")]);
    const [r] = await results(before + 1);
    ResultSchema.parse(r);
    expect(r).toMatchObject({ provider: "gem", model: "flash", response: { object: "chat.completion", model: "gem-flash" } });
    expect(r!.attempts).toEqual([
      expect.objectContaining({ provider: "oai", model: "mini", tier: 0, outcome: "unavailable", http_status: 503 }),
      // Anthropic's overload status.
      expect.objectContaining({ provider: "claude", model: "haiku", tier: 1, outcome: "unavailable", http_status: 529 }),
      expect.objectContaining({ provider: "gem", model: "flash", tier: 2, outcome: "ok", http_status: 200 }),
    ]);
    expect(r!.output).toEqual({ reply: `Simulated gem-flash reply: ${TEXT}` });
    expect(r!.cost_usd).toBeCloseTo((r!.usage.prompt_tokens * 0.1 + r!.usage.completion_tokens * 0.4) / 1e6, 12);
  });

  // Needs the router to run the task's compiled output check (shared/acceptance/check.ts).
  it("an answer that fails the task's output check is an invalid_output attempt, and the next dialect serves", async () => {
    const before = await totalResults();
    await stack.publishJobs("guarded", [{ ...extractionJob("guarded"), task: "guarded" }]);
    const [r] = await results(before + 1);
    ResultSchema.parse(r);
    expect(r).toMatchObject({ task: "guarded", provider: "claude", model: "haiku", output: { reply: `Simulated claude-haiku reply: ${TEXT}` } });
    expect(r!.attempts).toEqual([
      expect.objectContaining({ provider: "oai", tier: 0, outcome: "invalid_output", http_status: 200, error: "the answer matches forbidden pattern /oai-mini/i" }),
      expect.objectContaining({ provider: "claude", tier: 1, outcome: "ok" }),
    ]);
  });

  it("without a response_format, the task's schema still reaches every dialect in its native form and each answers to it", async () => {
    for (const model of ["oai/mini", "claude/haiku", "gem/flash"]) {
      const before = await totalResults();
      await stack.publishJobs("extraction", [extractionJob(`native-${model.split("/")[0]}`, { model }, false)]);
      const [r] = (await results(before + 1)).filter((x) => x.id.includes(model.split("/")[0]!));
      expect(r).toMatchObject({ provider: model.split("/")[0], output: { reply: expect.stringMatching(/^Simulated /) } });
    }
  });

  it("when every model's answer fails the check, the job ends at once as one invalid_output dead letter, one call per dialect", async () => {
    for (const [p, m] of [["oai", "oai-mini"], ["claude", "claude-haiku"], ["gem", "gem-flash"]] as const) stack.sim.control(p, m, { disobey_rate: 1 });
    const before = await totalDlq();
    await stack.publishJobs("extraction", [extractionJob("disobeyed")]);
    const [d] = await deadLetters(before + 1);
    DeadLetterSchema.parse(d);
    expect(d).toMatchObject({ reason: "invalid_output" });
    expect(d!.attempts.map((a) => a.provider)).toEqual(["oai", "claude", "gem"]);
    for (const a of d!.attempts) expect(a).toMatchObject({ outcome: "invalid_output", http_status: 200, error: expect.any(String) });
    // Once the job is acknowledged nothing more can come of it: one outcome in all, and no dialect called twice.
    await jobsSettled(stack.nats.jsm);
    const mine = (xs: { id: string }[]) => xs.filter((x) => x.id.startsWith(`${tag}-`));
    expect(mine(await readAll<DeadLetter>(stack.nats.js, STREAMS.dlq))).toHaveLength(1);
    expect(mine(await readAll<Result>(stack.nats.js, STREAMS.results))).toEqual([]);
    const calls = stack.sim.stats().models;
    expect([calls["oai/oai-mini"]?.requests, calls["claude/claude-haiku"]?.requests, calls["gem/gem-flash"]?.requests]).toEqual([1, 1, 1]);
  });
});

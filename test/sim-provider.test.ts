import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { request } from "undici";
import { afterEach, describe, expect, it } from "vitest";
import { ProviderError } from "../shared/adapters/errors.ts";
import { createProviderClient } from "../shared/adapters/http.ts";
import { ADAPTERS } from "../shared/adapters/index.ts";
import type { Dialect } from "../shared/adapters/types.ts";
import { ChatRequestSchema, type ChatRequest } from "../shared/contract/job.ts";
import { ConfigError } from "../shared/errors.ts";
import { estimatePromptTokens, estimateTextTokens } from "../shared/tokens.ts";
import { runSimProvider } from "../services/sim-provider/main.ts";
import { classify, moderate } from "../services/sim-provider/replies.ts";
import { loadScenario, parseScenario } from "../services/sim-provider/scenario.ts";
import { createSimProvider, type SimProvider } from "../services/sim-provider/server.ts";

const SCENARIO = `
seed: 7
providers:
  alpha:
    api_key: alpha-key
    models:
      steady: {}
      small-ctx: { context_window: 40 }
      flaky:
        errors: { rate_429: 0.2, rate_500: 0.1, rate_503: 0.3, retry_after_s: 3 }
      limited:
        errors: { rate_429: 1, retry_after_s: 7 }
      hanging:
        errors: { rate_hang: 1 }
      garbled:
        errors: { rate_malformed: 1 }
      cut:
        errors: { rate_truncated: 1 }
      dropped:
        errors: { rate_reset: 1 }
  open:
    models:
      slow: { latency_ms: { min: 5, max: 10 } }
`;

const AUTH = { authorization: "Bearer alpha-key", "content-type": "application/json" };

const running: SimProvider[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.close()));
});

async function start(text = SCENARIO, seed?: number): Promise<{ sim: SimProvider; url: string }> {
  const scenario = parseScenario(text, "test-scenario.yaml", {});
  const sim = createSimProvider(seed === undefined ? scenario : { ...scenario, seed });
  running.push(sim);
  return { sim, url: await sim.listen() };
}

async function chat(url: string, body: Record<string, unknown>, headers: Record<string, string> = AUTH) {
  const res = await request(`${url}/alpha/v1/chat/completions`, { method: "POST", headers, body: JSON.stringify(body) });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, text, json: () => JSON.parse(text) };
}

const user = (content: string) => ({ role: "user", content });

describe("sim-provider replies", () => {
  it("classification returns one of the offered labels, preferring one named in the text", async () => {
    const { url } = await start();
    const system = { role: "system", content: "Classify the support ticket.\nLabels: billing, shipping, other" };
    const named = await chat(url, { model: "steady", messages: [system, user("Where is my shipping update?")] });
    expect(named.status).toBe(200);
    expect(named.json().choices[0].message.content).toBe("shipping");

    const unnamed = await chat(url, { model: "steady", messages: [system, user("The app crashes on start")] });
    expect(["billing", "shipping", "other"]).toContain(unnamed.json().choices[0].message.content);

    const json = await chat(url, { model: "steady", response_format: { type: "json_object" }, messages: [system, user("refund my billing")] });
    expect(JSON.parse(json.json().choices[0].message.content)).toEqual({ label: "billing" });
  });

  it("moderation flags 'I will kill you' and not 'have a nice day'", async () => {
    const { url } = await start();
    const system = { role: "system", content: "You are a content moderation model." };
    const bad = await chat(url, { model: "steady", messages: [system, user("I will kill you")] });
    expect(JSON.parse(bad.json().choices[0].message.content)).toEqual({ flagged: true, categories: ["violence"], score: 0.4 });
    const good = await chat(url, { model: "steady", messages: [system, user("have a nice day")] });
    expect(JSON.parse(good.json().choices[0].message.content)).toEqual({ flagged: false, categories: [], score: 0 });
  });

  it("pure reply functions are deterministic", () => {
    expect(classify(["a", "b", "c"], "nothing matches")).toBe(classify(["a", "b", "c"], "nothing matches"));
    expect(moderate("you idiot, buy now or I attack").score).toBe(1);
    expect(moderate("a skillful player").flagged).toBe(false);
  });

  it("usage equals the shared token estimates", async () => {
    const { url } = await start();
    const messages = [{ role: "system", content: "Be brief." }, user("Tell me about switchyards and trains.")];
    const res = (await chat(url, { model: "steady", messages })).json();
    expect(res).toMatchObject({ object: "chat.completion", model: "steady", choices: [{ index: 0, finish_reason: "stop" }] });
    expect(res.id).toMatch(/^chatcmpl-sim-\d+$/);
    const content: string = res.choices[0].message.content;
    expect(res.usage).toEqual({
      prompt_tokens: estimatePromptTokens(messages),
      completion_tokens: estimateTextTokens(content),
      total_tokens: estimatePromptTokens(messages) + estimateTextTokens(content),
    });
  });

  it("max_tokens cuts the reply and reports finish_reason length", async () => {
    const { url } = await start();
    const res = (await chat(url, { model: "steady", max_tokens: 2, messages: [user("a fairly long question about trains")] })).json();
    expect(res.choices[0]).toMatchObject({ finish_reason: "length" });
    expect(res.choices[0].message.content).toHaveLength(8);
    expect(res.usage.completion_tokens).toBe(2);
  });
});

describe("sim-provider errors", () => {
  it("answers 401 invalid_api_key without the right bearer key", async () => {
    const { url } = await start();
    for (const headers of [{}, { authorization: "Bearer wrong" }] as Record<string, string>[]) {
      const res = await chat(url, { model: "steady", messages: [user("hi")] }, headers);
      expect(res.status).toBe(401);
      expect(res.json()).toEqual({ error: { message: expect.any(String), type: "invalid_request_error", param: null, code: "invalid_api_key" } });
    }
  });

  it("answers 404 model_not_found for an unknown model and 400 for a bad body", async () => {
    const { url } = await start();
    const missing = await chat(url, { model: "nope", messages: [user("hi")] });
    expect(missing.status).toBe(404);
    expect(missing.json().error.code).toBe("model_not_found");
    expect((await chat(url, { model: "steady", messages: [] })).status).toBe(400);
    const notJson = await request(`${url}/alpha/v1/chat/completions`, { method: "POST", headers: AUTH, body: "{oops" });
    expect(notJson.statusCode).toBe(400);
    expect((await notJson.body.json()) as object).toMatchObject({ error: { type: "invalid_request_error" } });
  });

  it("answers 400 context_length_exceeded past the context window", async () => {
    const { url } = await start();
    const res = await chat(url, { model: "small-ctx", max_tokens: 30, messages: [user("x".repeat(80))] });
    expect(res.status).toBe(400);
    expect(res.json().error.code).toBe("context_length_exceeded");
  });

  it("429 carries Retry-After", async () => {
    const { url } = await start();
    const res = await chat(url, { model: "limited", messages: [user("hi")] });
    expect(res.status).toBe(429);
    expect(res.headers["retry-after"]).toBe("7");
    expect(res.json().error.code).toBe("rate_limit_exceeded");
  });

  it("replays the same status sequence for the same seed", async () => {
    const statuses = async (seed?: number) => {
      const { url } = await start(SCENARIO, seed);
      const out: number[] = [];
      for (let i = 0; i < 40; i++) out.push((await chat(url, { model: "flaky", messages: [user(`n${i}`)] })).status);
      return out;
    };
    const first = await statuses();
    expect(await statuses()).toEqual(first);
    expect(new Set(first)).toEqual(new Set([200, 429, 500, 503]));
    expect(await statuses(8)).not.toEqual(first);
  });

  it("a malformed answer is status 200 with a body that is not JSON", async () => {
    const { url, sim } = await start();
    const res = await chat(url, { model: "garbled", messages: [user("hi")] });
    expect(res.status).toBe(200);
    expect(() => JSON.parse(res.text)).toThrow();
    expect(sim.stats().models["alpha/garbled"]).toMatchObject({ requests: 1, malformed: 1, responses: { 200: 1 } });
  });

  it("truncated and reset answers fail on the client", async () => {
    const { url, sim } = await start();
    await expect(chat(url, { model: "cut", messages: [user("hi")] })).rejects.toThrow();
    await expect(chat(url, { model: "dropped", messages: [user("hi")] })).rejects.toThrow();
    expect(sim.stats().models).toMatchObject({ "alpha/cut": { truncated: 1 }, "alpha/dropped": { resets: 1 } });
  });

  it("close() ends a hanging request instead of leaving it open", async () => {
    const { url, sim } = await start();
    const pending = chat(url, { model: "hanging", messages: [user("hi")] });
    while (sim.stats().models["alpha/hanging"]?.hangs !== 1) await new Promise((r) => setTimeout(r, 5));
    const started = Date.now();
    await sim.close();
    await expect(pending).rejects.toThrow();
    expect(Date.now() - started).toBeLessThan(1000);
  });
});

describe("sim-provider control API", () => {
  it("an outage switches behaviour on and off", async () => {
    const { url } = await start();
    const post = (path: string, body: unknown) =>
      request(`${url}/control/${path}`, { method: "POST", body: JSON.stringify(body) }).then(async (r) => ({ status: r.statusCode, json: await r.body.json() }));
    const ask = () => chat(url, { model: "steady", messages: [user("hi")] }).then((r) => r.status);

    expect(await ask()).toBe(200);
    expect((await post("alpha/steady", { outage: "503" })).status).toBe(200);
    expect(await ask()).toBe(503);
    expect((await post("alpha/steady", { outage: null })).status).toBe(200);
    expect(await ask()).toBe(200);

    expect((await post("alpha/steady", { outage: "down" })).status).toBe(400);
    expect((await post("alpha/steady", { errors: { rate_503: 0.8, rate_500: 0.5 } })).status).toBe(400);
    expect((await post("alpha/nope", {})).status).toBe(404);

    const stats = await request(`${url}/control/stats`).then((r) => r.body.json());
    expect(stats).toMatchObject({ models: { "alpha/steady": { requests: 3, responses: { 200: 2, 503: 1 } } } });

    await post("alpha/steady", { outage: "429", latency_ms: { min: 1, max: 2 } });
    expect(await post("reset", {})).toMatchObject({ status: 200, json: { models: { "alpha/steady": { outage: null, counters: { requests: 0 } } } } });
    const state = (await request(`${url}/control/state`).then((r) => r.body.json())) as { models: Record<string, { behaviour: unknown }> };
    expect(state.models["alpha/steady"]?.behaviour).toMatchObject({ latency_ms: { min: 0, max: 0 } });
  });

  it("serves healthz and the model list", async () => {
    const { url } = await start();
    expect(await request(`${url}/healthz`).then((r) => r.body.text())).toBe("ok");
    const list = await request(`${url}/alpha/v1/models`, { headers: AUTH }).then((r) => r.body.json());
    expect(list).toMatchObject({ object: "list", data: expect.arrayContaining([{ id: "steady", object: "model", created: 0, owned_by: "alpha" }]) });
  });
});

describe("sim-provider scenario", () => {
  it("reports a scenario mistake with its file and line", () => {
    const file = join(mkdtempSync(join(tmpdir(), "sim-scenario-")), "bad.yaml");
    writeFileSync(file, ["seed: 1", "providers:", "  p:", "    models:", "      m:", "        errors: { rate_503: 2 }", ""].join("\n"));
    expect(() => loadScenario(file, {})).toThrow(ConfigError);
    expect(() => loadScenario(file, {})).toThrow(`${file}:6:`);
  });

  it("runSimProvider serves the shipped scenario", async () => {
    const scenarioFile = fileURLToPath(new URL("../config/sim-scenario.yaml", import.meta.url));
    const { sim, url } = await runSimProvider({ scenarioFile, port: 0, host: "127.0.0.1", logger: pino({ level: "silent" }) });
    running.push(sim);
    const res = await request(`${url}/swift/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: "Bearer sim-swift-key" },
      body: JSON.stringify({ model: "swift-mini", messages: [user("hello")] }),
    });
    expect(res.statusCode).toBe(200);
    expect(((await res.body.json()) as { model: string }).model).toBe("swift-mini");
  });
});

const ANTHROPIC = { "x-api-key": "alpha-key", "anthropic-version": "2023-06-01", "content-type": "application/json" };

async function post(url: string, path: string, body: unknown, headers: Record<string, string>) {
  const res = await request(`${url}${path}`, { method: "POST", headers, body: JSON.stringify(body) });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, text, json: () => JSON.parse(text) };
}

const messages = (url: string, body: Record<string, unknown>, headers: Record<string, string> = ANTHROPIC) => post(url, "/alpha/v1/messages", body, headers);
const generate = (url: string, model: string, body: Record<string, unknown>, headers: Record<string, string> = { "x-goog-api-key": "alpha-key" }, query = "") =>
  post(url, `/alpha/v1beta/models/${model}:generateContent${query}`, body, headers);
const parts = (text: string) => ({ role: "user", parts: [{ text }] });

describe("sim-provider anthropic dialect", () => {
  it("answers a Messages request with a message whose usage is the shared estimate", async () => {
    const { url } = await start();
    const system = "Classify the support ticket.\nLabels: billing, shipping, other";
    const res = await messages(url, { model: "steady", max_tokens: 100, system, messages: [user("Where is my shipping update?")] });
    expect(res.status).toBe(200);
    const body = res.json();
    expect(body).toMatchObject({ type: "message", role: "assistant", model: "steady", content: [{ type: "text", text: "shipping" }], stop_reason: "end_turn", stop_sequence: null });
    expect(body.id).toMatch(/^msg_sim_\d+$/);
    const prompt = estimatePromptTokens([{ content: system }, user("Where is my shipping update?")]);
    expect(body.usage).toEqual({ input_tokens: prompt, output_tokens: estimateTextTokens("shipping") });
  });

  it("answers JSON when the system prompt asks for a JSON object, and cuts at max_tokens", async () => {
    const { url } = await start();
    const system = [{ type: "text", text: "Labels: billing, other" }, { type: "text", text: "Respond with only a JSON object." }];
    const json = (await messages(url, { model: "steady", max_tokens: 100, system, messages: [user("billing please")] })).json();
    expect(JSON.parse(json.content[0].text)).toEqual({ label: "billing" });
    const cut = (await messages(url, { model: "steady", max_tokens: 2, messages: [user("a fairly long question about trains")] })).json();
    expect(cut).toMatchObject({ stop_reason: "max_tokens", usage: { output_tokens: 2 } });
    expect(cut.content[0].text).toHaveLength(8);
  });

  it("refuses like Anthropic: missing or wrong x-api-key, missing version or max_tokens, a system role, an unknown model", async () => {
    const { url } = await start();
    const ok = { model: "steady", max_tokens: 10, messages: [user("hi")] };
    const cases: [Record<string, unknown>, Record<string, string>, number, string, RegExp][] = [
      [ok, { "anthropic-version": "2023-06-01" }, 401, "authentication_error", /x-api-key header is required/],
      [ok, { ...ANTHROPIC, "x-api-key": "wrong" }, 401, "authentication_error", /invalid x-api-key/],
      [ok, { authorization: "Bearer alpha-key", "anthropic-version": "2023-06-01" }, 401, "authentication_error", /x-api-key/],
      [ok, { "x-api-key": "alpha-key" }, 400, "invalid_request_error", /anthropic-version/],
      [{ model: "steady", messages: [user("hi")] }, ANTHROPIC, 400, "invalid_request_error", /max_tokens/],
      [{ ...ok, messages: [{ role: "system", content: "x" }, user("hi")] }, ANTHROPIC, 400, "invalid_request_error", /top-level `system`/],
      [{ ...ok, model: "nope" }, ANTHROPIC, 404, "not_found_error", /model: nope/],
    ];
    for (const [body, headers, status, type, message] of cases) {
      const res = await messages(url, body, headers);
      expect(res.status).toBe(status);
      expect(res.json()).toEqual({ type: "error", error: { type, message: expect.stringMatching(message) } });
    }
  });

  it("answers 429 rate_limit_error with Retry-After, and 529 overloaded_error for the 503 fault", async () => {
    const { url, sim } = await start();
    const limited = await messages(url, { model: "limited", max_tokens: 10, messages: [user("hi")] });
    expect(limited.status).toBe(429);
    expect(limited.headers["retry-after"]).toBe("7");
    expect(limited.json().error.type).toBe("rate_limit_error");
    sim.control("alpha", "steady", { outage: "503" });
    const overloaded = await messages(url, { model: "steady", max_tokens: 10, messages: [user("hi")] });
    expect(overloaded.status).toBe(529);
    expect(overloaded.json()).toEqual({ type: "error", error: { type: "overloaded_error", message: "Overloaded" } });
    expect(sim.stats().models["alpha/steady"]?.responses).toEqual({ 529: 1 });
  });

  it("words both context-window refusals as Anthropic does", async () => {
    const { url } = await start();
    const long = await messages(url, { model: "small-ctx", max_tokens: 1, messages: [user("x".repeat(200))] });
    expect(long.status).toBe(400);
    expect(long.json().error.message).toMatch(/^prompt is too long: \d+ tokens > 40 maximum$/);
    const greedy = await messages(url, { model: "small-ctx", max_tokens: 30, messages: [user("x".repeat(80))] });
    expect(greedy.status).toBe(400);
    expect(greedy.json().error.message).toMatch(/^input length and `max_tokens` exceed context limit: \d+ \+ 30 > 40/);
  });
});

describe("sim-provider gemini dialect", () => {
  it("answers generateContent with a candidate and usageMetadata, key in the header or in ?key=", async () => {
    const { url } = await start();
    const body = { systemInstruction: { parts: [{ text: "Labels: billing, shipping, other" }] }, contents: [parts("Where is my shipping update?")] };
    for (const [headers, query] of [[undefined, ""], [{}, "?key=alpha-key"]] as const) {
      const res = await generate(url, "steady", body, headers, query);
      expect(res.status).toBe(200);
      const json = res.json();
      expect(json).toMatchObject({ candidates: [{ content: { role: "model", parts: [{ text: "shipping" }] }, finishReason: "STOP", index: 0 }], modelVersion: "steady" });
      expect(json.responseId).toMatch(/^sim-\d+$/);
      const prompt = estimatePromptTokens([{ content: "Labels: billing, shipping, other" }, user("Where is my shipping update?")]);
      expect(json.usageMetadata).toEqual({ promptTokenCount: prompt, candidatesTokenCount: 2, totalTokenCount: prompt + 2 });
    }
  });

  it("answers JSON for responseMimeType application/json, and MAX_TOKENS at maxOutputTokens", async () => {
    const { url } = await start();
    const json = (await generate(url, "steady", { contents: [parts("hello")], generationConfig: { responseMimeType: "application/json" } })).json();
    expect(JSON.parse(json.candidates[0].content.parts[0].text)).toEqual({ reply: "Simulated steady reply: hello" });
    const cut = (await generate(url, "steady", { contents: [parts("a fairly long question about trains")], generationConfig: { maxOutputTokens: 2 } })).json();
    expect(cut.candidates[0].finishReason).toBe("MAX_TOKENS");
  });

  it("refuses like Gemini: no key 403, a wrong key 400 API_KEY_INVALID, an unknown model 404, a bad role 400", async () => {
    const { url } = await start();
    const noKey = await generate(url, "steady", { contents: [parts("hi")] }, {});
    expect(noKey.status).toBe(403);
    expect(noKey.json().error).toMatchObject({ code: 403, status: "PERMISSION_DENIED" });
    const wrong = await generate(url, "steady", { contents: [parts("hi")] }, { "x-goog-api-key": "wrong" });
    expect(wrong.status).toBe(400);
    expect(wrong.json().error).toMatchObject({ code: 400, status: "INVALID_ARGUMENT", details: [{ reason: "API_KEY_INVALID" }] });
    const missing = await generate(url, "nope", { contents: [parts("hi")] });
    expect(missing.status).toBe(404);
    expect(missing.json().error).toMatchObject({ status: "NOT_FOUND", message: expect.stringContaining("models/nope") });
    const role = await generate(url, "steady", { contents: [{ role: "assistant", parts: [{ text: "hi" }] }] });
    expect(role.status).toBe(400);
    expect(role.json().error.status).toBe("INVALID_ARGUMENT");
  });

  it("answers 429 RESOURCE_EXHAUSTED with RetryInfo, and 503 UNAVAILABLE for the 503 fault", async () => {
    const { url, sim } = await start();
    const limited = await generate(url, "limited", { contents: [parts("hi")] });
    expect(limited.status).toBe(429);
    expect(limited.json().error).toMatchObject({ code: 429, status: "RESOURCE_EXHAUSTED", details: [{ "@type": "type.googleapis.com/google.rpc.RetryInfo", retryDelay: "7s" }] });
    sim.control("alpha", "steady", { outage: "503" });
    const down = await generate(url, "steady", { contents: [parts("hi")] });
    expect(down.status).toBe(503);
    expect(down.json().error).toMatchObject({ code: 503, status: "UNAVAILABLE" });
  });

  it("counts only the prompt against the context window, as Gemini does", async () => {
    const { url } = await start();
    expect((await generate(url, "small-ctx", { contents: [parts("x".repeat(80))], generationConfig: { maxOutputTokens: 30 } })).status).toBe(200);
    const long = await generate(url, "small-ctx", { contents: [parts("x".repeat(200))] });
    expect(long.status).toBe(400);
    expect(long.json().error.message).toMatch(/^The input token count \(\d+\) exceeds the maximum number of tokens allowed \(40\)\.$/);
  });
});

describe("adapters through the sim-provider", () => {
  const bases: Record<Dialect, string> = { openai: "/alpha/v1", anthropic: "/alpha/v1", gemini: "/alpha/v1beta" };
  const classify = (extra: Record<string, unknown> = {}) =>
    ChatRequestSchema.parse({
      messages: [{ role: "system", content: "Classify the support ticket.\nLabels: billing, shipping, other" }, user("I need a refund on my billing")],
      response_format: { type: "json_object" },
      ...extra,
    });

  async function call(dialect: Dialect, model: string, req: ChatRequest, apiKey = "alpha-key", setup?: (sim: SimProvider) => void) {
    const { url, sim } = await start();
    setup?.(sim);
    const client = createProviderClient({ base_url: `${url}${bases[dialect]}`, max_concurrency: 2 });
    try {
      const adapter = ADAPTERS[dialect];
      const reply = await client.send(adapter.toRequest(req, { provider: "alpha", upstream: model, apiKey }), 2_000);
      return adapter.fromResponse(reply, req);
    } finally {
      await client.close();
    }
  }

  describe.each(["openai", "anthropic", "gemini"] as const)("%s", (dialect) => {
    it("a classification comes back as a normalised chat.completion with JSON content and the provider's usage", async () => {
      const { response, usage, usageEstimated } = await call(dialect, "steady", classify());
      expect(response).toMatchObject({ object: "chat.completion", choices: [{ index: 0, finish_reason: "stop", message: { role: "assistant" } }] });
      expect(JSON.parse(response.choices[0]!.message.content!)).toEqual({ label: "billing" });
      expect(response.created).toBeGreaterThan(1_700_000_000);
      expect(usageEstimated).toBe(false);
      expect(usage.completion_tokens).toBe(estimateTextTokens('{"label":"billing"}'));
      expect(usage.total_tokens).toBe(usage.prompt_tokens + usage.completion_tokens);
    });

    it("max_tokens ends as finish_reason length", async () => {
      const { response } = await call(dialect, "steady", ChatRequestSchema.parse({ messages: [user("a fairly long question about trains")], max_tokens: 2 }));
      expect(response.choices[0]?.finish_reason).toBe("length");
    });

    it.each<[string, string, string, ((sim: SimProvider) => void) | undefined, string, Record<string, unknown>]>([
      ["a 429", "limited", "alpha-key", undefined, "rate_limited", { retryAfterMs: 7000 }],
      ["an overload", "steady", "alpha-key", (sim) => sim.control("alpha", "steady", { outage: "503" }), "unavailable", {}],
      ["a 500", "steady", "alpha-key", (sim) => sim.control("alpha", "steady", { errors: { rate_500: 1 } }), "unavailable", { status: 500 }],
      ["a context-window refusal", "small-ctx", "alpha-key", undefined, "bad_request", { contextLength: true, status: 400 }],
      ["a wrong key", "steady", "wrong-key", undefined, "auth_failed", {}],
      ["a malformed body", "garbled", "alpha-key", undefined, "invalid_output", { status: 200 }],
    ])("%s fails as %s", async (_name, model, apiKey, setup, kind, extra) => {
      const req = model === "small-ctx" ? classify({ messages: [user("x".repeat(400))] }) : classify();
      const err = await call(dialect, model, req, apiKey, setup).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(ProviderError);
      expect(err).toMatchObject({ kind, ...extra });
    });
  });
});

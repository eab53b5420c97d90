import { Ajv2020 } from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
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
      rebel: { disobey_rate: 1 }
      fickle: { disobey_rate: 0.5 }
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

  it("in JSON mode without a schema, answers an extraction prompt with the fields it names, taken from the text", async () => {
    const { url } = await start();
    const ask = async (content: string) =>
      JSON.parse((await chat(url, { model: "steady", response_format: { type: "json_object" }, messages: [user(content)] })).json().choices[0].message.content);
    expect(await ask("Extract the name, email and phone number from this message: 'Hi, I'm John Park, john@park.io, +1 415 555 0100'")).toEqual({
      name: "John Park",
      email: "john@park.io",
      phone_number: "+1 415 555 0100",
    });
    expect(await ask("Can you get the invoice total and due date from 'Invoice 7731: $1,240.50 due March 3, 2027'")).toEqual({ invoice_total: "$1,240.50", due_date: "March 3, 2027" });
    // Nothing named to extract: the sim's plain JSON answer.
    expect(await ask("How are trains coupled?")).toEqual({ reply: expect.stringMatching(/^Simulated steady reply: /) });
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

    it("a json_schema request comes back as content valid against the schema", async () => {
      const req = ChatRequestSchema.parse({
        messages: [user(SHIPPING_TEXT)],
        response_format: { type: "json_schema", json_schema: { name: "ticket", schema: LABEL_SCHEMA, strict: true } },
      });
      const { response } = await call(dialect, "steady", req);
      expect(JSON.parse(response.choices[0]!.message.content!)).toEqual({ label: "shipping" });
    });

    it("a forced tool choice comes back as a tool call with valid arguments", async () => {
      const req = ChatRequestSchema.parse({
        messages: [user("Where is order A-5531? It is late.")],
        tools: ORDER_TOOLS.map((t) => ({ type: "function", function: t })),
        tool_choice: { type: "function", function: { name: "lookup_order" } },
      });
      const { response } = await call(dialect, "steady", req);
      const [toolCall] = response.choices[0]!.message.tool_calls as { function: { name: string; arguments: string } }[];
      expect(toolCall!.function.name).toBe("lookup_order");
      expect(valid(paramsOf("lookup_order"), JSON.parse(toolCall!.function.arguments))).toBe("");
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
      // A body that is not JSON is the provider's fault, not the model's (MalformedResponseError).
      ["a malformed body", "garbled", "alpha-key", undefined, "malformed_response", { status: 200 }],
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

// ---------------------------------------------------------------------------------------------
// Obeying the request: schemas, tools, choices, n, prose, and the disobedience knob.

const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats.default(ajv);
const valid = (schema: object, value: unknown) => {
  const ok = ajv.validate(schema, value);
  return ok ? "" : ajv.errorsText();
};

const MODERATION_SCHEMA = {
  type: "object",
  properties: {
    flagged: { type: "boolean" },
    categories: { type: "array", items: { type: "string", enum: ["harassment", "hate", "violence", "self_harm", "spam"] } },
    score: { type: "number", minimum: 0, maximum: 1 },
  },
  required: ["flagged", "categories", "score"],
  additionalProperties: false,
};
const LABEL_SCHEMA = {
  type: "object",
  properties: { label: { type: "string", enum: ["billing", "technical", "account", "shipping"] } },
  required: ["label"],
  additionalProperties: false,
};
const EXTRACT_SCHEMA = {
  type: "object",
  properties: {
    order_number: { type: "string", pattern: "^[A-Z]-\\d{4}$" },
    customer: { type: "string", minLength: 1, maxLength: 40 },
    city: { type: ["string", "null"] },
    email: { type: "string", format: "email" },
    placed_at: { type: "string", format: "date-time" },
    quantity: { type: "integer", minimum: 1, maximum: 100 },
    total: { type: "number", exclusiveMinimum: 0, multipleOf: 0.01 },
    items: { type: "array", items: { $ref: "#/$defs/item" }, minItems: 1, maxItems: 3 },
    priority: { anyOf: [{ type: "string", enum: ["low", "high"] }, { type: "null" }] },
  },
  required: ["order_number", "customer", "city", "email", "placed_at", "quantity", "total", "items", "priority"],
  additionalProperties: false,
  $defs: { item: { type: "object", properties: { sku: { type: "string", minLength: 3 }, gift: { type: "boolean" } }, required: ["sku", "gift"] } },
};
const ORDER_TEXT = "Order A-5531 from Dana Smith, ship to Berlin on 2026-03-04. Contact dana@acme.io, 3 units, $37.50 total.";
const SHIPPING_TEXT = "Route this customer email to the right queue: 'My package never arrived and tracking has not moved in a week.'";
const BILLING_TEXT = "I was billed twice for the same month";

/** A plain JSON Schema as Gemini's OpenAPI-subset Schema: upper-case types, no additionalProperties, `nullable` for ["x", "null"]. */
function toGeminiSchema(schema: unknown): unknown {
  if (typeof schema !== "object" || schema === null || Array.isArray(schema)) return schema;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(schema)) {
    if (k === "additionalProperties" || k === "$defs") continue;
    if (k === "type") {
      const types = (Array.isArray(v) ? v : [v]) as string[];
      out.type = types.find((t) => t !== "null")!.toUpperCase();
      if (types.includes("null")) out.nullable = true;
    } else if (k === "properties") out.properties = Object.fromEntries(Object.entries(v as object).map(([p, sub]) => [p, toGeminiSchema(sub)]));
    else if (k === "items") out.items = toGeminiSchema(v);
    else out[k] = v;
  }
  return out;
}

interface SchemaForm {
  readonly name: string;
  /** Sends one request carrying `schema` in this form; resolves to the answer's text. */
  send(url: string, schema: object, text: string, model?: string): Promise<string>;
}

const anthropicText = (body: { content: { type: string; text: string }[] }) => body.content.find((b) => b.type === "text")!.text;
const geminiText = (body: { candidates: { content: { parts: { text: string }[] } }[] }) => body.candidates[0]!.content.parts[0]!.text;

const SCHEMA_FORMS: readonly SchemaForm[] = [
  {
    name: "openai response_format json_schema",
    send: async (url, schema, text, model = "steady") =>
      (await chat(url, { model, messages: [user(text)], response_format: { type: "json_schema", json_schema: { name: "out", schema, strict: true } } })).json().choices[0].message.content,
  },
  {
    name: "anthropic output_config.format",
    send: async (url, schema, text, model = "steady") =>
      anthropicText((await messages(url, { model, max_tokens: 1024, messages: [user(text)], output_config: { format: { type: "json_schema", schema } } })).json()),
  },
  {
    name: "anthropic output_format (older)",
    send: async (url, schema, text, model = "steady") =>
      anthropicText((await messages(url, { model, max_tokens: 1024, messages: [user(text)], output_format: { type: "json_schema", schema } })).json()),
  },
  {
    name: "anthropic JSON Schema in the system prompt",
    send: async (url, schema, text, model = "steady") => {
      const system = `Respond with only a JSON object: no other text and no Markdown code fence. The object must conform to this JSON Schema:\n${JSON.stringify(schema)}`;
      return anthropicText((await messages(url, { model, max_tokens: 1024, system, messages: [user(text)] })).json());
    },
  },
  {
    name: "gemini responseJsonSchema",
    send: async (url, schema, text, model = "steady") =>
      geminiText((await generate(url, model, { contents: [parts(text)], generationConfig: { responseMimeType: "application/json", responseJsonSchema: schema } })).json()),
  },
  {
    name: "gemini responseSchema (OpenAPI subset)",
    send: async (url, schema, text, model = "steady") =>
      geminiText((await generate(url, model, { contents: [parts(text)], generationConfig: { responseMimeType: "application/json", responseSchema: toGeminiSchema(schema) } })).json()),
  },
];

describe.each(SCHEMA_FORMS)("sim-provider obeys a schema: $name", (form) => {
  it("answers JSON valid against an extraction schema, taken from the text", async () => {
    const { url } = await start();
    const schema = form.name.includes("responseSchema") ? { ...EXTRACT_SCHEMA, properties: { ...EXTRACT_SCHEMA.properties, items: { type: "array", items: EXTRACT_SCHEMA.$defs.item, minItems: 1 } } } : EXTRACT_SCHEMA;
    const value = JSON.parse(await form.send(url, schema, ORDER_TEXT));
    expect(valid(schema, value)).toBe("");
    expect(value).toMatchObject({ order_number: "A-5531", customer: "Dana Smith", city: "Berlin", email: "dana@acme.io", quantity: 3, total: 37.5 });
    // The same request, the same answer.
    expect(JSON.parse(await form.send(url, schema, ORDER_TEXT))).toEqual(value);
  });

  it("a moderation schema flags an abusive text with the right category, and passes a kind one", async () => {
    const { url } = await start();
    const bad = JSON.parse(await form.send(url, MODERATION_SCHEMA, "You are a stupid idiot and everyone knows it"));
    expect(valid(MODERATION_SCHEMA, bad)).toBe("");
    expect(bad).toEqual({ flagged: true, categories: ["harassment"], score: 0.8 });
    const good = JSON.parse(await form.send(url, MODERATION_SCHEMA, "Thanks, the replacement arrived and works great"));
    expect(good).toEqual({ flagged: false, categories: [], score: 0 });
  });

  it("a label enum gets the sensible label for a natural prompt", async () => {
    const { url } = await start();
    expect(JSON.parse(await form.send(url, LABEL_SCHEMA, SHIPPING_TEXT))).toEqual({ label: "shipping" });
    expect(JSON.parse(await form.send(url, LABEL_SCHEMA, BILLING_TEXT))).toEqual({ label: "billing" });
    expect(JSON.parse(await form.send(url, LABEL_SCHEMA, "I can't sign in, the password reset link is broken"))).toEqual({ label: "account" });
  });
});

const ORDER_TOOLS = [
  {
    name: "lookup_order",
    description: "Find an order",
    parameters: {
      type: "object",
      properties: { order_number: { type: "string", pattern: "^[A-Z]-\\d{4}$" }, reason: { type: "string", enum: ["late", "damaged", "other"] }, urgent: { type: "boolean" } },
      required: ["order_number", "reason"],
      additionalProperties: false,
    },
  },
  {
    name: "cancel_order",
    parameters: { type: "object", properties: { order_number: { type: "string" }, refund: { type: "boolean" } }, required: ["order_number", "refund"] },
  },
];
const paramsOf = (name: string) => ORDER_TOOLS.find((t) => t.name === name)!.parameters;

describe("sim-provider calls a tool when the tool choice forces one", () => {
  it("openai: tool_choice required or a named function → tool_calls with valid arguments, finish_reason tool_calls", async () => {
    const { url } = await start();
    const tools = ORDER_TOOLS.map((t) => ({ type: "function", function: t }));
    for (const [choice, text, name] of [
      ["required", "Where is order A-5531? It is late.", "lookup_order"],
      ["required", "Please cancel order A-5531 and refund me", "cancel_order"],
      [{ type: "function", function: { name: "lookup_order" } }, "Please cancel order A-5531", "lookup_order"],
    ] as const) {
      const res = (await chat(url, { model: "steady", messages: [user(text)], tools, tool_choice: choice })).json();
      expect(res.choices[0]).toMatchObject({ index: 0, finish_reason: "tool_calls", message: { role: "assistant", content: null } });
      const [call] = res.choices[0].message.tool_calls;
      expect(call).toMatchObject({ id: expect.stringMatching(/^call_sim_/), type: "function", function: { name } });
      const args = JSON.parse(call.function.arguments);
      expect(valid(paramsOf(name), args)).toBe("");
      expect(args.order_number).toBe("A-5531");
      expect(res.usage.completion_tokens).toBe(estimateTextTokens(name) + estimateTextTokens(call.function.arguments));
    }
    const auto = (await chat(url, { model: "steady", messages: [user("Where is order A-5531?")], tools, tool_choice: "auto" })).json();
    expect(auto.choices[0]).toMatchObject({ finish_reason: "stop", message: { content: expect.any(String) } });
    expect(auto.choices[0].message.tool_calls).toBeUndefined();
    const unknown = await chat(url, { model: "steady", messages: [user("hi")], tools, tool_choice: { type: "function", function: { name: "nope" } } });
    expect(unknown.status).toBe(400);
    expect((await chat(url, { model: "steady", messages: [user("hi")], tool_choice: "required" })).status).toBe(400);
  });

  it("anthropic: tool_choice any or tool → a tool_use block with valid input, stop_reason tool_use", async () => {
    const { url } = await start();
    const tools = ORDER_TOOLS.map((t) => ({ name: t.name, description: t.description, input_schema: t.parameters }));
    for (const [choice, name] of [
      [{ type: "any" }, "lookup_order"],
      [{ type: "tool", name: "cancel_order" }, "cancel_order"],
    ] as const) {
      const res = (await messages(url, { model: "steady", max_tokens: 256, messages: [user("Where is order A-5531? It is late.")], tools, tool_choice: choice })).json();
      expect(res).toMatchObject({ type: "message", stop_reason: "tool_use", content: [{ type: "tool_use", id: expect.stringMatching(/^toolu_sim_/), name }] });
      expect(valid(paramsOf(name), res.content[0].input)).toBe("");
    }
    const auto = (await messages(url, { model: "steady", max_tokens: 256, messages: [user("Where is order A-5531?")], tools, tool_choice: { type: "auto" } })).json();
    expect(auto).toMatchObject({ stop_reason: "end_turn", content: [{ type: "text" }] });
  });

  it("gemini: functionCallingConfig mode ANY (with allowedFunctionNames) → a functionCall part with valid args", async () => {
    const { url } = await start();
    const tools = [{ functionDeclarations: ORDER_TOOLS.map((t) => ({ name: t.name, description: t.description, parameters: toGeminiSchema(t.parameters) })) }];
    for (const [config, name] of [
      [{ mode: "ANY" }, "lookup_order"],
      [{ mode: "ANY", allowedFunctionNames: ["cancel_order"] }, "cancel_order"],
    ] as const) {
      const res = (await generate(url, "steady", { contents: [parts("Where is order A-5531? It is late.")], tools, toolConfig: { functionCallingConfig: config } })).json();
      expect(res.candidates[0]).toMatchObject({ finishReason: "STOP", content: { role: "model", parts: [{ functionCall: { name } }] } });
      expect(valid(paramsOf(name), res.candidates[0].content.parts[0].functionCall.args)).toBe("");
    }
    const auto = (await generate(url, "steady", { contents: [parts("Where is order A-5531?")], tools, toolConfig: { functionCallingConfig: { mode: "AUTO" } } })).json();
    expect(auto.candidates[0].content.parts[0].text).toEqual(expect.any(String));
  });
});

describe("sim-provider answers n choices", () => {
  it("openai n: 3 → three choices, indexed, with usage counting all of them", async () => {
    const { url } = await start();
    const messagesIn = [{ role: "system", content: "Labels: billing, shipping, other" }, user(BILLING_TEXT)];
    const res = (await chat(url, { model: "steady", n: 3, messages: messagesIn })).json();
    expect(res.choices.map((c: { index: number }) => c.index)).toEqual([0, 1, 2]);
    for (const c of res.choices) expect(c).toMatchObject({ message: { content: "billing" }, finish_reason: "stop" });
    expect(res.usage.completion_tokens).toBe(3 * estimateTextTokens("billing"));
    expect((await chat(url, { model: "steady", n: 0, messages: messagesIn })).status).toBe(400);
  });

  it("gemini candidateCount: 3 → three candidates", async () => {
    const { url } = await start();
    const res = (await generate(url, "steady", { contents: [parts("hello")], generationConfig: { candidateCount: 3 } })).json();
    expect(res.candidates.map((c: { index: number }) => c.index)).toEqual([0, 1, 2]);
    expect(res.usageMetadata.candidatesTokenCount).toBe(3 * estimateTextTokens(res.candidates[0].content.parts[0].text));
    expect((await generate(url, "steady", { contents: [parts("hello")], generationConfig: { candidateCount: 9 } })).status).toBe(400);
  });
});

/** One text answer per dialect, for a system prompt (optional) and a user message. */
const ASK: Record<Dialect, (url: string, system: string | undefined, text: string, model?: string) => Promise<string>> = {
  openai: async (url, system, text, model = "steady") =>
    (await chat(url, { model, messages: [...(system ? [{ role: "system", content: system }] : []), user(text)] })).json().choices[0].message.content,
  anthropic: async (url, system, text, model = "steady") => anthropicText((await messages(url, { model, max_tokens: 256, ...(system ? { system } : {}), messages: [user(text)] })).json()),
  gemini: async (url, system, text, model = "steady") =>
    geminiText((await generate(url, model, { ...(system ? { systemInstruction: { parts: [{ text: system }] } } : {}), contents: [parts(text)] })).json()),
};

describe.each(["openai", "anthropic", "gemini"] as const)("sim-provider follows instructions in words (%s)", (dialect) => {
  it.each<[string | undefined, string, readonly string[], string | undefined]>([
    ["Answer with exactly one of: billing, technical, account", "My password reset email never arrives", ["billing", "technical", "account"], "account"],
    [undefined, "Classify it into billing, bug or other: the app crashes when I save", ["billing", "bug", "other"], "bug"],
    [undefined, "Is it a bug or a feature request? It would be nice to export to PDF.", ["bug", "feature request"], undefined],
    [undefined, "Which team should handle this: sales, support or legal? We will sue you over the contract.", ["sales", "support", "legal"], "legal"],
    ["Reply with one word: positive, negative or neutral.", "The product is awful and broke after a day", ["positive", "negative", "neutral"], "negative"],
    // The router's own instruction for a model without structured outputs (shared/acceptance/contract.ts).
    ["Answer with exactly one of these labels and nothing else: billing, technical, account, shipping.", SHIPPING_TEXT, ["billing", "technical", "account", "shipping"], "shipping"],
  ])("%s / %s → one of the choices", async (system, text, options, expected) => {
    const { url } = await start();
    const answer = await ASK[dialect](url, system, text);
    expect(options).toContain(answer);
    if (expected) expect(answer).toBe(expected);
  });

  it("a plain question or request gets prose, not an echo", async () => {
    const { url } = await start();
    const capital = await ASK[dialect](url, undefined, "What's the capital of France?");
    expect(capital).not.toMatch(/^Simulated/);
    expect(capital).toContain("capital of France");
    expect(() => JSON.parse(capital)).toThrow();
    const haiku = await ASK[dialect](url, undefined, "Write a haiku about rain");
    expect(haiku.split("\n")).toHaveLength(3);
    expect(haiku.toLowerCase()).toContain("rain");
    // A list of options inside an ordinary question is not a choice to make.
    const chat = await ASK[dialect](url, undefined, "I have a question about my account and my last invoice, can you help?");
    expect(chat.length).toBeGreaterThan(30);
    expect(await ASK[dialect](url, undefined, "What's the capital of France?")).toBe(capital);
  });
});

describe("sim-provider disobey_rate", () => {
  const LABELS_SYSTEM = "Classify the support ticket.\nLabels: billing, shipping, other";

  it("at 1 every answer with a contract breaks it; an answer without one is unchanged", async () => {
    const { url, sim } = await start();
    for (const form of SCHEMA_FORMS) {
      for (const [schema, text] of [[LABEL_SCHEMA, SHIPPING_TEXT], [MODERATION_SCHEMA, "you idiot"], [EXTRACT_SCHEMA, ORDER_TEXT], [LABEL_SCHEMA, BILLING_TEXT]] as const) {
        const content = await form.send(url, schema, text, "rebel");
        let value: unknown;
        try {
          value = JSON.parse(content);
        } catch {
          continue; // prose instead of JSON: broken, as it should be
        }
        expect(valid(schema, value), `${form.name}: ${content}`).not.toBe("");
      }
    }
    for (const dialect of ["openai", "anthropic", "gemini"] as const) {
      expect(["billing", "shipping", "other"]).not.toContain(await ASK[dialect](url, LABELS_SYSTEM, "refund my billing", "rebel"));
      expect(["billing", "technical", "account"]).not.toContain(await ASK[dialect](url, "Answer with exactly one of: billing, technical, account", "I was billed twice", "rebel"));
      expect(await ASK[dialect](url, undefined, "What's the capital of France?", "rebel")).toBe(await ASK[dialect](url, undefined, "What's the capital of France?", "steady"));
    }
    const json = await chat(url, { model: "rebel", response_format: { type: "json_object" }, messages: [user("hello")] });
    expect(() => JSON.parse(json.json().choices[0].message.content)).toThrow();
    const tools = ORDER_TOOLS.map((t) => ({ type: "function", function: t }));
    for (const text of ["Where is order A-5531?", "My order A-1234 is late", "Order B-7777 arrived damaged", "cancel it"]) {
      const res = (await chat(url, { model: "rebel", messages: [user(text)], tools, tool_choice: { type: "function", function: { name: "lookup_order" } } })).json();
      const call = res.choices[0].message.tool_calls?.[0];
      if (call) expect(valid(paramsOf("lookup_order"), JSON.parse(call.function.arguments))).not.toBe("");
      else expect(res.choices[0].message.content).toEqual(expect.any(String));
    }
    expect(sim.stats().models["alpha/rebel"]?.disobeyed).toBeGreaterThan(30);
    expect(sim.stats().models["alpha/rebel"]?.disobeyed).toBeLessThan(sim.stats().models["alpha/rebel"]!.requests);
  });

  it("at 0 (the default) every answer keeps the contract", async () => {
    const { url, sim } = await start();
    for (const form of SCHEMA_FORMS) {
      for (const [schema, text] of [[LABEL_SCHEMA, SHIPPING_TEXT], [MODERATION_SCHEMA, "you idiot"], [EXTRACT_SCHEMA, ORDER_TEXT]] as const) {
        // Gemini's Schema has no $defs, so the extraction schema (which uses one) stays with the other forms.
        if (form.name.includes("responseSchema") && schema === EXTRACT_SCHEMA) continue;
        expect(valid(schema, JSON.parse(await form.send(url, schema, text)))).toBe("");
      }
    }
    for (const dialect of ["openai", "anthropic", "gemini"] as const) {
      expect(["billing", "shipping", "other"]).toContain(await ASK[dialect](url, LABELS_SYSTEM, "refund my billing"));
    }
    expect(sim.stats().models["alpha/steady"]?.disobeyed).toBe(0);
  });

  it("is drawn from the model's seeded stream: a run replays, and the control API sets it", async () => {
    const run = async () => {
      const { url } = await start();
      const out: string[] = [];
      for (let i = 0; i < 30; i++) out.push(await ASK.openai(url, LABELS_SYSTEM, `refund my billing ${i}`, "fickle"));
      return out;
    };
    const first = await run();
    expect(await run()).toEqual(first);
    const broken = first.filter((a) => !["billing", "shipping", "other"].includes(a)).length;
    expect(broken).toBeGreaterThan(5);
    expect(broken).toBeLessThan(25);

    const { url, sim } = await start();
    const post = (body: unknown) => request(`${url}/control/alpha/steady`, { method: "POST", body: JSON.stringify(body) }).then((r) => r.statusCode);
    expect(await post({ disobey_rate: 2 })).toBe(400);
    expect(await post({ disobey_rate: 1 })).toBe(200);
    expect(sim.state().models["alpha/steady"]?.behaviour.disobey_rate).toBe(1);
    expect(await ASK.openai(url, LABELS_SYSTEM, "refund my billing")).toBe("unsure");
    sim.reset();
    expect(await ASK.openai(url, LABELS_SYSTEM, "refund my billing")).toBe("billing");
  });
});

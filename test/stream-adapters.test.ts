/**
 * The dialects' stream parsers on recorded streams (`__fixtures__/<dialect>/stream-*.sse`, each
 * the documented framing of the answer its unstreamed fixture holds), and against the
 * sim-provider: a streamed answer parses to the same Completion as the same answer unstreamed,
 * and an error after the first token is the dialect's typed ProviderError.
 */
import { readFileSync } from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import { SseDecoder } from "../shared/adapters/convert.ts";
import { MalformedResponseError, ProviderError, UnavailableError } from "../shared/adapters/errors.ts";
import { createProviderClient } from "../shared/adapters/http.ts";
import { ADAPTERS } from "../shared/adapters/index.ts";
import type { Completion, Dialect, HttpReply, StreamDelta } from "../shared/adapters/types.ts";
import { ChatRequestSchema, type ChatRequest } from "../shared/contract/job.ts";
import { parseScenario } from "../services/sim-provider/scenario.ts";
import { createSimProvider, type SimProvider } from "../services/sim-provider/server.ts";

const DIALECTS = ["openai", "anthropic", "gemini"] as const;
const HEADERS = { "content-type": "text/event-stream", date: "Tue, 04 Mar 2025 10:15:30 GMT" };
const target = { provider: "acme", upstream: "up-model", apiKey: "k-123" };
const hi = ChatRequestSchema.parse({ messages: [{ role: "user", content: "hi" }] });

const sse = (dialect: Dialect, name: string) => readFileSync(new URL(`../shared/adapters/__fixtures__/${dialect}/${name}.sse`, import.meta.url), "utf8");

function unstreamed(dialect: Dialect, name: string): Completion {
  const file = new URL(`../shared/adapters/__fixtures__/${dialect}/${name}.json`, import.meta.url);
  const recorded = JSON.parse(readFileSync(file, "utf8")) as { status: number; headers: Record<string, string>; body: unknown };
  return ADAPTERS[dialect].fromResponse({ status: recorded.status, headers: recorded.headers, body: JSON.stringify(recorded.body) }, hi);
}

/** Feeds `body` in pieces of `size` characters, as a network would cut it; returns the deltas and the parser. */
function feed(dialect: Dialect, body: string, size = 7, request: ChatRequest = hi) {
  const decoder = new SseDecoder();
  const parser = ADAPTERS[dialect].streamParser(request);
  const deltas: StreamDelta[] = [];
  for (let i = 0; i < body.length; i += size) for (const event of decoder.push(body.slice(i, i + size))) deltas.push(...parser.push(event));
  return { deltas, parser };
}

const text = (deltas: readonly StreamDelta[]) => deltas.map((d) => ("content" in d ? d.content : "")).join("");

/** Tool-call deltas put back together by index, as a client of OpenAI's chunks does. */
function calls(deltas: readonly StreamDelta[]) {
  const out: { id: string; name: string; arguments: string }[] = [];
  for (const d of deltas) {
    if (!("tool_calls" in d)) continue;
    for (const t of d.tool_calls) {
      const call = (out[t.index] ??= { id: "", name: "", arguments: "" });
      if (t.id) call.id = t.id;
      if (t.function.name) call.name += t.function.name;
      call.arguments += t.function.arguments;
    }
  }
  return out;
}

/** What the caller of either path reads: ids, the message, the finish reason, the usage. */
const essentials = (c: Completion) => ({
  id: c.response.id,
  model: c.response.model,
  created: c.response.created,
  content: c.response.choices[0]!.message.content,
  tool_calls: c.response.choices[0]!.message.tool_calls,
  finish_reason: c.response.choices[0]!.finish_reason,
  usage: c.usage,
  usageEstimated: c.usageEstimated,
});

describe("SseDecoder", () => {
  it("reads events cut anywhere, CRLF split across pieces, comments, names and multi-line data", () => {
    const body = ": keep-alive\r\nevent: one\r\ndata: a\r\ndata: b\r\n\r\ndata: {\"x\":1}\n\n\rdata: last\r\r";
    for (const size of [1, 2, 3, 5, body.length]) {
      const decoder = new SseDecoder();
      const events = [];
      for (let i = 0; i < body.length; i += size) events.push(...decoder.push(body.slice(i, i + size)));
      events.push(...decoder.push("\n"));
      expect(events).toEqual([
        { event: "one", data: "a\nb" },
        { event: undefined, data: '{"x":1}' },
        { event: undefined, data: "last" },
      ]);
    }
  });
});

describe.each(DIALECTS)("%s stream parser", (dialect) => {
  it("a streamed text answer gives its text piece by piece and, at the end, the Completion the unstreamed answer gives", () => {
    const { deltas, parser } = feed(dialect, sse(dialect, "stream-text"));
    const whole = parser.finish(HEADERS);
    expect(essentials(whole)).toEqual(essentials(unstreamed(dialect, "text")));
    expect(deltas.length).toBeGreaterThan(1);
    expect(text(deltas)).toBe(whole.response.choices[0]!.message.content);
  });

  it("a streamed tool call gives the call's id, name and argument fragments, and the same tool_calls as unstreamed", () => {
    const { deltas, parser } = feed(dialect, sse(dialect, "stream-tool-call"));
    const whole = parser.finish(HEADERS);
    expect(essentials(whole)).toEqual(essentials(unstreamed(dialect, "tool-call")));
    const streamed = calls(deltas);
    const final = whole.response.choices[0]!.message.tool_calls as { id: string; function: { name: string; arguments: string } }[];
    expect(streamed.map((c) => ({ id: c.id, name: c.name, args: JSON.parse(c.arguments) }))).toEqual(final.map((c) => ({ id: c.id, name: c.function.name, args: JSON.parse(c.function.arguments) })));
  });

  it("an error event after the first token throws the dialect's typed error, once the tokens before it were given", () => {
    const decoder = new SseDecoder();
    const parser = ADAPTERS[dialect].streamParser(hi);
    const deltas: StreamDelta[] = [];
    let thrown: unknown;
    try {
      for (const event of decoder.push(sse(dialect, "stream-error"))) deltas.push(...parser.push(event));
    } catch (err) {
      thrown = err;
    }
    expect(text(deltas)).toBe("The order");
    expect(thrown).toBeInstanceOf(UnavailableError);
    expect(thrown).toMatchObject({ kind: "unavailable", transient: true, status: 200 });
  });

  it("a stream that stops before the API's end is a malformed response, not an answer", () => {
    const body = sse(dialect, "stream-text");
    // Everything from the finish reason on: Gemini's last chunk, OpenAI's finish chunk, Anthropic's message_delta.
    const cut =
      dialect === "gemini" ? body.slice(0, body.indexOf("\r\n\r\n") + 4)
      : dialect === "openai" ? body.slice(0, body.indexOf('"finish_reason":"stop"')).slice(0, body.slice(0, body.indexOf('"finish_reason":"stop"')).lastIndexOf("data: {"))
      : body.slice(0, body.lastIndexOf("event: message_delta"));
    const { parser } = feed(dialect, cut);
    expect(() => parser.finish(HEADERS)).toThrow(MalformedResponseError);
  });

  it("an event whose data is not JSON is a malformed response", () => {
    const parser = ADAPTERS[dialect].streamParser(hi);
    expect(() => parser.push({ event: dialect === "anthropic" ? "content_block_delta" : undefined, data: "{not json" })).toThrow(MalformedResponseError);
  });
});

describe("stream requests", () => {
  it("openai: the same body with stream: true and stream_options.include_usage", () => {
    const call = ADAPTERS.openai.toStreamRequest(hi, target);
    expect(call.path).toBe("/chat/completions");
    expect(JSON.parse(call.body)).toEqual({ ...JSON.parse(ADAPTERS.openai.toRequest(hi, target).body), stream: true, stream_options: { include_usage: true } });
  });

  it("anthropic: the same Messages body with stream: true", () => {
    const call = ADAPTERS.anthropic.toStreamRequest(hi, target);
    expect(call.path).toBe("/messages");
    expect(JSON.parse(call.body)).toEqual({ ...JSON.parse(ADAPTERS.anthropic.toRequest(hi, target).body), stream: true });
    expect(call.headers["x-api-key"]).toBe("k-123");
  });

  it("gemini: the same body to :streamGenerateContent?alt=sse", () => {
    const call = ADAPTERS.gemini.toStreamRequest(hi, target);
    expect(call.path).toBe("/models/up-model:streamGenerateContent?alt=sse");
    expect(call.body).toBe(ADAPTERS.gemini.toRequest(hi, target).body);
  });
});

describe("streamed from the sim-provider", () => {
  const SCENARIO = `
providers:
  alpha:
    api_key: alpha-key
    models:
      steady: { stream_token_delay_ms: 0, usage_details: { cached_tokens: 3, reasoning_tokens: 5 } }
      breaks: { stream_token_delay_ms: 0, stream_fail_after_tokens: 2 }
      dripping: { stream_token_delay_ms: 2 }
`;
  const bases: Record<Dialect, string> = { openai: "/alpha/v1", anthropic: "/alpha/v1", gemini: "/alpha/v1beta" };
  const running: SimProvider[] = [];
  afterEach(async () => {
    await Promise.all(running.splice(0).map((s) => s.close()));
  });

  async function both(dialect: Dialect, model: string, req: ChatRequest) {
    const sim = createSimProvider(parseScenario(SCENARIO, "stream-scenario.yaml", {}));
    running.push(sim);
    const url = await sim.listen();
    const client = createProviderClient({ base_url: `${url}${bases[dialect]}`, max_concurrency: 2 });
    const adapter = ADAPTERS[dialect];
    const to = { provider: "alpha", upstream: model, apiKey: "alpha-key" };
    try {
      const plain = adapter.fromResponse(await client.send(adapter.toRequest(req, to), 2_000), req);
      const decoder = new SseDecoder();
      const parser = adapter.streamParser(req);
      const deltas: StreamDelta[] = [];
      let reply: HttpReply | undefined;
      let error: unknown;
      try {
        reply = await client.stream(adapter.toStreamRequest(req, to), 2_000, undefined, (piece) => {
          for (const event of decoder.push(piece)) deltas.push(...parser.push(event));
          return 0;
        });
      } catch (err) {
        error = err;
      }
      return { plain, deltas, error, streamed: reply && parser.finish(reply.headers), stats: sim.stats().models[`alpha/${model}`]! };
    } finally {
      await client.close();
    }
  }

  const ask = (extra: Record<string, unknown> = {}) => ChatRequestSchema.parse({ messages: [{ role: "user", content: "Tell me about the weather in Lisbon in spring." }], ...extra });
  const lookup = { type: "function", function: { name: "lookup_order", parameters: { type: "object", properties: { order_id: { type: "string" } }, required: ["order_id"] } } };

  it("leaves the socket unread while the reader says it will send nothing: the tokens that came meanwhile arrive in one piece", async () => {
    const sim = createSimProvider(parseScenario(SCENARIO, "stream-scenario.yaml", {}));
    running.push(sim);
    const client = createProviderClient({ base_url: `${await sim.listen()}/alpha/v1`, max_concurrency: 2 });
    const to = { provider: "alpha", upstream: "dripping", apiKey: "alpha-key" };
    const req = ask();
    /** The answer's text and when each of its pieces came, when the reader asks for `quietMs` after each. */
    const read = async (quietMs: number) => {
      const decoder = new SseDecoder();
      const parser = ADAPTERS.openai.streamParser(req);
      const at: number[] = [];
      let text = "";
      await client.stream(ADAPTERS.openai.toStreamRequest(req, to), 5_000, undefined, (piece) => {
        at.push(performance.now());
        for (const event of decoder.push(piece)) for (const d of parser.push(event)) if ("content" in d) text += d.content;
        return quietMs;
      });
      return { pieces: at.length, gaps: at.slice(1).map((t, i) => t - at[i]!), text };
    };
    try {
      const eager = await read(0);
      const quiet = await read(25);
      expect(quiet.text).toBe(eager.text);
      expect(eager.text.length).toBeGreaterThan(0);
      // The sim writes a token every 2 ms; read no sooner than 25 ms after the last piece, they
      // come several at a time (a slower machine only widens the gaps). 1 ms of slack: a timer
      // fires on the loop's cached clock.
      expect(quiet.pieces).toBeLessThan(eager.pieces);
      for (const gap of quiet.gaps) expect(gap).toBeGreaterThanOrEqual(24);
    } finally {
      await client.close();
    }
  });

  describe.each(DIALECTS)("%s", (dialect) => {
    it("a text answer streams word by word to the same content, finish reason and usage as unstreamed", async () => {
      const { plain, deltas, streamed, stats } = await both(dialect, "steady", ask());
      expect(streamed).toBeDefined();
      const { id: _a, created: _b, ...rest } = essentials(streamed!);
      const { id: _c, created: _d, ...expected } = essentials(plain);
      expect(rest).toEqual(expected);
      expect(deltas.length).toBeGreaterThan(3);
      expect(text(deltas)).toBe(plain.response.choices[0]!.message.content);
      expect(stats).toMatchObject({ streamed: 1, streaming: 0 });
    });

    it("a forced tool call streams as a call whose arguments add up to the unstreamed one's", async () => {
      const req = ask({ tools: [lookup], tool_choice: { type: "function", function: { name: "lookup_order" } } });
      const { plain, deltas, streamed } = await both(dialect, "steady", req);
      const final = streamed!.response.choices[0]!.message;
      expect(final.content).toBeNull();
      expect(streamed!.response.choices[0]!.finish_reason).toBe("tool_calls");
      expect(streamed!.usage).toEqual(plain.usage);
      const planCall = (plain.response.choices[0]!.message.tool_calls as { function: { name: string; arguments: string } }[])[0]!;
      const [call] = calls(deltas);
      expect(call!.name).toBe(planCall.function.name);
      expect(JSON.parse(call!.arguments)).toEqual(JSON.parse(planCall.function.arguments));
    });

    it("stream_fail_after_tokens: two tokens, then the dialect's error event, typed as a transient failure", async () => {
      const { deltas, error, stats } = await both(dialect, "breaks", ask());
      expect(deltas).toHaveLength(2);
      expect(error).toBeInstanceOf(ProviderError);
      expect(error).toMatchObject({ kind: "unavailable", status: 200 });
      expect(stats).toMatchObject({ streamed: 1, streaming: 0 });
    });
  });
});

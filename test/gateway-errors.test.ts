/**
 * Permanent failures through the gateway get statuses the official SDK does not retry, with its
 * default settings (retries on): a task whose check rejects every answer is a 422 after one call
 * per candidate, and a request larger than the JOBS stream accepts is a 413, not a retryable 503.
 */
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KEYS, startGatewayStack, type GatewayStack } from "./harness/gateway.ts";

let gs: GatewayStack;

beforeAll(async () => {
  gs = await startGatewayStack({
    extra: () => ({
      // Smaller than the gateway's own body limit (64 KiB in the harness): the queue refuses first.
      streams: { max_msg_size: "16KiB" },
      tasks: {
        picky: {
          tiers: [{ strategy: "cheapest", models: ["budget/lite", "swift/mini"] }, { models: ["premium/large"] }],
          output: { forbidden_patterns: ["/[a-z]/i"] },
        },
      },
    }),
  });
}, 30_000);

afterAll(async () => {
  await gs?.close();
}, 30_000);

/** The SDK as a user constructs it: default retries and timeout. */
const client = () => new OpenAI({ apiKey: KEYS.acme, baseURL: gs.gateway.url });
const calls = () => Object.values(gs.stack.sim.stats().models).reduce((n, m) => n + m.requests, 0);

describe("permanent failures are not retried by the SDK", () => {
  it("no candidate's answer passes the check → 422 invalid_output, one call per candidate", async () => {
    gs.stack.sim.reset();
    const err = await client()
      .chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "Describe the sea in one word." }] }, { headers: { "x-switchyard-task": "picky" } })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.UnprocessableEntityError);
    expect(err).toMatchObject({ status: 422, code: "invalid_output" });
    // Had it been retryable, the SDK's two retries would have tripled this.
    expect(calls()).toBe(3);
  });

  it("a request larger than the JOBS stream accepts → 413 request_too_large", async () => {
    gs.stack.sim.reset();
    const big = "word ".repeat(6_000);
    const err = await client()
      .chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: big }] })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect(err).toMatchObject({ status: 413, code: "request_too_large" });
    expect(calls()).toBe(0);
  });
});

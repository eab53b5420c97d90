/**
 * Gateway keys limited across gateway instances (README "Gateway", access): two gateways on one
 * NATS share each key's requests per second, tokens per minute and allowed models, through the
 * official `openai` SDK; a key revoked in the file is refused without a restart.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { parse, stringify } from "yaml";
import { hashKey } from "../services/gateway/auth.ts";
import { startGateway, type RunningGateway } from "../services/gateway/main.ts";
import { createLogger } from "../shared/log.ts";
import { gatewayConfigYaml } from "./harness/gateway.ts";
import { startStack, type TestStack } from "./harness/stack.ts";

const KEYS = {
  /** 0.1 requests per second with a burst of 6: six at once across both gateways, then one every 10 s. */
  shared: "sk-shared-limit-key",
  /** 200 tokens a minute: one request with max_tokens 150 spends it. */
  tokens: "sk-token-limit-key",
  /** Served only by swift/mini. */
  pinned: "sk-pinned-model-key",
};

function configYaml(simUrl: string): string {
  const cfg = parse(gatewayConfigYaml(simUrl)) as { gateway: { keys: Record<string, unknown> } };
  cfg.gateway.keys.shared = { sha256: hashKey(KEYS.shared), tenant: "shared", requests_per_second: 0.1, burst: 6 };
  cfg.gateway.keys.tokens = { sha256: hashKey(KEYS.tokens), tenant: "tokens", tokens_per_minute: 200 };
  cfg.gateway.keys.pinned = { sha256: hashKey(KEYS.pinned), tenant: "pinned", models: ["swift/mini"] };
  return stringify(cfg);
}

const moderation = (text: string) => [{ role: "user" as const, content: text }];

describe("two gateways sharing the keys' limits", () => {
  let stack: TestStack;
  let file: string;
  const gateways: RunningGateway[] = [];
  const client = (g: number, key: string, opts: ConstructorParameters<typeof OpenAI>[0] = {}) => new OpenAI({ apiKey: key, baseURL: gateways[g]!.url, maxRetries: 0, ...opts });

  beforeAll(async () => {
    stack = await startStack({ configYaml });
    file = join(mkdtempSync(join(tmpdir(), "sy-keylimits-")), "switchyard.yaml");
    writeFileSync(file, stack.configYaml);
    const logger = createLogger("test-gateway", process.env.LOG_LEVEL ?? "silent");
    for (let i = 0; i < 2; i++) gateways.push(await startGateway({ natsUrl: stack.nats.url, config: stack.config, configFile: file, logger, listen: "127.0.0.1:0" }));
  });
  afterAll(async () => {
    for (const g of gateways) await g.stop();
    await stack?.close();
  });

  it("let a key's burst through once across both, and answer the rest 429 rate_limit_exceeded with Retry-After", async () => {
    const started = Date.now();
    const outcomes = await Promise.all(
      Array.from({ length: 20 }, (_, i) => client(i % 2, KEYS.shared).models.list().then(() => ({ g: i % 2, ok: true as const }), (err: unknown) => ({ g: i % 2, ok: false as const, err }))),
    );
    const elapsed = Date.now() - started;
    const ok = outcomes.filter((o) => o.ok);
    // Each gateway alone would let 6 through (12 in all); shared, the burst is 6, plus one per 10 s that passed.
    expect(ok.length).toBeGreaterThanOrEqual(6);
    expect(ok.length).toBeLessThanOrEqual(6 + Math.floor(elapsed / 10_000));
    for (const g of [0, 1]) {
      const limited = outcomes.filter((o) => o.g === g && !o.ok).map((o) => (o as { err: unknown }).err);
      expect(limited.length).toBeGreaterThan(0);
      for (const err of limited) {
        expect(err).toBeInstanceOf(OpenAI.RateLimitError);
        const e = err as InstanceType<typeof OpenAI.RateLimitError>;
        expect(e.status).toBe(429);
        expect(e.code).toBe("rate_limit_exceeded");
        expect(e.type).toBe("requests");
        expect(Number(e.headers?.get("retry-after"))).toBeGreaterThanOrEqual(1);
        expect(Number(e.headers?.get("retry-after-ms"))).toBeGreaterThan(0);
        // The key's name may be said; the key itself never.
        expect(e.message).not.toContain(KEYS.shared);
      }
    }
  });

  it("a call with the SDK's default retries waits out the Retry-After and is served", async () => {
    const c = client(1, KEYS.shared, { maxRetries: 2 });
    const completion = await c.chat.completions.create({ model: "auto", messages: moderation("have a nice day") });
    expect(completion.choices[0]?.message.content).toBeTruthy();
  }, 60_000);

  it("share a key's tokens per minute: the second request at either gateway gets 429 on tokens", async () => {
    const first = await client(0, KEYS.tokens).chat.completions.create({ model: "auto", messages: moderation("hello"), max_tokens: 150 });
    expect(first.usage?.total_tokens).toBeGreaterThan(0);
    for (const g of [0, 1]) {
      const err = await client(g, KEYS.tokens).chat.completions.create({ model: "auto", messages: moderation("hello again"), max_tokens: 150 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(OpenAI.RateLimitError);
      expect((err as InstanceType<typeof OpenAI.RateLimitError>).type).toBe("tokens");
      expect((err as InstanceType<typeof OpenAI.RateLimitError>).code).toBe("rate_limit_exceeded");
    }
  });

  it("serve a key only by its models: another model, or `auto` where the policy could choose another, is 403", async () => {
    const c = client(1, KEYS.pinned);
    const served = await c.chat.completions.create({ model: "swift/mini", messages: moderation("have a nice day") }).withResponse();
    expect(served.response.headers.get("x-switchyard-model")).toBe("swift/mini");
    for (const model of ["budget/lite", "auto"]) {
      const err = await c.chat.completions.create({ model, messages: moderation("have a nice day") }).catch((e: unknown) => e);
      expect(err, model).toBeInstanceOf(OpenAI.PermissionDeniedError);
      expect((err as InstanceType<typeof OpenAI.PermissionDeniedError>).code).toBe("model_not_allowed");
    }
  });

  it("refuse a key revoked in the file at both gateways, without a restart", async () => {
    expect((await client(0, KEYS.pinned).models.list()).data.length).toBeGreaterThan(0);
    const cfg = parse(stack.configYaml) as { gateway: { keys: Record<string, unknown> } };
    delete cfg.gateway.keys.pinned;
    writeFileSync(file, stringify(cfg));
    for (const g of [0, 1]) {
      await vi.waitFor(async () => expect(await client(g, KEYS.pinned).models.list().catch((e: unknown) => e)).toBeInstanceOf(OpenAI.AuthenticationError), { timeout: 10_000, interval: 100 });
    }
  });
});

/**
 * Per-key limits shared by every gateway instance: requests per second (with its burst) and
 * tokens per minute, each a KV clock of the limits bucket taken a slice at a time
 * (`shared/limits`), so two gateways allow a key its rate once, not twice. Also the key's
 * allowed models. Over a limit → 429 in OpenAI's `rate_limit_exceeded` shape with `retry-after`
 * and `retry-after-ms`, as OpenAI sends them (`type` `requests` or `tokens`, as OpenAI's say
 * which limit was hit).
 */
import type { KV } from "@nats-io/kv";
import type { Completion } from "../../shared/adapters/types.ts";
import type { ChatRequest } from "../../shared/contract/job.ts";
import { keyPart, SharedRate, type Taken } from "../../shared/limits/shared-rate.ts";
import { intervalOf, TOLERANCE_MS, type Rate } from "../../shared/limits/slices.ts";
import type { Catalog } from "../../shared/routing/catalog.ts";
import { estimatePromptTokens } from "../../shared/tokens.ts";
import type { Caller } from "./auth.ts";
import { GatewayError } from "./openai-error.ts";

export interface KeyLimits {
  /** One request of the key's `requests_per_second`; throws the 429 when over it. */
  take(caller: Caller): Promise<void>;
  /**
   * A chat request's model must be one of the key's `models` (403 otherwise), and its tokens
   * (prompt estimate plus `max_tokens`, or the task's expected completion) fit the key's
   * `tokens_per_minute` (429 otherwise).
   */
  admit(caller: Caller, request: ChatRequest, task: string, catalog: Catalog): Promise<void>;
  /** The request admitted was served: its token reservation settles to the usage. */
  used(caller: Caller, request: ChatRequest, usage: Completion["usage"]): void;
}

export function createKeyLimits(kv: () => Promise<KV>, clock: () => number = Date.now): KeyLimits {
  const rates = new Map<string, SharedRate>();
  const reserved = new WeakMap<ChatRequest, number>();

  /** The key's shared clock for `what`, retuned when a reload changed the key's numbers. */
  function rateOf(caller: Caller, what: "rps" | "tpm", rate: Rate, toleranceMs: number): SharedRate {
    const key = `key/${keyPart(caller.keyName)}/${what}`;
    let r = rates.get(key);
    if (r) r.retune(rate, toleranceMs);
    else rates.set(key, (r = new SharedRate(kv, key, rate, clock, toleranceMs)));
    return r;
  }

  function tooMany(caller: Caller, got: Extract<Taken, { ok: false }>, what: string, type: "requests" | "tokens"): GatewayError {
    const waitMs = Math.max(1, Math.ceil(got.retryAt - clock()));
    return new GatewayError(429, `Rate limit reached for key "${caller.keyName}" on ${type}: ${what}, across all gateways. Please try again in ${waitMs}ms.`, {
      type,
      code: "rate_limit_exceeded",
      headers: { "retry-after": String(Math.max(1, Math.ceil(waitMs / 1000))), "retry-after-ms": String(waitMs) },
    });
  }

  /** The shared clock's answer; NATS unreachable is a 503 (the limit cannot be checked, so the request is not let through). */
  async function taken(r: SharedRate, units: number): Promise<Taken> {
    try {
      return await r.take(units);
    } catch (err) {
      throw new GatewayError(503, `The key's limits cannot be checked right now (${(err as Error).message}); try again shortly.`, { code: "limits_unavailable" });
    }
  }

  return {
    async take(caller) {
      const rate = { limit: caller.ratePerSecond, windowMs: 1000 };
      // GCRA with a burst of b requests: the clock may run (b - 1) intervals ahead.
      const r = rateOf(caller, "rps", rate, (caller.burst - 1) * intervalOf(rate));
      const got = await taken(r, 1);
      if (!got.ok) throw tooMany(caller, got, `${caller.ratePerSecond} requests per second (burst ${caller.burst})`, "requests");
    },

    async admit(caller, request, task, catalog) {
      if (caller.models !== undefined) {
        const allowed = new Set(caller.models.map((m) => catalog.resolve(m) ?? m));
        const asked = request.model === undefined || request.model === "auto" ? undefined : catalog.resolve(request.model);
        // `auto` lets the task's policy choose, so every candidate it could choose must be allowed.
        const candidates = asked !== undefined ? [asked] : (catalog.tasks.get(task)?.tiers.flatMap((t) => t.candidates.map((c) => c.id)) ?? []);
        const refused = candidates.find((id) => !allowed.has(id));
        if (refused !== undefined) {
          throw new GatewayError(403, asked !== undefined ? `This API key may not use model "${refused}".` : `This API key may not use task "${task}" with model "auto": its policy may choose "${refused}". Name one of the key's models.`, {
            code: "model_not_allowed",
            param: "model",
          });
        }
      }
      if (caller.tokensPerMinute === undefined) return;
      const expected = catalog.tasks.get(task)?.expectedCompletionTokens ?? 256;
      const tokens = estimatePromptTokens(request.messages) + (request.max_completion_tokens ?? request.max_tokens ?? expected);
      const got = await taken(rateOf(caller, "tpm", { limit: caller.tokensPerMinute, windowMs: 60_000 }, TOLERANCE_MS), tokens);
      if (!got.ok) throw tooMany(caller, got, `${caller.tokensPerMinute} tokens per minute`, "tokens");
      reserved.set(request, tokens);
    },

    used(caller, request, usage) {
      const tokens = reserved.get(request);
      if (tokens === undefined || caller.tokensPerMinute === undefined) return;
      reserved.delete(request);
      rates.get(`key/${keyPart(caller.keyName)}/tpm`)?.settle(tokens, usage.prompt_tokens + usage.completion_tokens);
    },
  };
}

/**
 * API keys. Keys are configured as SHA-256 digests; a presented key
 * is hashed and looked up, so the gateway never holds the keys themselves (except the
 * development key `switchyard up` takes from SWITCHYARD_DEV_API_KEY, hashed on arrival).
 */
import { hash } from "node:crypto";
import type { GatewayConfig } from "../../shared/config/gateway-schema.ts";
import { GatewayError } from "./openai-error.ts";

export interface Caller {
  /** The key's name in the config: safe to log. */
  readonly keyName: string;
  readonly tenant: string;
  readonly task: string;
  /** Tasks the key may name in `x-switchyard-task`; undefined allows any. */
  readonly tasks: ReadonlySet<string> | undefined;
  readonly ratePerSecond: number;
  readonly burst: number;
  /** Undefined: no token limit. */
  readonly tokensPerMinute: number | undefined;
  /** Models (ids or aliases) the key may be served by; undefined allows any. */
  readonly models: readonly string[] | undefined;
}

export const DEV_KEY_NAME = "dev";

/** One-shot `crypto.hash`: it runs on every request, and makes no Hash object as createHash does. */
export function hashKey(key: string): string {
  return hash("sha256", key);
}

export class KeyTable {
  readonly #byHash = new Map<string, Caller>();

  /** `defaultTask` serves keys that name no task of their own, and the development key. */
  constructor(keys: GatewayConfig["keys"], defaultTask: string, devKey?: string) {
    for (const [name, k] of Object.entries(keys)) {
      const task = k.task ?? defaultTask;
      this.#byHash.set(k.sha256, {
        keyName: name,
        tenant: k.tenant,
        task,
        tasks: k.tasks ? new Set([task, ...k.tasks]) : undefined,
        ratePerSecond: k.requests_per_second,
        burst: k.burst ?? Math.max(1, Math.ceil(2 * k.requests_per_second)),
        tokensPerMinute: k.tokens_per_minute,
        models: k.models,
      });
    }
    if (devKey) this.#byHash.set(hashKey(devKey), { keyName: DEV_KEY_NAME, tenant: DEV_KEY_NAME, task: defaultTask, tasks: undefined, ratePerSecond: 1000, burst: 2000, tokensPerMinute: undefined, models: undefined });
  }

  get size(): number {
    return this.#byHash.size;
  }

  /** The caller an `Authorization: Bearer <key>` header names; throws a 401 otherwise. */
  authenticate(authorization: string | undefined): Caller {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? "");
    if (!m) {
      throw new GatewayError(401, "You didn't provide an API key. Send it as `Authorization: Bearer <key>` (the OpenAI SDKs do this for you with apiKey).", { code: "missing_api_key" });
    }
    const caller = this.#byHash.get(hashKey(m[1]!));
    // The key is not echoed back, not even partly: error bodies end up in logs.
    if (!caller) throw new GatewayError(401, "Incorrect API key provided.", { code: "invalid_api_key" });
    return caller;
  }
}

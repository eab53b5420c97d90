/**
 * Provider limits at the router: the `rpm`, `tpm` and `max_concurrency` of `providers.<p>.limits`
 * (the provider's pool) and `providers.<p>.models.<m>.limits`, taken from the shared KV clocks
 * (`shared-rate.ts`) and leases (`shared-slots.ts`) before each call, and the pause a 429's
 * Retry-After puts on a model at every worker at once.
 *
 * The pause travels on core NATS (`<ns>.switchyard.pause.<provider>`), not in KV: it is a
 * fire-and-forget fact that matters for seconds, every worker is subscribed, and a core publish
 * is one hop through the server, where a KV write and watch would add a store and a consumer
 * (test/provider-limits.test.ts measures the delay). A worker that starts during a pause misses
 * it and learns from its own first 429.
 */
import type { KV } from "@nats-io/kv";
import { nuid, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { z } from "zod";
import { RateLimitedError, type ProviderError } from "../adapters/errors.ts";
import { CallAbortedError, type CallCancel } from "../adapters/http.ts";
import type { Completion } from "../adapters/types.ts";
import type { LimitsConfig } from "../config/limits-schema.ts";
import type { Config } from "../config/schema.ts";
import type { ChatRequest } from "../contract/job.ts";
import { parseJsonOrUndefined } from "../json.ts";
import type { Logger } from "../log.ts";
import type { ModelInfo } from "../routing/catalog.ts";
import { estimatePromptTokens } from "../tokens.ts";
import { keyPart, SharedRate } from "./shared-rate.ts";
import { FULL_RETRY_MS, SharedSlots } from "./shared-slots.ts";

/** Own quota used up: the attempt counts as rate-limited (no HTTP status: the provider was never asked). */
export class QuotaRefusedError extends RateLimitedError {
  override readonly name = "QuotaRefusedError";
}

const PauseSchema = z.object({ m: z.string().min(1), p: z.string().min(1), until: z.number().finite(), at: z.number().finite() });
export type Pause = z.infer<typeof PauseSchema>;

type Limit =
  | { readonly kind: "rate"; readonly rate: SharedRate; readonly unit: "requests" | "tokens"; readonly label: string }
  | { readonly kind: "slots"; readonly slots: SharedSlots; readonly label: string };

export interface ProviderLimitsDeps {
  readonly nc: NatsConnection;
  /** The limits bucket, opened on the first call to a limited model. */
  readonly kv: () => Promise<KV>;
  readonly config: Config;
  readonly pauseSubject: string;
  readonly clock: () => number;
  readonly logger: Logger;
  /** A pause heard from any worker (this one too): the model must not be called before `until`. */
  readonly onPause: (pause: Pause) => void;
}

export interface ProviderLimits {
  /**
   * Resolves when the model's limits let a call go: at once, with no NATS round trip, while its
   * slices last or when it has no limits. Waits for quota under `on_rate_limited: wait` for at
   * most `maxWaitMs`; else, or past that, throws QuotaRefusedError. A cancel throws CallAbortedError.
   */
  admit(model: ModelInfo, request: ChatRequest, task: string, maxWaitMs: number, cancel: CallCancel): Promise<void> | undefined;
  /** The call admitted for `request` is done: its token reservation settles to the usage reported. */
  used(request: ChatRequest, usage: Completion["usage"]): void;
  /** Runs the call admitted for `request`: its concurrency slots are given back when it settles. */
  during<T>(request: ChatRequest, call: Promise<T>): Promise<T>;
  /** A failed call: a 429 that named a Retry-After pauses the model at every worker. */
  failed(model: ModelInfo, err: ProviderError, now: number): void;
  reload(config: Config): void;
  /** Stops hearing pauses and gives this process's concurrency leases back. */
  close(): Promise<void>;
}

export function createProviderLimits({ nc, kv, config, pauseSubject, clock, logger, onPause }: ProviderLimitsDeps): ProviderLimits {
  let cfg = config;
  const rates = new Map<string, SharedRate>();
  const caps = new Map<string, SharedSlots>();
  // This process's name in the concurrency leases.
  const me = nuid.next();
  /** Concurrency slots held by calls admitted and not yet done, by their request object. */
  const holding = new WeakMap<ChatRequest, readonly SharedSlots[]>();
  let bucket: Promise<KV> | undefined;
  // Opened once; a failed open (NATS away) is tried again by the next call rather than remembered.
  const openBucket = () =>
    (bucket ??= kv().catch((err: unknown) => {
      bucket = undefined;
      throw err;
    }));
  let byModel = new Map<string, readonly Limit[]>();
  /** Token reservations of calls in flight, by their request object (one per call step). */
  const reserved = new WeakMap<ChatRequest, { readonly limits: readonly Limit[]; readonly tokens: number }>();

  function limitsOf(model: ModelInfo): readonly Limit[] {
    let found = byModel.get(model.id);
    if (found !== undefined) return found;
    const provider = cfg.providers[model.provider];
    const out: Limit[] = [];
    // Slots last: a call waiting for a rate must not sit on a concurrency slot meanwhile.
    const slotsLast: Limit[] = [];
    const add = (key: string, what: string, l: LimitsConfig | undefined) => {
      for (const [unit, perMinute, suffix] of [["requests", l?.rpm, "rpm"], ["tokens", l?.tpm, "tpm"]] as const) {
        if (perMinute === undefined) continue;
        const full = `${key}/${suffix}`;
        const rate = { limit: perMinute, windowMs: 60_000 };
        let shared = rates.get(full);
        if (shared) shared.retune(rate);
        else rates.set(full, (shared = new SharedRate(openBucket, full, rate, clock)));
        out.push({ kind: "rate", rate: shared, unit, label: `${what} ${perMinute} ${suffix}` });
      }
      if (l?.max_concurrency !== undefined) {
        const full = `${key}/concurrency`;
        let slots = caps.get(full);
        if (slots) slots.retune(l.max_concurrency);
        else caps.set(full, (slots = new SharedSlots(openBucket, full, l.max_concurrency, me, clock)));
        slotsLast.push({ kind: "slots", slots, label: `${what} ${l.max_concurrency} calls at once` });
      }
    };
    add(`provider/${keyPart(model.provider)}`, model.provider, provider?.limits);
    add(`model/${keyPart(model.provider)}/${keyPart(model.name)}`, model.id, provider?.models[model.name]?.limits);
    byModel.set(model.id, (found = [...out, ...slotsLast]));
    return found;
  }

  async function waitFor(limits: readonly Limit[], request: ChatRequest, task: string, maxWaitMs: number, cancel: CallCancel): Promise<void> {
    const t = cfg.tasks[task];
    const tokens = limits.some((l) => l.kind === "rate" && l.unit === "tokens")
      ? estimatePromptTokens(request.messages) + (request.max_completion_tokens ?? request.max_tokens ?? t?.expected_completion_tokens ?? 256)
      : 0;
    const giveUpAt = clock() + maxWaitMs;
    const wait = (t?.on_rate_limited ?? "wait") === "wait";
    const held: SharedSlots[] = [];
    try {
      // In order, each limit once: a limit already taken is not taken again after a wait on a later one.
      for (const limit of limits) {
        for (;;) {
          if (cancel.cancelled) throw new CallAbortedError();
          const now = clock();
          let retryAt: number;
          if (limit.kind === "slots") {
            if (await limit.slots.tryAcquire()) {
              held.push(limit.slots);
              break;
            }
            retryAt = now + FULL_RETRY_MS;
          } else {
            const got = await limit.rate.take(limit.unit === "tokens" ? tokens : 1);
            if (got.ok) break;
            retryAt = got.retryAt;
          }
          if (!wait || retryAt > giveUpAt) {
            const ms = Math.max(0, Math.ceil(retryAt - now));
            throw new QuotaRefusedError(`The shared limit ${limit.label} is used up for the next ${ms} ms.`, { retryAfterMs: ms });
          }
          await sleep(retryAt - clock(), cancel);
        }
      }
    } catch (err) {
      for (const s of held) s.release();
      throw err;
    }
    if (tokens > 0) reserved.set(request, { limits, tokens });
    if (held.length > 0) holding.set(request, held);
  }

  let sub: Subscription | undefined = nc.subscribe(`${pauseSubject}.>`, {
    callback: (err, msg) => {
      if (err) return;
      const p = PauseSchema.safeParse(parseJsonOrUndefined(msg.string()));
      if (p.success) onPause(p.data);
      else logger.warn({ subject: msg.subject }, "ignoring a malformed pause message");
    },
  });

  return {
    admit(model, request, task, maxWaitMs, cancel) {
      const limits = limitsOf(model);
      return limits.length === 0 ? undefined : waitFor(limits, request, task, maxWaitMs, cancel);
    },
    used(request, usage) {
      const r = reserved.get(request);
      if (r === undefined) return;
      reserved.delete(request);
      const used = usage.prompt_tokens + usage.completion_tokens;
      for (const l of r.limits) if (l.kind === "rate" && l.unit === "tokens") l.rate.settle(r.tokens, used);
    },
    during(request, call) {
      const held = holding.get(request);
      if (held === undefined) return call;
      holding.delete(request);
      return call.finally(() => {
        for (const s of held) s.release();
      });
    },
    failed(model, err, now) {
      if (err.kind !== "rate_limited" || err.status !== 429 || err.retryAfterMs === undefined) return;
      const pause: Pause = { m: model.id, p: model.provider, until: now + err.retryAfterMs, at: now };
      try {
        nc.publish(`${pauseSubject}.${model.provider}`, JSON.stringify(pause));
      } catch {
        // A closed connection: the other workers learn from their own 429s.
      }
    },
    reload(next) {
      cfg = next;
      // Rebuilt on next use; the shared clocks and local slices of unchanged limits carry on.
      byModel = new Map();
    },
    async close() {
      sub?.unsubscribe();
      sub = undefined;
      // Best effort, briefly: a lease not given back runs out by itself (LEASE_MS).
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.all([...caps.values()].map((s) => s.close())), new Promise((r) => (timer = setTimeout(r, 500)))]);
      clearTimeout(timer);
    },
  };
}

/** Sleeps `ms`, or until the cancel fires (then throws CallAbortedError). */
function sleep(ms: number, cancel: CallCancel): Promise<void> {
  return new Promise((resolve, reject) => {
    // Cancelled while the quota was being asked for: no wait at all.
    if (cancel.cancelled) return reject(new CallAbortedError());
    const timer = setTimeout(() => {
      cancel.attach(undefined);
      resolve();
    }, Math.max(1, ms));
    cancel.attach(() => {
      clearTimeout(timer);
      cancel.attach(undefined);
      reject(new CallAbortedError());
    });
  });
}

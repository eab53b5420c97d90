/**
 * Where budgets come from and where spend is kept: the config's `budgets:` section, the
 * budgets bucket (`switchyard budgets set|rm`, one entry per `<scope>.<name>.<window>`,
 * watched by every router) and the spend bucket (one entry per budget and window, written by
 * `ledger-kv.ts`). Every entry is parsed at the boundary; a malformed one is skipped.
 */
import { jetstream } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { z } from "zod";
import type { BudgetsConfig } from "../config/budgets-schema.ts";
import type { Config } from "../config/schema.ts";
import { namesOf } from "../contract/subjects.ts";
import { parseJsonOrUndefined } from "../json.ts";
import type { Logger } from "../log.ts";
import { BUDGET_SCOPES, BUDGET_WINDOWS, budgetId, fromKeyToken, type Budget } from "./budget.ts";

/** A budget set at run time, as the budgets bucket holds it. */
export const RuntimeBudgetSchema = z.object({
  limit_usd: z.number().positive(),
  on_exhausted: z.enum(["reject", "wait"]),
  set_at: z.iso.datetime(),
});
export type RuntimeBudget = z.infer<typeof RuntimeBudgetSchema>;

/**
 * Settled spend for a month window must outlive the month; a key unwritten this long is
 * past any window it could count for. (The bucket TTL removes whole keys only, never a hold.)
 */
export const SPEND_TTL_MS = 40 * 86_400_000;

/** The budgets of the config file, one per limit. */
export function configBudgets(cfg: BudgetsConfig | undefined): Budget[] {
  if (cfg === undefined) return [];
  const out: Budget[] = [];
  const add = (scope: Budget["scope"], name: string, limits: BudgetsConfig["tenants"][string]) => {
    if (limits.day_usd !== undefined) out.push({ scope, name, window: "day", limitUsd: limits.day_usd, onExhausted: limits.on_exhausted, source: "config" });
    if (limits.month_usd !== undefined) out.push({ scope, name, window: "month", limitUsd: limits.month_usd, onExhausted: limits.on_exhausted, source: "config" });
  };
  if (cfg.global) add("global", "", cfg.global);
  for (const [name, l] of Object.entries(cfg.tenants)) add("tenant", name, l);
  for (const [name, l] of Object.entries(cfg.keys)) add("key", name, l);
  for (const [name, l] of Object.entries(cfg.tasks)) add("task", name, l);
  return out;
}

/** A budgets-bucket key as the budget it names, or undefined when it is not one. */
export function parseBudgetKey(key: string): Pick<Budget, "scope" | "name" | "window"> | undefined {
  const parts = key.split(".");
  if (parts.length !== 3) return undefined;
  const [scope, token, window] = parts as [string, string, string];
  if (!(BUDGET_SCOPES as readonly string[]).includes(scope) || !(BUDGET_WINDOWS as readonly string[]).includes(window)) return undefined;
  return { scope: scope as Budget["scope"], name: scope === "global" ? "" : fromKeyToken(token), window: window as Budget["window"] };
}

/** The budgets in force: the config's, with run-time ones for the same scope, name and window taking their place. */
export class BudgetTable {
  #config = new Map<string, Budget>();
  readonly #runtime = new Map<string, Budget>();
  #merged = new Map<string, Budget>();

  constructor(cfg: BudgetsConfig | undefined) {
    this.setConfig(cfg);
  }

  /** By budget id (`tenant.acme.day`). Empty when no budget is set: then no call touches the spend bucket. */
  get lookup(): ReadonlyMap<string, Budget> {
    return this.#merged;
  }

  setConfig(cfg: BudgetsConfig | undefined): void {
    this.#config = new Map(configBudgets(cfg).map((b) => [budgetId(b), b]));
    this.#merge();
  }

  /** A budgets-bucket entry changed: `value` undefined when it was removed. */
  apply(key: string, value: RuntimeBudget | undefined): void {
    const at = parseBudgetKey(key);
    if (!at) return;
    if (value === undefined) this.#runtime.delete(key);
    else this.#runtime.set(key, { ...at, limitUsd: value.limit_usd, onExhausted: value.on_exhausted, source: "runtime" });
    this.#merge();
  }

  #merge(): void {
    this.#merged = new Map([...this.#config, ...this.#runtime]);
  }
}

export interface SpendBuckets {
  readonly budgets: KV;
  readonly spend: KV;
}

/** Opens (under `provision: auto`, creates) the budgets and spend buckets, as buckets.ts does the live-state ones. */
export async function openSpendBuckets(nc: NatsConnection, cfg: Config): Promise<SpendBuckets> {
  const n = namesOf(cfg).spendBuckets;
  if (cfg.provision === "check") {
    const kvm = new Kvm(jetstream(nc, { checkAPI: false }));
    const [budgets, spend] = await Promise.all([kvm.open(n.budgets, { allow_direct: true }), kvm.open(n.spend, { allow_direct: true })]);
    return { budgets, spend };
  }
  const kvm = new Kvm(nc);
  const replicas = cfg.streams.replicas;
  const [budgets, spend] = await Promise.all([kvm.create(n.budgets, { history: 5, replicas }), kvm.create(n.spend, { history: 1, replicas, ttl: SPEND_TTL_MS })]);
  return { budgets, spend };
}

export interface BudgetWatch {
  /** Resolves once every entry present when the watch began has been applied. */
  readonly ready: Promise<void>;
  stop(): void;
}

/** Keeps `table` in step with the budgets bucket. */
export async function watchBudgets(kv: KV, table: BudgetTable, logger: Logger): Promise<BudgetWatch> {
  const watcher = await kv.watch();
  let initialised!: () => void;
  const ready = new Promise<void>((r) => (initialised = r));
  void (async () => {
    for await (const e of watcher) {
      if (e.operation !== "PUT") table.apply(e.key, undefined);
      else {
        const parsed = RuntimeBudgetSchema.safeParse(parseJsonOrUndefined(e.string()));
        if (parsed.success) table.apply(e.key, parsed.data);
        else logger.warn({ key: e.key }, "ignoring a malformed budget entry");
      }
      // The watch replays the last value of every key first; `delta` counts down to the last of them.
      if (e.isUpdate || e.delta === 0) initialised();
    }
  })().catch((err: unknown) => logger.error({ err: (err as Error).message }, "budgets watch failed; budgets stay as last read"));
  // An empty bucket replays nothing: nothing to wait for.
  if ((await kv.status()).values === 0) initialised();
  return { ready, stop: () => watcher.stop() };
}

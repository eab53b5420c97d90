/**
 * Budgets as pure decisions (shared/spend/budget.ts): windows, keys, which budgets a job
 * answers to, the worst case, and what a spend entry becomes after reserve, settle and expiry.
 */
import { describe, expect, it } from "vitest";
import { parseConfig } from "../shared/config/load.ts";
import { ConfigError } from "../shared/errors.ts";
import {
  afterRefusal,
  applyWrite,
  budgetId,
  budgetsFor,
  decide,
  describeBudget,
  EMPTY_ENTRY,
  fromKeyToken,
  keyToken,
  maxCompletionTokens,
  payerOf,
  refusalMessage,
  spendKey,
  standing,
  windowAt,
  worstCaseUsd,
  type Budget,
  type SpendEntry,
} from "../shared/spend/budget.ts";
import { BudgetTable, configBudgets, parseBudgetKey } from "../shared/spend/budgets-kv.ts";

const budget = (over: Partial<Budget> = {}): Budget => ({ scope: "tenant", name: "acme", window: "day", limitUsd: 1, onExhausted: "reject", source: "config", ...over });
const T = Date.parse("2026-12-02T18:30:00Z");
const TTL = 10_000;

describe("windows", () => {
  it("a day runs UTC midnight to midnight, a month to the first of the next", () => {
    expect(windowAt("day", T)).toEqual({ period: "2026-12-02", start: Date.parse("2026-12-02T00:00:00Z"), end: Date.parse("2026-12-03T00:00:00Z") });
    expect(windowAt("month", T)).toEqual({ period: "2026-12", start: Date.parse("2026-12-01T00:00:00Z"), end: Date.parse("2027-01-01T00:00:00Z") });
    expect(windowAt("day", Date.parse("2026-12-31T23:59:59.999Z")).end).toBe(Date.parse("2027-01-01T00:00:00Z"));
  });

  it("spend keys name the budget and the period; any tenant name becomes a valid key token and back", () => {
    expect(spendKey(budget(), T)).toBe("tenant.acme.day.2026-12-02");
    expect(spendKey(budget({ scope: "global", name: "", window: "month" }), T)).toBe("global._.month.2026-12");
    for (const name of ["acme", "Ünïcode tenant", "a.b.c", "=x", "_", "x".repeat(128)]) {
      const t = keyToken(name);
      expect(t).toMatch(/^[-_=A-Za-z0-9]+$/);
      expect(fromKeyToken(t)).toBe(name);
    }
    expect(parseBudgetKey(budgetId(budget({ name: "a.b" })))).toEqual({ scope: "tenant", name: "a.b", window: "day" });
    expect(parseBudgetKey("tenant.acme.week")).toBeUndefined();
  });
});

describe("which budgets apply", () => {
  const table = new BudgetTable(
    parseConfig(
      `providers: { p: { dialect: openai, base_url: "http://x/v1", models: { m: { input_per_mtok: 1, output_per_mtok: 1, context_window: 1000 } } } }
tasks: { t: { tiers: [{ models: [p/m] }] } }
budgets:
  global: { month_usd: 100 }
  tenants:
    acme: { day_usd: 5, month_usd: 50, on_exhausted: wait }
  keys:
    acme-batch: { day_usd: 1 }
  tasks:
    t: { day_usd: 10 }
`,
      "budgets.yaml",
      {},
    ).budgets,
  );

  it("tenant, API key, task and global, day before month, in that order", () => {
    const ids = budgetsFor(table.lookup, "t", payerOf({ tenant: "acme", key: "acme-batch" })).map(budgetId);
    expect(ids).toEqual(["tenant.acme.day", "tenant.acme.month", "key.acme-batch.day", "task.t.day", "global._.month"]);
    // Another key of the same tenant answers to the tenant's budget, not to acme-batch's.
    expect(budgetsFor(table.lookup, "t", payerOf({ tenant: "acme", key: "acme-web" })).map(budgetId)).toEqual(["tenant.acme.day", "tenant.acme.month", "task.t.day", "global._.month"]);
    expect(budgetsFor(table.lookup, "other", payerOf(undefined)).map(budgetId)).toEqual(["global._.month"]);
  });

  it("a job's payer is its metadata's tenant and key, each only when a non-empty string", () => {
    expect(payerOf({ tenant: "acme", key: "acme-batch" })).toEqual({ tenant: "acme", key: "acme-batch" });
    expect(payerOf({ tenant: "", key: 7 })).toEqual({ tenant: undefined, key: undefined });
  });

  it("a key budget set at run time has its own id, apart from a tenant of the same name", () => {
    table.apply("key.acme.day", { limit_usd: 2, on_exhausted: "reject", set_at: new Date(T).toISOString() });
    expect(budgetsFor(table.lookup, "other", payerOf({ key: "acme" })).map(budgetId)).toEqual(["key.acme.day", "global._.month"]);
    expect(describeBudget(table.lookup.get("key.acme.day")!)).toBe('key "acme" per day');
    table.apply("key.acme.day", undefined);
  });

  it("a run-time budget takes the config one's place, and its removal gives it back", () => {
    table.apply("tenant.acme.day", { limit_usd: 1, on_exhausted: "reject", set_at: new Date(T).toISOString() });
    expect(table.lookup.get("tenant.acme.day")).toMatchObject({ limitUsd: 1, onExhausted: "reject", source: "runtime" });
    table.apply("tenant.acme.day", undefined);
    expect(table.lookup.get("tenant.acme.day")).toMatchObject({ limitUsd: 5, onExhausted: "wait", source: "config" });
  });

  it("no budgets at all: an empty lookup", () => {
    expect(new BudgetTable(undefined).lookup.size).toBe(0);
    expect(configBudgets(undefined)).toEqual([]);
  });

  it("a budget without a limit is a config error naming its path", () => {
    const bad = `providers: { p: { dialect: openai, base_url: "http://x/v1", models: { m: { input_per_mtok: 1, output_per_mtok: 1, context_window: 1000 } } } }
tasks: { t: { tiers: [{ models: [p/m] }] } }
budgets:
  tenants:
    acme: { on_exhausted: wait }
`;
    expect(() => parseConfig(bad, "bad.yaml", {})).toThrow(ConfigError);
    expect(() => parseConfig(bad, "bad.yaml", {})).toThrow(/budgets\.tenants\.acme.*day_usd, month_usd or both/);
  });
});

describe("the worst case", () => {
  it("prompt at the dearest input price plus the completion cap at the dearest output price", () => {
    expect(worstCaseUsd(1000, 100, { inputPerMtok: 1, outputPerMtok: 4 })).toBeCloseTo((1000 * 1 + 100 * 4) / 1e6, 15);
    expect(worstCaseUsd(1000, 100, { inputPerMtok: 1, outputPerMtok: 4, cacheWritePerMtok: 1.25, reasoningPerMtok: 5 })).toBeCloseTo((1000 * 1.25 + 100 * 5) / 1e6, 15);
  });

  it("the completion cap is the request's, else the room the context window leaves", () => {
    expect(maxCompletionTokens({ max_tokens: 64 }, 16_000, 100)).toBe(64);
    expect(maxCompletionTokens({ max_tokens: 64, max_completion_tokens: 32 }, 16_000, 100)).toBe(32);
    expect(maxCompletionTokens({}, 16_000, 100)).toBe(15_900);
  });
});

describe("the spend entry", () => {
  it("grants reservations in arrival order while they fit, refusing the first that does not", () => {
    const { answers, heldUsd } = decide(EMPTY_ENTRY, "w1", 0, 0, [{ amountUsd: 0.4, limitUsd: 1 }, { amountUsd: 0.4, limitUsd: 1 }, { amountUsd: 0.4, limitUsd: 1 }, { amountUsd: 0.2, limitUsd: 1 }], T);
    expect(answers.map((a) => a.granted)).toEqual([true, true, false, true]);
    expect(heldUsd).toBeCloseTo(1, 12);
    expect(answers[2]).toEqual({ granted: false, standing: { spentUsd: 0, reservedUsd: 0.8 } });
  });

  it("counts settled spend and other workers' live holds, and fits exactly at the limit", () => {
    const entry: SpendEntry = { spent_usd: 0.5, holds: { w2: { usd: 0.3, expires_at: T + 1 } } };
    expect(decide(entry, "w1", 0.1, 0, [{ amountUsd: 0.1, limitUsd: 1 }], T).answers[0]).toEqual({ granted: true });
    expect(decide(entry, "w1", 0.1, 0, [{ amountUsd: 0.11, limitUsd: 1 }], T).answers[0]).toMatchObject({ granted: false });
  });

  it("counts what this worker settled since its last write: out of its hold, not yet in the entry", () => {
    // One call reserved 0.6 and settled at 0.6; the write carrying that is the one deciding this ask.
    expect(decide(EMPTY_ENTRY, "w1", 0, 0.6, [{ amountUsd: 0.6, limitUsd: 1 }], T).answers[0]).toEqual({ granted: false, standing: { spentUsd: 0.6, reservedUsd: 0 } });
  });

  it("reserve, then settle: spend grows by the real cost and the hold shrinks by the reservation", () => {
    let e = applyWrite(EMPTY_ENTRY, { worker: "w1", heldUsd: 0.3, settledUsd: 0, now: T, ttlMs: TTL });
    expect(e).toEqual({ spent_usd: 0, holds: { w1: { usd: 0.3, expires_at: T + TTL } } });
    e = applyWrite(e, { worker: "w1", heldUsd: 0, settledUsd: 0.12, now: T + 5, ttlMs: TTL });
    expect(e).toEqual({ spent_usd: 0.12, holds: {} });
  });

  it("a crashed worker's hold counts until it lapses, and the next writer drops it", () => {
    const e: SpendEntry = { spent_usd: 0.2, holds: { dead: { usd: 0.7, expires_at: T + TTL } } };
    expect(standing(e, "w1", 0, T + TTL - 1)).toEqual({ spentUsd: 0.2, reservedUsd: 0.7 });
    expect(decide(e, "w1", 0, 0, [{ amountUsd: 0.5, limitUsd: 1 }], T + TTL - 1).answers[0]!.granted).toBe(false);
    expect(standing(e, "w1", 0, T + TTL)).toEqual({ spentUsd: 0.2, reservedUsd: 0 });
    const { answers, heldUsd } = decide(e, "w1", 0, 0, [{ amountUsd: 0.5, limitUsd: 1 }], T + TTL);
    expect(answers[0]!.granted).toBe(true);
    expect(applyWrite(e, { worker: "w1", heldUsd, settledUsd: 0, now: T + TTL, ttlMs: TTL }).holds).toEqual({ w1: { usd: 0.5, expires_at: T + 2 * TTL } });
  });

  it("a worker's write sets its whole hold, so a repeated write adds nothing and a dropped hold comes back", () => {
    const once = applyWrite(EMPTY_ENTRY, { worker: "w1", heldUsd: 0.4, settledUsd: 0, now: T, ttlMs: TTL });
    expect(applyWrite(once, { worker: "w1", heldUsd: 0.4, settledUsd: 0, now: T, ttlMs: TTL })).toEqual(once);
    const droppedByOther = applyWrite(once, { worker: "w2", heldUsd: 0, settledUsd: 0, now: T + TTL, ttlMs: TTL });
    expect(droppedByOther.holds).toEqual({});
    expect(applyWrite(droppedByOther, { worker: "w1", heldUsd: 0.4, settledUsd: 0, now: T + TTL + 1, ttlMs: TTL }).holds.w1!.usd).toBe(0.4);
  });
});

describe("after a refusal", () => {
  const refusal = (b: Budget) => ({ budget: b, period: "2026-12-02", standing: { spentUsd: 0.9, reservedUsd: 0.05 }, neededUsd: 0.1 });

  it("`reject` dead-letters, naming the budget and the ledger", () => {
    const next = afterRefusal([refusal(budget())], T, undefined);
    expect(next.kind).toBe("dead_letter");
    expect(refusalMessage(refusal(budget()))).toBe('Budget tenant "acme" per day (2026-12-02) is exhausted: $0.9 spent and $0.05 reserved of $1; this call needs up to $0.1.');
  });

  it("`wait` hands the job back until the window turns, unless its deadline comes first", () => {
    const wait = budget({ onExhausted: "wait" });
    expect(afterRefusal([refusal(wait)], T, undefined)).toEqual({ kind: "wait", delayMs: Date.parse("2026-12-03T00:00:00Z") - T });
    expect(afterRefusal([refusal(wait), refusal(budget({ onExhausted: "wait", window: "month" }))], T, undefined)).toEqual({ kind: "wait", delayMs: Date.parse("2027-01-01T00:00:00Z") - T });
    expect(afterRefusal([refusal(wait)], T, T + 60_000).kind).toBe("dead_letter");
    expect(afterRefusal([refusal(wait), refusal(budget({ scope: "global", name: "" }))], T, undefined).kind).toBe("dead_letter");
  });
});

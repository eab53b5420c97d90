/**
 * Budgets as pure decisions: which budgets a job answers to, the worst case a call may cost,
 * the UTC window a moment falls in, and what a spend entry looks like after a worker writes
 * to it — does this reservation fit, which lapsed reservations are dropped. No I/O and no
 * clock of its own: the KV side (`ledger-kv.ts`) reads an entry, asks here, and writes the
 * answer back with compare-and-set.
 *
 * A spend entry holds, per budget and window, what was settled (`spent_usd`) and what each
 * worker holds reserved for calls in flight (`holds`, by worker id). A worker's hold is one
 * sum for all its calls, so the entry stays small whatever the concurrency, and carries an
 * expiry: a worker that stops renewing (it crashed) holds nothing once that passes, and
 * whoever writes next drops it. The server's bucket TTL cannot do this (2.9 has no
 * per-message TTL, and a lapsed key would take the settled spend with it).
 */
import { z } from "zod";
import type { Prices } from "../routing/cost.ts";

/** In the order budgetsFor lists a job's budgets: who pays (tenant, then the gateway API key), what for, everything. */
export const BUDGET_SCOPES = ["tenant", "key", "task", "global"] as const;
export type BudgetScope = (typeof BUDGET_SCOPES)[number];
export const BUDGET_WINDOWS = ["day", "month"] as const;
export type BudgetWindow = (typeof BUDGET_WINDOWS)[number];
export type OnExhausted = "reject" | "wait";

/** One limit over one window. `name` is the tenant, gateway API key name or task; empty for `global`. */
export interface Budget {
  readonly scope: BudgetScope;
  readonly name: string;
  readonly window: BudgetWindow;
  readonly limitUsd: number;
  readonly onExhausted: OnExhausted;
  /** Where it was set: the config file, or `switchyard budgets set` (which wins). */
  readonly source: "config" | "runtime";
}

/** Floating-point sums of many small costs drift by far less than this; a limit is not missed by it. */
const EPSILON_USD = 1e-12;

/**
 * A scope's name as one KV key token: kept as it is when it is already a plain token,
 * otherwise `=` and its base64url (KV keys allow `[-/_=.a-zA-Z0-9]`, and a tenant may be any
 * string). A plain token starts with a letter or digit, so neither the encoded form nor `_`
 * (the global budget's empty name) can collide with one.
 */
export function keyToken(name: string): string {
  if (name === "") return "_";
  return /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/.test(name) ? name : `=${Buffer.from(name, "utf8").toString("base64url")}`;
}

/** The inverse of keyToken. */
export function fromKeyToken(token: string): string {
  if (token === "_") return "";
  return token.startsWith("=") ? Buffer.from(token.slice(1), "base64url").toString("utf8") : token;
}

/** `tenant.acme.day`: a budget's key in the budgets bucket, and the start of its spend keys. */
export function budgetId(b: Pick<Budget, "scope" | "name" | "window">): string {
  return `${b.scope}.${keyToken(b.name)}.${b.window}`;
}

/** `tenant "acme" per day`, `global per month`: a budget as an error message names it. */
export function describeBudget(b: Pick<Budget, "scope" | "name" | "window">): string {
  return `${b.scope === "global" ? "global" : `${b.scope} "${b.name}"`} per ${b.window}`;
}

export interface Window {
  /** `2026-12-02` for a day, `2026-12` for a month. */
  readonly period: string;
  readonly start: number;
  /** The next window's start. */
  readonly end: number;
}

/** The UTC calendar day or month `now` falls in. */
export function windowAt(window: BudgetWindow, now: number): Window {
  const d = new Date(now);
  const y = d.getUTCFullYear();
  const m = d.getUTCMonth();
  if (window === "month") {
    return { period: `${y}-${String(m + 1).padStart(2, "0")}`, start: Date.UTC(y, m, 1), end: Date.UTC(y, m + 1, 1) };
  }
  const day = d.getUTCDate();
  return { period: `${y}-${String(m + 1).padStart(2, "0")}-${String(day).padStart(2, "0")}`, start: Date.UTC(y, m, day), end: Date.UTC(y, m, day + 1) };
}

/** `tenant.acme.day.2026-12-02`: the spend bucket's key for a budget in the window of `now`. */
export function spendKey(b: Pick<Budget, "scope" | "name" | "window">, now: number): string {
  return `${budgetId(b)}.${windowAt(b.window, now).period}`;
}

/** Who a job is billed to: `metadata.tenant`, and `metadata.key` (the name of the gateway API key it came in by), each when a non-empty string. */
export interface Payer {
  readonly tenant: string | undefined;
  readonly key: string | undefined;
}

export function payerOf(metadata: Readonly<Record<string, unknown>> | undefined): Payer {
  const named = (v: unknown) => (typeof v === "string" && v.length > 0 ? v : undefined);
  return { tenant: named(metadata?.tenant), key: named(metadata?.key) };
}

/**
 * Every budget a job answers to, from a lookup by budget id: its tenant's, its API key's, its
 * task's and the global ones, each window. Ordered as BUDGET_SCOPES, day before month: the
 * first that refuses is the one a dead letter names.
 */
export function budgetsFor(lookup: ReadonlyMap<string, Budget>, task: string, payer: Payer): Budget[] {
  const out: Budget[] = [];
  for (const scope of BUDGET_SCOPES) {
    const name = scope === "tenant" ? payer.tenant : scope === "key" ? payer.key : scope === "task" ? task : "";
    if (name === undefined) continue;
    for (const window of BUDGET_WINDOWS) {
      const b = lookup.get(budgetId({ scope, name, window }));
      if (b !== undefined) out.push(b);
    }
  }
  return out;
}

/**
 * The most a call can cost: the prompt (estimated) at the dearest input price the model may
 * charge for it (a cache write costs more than plain input at Anthropic), plus every
 * completion token it may produce at the dearest output price (reasoning may be dearer).
 */
export function worstCaseUsd(promptTokens: number, maxCompletionTokens: number, prices: Prices): number {
  const input = Math.max(prices.inputPerMtok, prices.cacheWritePerMtok ?? 0, prices.cachedInputPerMtok ?? 0);
  const output = Math.max(prices.outputPerMtok, prices.reasoningPerMtok ?? 0);
  return (promptTokens * input + maxCompletionTokens * output) / 1e6;
}

/**
 * The completion tokens a call may produce: what the request caps it at, else all the room
 * the model's context window leaves after the prompt (what a provider allows when no cap is
 * sent). Set `max_tokens` on budgeted jobs, or their worst case is the whole window.
 */
export function maxCompletionTokens(request: { readonly max_tokens?: number | undefined; readonly max_completion_tokens?: number | undefined }, contextWindow: number, promptTokens: number): number {
  const caps = [request.max_tokens, request.max_completion_tokens].filter((n): n is number => n !== undefined);
  return caps.length > 0 ? Math.min(...caps) : Math.max(0, contextWindow - promptTokens);
}

/** A worker's reservations on one entry: their sum, and when they lapse unless renewed (epoch ms). */
export const HoldSchema = z.object({ usd: z.number().nonnegative(), expires_at: z.number() });

/** The value of a spend bucket entry, parsed wherever it is read. */
export const SpendEntrySchema = z.object({
  spent_usd: z.number().nonnegative(),
  holds: z.record(z.string(), HoldSchema),
});
export type SpendEntry = z.infer<typeof SpendEntrySchema>;

export const EMPTY_ENTRY: SpendEntry = { spent_usd: 0, holds: {} };

/** What other workers hold that has not lapsed at `now`. */
export function heldByOthers(entry: SpendEntry, worker: string, now: number): number {
  let sum = 0;
  for (const [w, h] of Object.entries(entry.holds)) if (w !== worker && h.expires_at > now) sum += h.usd;
  return sum;
}

/** The ledger as a reservation sees it: settled spend and every live hold, this worker's own at `ownHeldUsd` (its own count, which the entry may not show yet). */
export interface Standing {
  readonly spentUsd: number;
  readonly reservedUsd: number;
}

export function standing(entry: SpendEntry, worker: string, ownHeldUsd: number, now: number): Standing {
  return { spentUsd: entry.spent_usd, reservedUsd: heldByOthers(entry, worker, now) + ownHeldUsd };
}

/** Whether reserving `amountUsd` more keeps settled plus reserved within the limit. */
export function fits(s: Standing, amountUsd: number, limitUsd: number): boolean {
  return s.spentUsd + s.reservedUsd + amountUsd <= limitUsd + EPSILON_USD;
}

export interface Write {
  readonly worker: string;
  /** This worker's reservations on the entry after the write (its whole sum, not a change). */
  readonly heldUsd: number;
  /** Costs settled since this worker's last write. */
  readonly settledUsd: number;
  readonly now: number;
  readonly ttlMs: number;
}

/**
 * The entry after a worker's write: settled costs added, its hold set to its current sum with
 * a fresh expiry (or removed when it holds nothing), and every other worker's lapsed hold
 * dropped. Setting the sum rather than adding to it makes a repeated write harmless, and
 * brings back a hold another writer dropped while this worker was cut off.
 */
export function applyWrite(entry: SpendEntry, w: Write): SpendEntry {
  const holds: Record<string, { usd: number; expires_at: number }> = {};
  for (const [id, h] of Object.entries(entry.holds)) if (id !== w.worker && h.expires_at > w.now) holds[id] = h;
  if (w.heldUsd > EPSILON_USD) holds[w.worker] = { usd: w.heldUsd, expires_at: w.now + w.ttlMs };
  return { spent_usd: entry.spent_usd + w.settledUsd, holds };
}

/** One reservation asked of an entry. */
export interface Ask {
  readonly amountUsd: number;
  readonly limitUsd: number;
}

/** The answer to an Ask: granted, or refused with the ledger as it stood (for the dead letter). */
export type Answer = { readonly granted: true } | { readonly granted: false; readonly standing: Standing };

/**
 * Several reservations asked of one entry at once (a worker gathers those that arrive while
 * its previous write is in flight into one compare-and-set), answered in arrival order: each
 * is granted if it fits on top of those granted before it. `settledUsd` is what this worker
 * settled since its last write: no longer in its hold, not yet in the entry's spend, and
 * counted all the same. Returns the answers and the worker's hold after them.
 */
export function decide(entry: SpendEntry, worker: string, ownHeldUsd: number, settledUsd: number, asks: readonly Ask[], now: number): { answers: Answer[]; heldUsd: number } {
  const others = heldByOthers(entry, worker, now);
  const spent = entry.spent_usd + settledUsd;
  let held = ownHeldUsd;
  const answers: Answer[] = [];
  for (const a of asks) {
    const s: Standing = { spentUsd: spent, reservedUsd: others + held };
    if (fits(s, a.amountUsd, a.limitUsd)) {
      held += a.amountUsd;
      answers.push({ granted: true });
    } else answers.push({ granted: false, standing: s });
  }
  return { answers, heldUsd: held };
}

/**
 * For `on_exhausted: wait`: how long to hand a refused job back for, so it comes again when
 * the refusing window starts over; or undefined when the job's deadline comes first (then it
 * is dead-lettered, as under `reject`).
 */
export function waitUntilNextWindow(window: BudgetWindow, now: number, deadline: number | undefined): number | undefined {
  const next = windowAt(window, now).end;
  if (deadline !== undefined && deadline <= next) return undefined;
  return next - now;
}

/** A budget that refused a reservation, with the ledger as it stood and what the call needed. */
export interface Refusal {
  readonly budget: Budget;
  readonly period: string;
  readonly standing: Standing;
  readonly neededUsd: number;
}

/**
 * What becomes of a job some budgets refused: it waits for the latest of their next windows
 * when every one of them says `wait` and the job's deadline allows; otherwise it is
 * dead-lettered naming the first refusal (budgetsFor's order).
 */
export function afterRefusal(refusals: readonly Refusal[], now: number, deadline: number | undefined): { readonly kind: "wait"; readonly delayMs: number } | { readonly kind: "dead_letter"; readonly refusal: Refusal } {
  let delayMs = 0;
  for (const r of refusals) {
    const wait = r.budget.onExhausted === "wait" ? waitUntilNextWindow(r.budget.window, now, deadline) : undefined;
    if (wait === undefined) return { kind: "dead_letter", refusal: r };
    delayMs = Math.max(delayMs, wait);
  }
  return { kind: "wait", delayMs };
}

/** The dead letter's sentence for a refusal. */
export function refusalMessage(r: Refusal): string {
  const { spentUsd, reservedUsd } = r.standing;
  return `Budget ${describeBudget(r.budget)} (${r.period}) is exhausted: $${round(spentUsd)} spent and $${round(reservedUsd)} reserved of $${r.budget.limitUsd}; this call needs up to $${round(r.neededUsd)}.`;
}

function round(usd: number): string {
  return String(Number(usd.toPrecision(6)));
}

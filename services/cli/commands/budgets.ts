import { loadConfig } from "../../../shared/config/load.ts";
import { UsageError } from "../../../shared/errors.ts";
import { parseJsonOrUndefined } from "../../../shared/json.ts";
import { connectNats, natsFromEnvironment } from "../../../shared/nats/connect.ts";
import { BUDGET_SCOPES, BUDGET_WINDOWS, budgetId, EMPTY_ENTRY, SpendEntrySchema, spendKey, standing, windowAt, type Budget, type BudgetScope, type BudgetWindow } from "../../../shared/spend/budget.ts";
import { BudgetTable, openSpendBuckets, RuntimeBudgetSchema, type RuntimeBudget, type SpendBuckets } from "../../../shared/spend/budgets-kv.ts";
import { parse } from "../args.ts";
import { table } from "../table.ts";
import type { Command } from "./types.ts";
import { summaryOf } from "./catalog.ts";

export const budgetsCommand: Command = {
  name: "budgets",
  summary: summaryOf("budgets"),
  usage: `switchyard budgets [list] [--json]
switchyard budgets set tenant <name> | key <name> | task <name> | global  [--day <USD>] [--month <USD>] [--on-exhausted reject|wait]
switchyard budgets rm  tenant <name> | key <name> | task <name> | global  [--window day|month]

\`list\` shows every budget in force — the config file's \`budgets:\` and those set here, which
take the place of a config one for the same scope, name and window — with the current UTC
window's spend: settled, reserved by calls in flight (live reservations only), and left.
--json prints {"budgets": [...]} with the same figures.

\`key <name>\` is a gateway API key by its name under \`gateway.keys\`: the gateway writes
it into every job's \`metadata.key\`, so the key's requests answer to it on every gateway.

\`set\` stores a budget in the budgets bucket (switchyard-budgets); every router applies it
within a moment, without a restart, and it outlives restarts. \`rm\` removes what \`set\`
stored (both windows unless --window names one); a config budget stays until the file
changes. A job that would exceed a budget is dead-lettered \`budget_exceeded\` (--on-exhausted
reject, the default) or waits for the next window (wait). README, "Budgets".`,
  async run(argv) {
    const [sub, ...rest] = argv;
    if (sub === "set") return set(rest);
    if (sub === "rm") return rm(rest);
    return list(sub === "list" ? rest : argv);
  },
};

/** One row of `list`, and one element of `--json`'s `budgets`. */
export interface BudgetReport {
  readonly scope: BudgetScope;
  readonly name: string;
  readonly window: BudgetWindow;
  readonly period: string;
  readonly limit_usd: number;
  readonly on_exhausted: "reject" | "wait";
  readonly source: "config" | "runtime";
  readonly spent_usd: number;
  readonly reserved_usd: number;
  readonly left_usd: number;
}

async function withBuckets<T>(f: (b: SpendBuckets) => Promise<T>): Promise<T> {
  const config = loadConfig();
  const nc = await connectNats(natsFromEnvironment(), "switchyard-budgets");
  try {
    return await f(await openSpendBuckets(nc, config));
  } finally {
    await nc.drain();
  }
}

/** `tenant acme` → tenant "acme"; `key acme-batch` → the API key's; `global` → the global budget. */
function target(command: string, positionals: string[]): { scope: BudgetScope; name: string } {
  const [scope, name] = positionals;
  if (!(BUDGET_SCOPES as readonly (string | undefined)[]).includes(scope)) throw new UsageError(`${command}: name the scope: tenant <name>, key <name>, task <name> or global`);
  if (scope === "global") {
    if (name !== undefined) throw new UsageError(`${command}: the global budget takes no name`);
    return { scope, name: "" };
  }
  if (!name) throw new UsageError(`${command}: name the ${scope}`);
  return { scope: scope as BudgetScope, name };
}

async function set(argv: string[]): Promise<number> {
  const { values, positionals } = parse("budgets set", argv, { day: { type: "string" }, month: { type: "string" }, "on-exhausted": { type: "string" } });
  const at = target("budgets set", positionals);
  const onExhausted = values["on-exhausted"] ?? "reject";
  if (onExhausted !== "reject" && onExhausted !== "wait") throw new UsageError('budgets set: --on-exhausted must be "reject" or "wait"');
  const limits: [BudgetWindow, number][] = [];
  for (const window of BUDGET_WINDOWS) {
    const raw = values[window];
    if (raw === undefined) continue;
    const usd = Number(raw);
    if (!Number.isFinite(usd) || usd <= 0) throw new UsageError(`budgets set: --${window} must be a positive number of USD, got "${raw}"`);
    limits.push([window, usd]);
  }
  if (limits.length === 0) throw new UsageError("budgets set: give --day <USD>, --month <USD> or both");
  await withBuckets(async ({ budgets }) => {
    for (const [window, usd] of limits) {
      const entry: RuntimeBudget = { limit_usd: usd, on_exhausted: onExhausted, set_at: new Date().toISOString() };
      await budgets.put(budgetId({ ...at, window }), JSON.stringify(entry));
      process.stdout.write(`${label(at)} per ${window}: $${usd} (on exhausted: ${onExhausted})\n`);
    }
  });
  return 0;
}

async function rm(argv: string[]): Promise<number> {
  const { values, positionals } = parse("budgets rm", argv, { window: { type: "string" } });
  const at = target("budgets rm", positionals);
  const w = values.window;
  if (w !== undefined && !(BUDGET_WINDOWS as readonly string[]).includes(w)) throw new UsageError('budgets rm: --window must be "day" or "month"');
  const windows = w === undefined ? BUDGET_WINDOWS : [w as BudgetWindow];
  await withBuckets(async ({ budgets }) => {
    for (const window of windows) {
      const key = budgetId({ ...at, window });
      const e = await budgets.get(key);
      if (!e || e.operation !== "PUT") continue;
      await budgets.delete(key);
      process.stdout.write(`${label(at)} per ${window}: removed\n`);
    }
  });
  return 0;
}

async function list(argv: string[]): Promise<number> {
  const { values } = parse("budgets", argv, { json: { type: "boolean" } });
  const config = loadConfig();
  const reports = await withBuckets(async ({ budgets, spend }) => {
    const t = new BudgetTable(config.budgets);
    for await (const key of await budgets.keys()) {
      const e = await budgets.get(key);
      const parsed = e?.operation === "PUT" ? RuntimeBudgetSchema.safeParse(parseJsonOrUndefined(e.string())) : undefined;
      if (parsed?.success) t.apply(key, parsed.data);
    }
    const now = Date.now();
    const out: BudgetReport[] = [];
    for (const b of [...t.lookup.values()].sort(order)) out.push(await report(b, spend, now));
    return out;
  });
  if (values.json) {
    process.stdout.write(`${JSON.stringify({ budgets: reports })}\n`);
    return 0;
  }
  if (reports.length === 0) {
    process.stdout.write("no budgets: set one under `budgets:` in the config, or with `switchyard budgets set`\n");
    return 0;
  }
  const usd = (n: number) => `$${Number(n.toPrecision(6))}`;
  const rows = reports.map((r) => [label(r), r.window, r.period, usd(r.limit_usd), usd(r.spent_usd), usd(r.reserved_usd), usd(r.left_usd), r.on_exhausted, r.source]);
  process.stdout.write(table(["budget", "window", "period", "limit", "spent", "reserved", "left", "on exhausted", "source"], rows));
  return 0;
}

async function report(b: Budget, spend: SpendBuckets["spend"], now: number): Promise<BudgetReport> {
  const e = await spend.get(spendKey(b, now));
  const parsed = e?.operation === "PUT" ? SpendEntrySchema.safeParse(parseJsonOrUndefined(e.string())) : undefined;
  const entry = parsed?.success ? parsed.data : EMPTY_ENTRY;
  // Nobody is "this worker" here: every live hold counts.
  const { spentUsd, reservedUsd: reserved } = standing(entry, "", 0, now);
  return {
    scope: b.scope,
    name: b.name,
    window: b.window,
    period: windowAt(b.window, now).period,
    limit_usd: b.limitUsd,
    on_exhausted: b.onExhausted,
    source: b.source,
    spent_usd: spentUsd,
    reserved_usd: reserved,
    left_usd: Math.max(0, b.limitUsd - spentUsd - reserved),
  };
}

function order(a: Budget, b: Budget): number {
  return BUDGET_SCOPES.indexOf(a.scope) - BUDGET_SCOPES.indexOf(b.scope) || a.name.localeCompare(b.name) || BUDGET_WINDOWS.indexOf(a.window) - BUDGET_WINDOWS.indexOf(b.window);
}

function label(b: { scope: BudgetScope; name: string }): string {
  return b.scope === "global" ? "global" : `${b.scope} ${b.name}`;
}

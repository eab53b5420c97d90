/**
 * The router's side of budgets: before a call, reserve its worst case against every budget
 * the job answers to; after it, settle to what the provider billed, or release. The budgets
 * in force are the config's and the budgets bucket's (watched); with none that applies to a
 * job, `applying` returns an empty list and the call touches no KV at all.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { nuid } from "@nats-io/transport-node";
import type { ChatRequest, DeadLetter } from "../../shared/contract/job.ts";
import type { Config } from "../../shared/config/schema.ts";
import type { Logger } from "../../shared/log.ts";
import type { PlannedAttempt } from "../../shared/routing/planner.ts";
import { estimatePromptTokens } from "../../shared/tokens.ts";
import { budgetsFor, maxCompletionTokens, payerOf, spendKey, windowAt, worstCaseUsd, type Budget, type Refusal } from "../../shared/spend/budget.ts";
import { BudgetTable, openSpendBuckets, watchBudgets, type BudgetWatch } from "../../shared/spend/budgets-kv.ts";
import { SpendLedger } from "../../shared/spend/ledger-kv.ts";

/** Granted on every budget: end it with `settle` (the provider billed) or `release` (it did not). */
export interface Reservation {
  settle(costUsd: number): void;
  release(): void;
}

export type Reserved = { readonly kind: "granted"; readonly reservation: Reservation } | { readonly kind: "refused"; readonly refusals: readonly Refusal[] };

export interface RouterBudgets {
  /** Opens the buckets and reads the run-time budgets; no job may be served before it resolves. */
  start(): Promise<void>;
  /** The budgets a job answers to (often none: then reserve nothing). */
  applying(task: string, metadata: Readonly<Record<string, unknown>> | undefined): readonly Budget[];
  reserve(budgets: readonly Budget[], planned: PlannedAttempt, request: ChatRequest): Promise<Reserved>;
  /**
   * Spend billed without a reservation held through the call: a provider batch's lines, which
   * answer hours after the router let them through (README, "Batch lane"). Added to every
   * budget's settled spend for the window it is billed in.
   */
  record(budgets: readonly Budget[], costUsd: number): void;
  reload(config: Config): void;
  /** Writes what is owed (settled costs, released holds) and stops renewing. */
  stop(): Promise<void>;
}

/** What `applying` returns when no budget is set: one list for every job, not one per call. */
const NONE: readonly Budget[] = [];

export function createRouterBudgets({ nc, config, logger, clock }: { nc: NatsConnection; config: Config; logger: Logger; clock: () => number }): RouterBudgets {
  const table = new BudgetTable(config.budgets);
  const ttlMs = config.budgets?.reservation_ttl_ms ?? 10_000;
  // One id per worker instance: a restarted process must not inherit a crashed one's holds.
  const worker = nuid.next();
  let ledger: SpendLedger | undefined;
  let watch: BudgetWatch | undefined;

  return {
    async start() {
      const buckets = await openSpendBuckets(nc, config);
      watch = await watchBudgets(buckets.budgets, table, logger);
      await watch.ready;
      ledger = new SpendLedger({
        kv: buckets.spend,
        worker,
        ttlMs,
        clock,
        onError: (key, err) => logger.error({ key, err: (err as Error).message }, "spend ledger write failed; retried while reservations are held"),
      });
    },

    applying(task, metadata) {
      const lookup = table.lookup;
      return lookup.size === 0 ? NONE : budgetsFor(lookup, task, payerOf(metadata));
    },

    async reserve(budgets, planned, request) {
      const l = ledger!;
      const prompt = estimatePromptTokens(request.messages);
      const needed = worstCaseUsd(prompt, maxCompletionTokens(request, planned.model.contextWindow, prompt), planned);
      const now = clock();
      const keys = budgets.map((b) => spendKey(b, now));
      const answers = await Promise.all(budgets.map((b, i) => l.reserve(keys[i]!, needed, b.limitUsd)));
      const refusals: Refusal[] = [];
      answers.forEach((a, i) => {
        if (!a.granted) refusals.push({ budget: budgets[i]!, period: windowAt(budgets[i]!.window, now).period, standing: a.standing, neededUsd: needed });
      });
      const end = (costUsd: number) => {
        answers.forEach((a, i) => {
          if (a.granted) l.settle(keys[i]!, needed, costUsd);
        });
      };
      if (refusals.length > 0) {
        end(0);
        return { kind: "refused", refusals };
      }
      let ended = false;
      const once = (costUsd: number) => {
        if (ended) return;
        ended = true;
        end(costUsd);
      };
      return { kind: "granted", reservation: { settle: once, release: () => once(0) } };
    },

    record(budgets, costUsd) {
      if (costUsd <= 0 || budgets.length === 0) return;
      const now = clock();
      for (const b of budgets) ledger!.settle(spendKey(b, now), 0, costUsd);
    },

    reload(next) {
      table.setConfig(next.budgets);
    },

    async stop() {
      watch?.stop();
      if (ledger) {
        ledger.close();
        await ledger.flush();
      }
    },
  };
}

/** The dead letter's `budget` field for a refusal. */
export function budgetField(r: Refusal): NonNullable<DeadLetter["budget"]> {
  const b = r.budget;
  return { scope: b.scope, name: b.name, window: b.window, period: r.period, limit_usd: b.limitUsd, spent_usd: r.standing.spentUsd, reserved_usd: r.standing.reservedUsd, needed_usd: r.neededUsd };
}

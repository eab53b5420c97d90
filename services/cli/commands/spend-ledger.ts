/**
 * The spend ledger read back from the outcomes: every result and dead letter lists its job's
 * attempts, and each attempt a provider answered carries its usage and `cost_usd`. Summing
 * those, grouped by tenant, task, model or gateway key, gives what was billed, failed-but-billed
 * attempts and dead-lettered jobs included. Pure: records in, groups out.
 */
import { z } from "zod";
import { UsageSchema, type Usage } from "../../../shared/contract/job.ts";

export const SPEND_GROUPINGS = ["tenant", "task", "model", "key"] as const;
export type SpendGrouping = (typeof SPEND_GROUPINGS)[number];

/** The group of a record with no value for the grouping (no `metadata.tenant`, say). */
export const NO_GROUP = "(none)";

export interface SpendTokens {
  /** Every prompt token, the cache parts included. */
  prompt: number;
  cached: number;
  cache_write: number;
  /** Every completion token, reasoning included. */
  completion: number;
  reasoning: number;
}

export interface SpendGroup {
  readonly key: string;
  /** Jobs whose outcome counted here: `results` + `dead_letters`. */
  jobs: number;
  results: number;
  dead_letters: number;
  /** Billed provider calls (answered attempts). */
  calls: number;
  billed_usd: number;
  tokens: SpendTokens;
}

/** What the ledger reads of a result or dead letter; other fields, and other messages, are not its business. */
const OutcomeSchema = z.looseObject({
  task: z.string(),
  status: z.enum(["succeeded", "failed"]),
  provider: z.string().optional(),
  model: z.string().optional(),
  usage: UsageSchema.optional(),
  cost_usd: z.number().nonnegative().optional(),
  attempts: z.array(z.looseObject({ provider: z.string(), model: z.string(), usage: UsageSchema.optional(), cost_usd: z.number().nonnegative().optional() })).default([]),
  metadata: z.record(z.string(), z.unknown()).default({}),
});

interface Outcome {
  readonly kind: "result" | "dead_letter";
  readonly task: string;
  readonly metadata: Readonly<Record<string, unknown>>;
  readonly charges: readonly Charge[];
}

/** One billed call. */
interface Charge {
  readonly model: string;
  readonly usd: number;
  readonly usage: Usage | undefined;
}

/**
 * The billed calls of a result or dead letter. Outcomes written before attempts carried their
 * cost fall back to the result's own `cost_usd` and `usage`: what is known of them.
 */
export function outcomeOf(message: unknown): Outcome | undefined {
  const parsed = OutcomeSchema.safeParse(message);
  if (!parsed.success) return undefined;
  const m = parsed.data;
  const kind = m.status === "succeeded" ? "result" : "dead_letter";
  const charges: Charge[] = [];
  for (const a of m.attempts) if (a.cost_usd !== undefined) charges.push({ model: `${a.provider}/${a.model}`, usd: a.cost_usd, usage: a.usage });
  if (charges.length === 0 && kind === "result" && m.cost_usd !== undefined) {
    charges.push({ model: `${m.provider ?? "?"}/${m.model ?? "?"}`, usd: m.cost_usd, usage: m.usage });
  }
  return { kind, task: m.task, metadata: m.metadata, charges };
}

export class SpendLedger {
  readonly #by: SpendGrouping;
  readonly #groups = new Map<string, SpendGroup>();

  constructor(by: SpendGrouping) {
    this.#by = by;
  }

  /** Counts one outcome message; anything that is not a result or dead letter counts nothing. */
  add(message: unknown): void {
    const o = outcomeOf(message);
    if (o === undefined) return;
    if (this.#by === "model") {
      const seen = new Set<string>();
      for (const c of o.charges) {
        const g = this.#group(c.model);
        if (!seen.has(c.model)) {
          seen.add(c.model);
          countJob(g, o.kind);
        }
        charge(g, c);
      }
      return;
    }
    const g = this.#group(this.#keyOf(o));
    countJob(g, o.kind);
    for (const c of o.charges) charge(g, c);
  }

  /** The groups, most billed first (then by name), and their total. */
  report(): { groups: SpendGroup[]; total: SpendGroup } {
    const groups = [...this.#groups.values()].sort((a, b) => b.billed_usd - a.billed_usd || a.key.localeCompare(b.key));
    const total = emptyGroup("total");
    for (const g of groups) {
      total.jobs += g.jobs;
      total.results += g.results;
      total.dead_letters += g.dead_letters;
      total.calls += g.calls;
      total.billed_usd += g.billed_usd;
      for (const k of Object.keys(total.tokens) as (keyof SpendTokens)[]) total.tokens[k] += g.tokens[k];
    }
    return { groups, total };
  }

  #keyOf(o: Outcome): string {
    if (this.#by === "task") return o.task;
    // The gateway puts the caller's key name (never the key) and tenant into the metadata.
    const v = o.metadata[this.#by];
    return typeof v === "string" && v !== "" ? v : NO_GROUP;
  }

  #group(key: string): SpendGroup {
    let g = this.#groups.get(key);
    if (!g) this.#groups.set(key, (g = emptyGroup(key)));
    return g;
  }
}

function emptyGroup(key: string): SpendGroup {
  return { key, jobs: 0, results: 0, dead_letters: 0, calls: 0, billed_usd: 0, tokens: { prompt: 0, cached: 0, cache_write: 0, completion: 0, reasoning: 0 } };
}

function countJob(g: SpendGroup, kind: Outcome["kind"]): void {
  g.jobs++;
  if (kind === "result") g.results++;
  else g.dead_letters++;
}

function charge(g: SpendGroup, c: Charge): void {
  g.calls++;
  g.billed_usd += c.usd;
  const u = c.usage;
  if (u === undefined) return;
  g.tokens.prompt += u.prompt_tokens;
  g.tokens.cached += u.prompt_tokens_details?.cached_tokens ?? 0;
  g.tokens.cache_write += u.prompt_tokens_details?.cache_write_tokens ?? 0;
  g.tokens.completion += u.completion_tokens;
  g.tokens.reasoning += u.completion_tokens_details?.reasoning_tokens ?? 0;
}

/**
 * Config resolved once at start-up into what routing reads per job: the model catalogue
 * and each task's policy with aliases already expanded.
 */
import type { Config, TierConfig } from "../config/schema.ts";
import { splitModelId } from "../config/schema.ts";
import { SwitchyardError } from "../errors.ts";
import { compileTaskContract, type TaskContract } from "../acceptance/contract.ts";

export interface ModelInfo {
  /** `provider/model`, the id jobs and results use. */
  readonly id: string;
  /** A small integer fixed for the process (see `modelOrdinal`): health state is indexed by it. */
  readonly ordinal: number;
  readonly provider: string;
  readonly name: string;
  readonly upstream: string;
  readonly inputPerMtok: number;
  readonly outputPerMtok: number;
  /** Part prices from the config (`cached_input_per_mtok`, …); absent ones fall back as `Prices` says. */
  readonly cachedInputPerMtok: number | undefined;
  readonly cacheWritePerMtok: number | undefined;
  readonly reasoningPerMtok: number | undefined;
  readonly contextWindow: number;
  /** Takes a JSON Schema natively (`structured_output`); else the contract goes as an instruction. */
  readonly structuredOutput: boolean;
}

export interface TierPolicy {
  /** The tier's position in the config, reported in attempts even when a pin selects it alone. */
  readonly index: number;
  readonly strategy: TierConfig["strategy"];
  /**
   * The tier's models as the planner walks them: resolved, without models an earlier tier
   * already offers, and without those under the task's quality floor.
   */
  readonly candidates: readonly ModelInfo[];
  /** For `weighted`: one weight per candidate. */
  readonly weights: readonly number[] | undefined;
}

const ordinals = new Map<string, number>();

/**
 * The process-wide number of a model id, handed out on first sight and never reused, so
 * it stays the same across config reloads and state indexed by it stays valid.
 */
export function modelOrdinal(id: string): number {
  let o = ordinals.get(id);
  if (o === undefined) ordinals.set(id, (o = ordinals.size));
  return o;
}

export interface TaskPolicy {
  readonly task: string;
  readonly tiers: readonly TierPolicy[];
  readonly maxAttempts: number;
  readonly maxDeliveries: number;
  readonly expectedCompletionTokens: number;
  readonly maxLatencyMs: number | undefined;
  /** Model id → quality score for this task; absent means 1. */
  readonly quality: ReadonlyMap<string, number>;
  readonly minQuality: number | undefined;
  /** Model ids a job may name explicitly; undefined allows any configured model. */
  readonly allowModels: ReadonlySet<string> | undefined;
  /** Set when an environment variable pins the task (see `pinVariable`). */
  readonly pinnedBy: string | undefined;
  /** The task's output contract (what the model is asked for, and the check of its answers), compiled once. */
  readonly contract: TaskContract;
  /** The task's `hedge`: after `p95` or a number of ms; undefined when it hedges nothing. */
  readonly hedge: { readonly after: "p95" | number; readonly maxExtraCostUsd: number | undefined } | undefined;
}

/** `SWITCHYARD_PIN_<TASK>`, the task upper-cased with `-` as `_`: e.g. SWITCHYARD_PIN_MODERATION. */
export function pinVariable(task: string): string {
  return `SWITCHYARD_PIN_${task.toUpperCase().replace(/-/g, "_")}`;
}

export interface Catalog {
  readonly models: ReadonlyMap<string, ModelInfo>;
  readonly tasks: ReadonlyMap<string, TaskPolicy>;
  /** An alias or a `provider/model` id → the model id, or undefined when unknown. */
  resolve(ref: string): string | undefined;
}

/**
 * Resolves the config once. A pin in the environment replaces a task's tiers: a model id
 * or alias serves the task alone; `tier:<n>` keeps only tier n (0-based). A pin naming
 * something unknown stops start-up, like a config mistake.
 */
export function buildCatalog(cfg: Config, env: NodeJS.ProcessEnv = {}): Catalog {
  const models = new Map<string, ModelInfo>();
  for (const [provider, p] of Object.entries(cfg.providers)) {
    for (const [name, m] of Object.entries(p.models)) {
      const id = `${provider}/${name}`;
      models.set(id, {
        id,
        ordinal: modelOrdinal(id),
        provider,
        name,
        upstream: m.upstream ?? name,
        inputPerMtok: m.input_per_mtok,
        outputPerMtok: m.output_per_mtok,
        cachedInputPerMtok: m.cached_input_per_mtok,
        cacheWritePerMtok: m.cache_write_per_mtok,
        reasoningPerMtok: m.reasoning_per_mtok,
        contextWindow: m.context_window,
        structuredOutput: m.structured_output,
      });
    }
  }
  const resolve = (ref: string) => {
    const id = cfg.aliases[ref] ?? ref;
    const [p, m] = splitModelId(id);
    return p !== undefined && m !== undefined && models.has(id) ? id : undefined;
  };
  const tasks = new Map<string, TaskPolicy>();
  for (const [task, t] of Object.entries(cfg.tasks)) {
    const quality = new Map(Object.entries(t.quality).map(([ref, q]) => [resolve(ref) as string, q]));
    const floor = t.min_quality;
    const offered = new Set<string>();
    // Config validation guarantees every reference resolves.
    let tiers: TierPolicy[] = t.tiers.map((tier, index) => {
      const candidates: ModelInfo[] = [];
      const weights: number[] = [];
      tier.models.forEach((ref, i) => {
        const model = models.get(resolve(ref) as string)!;
        if (offered.has(model.id) || (floor !== undefined && (quality.get(model.id) ?? 1) < floor)) return;
        offered.add(model.id);
        candidates.push(model);
        weights.push(tier.weights?.[i] ?? 1);
      });
      return { index, strategy: tier.strategy, candidates, weights: tier.strategy === "weighted" ? weights : undefined };
    });
    const pinName = pinVariable(task);
    const pin = env[pinName];
    if (pin) {
      const tierPin = /^tier:(\d+)$/.exec(pin);
      if (tierPin) {
        const chosen = tiers[Number(tierPin[1])];
        if (!chosen) throw new SwitchyardError("config", `${pinName}=${pin}: task "${task}" has tiers 0–${tiers.length - 1}`);
        tiers = [chosen];
      } else {
        const id = resolve(pin);
        if (!id) throw new SwitchyardError("config", `${pinName}=${pin}: not a configured model, alias or tier:<n>`);
        tiers = [{ index: 0, strategy: "ordered", candidates: [models.get(id)!], weights: undefined }];
      }
    }
    tasks.set(task, {
      task,
      tiers,
      maxAttempts: t.max_attempts,
      maxDeliveries: t.max_deliveries ?? cfg.router.max_deliveries,
      expectedCompletionTokens: t.expected_completion_tokens,
      maxLatencyMs: t.max_latency_ms,
      quality,
      minQuality: floor,
      allowModels: t.allow_models ? new Set(t.allow_models.map((ref) => resolve(ref) as string)) : undefined,
      pinnedBy: pin ? `${pinName}=${pin}` : undefined,
      contract: compileTaskContract(task, t.output),
      hedge: t.hedge && { after: t.hedge.after, maxExtraCostUsd: t.hedge.max_extra_cost_usd },
    });
  }
  return { models, tasks, resolve };
}

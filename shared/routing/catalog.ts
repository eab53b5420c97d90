/**
 * Config resolved once at start-up into what routing reads per job: the model catalogue
 * and each task's policy with aliases already expanded.
 */
import type { Config, TierConfig } from "../config/schema.ts";
import { splitModelId } from "../config/schema.ts";
import { SwitchyardError } from "../errors.ts";
import { compileOutputCheck, type OutputCheck } from "../acceptance/check.ts";

export interface ModelInfo {
  /** `provider/model`, the id jobs and results use. */
  readonly id: string;
  readonly provider: string;
  readonly name: string;
  readonly upstream: string;
  readonly inputPerMtok: number;
  readonly outputPerMtok: number;
  readonly contextWindow: number;
}

export interface TierPolicy {
  /** The tier's position in the config, reported in attempts even when a pin selects it alone. */
  readonly index: number;
  readonly strategy: TierConfig["strategy"];
  readonly models: readonly string[];
  readonly weights: readonly number[] | undefined;
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
  /** The task's output acceptance, compiled once. */
  readonly check: OutputCheck;
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
        provider,
        name,
        upstream: m.upstream ?? name,
        inputPerMtok: m.input_per_mtok,
        outputPerMtok: m.output_per_mtok,
        contextWindow: m.context_window,
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
    // Config validation guarantees every reference resolves.
    let tiers: TierPolicy[] = t.tiers.map((tier, index) => ({
      index,
      strategy: tier.strategy,
      models: tier.models.map((ref) => resolve(ref) as string),
      weights: tier.weights,
    }));
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
        tiers = [{ index: 0, strategy: "ordered", models: [id], weights: undefined }];
      }
    }
    tasks.set(task, {
      task,
      tiers,
      maxAttempts: t.max_attempts,
      maxDeliveries: t.max_deliveries ?? cfg.router.max_deliveries,
      expectedCompletionTokens: t.expected_completion_tokens,
      maxLatencyMs: t.max_latency_ms,
      quality: new Map(Object.entries(t.quality).map(([ref, q]) => [resolve(ref) as string, q])),
      minQuality: t.min_quality,
      allowModels: t.allow_models ? new Set(t.allow_models.map((ref) => resolve(ref) as string)) : undefined,
      pinnedBy: pin ? `${pinName}=${pin}` : undefined,
      check: compileOutputCheck(t.output),
    });
  }
  return { models, tasks, resolve };
}

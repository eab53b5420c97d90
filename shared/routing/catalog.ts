/**
 * Config resolved once at start-up into what routing reads per job: the model catalogue
 * and each task's policy with aliases already expanded.
 */
import type { Config, TierConfig } from "../config/schema.ts";
import { splitModelId } from "../config/schema.ts";

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
}

export interface Catalog {
  readonly models: ReadonlyMap<string, ModelInfo>;
  readonly tasks: ReadonlyMap<string, TaskPolicy>;
  /** An alias or a `provider/model` id → the model id, or undefined when unknown. */
  resolve(ref: string): string | undefined;
}

export function buildCatalog(cfg: Config): Catalog {
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
    tasks.set(task, {
      task,
      tiers: t.tiers.map((tier) => ({
        strategy: tier.strategy,
        // Config validation guarantees every reference resolves.
        models: tier.models.map((ref) => resolve(ref) as string),
        weights: tier.weights,
      })),
      maxAttempts: t.max_attempts,
      maxDeliveries: t.max_deliveries ?? cfg.router.max_deliveries,
      expectedCompletionTokens: t.expected_completion_tokens,
    });
  }
  return { models, tasks, resolve };
}

/**
 * GET /v1/models: the configured catalogue with live prices, health, per-task quality and
 * context windows.
 * Prices and health come from the pricing service's KV bucket (`switchyard-models`), watched
 * like the workers watch it; until an entry arrives, a model shows its configured price.
 */
import type { KV } from "@nats-io/kv";
import type { ModelState, TaskQuality } from "../../shared/contract/live.ts";
import type { Logger } from "../../shared/log.ts";
import { watchModelStates } from "../../shared/nats/model-watch.ts";
import type { Catalog } from "../../shared/routing/catalog.ts";
import { GatewayError } from "./openai-error.ts";

/** An OpenAI model object with Switchyard's extras (OpenAI's SDK keeps unknown fields). */
export interface ModelObject {
  id: string;
  object: "model";
  created: number;
  owned_by: string;
  context_window: number | null;
  pricing: { input_per_mtok: number; output_per_mtok: number; source: string } | null;
  health: string | null;
  /**
   * Per task: the model's pass rate of the task's output contract and whether it is demoted
   * for the task (the KV entry's `quality`, see `shared/contract/live.ts`); `{}` before any
   * answer was judged, null for `auto`.
   */
  quality: Record<string, TaskQuality> | null;
  /** For an alias: the `provider/model` it stands for. */
  alias_for?: string;
}

export interface ModelCatalogue {
  list(): ModelObject[];
  get(id: string): ModelObject;
  stop(): void;
}

export async function watchModelCatalogue(kv: KV, catalog: () => Catalog, aliases: () => Record<string, string>, logger: Logger): Promise<ModelCatalogue> {
  const live = new Map<string, ModelState>();
  const created = Math.floor(Date.now() / 1000);
  const watch = await watchModelStates(kv, { state: (st) => live.set(st.id, st), removed: (id) => live.delete(id) }, logger);
  watch.done.catch((err: unknown) => logger.error({ err: (err as Error).message }, "model state watch failed; /v1/models shows configured prices"));

  const model = (id: string): ModelObject | undefined => {
    const m = catalog().models.get(id);
    if (!m) return undefined;
    const s = live.get(id);
    return {
      id,
      object: "model",
      created,
      owned_by: m.provider,
      context_window: m.contextWindow,
      pricing: s
        ? { input_per_mtok: s.input_per_mtok, output_per_mtok: s.output_per_mtok, source: s.price_source }
        : { input_per_mtok: m.inputPerMtok, output_per_mtok: m.outputPerMtok, source: "config" },
      health: s?.health ?? null,
      quality: s?.quality ?? {},
    };
  };
  const lookup = (id: string): ModelObject | undefined => {
    if (id === "auto") return { id, object: "model", created, owned_by: "switchyard", context_window: null, pricing: null, health: null, quality: null };
    const target = aliases()[id];
    if (target !== undefined) {
      const m = model(target);
      return m && { ...m, id, alias_for: target };
    }
    return model(id);
  };

  return {
    list() {
      const ids = ["auto", ...catalog().models.keys(), ...Object.keys(aliases())];
      return ids.map(lookup).filter((m): m is ModelObject => m !== undefined);
    },
    get(id) {
      const m = lookup(id);
      if (!m) throw new GatewayError(404, `The model '${id}' does not exist.`, { code: "model_not_found", param: "model" });
      return m;
    },
    stop: () => watch.stop(),
  };
}

/**
 * The price table: the config's prices, overlaid by a watched price file and by operator
 * overrides (`switchyard prices set`). For each model the most recent source wins, so a
 * file edited after a `prices set` takes effect, and the other way round. Pure.
 */
import { z } from "zod";
import type { PriceOverride } from "../../shared/contract/live.ts";
import type { ModelInfo } from "../../shared/routing/catalog.ts";

export interface Price {
  readonly inputPerMtok: number;
  readonly outputPerMtok: number;
  readonly source: "config" | "file" | "cli";
  /** Epoch ms when this price was set (the file's modification time for the file). */
  readonly setAt: number;
}

/** A price file: `provider/model: { input_per_mtok, output_per_mtok }`, YAML or JSON. */
export const PriceFileSchema = z.record(
  z.string(),
  z.strictObject({ input_per_mtok: z.number().nonnegative(), output_per_mtok: z.number().nonnegative() }),
);
export type PriceFile = z.infer<typeof PriceFileSchema>;

export function effectivePrices(
  models: ReadonlyMap<string, ModelInfo>,
  configSetAt: number,
  file: { readonly prices: PriceFile; readonly setAt: number } | undefined,
  overrides: ReadonlyMap<string, PriceOverride>,
): Map<string, Price> {
  const out = new Map<string, Price>();
  for (const m of models.values()) {
    let best: Price = { inputPerMtok: m.inputPerMtok, outputPerMtok: m.outputPerMtok, source: "config", setAt: configSetAt };
    const f = file?.prices[m.id];
    if (f && file!.setAt >= best.setAt) best = { inputPerMtok: f.input_per_mtok, outputPerMtok: f.output_per_mtok, source: "file", setAt: file!.setAt };
    const o = overrides.get(m.id);
    const oAt = o ? Date.parse(o.set_at) : NaN;
    if (o && oAt >= best.setAt) best = { inputPerMtok: o.input_per_mtok, outputPerMtok: o.output_per_mtok, source: "cli", setAt: oAt };
    out.set(m.id, best);
  }
  return out;
}

/** Ids in a price file that the config does not know: reported rather than silently ignored. */
export function unknownModels(models: ReadonlyMap<string, ModelInfo>, file: PriceFile): string[] {
  return Object.keys(file).filter((id) => !models.has(id));
}

/**
 * How the CLI's commands lay out what they print: aligned plain-text tables (readable in a
 * terminal, greppable in a log, no colour or box drawing) and the figures inside them.
 */

/** Widest a column grows; longer cells are cut with "…". */
const MAX_COLUMN = 80;

/**
 * Columns padded to their widest cell (at most 80 characters), two spaces apart, a dashed rule
 * under the header, trailing spaces trimmed; ends with a newline.
 */
export function table(head: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = head.map((h, i) => Math.min(MAX_COLUMN, Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length))));
  const fmt = (r: readonly string[]) => r.map((c, i) => (c.length > widths[i]! ? `${c.slice(0, widths[i]! - 1)}…` : c.padEnd(widths[i]!))).join("  ").trimEnd();
  return [fmt(head), fmt(widths.map((w) => "-".repeat(w))), ...rows.map(fmt)].join("\n") + "\n";
}

/** A fraction (0.123) as a percentage ("12.3%"). */
export function percent(fraction: number, digits = 1): string {
  return `${(fraction * 100).toFixed(digits)}%`;
}

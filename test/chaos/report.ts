/**
 * The chaos table in docs/RELIABILITY.md: the run rewrites what sits between the two
 * markers and leaves the prose around it alone.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import type { ScenarioReport } from "./scenarios.ts";

export const BEGIN = "<!-- chaos-table:begin (written by `npm run chaos`) -->";
export const END = "<!-- chaos-table:end -->";

export function renderTable(reports: readonly ScenarioReport[]): string {
  const head = ["scenario", "jobs published", "faults injected", "results", "dead letters", "lost", "duplicated", "worst recovery", "checks"];
  const rows = reports.map((r) => {
    const failed = [...r.problems, ...r.checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail}`)];
    return [
      `${r.name}`,
      String(r.published),
      `${r.faultsInjected}: ${r.faultNote}`,
      String(r.results),
      r.deadLetters === 0 ? "0" : `${r.deadLetters} (${Object.entries(r.reasons).map(([k, n]) => `${k} ${n}`).join(", ")})`,
      String(r.lost),
      String(r.duplicated),
      r.worstRecoveryMs === undefined ? "n/a" : `${(r.worstRecoveryMs / 1000).toFixed(1)} s`,
      failed.length === 0 ? `ok: invariant${r.checks.length > 0 ? ` + ${r.checks.length} check${r.checks.length > 1 ? "s" : ""}` : ""}` : `**FAILED**: ${failed.join("; ")}`,
    ];
  });
  const esc = (c: string) => c.replace(/\|/g, "\\|").replace(/\n/g, " ");
  return [`| ${head.join(" | ")} |`, `|${head.map(() => "---").join("|")}|`, ...rows.map((r) => `| ${r.map(esc).join(" | ")} |`)].join("\n");
}

export async function writeReport(file: string, reports: readonly ScenarioReport[], wallMs: number): Promise<void> {
  const total = reports.reduce((a, r) => a + r.published, 0);
  const section = [
    BEGIN,
    "",
    `Last full run: ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC, ${cpus().length} cores, wall time ${Math.round(wallMs / 1000)} s, ${total} jobs published.`,
    "",
    renderTable(reports),
    "",
    END,
  ].join("\n");
  const text = existsSync(file) ? readFileSync(file, "utf8") : `# Reliability\n\n${BEGIN}\n${END}\n`;
  const from = text.indexOf(BEGIN);
  const to = text.indexOf(END);
  const next = from === -1 || to === -1 ? `${text.trimEnd()}\n\n${section}\n` : `${text.slice(0, from)}${section}${text.slice(to + END.length)}`;
  writeFileSync(file, next);
}

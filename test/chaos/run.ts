/**
 * `npm run chaos`: every scenario at full size, one after another (they would only steal
 * each other's two cores), then the table in docs/RELIABILITY.md. Exits 1 when any scenario
 * lost or duplicated a job or failed one of its checks.
 *
 *   npm run chaos                       all scenarios, full size, report written
 *   npm run chaos -- --fast             the `npm test` sizes (report not written)
 *   npm run chaos -- worker-kills ...   only these (report not written)
 *
 * CHAOS_LOGS=<dir> keeps every spawned process's output there; CHAOS_DUMP=<file> writes each
 * scenario's outcomes (the last scenario's survives): what to look at when a scenario fails.
 */
import { fileURLToPath } from "node:url";
import { writeReport, renderTable } from "./report.ts";
import { ALL_SCENARIOS } from "./suite.ts";
import type { ScenarioReport, Size } from "./scenarios.ts";

const args = process.argv.slice(2);
const size: Size = args.includes("--fast") ? "fast" : "full";
const only = args.filter((a) => !a.startsWith("--"));
const chosen = only.length > 0 ? ALL_SCENARIOS.filter((s) => only.includes(s.name)) : ALL_SCENARIOS;
if (chosen.length === 0) {
  process.stderr.write(`no scenario named ${only.join(", ")}; known: ${ALL_SCENARIOS.map((s) => s.name).join(", ")}\n`);
  process.exit(2);
}

const started = Date.now();
const reports: ScenarioReport[] = [];
for (const scenario of chosen) {
  process.stderr.write(`\n▶ ${scenario.name}: ${scenario.title}\n`);
  try {
    const r = await scenario.run(size);
    reports.push(r);
    const failed = r.checks.filter((c) => !c.ok);
    process.stderr.write(
      `  published ${r.published}, results ${r.results}, dead letters ${r.deadLetters}, lost ${r.lost}, duplicated ${r.duplicated}, worst recovery ${r.worstRecoveryMs === undefined ? "n/a" : `${r.worstRecoveryMs} ms`}, ${(r.wallMs / 1000).toFixed(1)} s\n` +
        r.problems.map((p) => `  ✗ ${p}\n`).join("") +
        failed.map((c) => `  ✗ ${c.name}: ${c.detail}\n`).join(""),
    );
  } catch (err) {
    process.stderr.write(`  ✗ the scenario itself failed: ${(err as Error).stack ?? String(err)}\n`);
    reports.push(crashed(scenario.name, err));
  }
}
const wallMs = Date.now() - started;
process.stdout.write(`\n${renderTable(reports)}\nwall time ${(wallMs / 1000).toFixed(0)} s, ${reports.reduce((a, r) => a + r.published, 0)} jobs published\n`);
if (size === "full" && only.length === 0) {
  const file = fileURLToPath(new URL("../../docs/RELIABILITY.md", import.meta.url));
  await writeReport(file, reports, wallMs);
  process.stdout.write(`report written to ${file}\n`);
}
const bad = reports.filter((r) => r.lost > 0 || r.duplicated > 0 || r.unexpected > 0 || r.problems.length > 0 || r.checks.some((c) => !c.ok));
process.exit(bad.length > 0 ? 1 : 0);

function crashed(name: string, err: unknown): ScenarioReport {
  return {
    name,
    published: 0,
    results: 0,
    deadLetters: 0,
    reasons: {},
    lost: 0,
    duplicated: 0,
    unexpected: 0,
    unacked: 0,
    serving: false,
    worstRecoveryMs: undefined,
    problems: [`scenario crashed: ${(err as Error).message}`],
    faultsInjected: 0,
    faultNote: "",
    checks: [],
    wallMs: 0,
  };
}

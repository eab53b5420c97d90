/**
 * What the CLI prints: tables (services/cli/table.ts) and the progress bar's rate.
 */
import { describe, expect, it } from "vitest";
import { MIN_RATE_WINDOW_MS, progress } from "../services/cli/progress.ts";
import { percent, table } from "../services/cli/table.ts";

/** A non-terminal output (one line per draw) and a clock the test moves. */
function fakeOutput() {
  const lines: string[] = [];
  let now = 1_000_000;
  return {
    out: { write: (s: string) => lines.push(s.trimEnd()), isTTY: false },
    clock: () => now,
    advance: (ms: number) => (now += ms),
    lines,
  };
}

describe("progress rate", () => {
  it("shows no rate for a phase that ended at once (1,204 items in 1 ms is not 1,204,000/s)", () => {
    const f = fakeOutput();
    const bar = progress("ended", 1204, f.out, f.clock);
    f.advance(1);
    bar.update(1204);
    bar.finish();
    expect(f.lines.join("\n")).not.toMatch(/\/s/);
    expect(f.lines.at(-1)).toContain("1204/1204 100%");
  });

  it("shows the rate once enough time has passed to measure one", () => {
    const f = fakeOutput();
    const bar = progress("published", 1000, f.out, f.clock);
    f.advance(MIN_RATE_WINDOW_MS - 1);
    bar.update(100);
    expect(f.lines.at(-1)).not.toMatch(/\/s/);
    f.advance(2001); // 2.5 s in
    bar.update(250);
    expect(f.lines.at(-1)).toMatch(/ 100\/s$/);
    bar.finish("all acknowledged");
    expect(f.lines.at(-1)).toMatch(/ 100\/s  all acknowledged$/);
  });
});

describe("table", () => {
  it("pads columns to their widest cell, rules the header and trims trailing spaces", () => {
    expect(table(["model", "jobs"], [["swift/mini", "834"], ["budget/lite", "366"]])).toBe(
      "model        jobs\n-----------  ----\nswift/mini   834\nbudget/lite  366\n",
    );
  });

  it("cuts cells over 80 characters with an ellipsis", () => {
    const out = table(["error"], [["x".repeat(100)]]);
    expect(out.split("\n")[2]).toBe(`${"x".repeat(79)}…`);
  });

  it("writes fractions as percentages", () => {
    expect(percent(0.695)).toBe("69.5%");
    expect(percent(1 / 3, 0)).toBe("33%");
  });
});

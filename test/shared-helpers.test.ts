/**
 * The small shared pieces, one definition each: the percentile every report uses, bounded
 * concurrency, and the cost figure the gateway sends in a header.
 */
import { describe, expect, it } from "vitest";
import { boundedWindow, mapLimit } from "../shared/concurrency.ts";
import { percentile } from "../shared/stats.ts";
import { formatUsd } from "../shared/usd.ts";

describe("percentile (nearest rank)", () => {
  const oneToHundred = Array.from({ length: 100 }, (_, i) => i + 1);

  it("is the smallest value with at least p % of the values at or below it", () => {
    expect(percentile(oneToHundred, 50)).toBe(50);
    expect(percentile(oneToHundred, 95)).toBe(95);
    expect(percentile(oneToHundred, 99)).toBe(99);
    expect(percentile(oneToHundred, 100)).toBe(100);
    expect(percentile(oneToHundred, 0)).toBe(1);
    // Between ranks it rounds up to an observed value, never interpolates.
    expect(percentile([10, 20, 30, 40], 50)).toBe(20);
    expect(percentile([10, 20, 30, 40], 51)).toBe(30);
    expect(percentile(Float64Array.from([3]), 99)).toBe(3);
  });

  it("is NaN for no values and refuses a p outside 0–100", () => {
    expect(percentile([], 50)).toBeNaN();
    expect(() => percentile([1], 101)).toThrow(RangeError);
    expect(() => percentile([1], -1)).toThrow(RangeError);
    expect(() => percentile([1], Number.NaN)).toThrow(RangeError);
  });
});

/** A task that ends when told to, counting how many run at once. */
function gate() {
  let running = 0;
  let peak = 0;
  const release: (() => void)[] = [];
  const task = <T>(value: T, fail = false) => {
    running++;
    peak = Math.max(peak, running);
    return new Promise<T>((resolve, reject) =>
      release.push(() => {
        running--;
        if (fail) reject(new Error(`failed: ${String(value)}`));
        else resolve(value);
      }),
    );
  };
  const releaseAll = async () => {
    while (release.length > 0) {
      release.shift()!();
      await new Promise((r) => setImmediate(r));
    }
  };
  return { task, releaseAll, peak: () => peak, waiting: () => release.length };
}

describe("mapLimit", () => {
  it("runs at most `limit` at once and returns results in input order", async () => {
    const g = gate();
    const done = mapLimit([1, 2, 3, 4, 5, 6, 7], 3, (n) => g.task(n * 10));
    await new Promise((r) => setImmediate(r));
    expect(g.waiting()).toBe(3);
    await g.releaseAll();
    expect(await done).toEqual([10, 20, 30, 40, 50, 60, 70]);
    expect(g.peak()).toBe(3);
  });

  it("rejects with the first failure and starts nothing after it", async () => {
    const started: number[] = [];
    await expect(
      mapLimit([1, 2, 3, 4, 5], 1, async (n) => {
        started.push(n);
        if (n === 2) throw new Error("two");
        return n;
      }),
    ).rejects.toThrow("two");
    expect(started).toEqual([1, 2]);
  });

  it("refuses a limit below 1", async () => {
    await expect(mapLimit([1], 0, async (n) => n)).rejects.toThrow(RangeError);
  });
});

describe("boundedWindow", () => {
  it("lets the producer run at most `limit` ahead, and drain waits for the rest", async () => {
    const g = gate();
    const w = boundedWindow(2);
    await w.add(g.task(1));
    expect(w.size).toBe(1);
    const third = (async () => {
      await w.add(g.task(2)); // the window is full now: this add waits for a slot
      return "added";
    })();
    let settled = false;
    void third.then(() => (settled = true));
    await new Promise((r) => setImmediate(r));
    expect(settled).toBe(false);
    await g.releaseAll();
    expect(await third).toBe("added");
    await w.drain();
    expect(w.size).toBe(0);
    expect(g.peak()).toBe(2);
  });

  it("keeps a failure (no unhandled rejection) and throws it from the next add, or from drain", async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown) => unhandled.push(e);
    process.on("unhandledRejection", onUnhandled);
    try {
      const w = boundedWindow(10);
      await w.add(Promise.reject(new Error("publish failed")));
      await new Promise((r) => setImmediate(r));
      await expect(w.add(Promise.resolve())).rejects.toThrow("publish failed");
      await expect(w.drain()).rejects.toThrow("publish failed");
      const v = boundedWindow(10);
      await v.add(Promise.reject(new Error("late")));
      await expect(v.drain()).rejects.toThrow("late");
      await new Promise((r) => setTimeout(r, 10));
      expect(unhandled).toEqual([]);
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });
});

describe("formatUsd (x-switchyard-cost-usd)", () => {
  it("drops float noise, keeping six significant digits", () => {
    expect(formatUsd(0.0000028999999999999998)).toBe("0.0000029");
    expect(formatUsd(0.1 + 0.2)).toBe("0.3");
    expect(formatUsd(0.0219)).toBe("0.0219");
    expect(formatUsd(1234.56789)).toBe("1234.57");
  });

  it("never writes exponent notation, however small", () => {
    expect(formatUsd(2.9e-6)).toBe("0.0000029");
    expect(formatUsd(1e-7)).toBe("0.0000001");
    expect(formatUsd(2.9e-12)).toBe("0.0000000000029");
    expect(formatUsd(9.999999e-7)).toBe("0.000001");
    for (let e = -15; e <= 3; e++) expect(formatUsd(1.23456789 * 10 ** e)).not.toMatch(/e/i);
  });

  it("writes whole amounts and zero plainly, and parses back to the rounded amount", () => {
    expect(formatUsd(0)).toBe("0");
    expect(formatUsd(1)).toBe("1");
    expect(formatUsd(100)).toBe("100");
    expect(Number(formatUsd(0.000003953))).toBe(0.000003953);
  });
});

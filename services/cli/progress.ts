/**
 * A one-line progress bar on stderr (redrawn in place on a terminal, a line a second
 * otherwise, so CI logs stay readable).
 */
export interface Progress {
  update(done: number, extra?: string): void;
  finish(extra?: string): void;
}

/** Where the bar is drawn: stderr, or anything with `write` in a test. */
export interface ProgressOutput {
  write(text: string): unknown;
  readonly isTTY?: boolean;
}

/**
 * Below this much elapsed time no rate is shown: items counted over a few milliseconds (a
 * phase whose work was already done when it began) would read as a million a second.
 */
export const MIN_RATE_WINDOW_MS = 500;

export function progress(label: string, total: number, out: ProgressOutput = process.stderr, clock: () => number = Date.now): Progress {
  const started = clock();
  const tty = out.isTTY === true;
  let lastDraw = -Infinity;
  let last = 0;
  const line = (done: number, extra?: string) => {
    const width = 30;
    const frac = total > 0 ? Math.min(1, done / total) : 1;
    const filled = Math.round(frac * width);
    const elapsedMs = clock() - started;
    const rate = elapsedMs >= MIN_RATE_WINDOW_MS ? `  ${Math.round((done * 1000) / elapsedMs)}/s` : "";
    const bar = total > 0 ? `[${"#".repeat(filled)}${"-".repeat(width - filled)}] ${done}/${total} ${(frac * 100).toFixed(0).padStart(3)}%` : `${done}`;
    return `${label.padEnd(10)} ${bar}${rate}${extra ? `  ${extra}` : ""}`;
  };
  return {
    update(done, extra) {
      last = done;
      const now = clock();
      if (now - lastDraw < (tty ? 100 : 1000)) return;
      lastDraw = now;
      out.write(tty ? `\r${line(done, extra)}\x1b[K` : `${line(done, extra)}\n`);
    },
    finish(extra) {
      out.write(tty ? `\r${line(last, extra)}\x1b[K\n` : `${line(last, extra)}\n`);
    },
  };
}

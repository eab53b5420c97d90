/**
 * A one-line progress bar on stderr (redrawn in place on a terminal, a line a second
 * otherwise, so CI logs stay readable).
 */
export interface Progress {
  update(done: number, extra?: string): void;
  finish(extra?: string): void;
}

export function progress(label: string, total: number, out: NodeJS.WriteStream = process.stderr): Progress {
  const started = Date.now();
  const tty = out.isTTY === true;
  let lastDraw = 0;
  let last = 0;
  const line = (done: number, extra?: string) => {
    const width = 30;
    const frac = total > 0 ? Math.min(1, done / total) : 1;
    const filled = Math.round(frac * width);
    const secs = (Date.now() - started) / 1000;
    const rate = secs > 0 ? Math.round(done / secs) : 0;
    const bar = total > 0 ? `[${"#".repeat(filled)}${"-".repeat(width - filled)}] ${done}/${total} ${(frac * 100).toFixed(0).padStart(3)}%` : `${done}`;
    return `${label.padEnd(10)} ${bar}  ${rate}/s${extra ? `  ${extra}` : ""}`;
  };
  return {
    update(done, extra) {
      last = done;
      const now = Date.now();
      if (now - lastDraw < (tty ? 100 : 1000)) return;
      lastDraw = now;
      out.write(tty ? `\r${line(done, extra)}\x1b[K` : `${line(done, extra)}\n`);
    },
    finish(extra) {
      out.write(tty ? `\r${line(last, extra)}\x1b[K\n` : `${line(last, extra)}\n`);
    },
  };
}

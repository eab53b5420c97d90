/**
 * Wall-clock milliseconds at sub-millisecond resolution. Date.now() only resolves whole
 * milliseconds, too coarse for overheads well under one; performance.timeOrigin is a wall
 * reading taken once at start-up and disagrees between processes by up to ~0.4 ms here. So
 * each process pins performance.now() to the system clock at the instant Date.now() ticks,
 * which keeps processes (and nats-server's nanosecond timestamps) within ~0.05 ms of each other.
 */
export function calibratedWallClock(): () => number {
  let anchor = -Infinity;
  for (let i = 0; i < 50; i++) {
    const before = Date.now();
    let tick: number;
    do tick = Date.now();
    while (tick === before);
    // Every reading lags the true tick a little; the largest anchor lags least.
    anchor = Math.max(anchor, tick - performance.now());
  }
  return () => anchor + performance.now();
}

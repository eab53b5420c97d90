/**
 * Work deferred to the end of this turn of the event loop, run together. nats.js writes its
 * outbound buffer to the socket once per microtask checkpoint, that is once per I/O callback:
 * messages published from the many callbacks of one busy turn (a router answering ten calls,
 * a gateway taking several requests) each cost a socket write, the largest item in both
 * processes' profiles (docs/BENCHMARKS.md, "Issue 15, second pass"). Published from here they
 * leave in one write.
 */
let queued: (() => void)[] = [];

function runQueued(): void {
  const run = queued;
  queued = [];
  for (const fn of run) {
    try {
      fn();
    } catch (err) {
      // One failing callback must not cost the others their turn; the error still surfaces.
      queueMicrotask(() => {
        throw err;
      });
    }
  }
}

/** Runs `fn` at the end of this turn (a `setImmediate`), with everything else deferred in it. */
export function atTurnEnd(fn: () => void): void {
  if (queued.push(fn) === 1) setImmediate(runQueued);
}

/** Resolves at the end of this turn, together with everyone else who asked during it. */
export function nextTurn(): Promise<void> {
  return new Promise((resolve) => atTurnEnd(resolve));
}

/**
 * Runs `fn` at the end of the next turn: for what may wait behind this turn's replies.
 * nats-server passes a message on only once it has read the whole write it came in, so a
 * reply written together with a result record waits for JetStream to take the record.
 */
export function atNextTurnEnd(fn: () => void): void {
  atTurnEnd(() => atTurnEnd(fn));
}

/** Resolves once everything deferred before the call (with either function above) has run: for a stop, before the connection drains. */
export async function deferredRan(): Promise<void> {
  await nextTurn();
  await nextTurn();
}

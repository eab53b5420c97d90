/**
 * Bounded concurrency, the two shapes Switchyard needs: a known list mapped with at most
 * `limit` calls at once (`mapLimit`), and a stream of work started one item at a time with at
 * most `limit` unfinished (`boundedWindow`: publishing with a window of PubAcks outstanding).
 */

/**
 * `fn` over `items`, at most `limit` calls running at once; results in input order. The first
 * failure rejects the whole map, and no further item is started after it (calls already
 * running finish on their own).
 *
 * @param limit at least 1
 */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  checkLimit(limit);
  const out = new Array<R>(items.length);
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (!failed && next < items.length) {
      const i = next++;
      try {
        out[i] = await fn(items[i]!, i);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** Work started elsewhere, tracked until it settles; see `boundedWindow`. */
export interface BoundedWindow {
  /**
   * Tracks `task` (already started) and resolves once fewer than `limit` tasks are unfinished,
   * so the caller may start the next. Rejects with the first failure of any task tracked so far.
   */
  add(task: Promise<unknown>): Promise<void>;
  /** Resolves when every tracked task has settled; rejects with the first failure, if any. */
  drain(): Promise<void>;
  /** Tasks tracked and not settled yet. */
  readonly size: number;
}

/**
 * At most `limit` tasks unfinished at once, for a producer that starts work one item at a
 * time (reading a file, consuming a stream) and must not get further ahead than that.
 * A failing task never becomes an unhandled rejection: its error is kept and thrown by the
 * next `add` or by `drain`, so a caller handling each task's errors itself (`.catch` on the
 * task) sees none, and one that does not stops at the first. Call `drain` at the end.
 *
 * @param limit at least 1
 */
export function boundedWindow(limit: number): BoundedWindow {
  checkLimit(limit);
  const pending = new Set<Promise<void>>();
  let failure: { error: unknown } | undefined;
  const rethrow = () => {
    if (failure) throw failure.error;
  };
  return {
    async add(task) {
      rethrow();
      const settled: Promise<void> = task.then(
        () => void pending.delete(settled),
        (error: unknown) => {
          pending.delete(settled);
          failure ??= { error };
        },
      );
      pending.add(settled);
      while (pending.size >= limit) await Promise.race(pending);
      rethrow();
    },
    async drain() {
      await Promise.all(pending);
      rethrow();
    },
    get size() {
      return pending.size;
    },
  };
}

function checkLimit(limit: number): void {
  if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`concurrency limit must be a whole number of at least 1, got ${limit}`);
}

/**
 * What `/readyz` and `/livez` answer. Each service part sets named conditions: a service is
 * ready while none of its readiness conditions is failing, and live while none of its
 * liveness conditions is. Several services in one process (`switchyard up`) share one
 * `Probes`, each under its own prefix, so the process is ready only when all of them are.
 *
 * Readiness (take no traffic now, it may pass by itself): NATS disconnected, a required
 * stream or consumer missing, starting, stopping. Liveness (restart me): a part that has
 * failed for good, such as a router's pull loop.
 */

export interface ProbeReport {
  readonly ok: boolean;
  /** `name: why` of every failing condition. */
  readonly failing: readonly string[];
}

export class Probes {
  readonly #notReady = new Map<string, string>();
  readonly #notLive = new Map<string, string>();

  /** Marks readiness condition `name` failing (with why) or passing (why undefined). */
  ready(name: string, failingWhy: string | undefined): void {
    if (failingWhy === undefined) this.#notReady.delete(name);
    else this.#notReady.set(name, failingWhy);
  }

  /** Marks liveness condition `name` failing for good (or passing). */
  live(name: string, failingWhy: string | undefined): void {
    if (failingWhy === undefined) this.#notLive.delete(name);
    else this.#notLive.set(name, failingWhy);
  }

  /** Forgets every condition under `prefix` (a service that stopped and left the process). */
  forget(prefix: string): void {
    for (const m of [this.#notReady, this.#notLive]) for (const k of [...m.keys()]) if (k.startsWith(prefix)) m.delete(k);
  }

  readiness(): ProbeReport {
    // A dead part is not ready either.
    return report(new Map([...this.#notLive, ...this.#notReady]));
  }

  liveness(): ProbeReport {
    return report(this.#notLive);
  }
}

function report(failing: ReadonlyMap<string, string>): ProbeReport {
  return { ok: failing.size === 0, failing: [...failing].map(([k, v]) => `${k}: ${v}`) };
}

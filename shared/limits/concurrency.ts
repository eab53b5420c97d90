/**
 * A concurrency cap shared by every worker: the pure part. One KV entry per cap lists each
 * worker's lease — how many slots it holds, until when — and a worker grows or renews its own
 * by compare-and-set, the sum of the leases still running never above the cap. Calls take and
 * give back slots of their worker's lease locally, so a steady load writes nothing per call; a
 * renewal every LEASE_MS / 3 brings the lease down to what the worker used since the last one,
 * so idle slots go back to the cluster within about that long. A worker that dies leaves its
 * lease to run out (LEASE_MS): slots unusable for that long, never handed out twice.
 *
 * The bound: calls in flight ≤ cap, except when a worker cannot renew (cut off from NATS, or
 * frozen past LEASE_MS) while its calls still run: then by at most that worker's lease, until
 * those calls end.
 */

/** Each worker's lease, by worker id. */
export type Leases = Readonly<Record<string, { readonly n: number; readonly until: number }>>;

export const LEASE_MS = 10_000;

/** The leases still running at `now`, and their slots in all. */
export function running(leases: Leases | undefined, now: number): { readonly leases: Record<string, { n: number; until: number }>; readonly total: number } {
  const out: Record<string, { n: number; until: number }> = {};
  let total = 0;
  for (const [id, l] of Object.entries(leases ?? {})) {
    if (l.until <= now || l.n <= 0) continue;
    out[id] = { n: l.n, until: l.until };
    total += l.n;
  }
  return { leases: out, total };
}

export type LeaseDecision = { readonly kind: "granted"; readonly n: number; readonly next: Leases } | { readonly kind: "full" };

/** `me` holding `want` slots from now (growing, shrinking or renewing), if the others' leases leave room for more than it holds now. */
export function lease(leases: Leases | undefined, me: string, want: number, cap: number, now: number, leaseMs = LEASE_MS): LeaseDecision {
  const r = running(leases, now);
  const mine = r.leases[me]?.n ?? 0;
  const room = cap - (r.total - mine);
  const n = Math.min(want, room);
  // Growing only when at least one more slot fits; shrinking or renewing always goes.
  if (want > mine && n <= mine) return { kind: "full" };
  const next = { ...r.leases };
  if (n > 0) next[me] = { n, until: now + leaseMs };
  else delete next[me];
  return { kind: "granted", n: Math.max(0, n), next };
}

/**
 * The batch status machine (services/gateway/batch-status.ts) on its own, with a hand-driven
 * clock: every status against every event, the OpenAI batch fields each transition sets, and
 * random event sequences that must never break the machine's invariants. Also the pure pieces
 * around it: the owner lease's standing, and the Batch API's boundary schemas.
 */
import { describe, expect, it } from "vitest";
import { leaseStanding } from "../services/gateway/batch-lease.ts";
import {
  BATCH_STATUSES,
  BatchRecordSchema,
  CreateBatchBodySchema,
  ListBatchesQuerySchema,
  isTerminal,
  type BatchRecord,
  type BatchStatus,
} from "../services/gateway/batch-schema.ts";
import { endingOf, newBatchRecord, nextStep, transition, type BatchEvent, type BatchEventType } from "../services/gateway/batch-status.ts";

/** 2026-11-24T12:00:00Z, in ms: the fake clock starts here. */
const T0 = Date.UTC(2026, 10, 24, 12, 0, 0);
const S0 = T0 / 1000;
const DAY_MS = 24 * 3600 * 1000;

const fresh = (now = T0): BatchRecord =>
  newBatchRecord({ id: "batch_abc123", inputFileId: "file-in", metadata: { run: "test" }, tenant: "acme", task: "moderation" }, now);

/** Applies events in order, each at its own time; fails the test on a refusal. */
function drive(record: BatchRecord, ...steps: [BatchEvent, number][]): BatchRecord {
  let r = record;
  for (const [event, now] of steps) {
    const t = transition(r, event, now);
    if (!t.ok) throw new Error(`refused ${event.type} in ${r.batch.status}: ${t.reason}`);
    r = t.record;
  }
  return r;
}

const files = { outputFileId: "file-out", errorFileId: "file-err", counts: { total: 10, completed: 8, failed: 2 } };
const ev = {
  checkpoint: { type: "checkpoint", dispatched: 5 },
  validated: { type: "validated", total: 10 },
  invalid_input: { type: "invalid_input", code: "empty_file", message: "The input file has no request lines." },
  counted: { type: "counted", completed: 3, failed: 1 },
  cancel: { type: "cancel" },
  tick: { type: "tick" },
  finalized: { type: "finalized", ...files },
} as const satisfies Record<BatchEventType, BatchEvent>;

/** A record in each status, reached the way a real batch reaches it, one second per step. */
function inStatus(status: BatchStatus): BatchRecord {
  const r = fresh();
  const at = (s: number) => T0 + s * 1000;
  switch (status) {
    case "validating":
      return r;
    case "in_progress":
      return drive(r, [ev.validated, at(1)]);
    case "finalizing":
      return drive(r, [ev.validated, at(1)], [{ type: "counted", completed: 8, failed: 2 }, at(2)]);
    case "completed":
      return drive(inStatus("finalizing"), [ev.finalized, at(3)]);
    case "failed":
      return drive(r, [ev.invalid_input, at(1)]);
    case "expired":
      return drive(r, [ev.validated, at(1)], [ev.tick, T0 + DAY_MS], [ev.finalized, T0 + DAY_MS + 1000]);
    case "cancelling":
      return drive(r, [ev.validated, at(1)], [ev.cancel, at(2)]);
    case "cancelled":
      return drive(inStatus("cancelling"), [ev.finalized, at(3)]);
  }
}

/** What each event does in each status: the status it leads to, "same" (nothing changes) or "refused". */
const TABLE: Record<BatchStatus, Record<BatchEventType, BatchStatus | "same" | "refused">> = {
  validating: { checkpoint: "validating", validated: "in_progress", invalid_input: "failed", counted: "refused", cancel: "cancelling", tick: "same", finalized: "refused" },
  in_progress: { checkpoint: "refused", validated: "refused", invalid_input: "refused", counted: "in_progress", cancel: "cancelling", tick: "same", finalized: "refused" },
  finalizing: { checkpoint: "refused", validated: "refused", invalid_input: "refused", counted: "refused", cancel: "refused", tick: "same", finalized: "completed" },
  completed: { checkpoint: "refused", validated: "refused", invalid_input: "refused", counted: "refused", cancel: "refused", tick: "same", finalized: "refused" },
  failed: { checkpoint: "refused", validated: "refused", invalid_input: "refused", counted: "refused", cancel: "refused", tick: "same", finalized: "refused" },
  expired: { checkpoint: "refused", validated: "refused", invalid_input: "refused", counted: "refused", cancel: "refused", tick: "same", finalized: "refused" },
  cancelling: { checkpoint: "refused", validated: "refused", invalid_input: "refused", counted: "refused", cancel: "same", tick: "same", finalized: "cancelled" },
  cancelled: { checkpoint: "refused", validated: "refused", invalid_input: "refused", counted: "refused", cancel: "same", tick: "same", finalized: "refused" },
};

/** Deep-freezes a record, so a transition that mutated its input would throw. */
function frozen<T>(value: T): T {
  if (typeof value === "object" && value !== null) {
    for (const v of Object.values(value)) frozen(v);
    Object.freeze(value);
  }
  return value;
}

describe("batch status transitions (pure, fake clock)", () => {
  const NOW = T0 + 60_000;

  for (const status of BATCH_STATUSES) {
    for (const [type, event] of Object.entries(ev) as [BatchEventType, BatchEvent][]) {
      const expected = TABLE[status][type];
      it(`${status} + ${type} → ${expected}`, () => {
        const before = frozen(inStatus(status));
        expect(before.batch.status).toBe(status);
        const t = transition(before, event, NOW);
        if (expected === "refused") {
          expect(t.ok).toBe(false);
          if (!t.ok) expect(t.reason).toMatch(status);
          return;
        }
        if (!t.ok) throw new Error(t.reason);
        if (expected === "same") {
          expect(t.record).toBe(before);
          return;
        }
        expect(t.record.batch.status).toBe(expected);
        expect(BatchRecordSchema.parse(t.record)).toEqual(t.record);
      });
    }
  }

  it("a new batch: validating, created now, expiring 24 h later, counts zero, nothing else set", () => {
    const r = fresh();
    expect(BatchRecordSchema.parse(r)).toEqual(r);
    expect(r.batch).toMatchObject({ object: "batch", endpoint: "/v1/chat/completions", completion_window: "24h", status: "validating", created_at: S0, expires_at: S0 + 86_400 });
    expect(r.batch.request_counts).toEqual({ total: 0, completed: 0, failed: 0 });
    for (const k of ["in_progress_at", "finalizing_at", "completed_at", "failed_at", "expired_at", "cancelling_at", "cancelled_at", "output_file_id", "error_file_id", "errors"] as const) {
      expect(r.batch[k], k).toBeNull();
    }
    expect(r).toMatchObject({ tenant: "acme", task: "moderation", dispatched: 0, lease: null });
  });

  it("timestamps are whole seconds of the clock at the transition, each set once", () => {
    const r = drive(fresh(), [ev.validated, T0 + 1_999], [{ type: "counted", completed: 4, failed: 0 }, T0 + 5_000], [{ type: "counted", completed: 9, failed: 1 }, T0 + 7_500], [ev.finalized, T0 + 9_100]);
    expect(r.batch).toMatchObject({ status: "completed", created_at: S0, in_progress_at: S0 + 1, finalizing_at: S0 + 7, completed_at: S0 + 9, failed_at: null, expired_at: null, cancelling_at: null, cancelled_at: null });
    expect(r.batch).toMatchObject({ output_file_id: "file-out", error_file_id: "file-err", request_counts: files.counts });
  });

  it("checkpoint moves the dispatch position forward only", () => {
    const r = drive(fresh(), [{ type: "checkpoint", dispatched: 500 }, T0]);
    expect(r.dispatched).toBe(500);
    expect(r.batch).toEqual(fresh().batch);
    const back = transition(r, { type: "checkpoint", dispatched: 200 }, T0);
    expect(back.ok && back.record).toBe(r);
  });

  it("validated sets the total and starts the counts from zero", () => {
    const r = drive(fresh(), [ev.validated, T0]);
    expect(r.batch.request_counts).toEqual({ total: 10, completed: 0, failed: 0 });
  });

  it("counted: progress stays in_progress; the same counts change nothing; every line in → finalizing", () => {
    const r = drive(inStatus("in_progress"), [{ type: "counted", completed: 3, failed: 1 }, T0 + 10_000]);
    expect(r.batch).toMatchObject({ status: "in_progress", request_counts: { total: 10, completed: 3, failed: 1 }, finalizing_at: null });
    const again = transition(r, { type: "counted", completed: 3, failed: 1 }, T0 + 11_000);
    expect(again.ok && again.record).toBe(r);
    const all = drive(r, [{ type: "counted", completed: 9, failed: 1 }, T0 + 12_000]);
    expect(all.batch).toMatchObject({ status: "finalizing", finalizing_at: S0 + 12, request_counts: { total: 10, completed: 9, failed: 1 } });
    expect(endingOf(all)).toBe("completed");
  });

  it("invalid_input fails the batch with OpenAI's errors list and no owner", () => {
    const leased = { ...fresh(), lease: { owner: "gw-1", until: T0 + 10_000 } };
    const r = drive(leased, [{ type: "invalid_input", code: "too_many_requests", message: "too many" }, T0 + 3_000]);
    expect(r.batch).toMatchObject({ status: "failed", failed_at: S0 + 3, errors: { object: "list", data: [{ code: "too_many_requests", message: "too many", param: null, line: null }] } });
    expect(r.lease).toBeNull();
  });

  it("tick: nothing before the window ends; at its last millisecond validating and in_progress go to finalizing, to end expired", () => {
    const end = T0 + DAY_MS;
    for (const status of ["validating", "in_progress"] as const) {
      const r = inStatus(status);
      const early = transition(r, ev.tick, end - 1);
      expect(early.ok && early.record).toBe(r);
      const late = drive(r, [ev.tick, end]);
      expect(late).toMatchObject({ ending: "expired", batch: { status: "finalizing", finalizing_at: S0 + 86_400 } });
      expect(nextStep(late.batch.status)).toBe("finalize");
      expect(endingOf(late)).toBe("expired");
      const done = drive(late, [{ type: "finalized", outputFileId: null, errorFileId: "file-err", counts: { total: 10, completed: 0, failed: 10 } }, end + 2_000]);
      expect(done.batch).toMatchObject({ status: "expired", expired_at: S0 + 86_402, completed_at: null, output_file_id: null, error_file_id: "file-err" });
    }
  });

  it("tick leaves a batch that is already finalizing or cancelling alone, however late", () => {
    for (const status of ["finalizing", "cancelling"] as const) {
      const r = inStatus(status);
      const t = transition(r, ev.tick, T0 + 2 * DAY_MS);
      expect(t.ok && t.record).toBe(r);
    }
  });

  it("cancel: cancelling_at now, then finalized → cancelled with cancelled_at; a repeated cancel is a no-op", () => {
    const r = drive(inStatus("validating"), [ev.cancel, T0 + 4_000]);
    expect(r.batch).toMatchObject({ status: "cancelling", cancelling_at: S0 + 4, in_progress_at: null });
    expect(endingOf(r)).toBe("cancelled");
    const again = transition(r, ev.cancel, T0 + 5_000);
    expect(again.ok && again.record).toBe(r);
    const done = drive(r, [ev.finalized, T0 + 6_000]);
    expect(done.batch).toMatchObject({ status: "cancelled", cancelling_at: S0 + 4, cancelled_at: S0 + 6, request_counts: files.counts });
  });

  it("cancel is refused once the batch is finalizing or finished, in the words of the 409", () => {
    for (const status of ["finalizing", "completed", "failed", "expired"] as const) {
      const t = transition(inStatus(status), ev.cancel, T0);
      expect(t).toEqual({ ok: false, reason: `Cannot cancel a batch with status ${status}.` });
    }
  });

  it("entering a finished status drops the owner lease; other transitions keep it", () => {
    const lease = { owner: "gw-1", until: T0 + 10_000 };
    expect(drive({ ...inStatus("validating"), lease }, [ev.checkpoint, T0]).lease).toEqual(lease);
    expect(drive({ ...inStatus("in_progress"), lease }, [ev.cancel, T0]).lease).toEqual(lease);
    expect(drive({ ...inStatus("finalizing"), lease }, [ev.finalized, T0]).lease).toBeNull();
    expect(drive({ ...inStatus("cancelling"), lease }, [ev.finalized, T0]).lease).toBeNull();
  });

  it("random event sequences never leave a finished status, never move a timestamp once set, never lose the counts' total", () => {
    let seed = 42;
    const random = () => ((seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31);
    const events = (): BatchEvent => {
      const pick = Math.floor(random() * 7);
      const n = Math.floor(random() * 12);
      return [
        { type: "checkpoint", dispatched: n } as const,
        { type: "validated", total: 10 } as const,
        { type: "invalid_input", code: "x", message: "x" } as const,
        { type: "counted", completed: n, failed: Math.floor(random() * 3) } as const,
        { type: "cancel" } as const,
        { type: "tick" } as const,
        { type: "finalized", ...files } as const,
      ][pick]!;
    };
    const visited = new Set<BatchStatus>();
    const stamps = ["in_progress_at", "finalizing_at", "completed_at", "failed_at", "expired_at", "cancelling_at", "cancelled_at"] as const;
    for (let run = 0; run < 300; run++) {
      let r = fresh();
      let now = T0;
      for (let i = 0; i < 25; i++) {
        now += Math.floor(random() * 4 * 3600_000);
        const t = transition(r, events(), now);
        if (!t.ok) continue;
        const next = t.record;
        if (isTerminal(r.batch.status)) expect(next).toBe(r);
        for (const k of stamps) if (r.batch[k] !== null) expect(next.batch[k]).toBe(r.batch[k]);
        for (const k of stamps) if (next.batch[k] !== null) expect(next.batch[k]).toBeLessThanOrEqual(Math.floor(now / 1000));
        if (next.batch.status === "in_progress") expect(next.batch.request_counts.completed + next.batch.request_counts.failed).toBeLessThan(next.batch.request_counts.total);
        expect(next.dispatched).toBeGreaterThanOrEqual(r.dispatched);
        visited.add(next.batch.status);
        r = next;
      }
    }
    // The walk reached every status, so the checks above were not vacuous.
    expect([...visited].sort()).toEqual([...BATCH_STATUSES].sort());
  });
});

describe("the owner lease's standing (pure)", () => {
  const LEASE = 10_000;
  it("free when nobody holds it or it has lapsed; ours, due for renewal past half-time; another's while it lasts", () => {
    expect(leaseStanding(null, "me", T0, LEASE)).toBe("free");
    expect(leaseStanding({ owner: "other", until: T0 }, "me", T0, LEASE)).toBe("free");
    expect(leaseStanding({ owner: "other", until: T0 + 1 }, "me", T0, LEASE)).toBe("other");
    expect(leaseStanding({ owner: "me", until: T0 + 6_000 }, "me", T0, LEASE)).toBe("mine");
    expect(leaseStanding({ owner: "me", until: T0 + 4_999 }, "me", T0, LEASE)).toBe("mine_expiring");
    expect(leaseStanding({ owner: "me", until: T0 - 1 }, "me", T0, LEASE)).toBe("free");
  });
});

describe("the Batch API's boundary schemas", () => {
  const body = { input_file_id: "file-1", endpoint: "/v1/chat/completions", completion_window: "24h" };
  const problem = (value: unknown) => {
    const r = CreateBatchBodySchema.safeParse(value);
    return r.success ? undefined : { message: r.error.issues[0]!.message, param: r.error.issues[0]!.path[0] };
  };

  it("takes OpenAI's body, metadata absent or null as null, unknown fields ignored", () => {
    expect(CreateBatchBodySchema.parse(body)).toEqual({ ...body, metadata: null });
    expect(CreateBatchBodySchema.parse({ ...body, metadata: null, output_expires_after: { anchor: "created_at", seconds: 3600 } })).toEqual({ ...body, metadata: null });
    expect(CreateBatchBodySchema.parse({ ...body, metadata: { a: "b" } }).metadata).toEqual({ a: "b" });
  });

  it("names the first bad field in the words of the 400", () => {
    expect(problem([])).toEqual({ message: "The request body must be a JSON object.", param: undefined });
    expect(problem({ ...body, input_file_id: 7 })).toEqual({ message: "input_file_id is required.", param: "input_file_id" });
    expect(problem({ ...body, endpoint: "/v1/embeddings" })).toEqual({ message: 'endpoint must be "/v1/chat/completions" (the only one Switchyard batches).', param: "endpoint" });
    expect(problem({ ...body, completion_window: "1h" })).toEqual({ message: 'completion_window must be "24h".', param: "completion_window" });
    const meta = "metadata must be an object of at most 16 string values.";
    expect(problem({ ...body, metadata: ["a"] })).toEqual({ message: meta, param: "metadata" });
    expect(problem({ ...body, metadata: { a: 1 } })).toEqual({ message: meta, param: "metadata" });
    expect(problem({ ...body, metadata: { a: "x".repeat(513) } })).toEqual({ message: meta, param: "metadata" });
    expect(problem({ ...body, metadata: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, "v"])) })).toEqual({ message: meta, param: "metadata" });
  });

  it("list query: limit 1–100, 20 when absent or not a number", () => {
    const limit = (l: string | null) => ListBatchesQuerySchema.parse({ limit: l }).limit;
    expect([limit(null), limit("abc"), limit("0"), limit("-3"), limit("7"), limit("500")]).toEqual([20, 20, 20, 1, 7, 100]);
  });

  it("a KV entry that is not a batch record does not parse", () => {
    expect(BatchRecordSchema.safeParse({ ...fresh(), batch: { ...fresh().batch, status: "paused" } }).success).toBe(false);
    expect(BatchRecordSchema.safeParse({ ...fresh(), dispatched: -1 }).success).toBe(false);
  });
});

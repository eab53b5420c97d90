import { describe, expect, it } from "vitest";
import { DEFAULT_QUALITY_POLICY, QualityBook, qualityFloors, TaskModelQuality, type QualityPolicy } from "../services/pricing/quality.ts";

const policy: QualityPolicy = { ...DEFAULT_QUALITY_POLICY, windowMs: 10_000, maxEvents: 50, minSamples: 10, requalifyAfterMs: 1_000, maxRequalifyAfterMs: 4_000 };

/** `passes` passing then `fails` failing answers, one per ms from `from`; returns the time after the last. */
function feed(q: TaskModelQuality, passes: number, fails: number, from: number): number {
  let t = from;
  for (let i = 0; i < passes; i++) q.record(true, t++);
  for (let i = 0; i < fails; i++) q.record(false, t++);
  return t;
}

describe("quality of one model for one task", () => {
  it("does not demote below the minimum sample count, however bad the answers", () => {
    const q = new TaskModelQuality(policy);
    const t = feed(q, 0, 9, 0);
    expect(q.snapshot(t, 0.95)).toMatchObject({ status: "qualified", samples: 9, passRate: 0, demotedNow: false });
  });

  it("demotes once the window holds enough answers at a pass rate under the floor, reporting it once", () => {
    const q = new TaskModelQuality(policy);
    const t = feed(q, 8, 2, 0); // 80 %
    const s = q.snapshot(t, 0.95);
    expect(s).toMatchObject({ status: "demoted", samples: 10, passRate: 0.8, demotedNow: true, demotedUntil: t + 1_000 });
    expect(q.snapshot(t + 1, 0.95)).toMatchObject({ status: "demoted", demotedNow: false });
  });

  it("a pass rate at the floor is enough; the floor is the task's own", () => {
    const q = new TaskModelQuality(policy);
    const t = feed(q, 19, 1, 0); // exactly 95 %
    expect(q.snapshot(t, 0.95).status).toBe("qualified");
    expect(q.snapshot(t, 0.96).status).toBe("demoted");
  });

  it("a task without an output contract (no floor) never demotes, and a demotion is lifted when the floor goes", () => {
    const q = new TaskModelQuality(policy);
    const t = feed(q, 0, 20, 0);
    expect(q.snapshot(t, undefined)).toMatchObject({ status: "qualified", passRate: 0, samples: 20 });
    expect(q.snapshot(t, 0.9).status).toBe("demoted");
    expect(q.snapshot(t, undefined).status).toBe("qualified");
  });

  it("forgets answers older than the window and keeps at most maxEvents", () => {
    const q = new TaskModelQuality(policy);
    feed(q, 0, 5, 0);
    const t = feed(q, 10, 0, 5_000);
    expect(q.snapshot(t, 0.95)).toMatchObject({ samples: 15, passRate: 10 / 15, status: "demoted" });
    const r = new TaskModelQuality(policy);
    feed(r, 0, 5, 0);
    const u = feed(r, 50, 0, 100); // the ring holds 50: the five failures are pushed out
    expect(r.snapshot(u, 0.95)).toMatchObject({ samples: 50, passRate: 1, status: "qualified" });
    const w = new TaskModelQuality(policy);
    feed(w, 0, 5, 0);
    feed(w, 10, 0, 5_000);
    expect(w.snapshot(10_500, 0.95)).toMatchObject({ samples: 10, passRate: 1, status: "qualified" });
  });

  it("a re-test is due only after the backoff; a failed one doubles it up to the cap", () => {
    const q = new TaskModelQuality(policy);
    const t = feed(q, 0, 10, 0);
    q.snapshot(t, 0.95);
    expect(q.requalifyDue(t + 999)).toBe(false);
    expect(q.requalifyDue(t + 1_000)).toBe(true);
    q.retestFailed(t + 1_000);
    expect(q.demotedUntil).toBe(t + 3_000);
    q.retestFailed(t + 3_000);
    expect(q.demotedUntil).toBe(t + 7_000);
    q.retestFailed(t + 7_000);
    expect(q.demotedUntil).toBe(t + 11_000); // capped at 4 s
    // No answer at all says nothing about quality: the same wait again, not a longer one.
    q.retestInconclusive(t + 11_000);
    expect(q.demotedUntil).toBe(t + 15_000);
    expect(q.snapshot(t + 11_000, 0.95)).toMatchObject({ status: "demoted", demotedUntil: t + 15_000 });
  });

  it("readmission resets the window; answers from attempts begun before it are ignored", () => {
    const q = new TaskModelQuality(policy);
    const t = feed(q, 0, 10, 0);
    q.snapshot(t, 0.95);
    q.readmit(t + 1_000);
    expect(q.snapshot(t + 1_000, 0.95)).toMatchObject({ status: "qualified", samples: 0, demotedUntil: 0 });
    q.record(false, t + 500); // in flight when it was readmitted
    expect(q.snapshot(t + 1_001, 0.95).samples).toBe(0);
  });

  it("a relapse after readmission waits twice as long; live answers confirming the readmission reset the backoff", () => {
    const q = new TaskModelQuality(policy);
    let t = feed(q, 0, 10, 0);
    q.snapshot(t, 0.95);
    q.readmit(t);
    t = feed(q, 0, 10, t);
    expect(q.snapshot(t, 0.95)).toMatchObject({ status: "demoted", demotedUntil: t + 2_000 });
    q.readmit(t + 2_000);
    t = feed(q, 10, 0, t + 2_000); // confirmed on trial
    expect(q.snapshot(t, 0.95).status).toBe("qualified");
    t = feed(q, 0, 10, t);
    expect(q.snapshot(t, 0.95)).toMatchObject({ status: "demoted", demotedUntil: t + 1_000 });
  });

  it("while demoted with no answers left in the window, reports the rate that demoted it", () => {
    const q = new TaskModelQuality({ ...policy, requalifyAfterMs: 60_000, maxRequalifyAfterMs: 60_000 });
    const t = feed(q, 7, 3, 0);
    q.snapshot(t, 0.95);
    expect(q.snapshot(t + 20_000, 0.95)).toMatchObject({ status: "demoted", samples: 0, passRate: 0.7 });
  });
});

describe("quality book", () => {
  const floors = qualityFloors({ strict: { output: { min_pass_rate: 0.95 } }, loose: { output: { min_pass_rate: 0.5 } }, free: {} });

  it("keeps a pass rate per (task, model) from the outcome table: answers count, availability does not", () => {
    const book = new QualityBook(policy);
    book.configure(floors, ["p/a", "p/b"]);
    for (let i = 0; i < 10; i++) book.record("strict", "p/a", "invalid_output", i);
    for (let i = 0; i < 10; i++) book.record("loose", "p/a", i % 2 ? "ok" : "invalid_output", i);
    for (let i = 0; i < 30; i++) book.record("strict", "p/b", i % 3 ? "unavailable" : "rate_limited", i);
    book.record("strict", "p/b", "bad_request", 1);
    const a = book.snapshot("p/a", 100);
    expect(a.get("strict")).toMatchObject({ status: "demoted", samples: 10, passRate: 0 });
    expect(a.get("loose")).toMatchObject({ status: "qualified", samples: 10, passRate: 0.5 });
    // Only tasks with answers appear.
    expect(book.snapshot("p/b", 100).size).toBe(0);
  });

  it("ignores tasks and models the config does not have, and drops them on reconfiguration", () => {
    const book = new QualityBook(policy);
    book.configure(floors, ["p/a"]);
    book.record("unknown", "p/a", "invalid_output", 1);
    book.record("strict", "p/zzz", "invalid_output", 1);
    expect(book.snapshot("p/a", 2).size).toBe(0);
    expect(book.snapshot("p/zzz", 2).size).toBe(0);
    book.record("strict", "p/a", "ok", 1);
    expect(book.snapshot("p/a", 2).size).toBe(1);
    book.configure(qualityFloors({ loose: { output: { min_pass_rate: 0.5 } } }), ["p/a"]);
    expect(book.snapshot("p/a", 2).size).toBe(0);
    expect(book.floor("loose")).toBe(0.5);
    expect(book.floor("free")).toBeUndefined();
  });

  it("a task without an output contract tracks answers but never demotes", () => {
    const book = new QualityBook(policy);
    book.configure(floors, ["p/a"]);
    for (let i = 0; i < 20; i++) book.record("free", "p/a", "invalid_output", i);
    expect(book.snapshot("p/a", 100).get("free")).toMatchObject({ status: "qualified", samples: 20, passRate: 0 });
  });
});

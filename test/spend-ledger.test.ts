/**
 * The spend ledger's KV side (shared/spend/ledger-kv.ts) on a real nats-server: several
 * ledgers (as several workers) reserving at once on one entry by compare-and-set, settling,
 * releasing, and a stopped one's hold lapsing.
 */
import { Kvm, type KV } from "@nats-io/kv";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SpendEntrySchema } from "../shared/spend/budget.ts";
import { SpendLedger } from "../shared/spend/ledger-kv.ts";
import { startTestNats, type TestNats } from "./harness/nats.ts";

let nats: TestNats;
let kv: KV;

beforeAll(async () => {
  nats = await startTestNats({ ownServer: true });
  kv = await new Kvm(nats.nc).create("test-spend", { history: 1 });
});
afterAll(() => nats?.close());

const entry = async (key: string) => SpendEntrySchema.parse((await kv.get(key))!.json());

describe("three ledgers on one entry", () => {
  it("grant exactly what fits among 3,000 concurrent reservations, and settle every one", async () => {
    const ledgers = ["a", "b", "c"].map((worker) => new SpendLedger({ kv, worker, ttlMs: 30_000 }));
    const answers = await Promise.all(Array.from({ length: 3000 }, (_, i) => ledgers[i % 3]!.reserve("t.acme.day.x", 1, 1000.5)));
    expect(answers.filter((a) => a.granted)).toHaveLength(1000);
    // Every refusal saw the budget full to within one reservation.
    for (const a of answers) if (!a.granted) expect(a.standing.spentUsd + a.standing.reservedUsd).toBeGreaterThan(999.5);
    const held = await entry("t.acme.day.x");
    expect(Object.values(held.holds).reduce((s, h) => s + h.usd, 0)).toBe(1000);
    // Settle the granted at a real cost below the reservation; release the rest (there are none).
    answers.forEach((a, i) => {
      if (a.granted) ledgers[i % 3]!.settle("t.acme.day.x", 1, 0.25);
    });
    await Promise.all(ledgers.map((l) => l.flush()));
    expect(await entry("t.acme.day.x")).toEqual({ spent_usd: 250, holds: {} });
    for (const l of ledgers) l.close();
  });

  it("a released reservation bills nothing and frees its room at once", async () => {
    const l = new SpendLedger({ kv, worker: "solo", ttlMs: 30_000 });
    expect(await l.reserve("t.solo.day.x", 1, 1)).toEqual({ granted: true });
    expect((await l.reserve("t.solo.day.x", 1, 1)).granted).toBe(false);
    l.settle("t.solo.day.x", 1, 0);
    expect(await l.reserve("t.solo.day.x", 1, 1)).toEqual({ granted: true });
    l.settle("t.solo.day.x", 1, 0);
    await l.flush();
    expect(await entry("t.solo.day.x")).toEqual({ spent_usd: 0, holds: {} });
    l.close();
  });

  it("a ledger that stops renewing leaves a hold that lapses after its TTL; the next writer drops it", async () => {
    const gone = new SpendLedger({ kv, worker: "gone", ttlMs: 600 });
    expect(await gone.reserve("t.crash.day.x", 1, 1)).toEqual({ granted: true });
    gone.close();
    const other = new SpendLedger({ kv, worker: "other", ttlMs: 30_000 });
    expect((await other.reserve("t.crash.day.x", 1, 1)).granted).toBe(false);
    const { expires_at } = (await entry("t.crash.day.x")).holds.gone!;
    await new Promise((r) => setTimeout(r, Math.max(0, expires_at - Date.now()) + 10));
    expect(await other.reserve("t.crash.day.x", 1, 1)).toEqual({ granted: true });
    expect(Object.keys((await entry("t.crash.day.x")).holds)).toEqual(["other"]);
    other.settle("t.crash.day.x", 1, 1);
    await other.flush();
    other.close();
  });
});

/**
 * Cluster-wide limits, the pure part (shared/limits/slices.ts) with a fake clock, and the
 * shared KV clock (shared-rate.ts) on a real nats-server with several takers racing on one entry.
 */
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Kvm, type KV } from "@nats-io/kv";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { EMPTY_SLICE, grantSlice, intervalOf, refill, settle, SLICE_MS, sliceUnits, spend, TOLERANCE_MS, type BucketState, type LocalSlice, type Rate } from "../shared/limits/slices.ts";
import { keyPart, SharedRate } from "../shared/limits/shared-rate.ts";
import { lease, LEASE_MS, running } from "../shared/limits/concurrency.ts";
import { SharedSlots } from "../shared/limits/shared-slots.ts";
import { createProviderLimits, QuotaRefusedError, type Pause } from "../shared/limits/provider-limits.ts";
import { CallAbortedError, CallCancel } from "../shared/adapters/http.ts";
import { RateLimitedError } from "../shared/adapters/errors.ts";
import { buildCatalog } from "../shared/routing/catalog.ts";
import { createLogger } from "../shared/log.ts";
import { startTestNats, type TestNats } from "./harness/nats.ts";
import { parseConfig } from "../shared/config/load.ts";
import { testConfigYaml } from "./harness/stack.ts";

const RPM_600: Rate = { limit: 600, windowMs: 60_000 };

describe("a slice of a shared limit", () => {
  it("is granted on an idle limit and moves its clock by the slice's worth of rate", () => {
    const d = grantSlice(undefined, RPM_600, 3, 10_000);
    expect(d).toEqual({ kind: "granted", units: 3, until: 10_300, next: { tat: 10_300 } });
  });

  it("is granted while the clock is at most the tolerance ahead, and otherwise says when to ask again", () => {
    const state: BucketState = { tat: 10_000 + TOLERANCE_MS };
    expect(grantSlice(state, RPM_600, 1, 10_000)).toMatchObject({ kind: "granted", until: 10_000 + TOLERANCE_MS + 100 });
    expect(grantSlice({ tat: 10_500 }, RPM_600, 1, 10_000)).toEqual({ kind: "wait", retryAt: 10_500 - TOLERANCE_MS });
  });

  it("covers about SLICE_MS of rate, at least one unit and at least what the caller needs", () => {
    expect(sliceUnits(RPM_600, 1)).toBe(1);
    expect(sliceUnits({ limit: 60_000, windowMs: 60_000 }, 1)).toBe(SLICE_MS);
    expect(sliceUnits({ limit: 60_000, windowMs: 60_000 }, 700)).toBe(700);
    expect(sliceUnits({ limit: 1_000_000, windowMs: 60_000 }, 300)).toBe(1_500);
    expect(intervalOf({ limit: 1_000_000, windowMs: 60_000 })).toBeCloseTo(0.06);
  });

  it("is spent locally until used up or lapsed", () => {
    let s: LocalSlice | undefined = { left: 2, until: 500 };
    s = spend(s, 1, 100);
    expect(s).toEqual({ left: 1, until: 500 });
    expect(spend(s!, 2, 100)).toBeUndefined();
    expect(spend(s!, 1, 501)).toBeUndefined();
    expect(spend(EMPTY_SLICE, 1, 0)).toBeUndefined();
  });

  it("drops the old slice's leftovers on a refill but carries a debt", () => {
    const granted = { kind: "granted", units: 10, until: 900, next: { tat: 900 } } as const;
    expect(refill({ left: 3, until: 500 }, granted)).toEqual({ left: 10, until: 900 });
    expect(refill({ left: -4, until: 500 }, granted)).toEqual({ left: 6, until: 900 });
  });

  it("settles a token reservation: unused tokens come back while the slice lasts, extra ones are a debt", () => {
    const s = { left: 100, until: 1_000 };
    expect(settle(s, 50, 30, 500)).toEqual({ left: 120, until: 1_000 });
    expect(settle(s, 50, 30, 1_001)).toEqual(s);
    expect(settle(s, 50, 80, 1_001)).toEqual({ left: 70, until: 1_000 });
  });
});

describe("a concurrency cap shared by leases", () => {
  it("counts only the leases still running", () => {
    expect(running({ a: { n: 2, until: 100 }, b: { n: 3, until: 50 }, c: { n: 0, until: 200 } }, 60)).toEqual({ leases: { a: { n: 2, until: 100 } }, total: 2 });
  });

  it("grows a worker's lease only as far as the others leave room, and refuses when none is left", () => {
    const others = { a: { n: 3, until: 10_000 } };
    expect(lease(others, "b", 2, 4, 0)).toEqual({ kind: "granted", n: 1, next: { a: { n: 3, until: 10_000 }, b: { n: 1, until: LEASE_MS } } });
    expect(lease({ ...others, b: { n: 1, until: 5_000 } }, "b", 2, 4, 0)).toEqual({ kind: "full" });
    // A lease that ran out (a worker that died) frees its slots.
    expect(lease({ a: { n: 4, until: 100 } }, "b", 2, 4, 200)).toMatchObject({ kind: "granted", n: 2 });
  });

  it("renews, shrinks and gives back a lease whatever the others hold", () => {
    const full = { a: { n: 3, until: 10_000 }, b: { n: 1, until: 5_000 } };
    expect(lease(full, "b", 1, 4, 1_000)).toEqual({ kind: "granted", n: 1, next: { a: { n: 3, until: 10_000 }, b: { n: 1, until: 1_000 + LEASE_MS } } });
    expect(lease(full, "b", 0, 4, 1_000)).toEqual({ kind: "granted", n: 0, next: { a: { n: 3, until: 10_000 } } });
  });
});

/** Deterministic PRNG (mulberry32), so the simulation replays exactly. */
function prng(seed: number): () => number {
  let t = seed;
  return () => {
    t = (t + 0x6d2b79f5) | 0;
    let r = Math.imul(t ^ (t >>> 15), 1 | t);
    r = (r + Math.imul(r ^ (r >>> 7), 61 | r)) ^ r;
    return ((r ^ (r >>> 14)) >>> 0) / 4294967296;
  };
}

describe("limits in the config", () => {
  const LITE = "      lite: { upstream: budget-lite, input_per_mtok: 0.05, output_per_mtok: 0.20, context_window: 16000 }";
  const withLimits = (model: string, provider = "", task = "") =>
    testConfigYaml("http://127.0.0.1:1")
      .replace(LITE, model ? LITE.replace(" }", `, ${model} }`) : LITE)
      .replace("    base_url: http://127.0.0.1:1/budget/v1\n", `    base_url: http://127.0.0.1:1/budget/v1\n${provider}`)
      .replace("  moderation:\n", `  moderation:\n${task}`);

  it("are optional, per provider and per model, and a task waits for quota unless it says next", () => {
    const cfg = parseConfig(withLimits("limits: { rpm: 600, tpm: 100000 }", "    limits: { rpm: 6000 }\n", "    on_rate_limited: next\n"), "c.yaml", {});
    expect(cfg.providers.budget!.models.lite!.limits).toEqual({ rpm: 600, tpm: 100000 });
    expect(cfg.providers.budget!.limits).toEqual({ rpm: 6000 });
    expect(cfg.providers.swift!.limits).toBeUndefined();
    expect(cfg.tasks.moderation!.on_rate_limited).toBe("next");
    expect(cfg.tasks.classification!.on_rate_limited).toBe("wait");
  });

  it("are refused with the path and line of the mistake", () => {
    expect(() => parseConfig(withLimits("limits: {}"), "c.yaml", {})).toThrow(/c\.yaml:\d+:\d+: providers\.budget\.models\.lite\.limits: limits needs rpm, tpm or max_concurrency/);
    expect(() => parseConfig(withLimits("limits: { rpm: -5 }"), "c.yaml", {})).toThrow(/providers\.budget\.models\.lite\.limits\.rpm/);
    expect(() => parseConfig(withLimits("limits: { rps: 5 }"), "c.yaml", {})).toThrow(/providers\.budget\.models\.lite\.limits/);
    expect(() => parseConfig(withLimits("", "", "    on_rate_limited: later\n"), "c.yaml", {})).toThrow(/tasks\.moderation\.on_rate_limited/);
  });
});

describe("several takers sharing one limit (pure simulation, fake clock)", () => {
  /**
   * `takers` each try to spend `need` units whenever a demand arrives (far more demand than the
   * limit allows), taking slices from the one shared clock; returns the time of every unit spent.
   */
  function simulate(rate: Rate, need: number, takers: number, durationMs: number, seed: number): number[] {
    const random = prng(seed);
    let shared: BucketState | undefined;
    const local: LocalSlice[] = Array.from({ length: takers }, () => EMPTY_SLICE);
    const spentAt: number[] = [];
    for (let now = 0; now < durationMs; now += 1) {
      for (let i = 0; i < takers; i++) {
        // About five demands per taker per ms: the limit, not the demand, decides.
        const demands = Math.floor(random() * 10);
        for (let d = 0; d < demands; d++) {
          const s = spend(local[i]!, need, now);
          if (s) {
            local[i] = s;
            for (let u = 0; u < need; u++) spentAt.push(now);
            continue;
          }
          const g = grantSlice(shared, rate, sliceUnits(rate, need), now);
          if (g.kind === "wait") break;
          shared = g.next;
          local[i] = refill(local[i]!, g);
        }
      }
    }
    return spentAt;
  }

  /** The most units spent in any window of `windowMs` (sliding, by unit times). */
  function busiest(times: number[], windowMs: number): number {
    let most = 0;
    for (let a = 0, b = 0; b < times.length; b++) {
      while (times[b]! - times[a]! >= windowMs) a++;
      most = Math.max(most, b - a + 1);
    }
    return most;
  }

  for (const [label, rate, need] of [
    ["600 rpm", RPM_600, 1],
    ["60,000 rpm", { limit: 60_000, windowMs: 60_000 }, 1],
    ["1,000,000 tpm, 300-token calls", { limit: 1_000_000, windowMs: 60_000 }, 300],
  ] as const) {
    it(`stays within rate × (T + tolerance) + 2 slices in every 10 s window: ${label}, three takers`, () => {
      const times = simulate(rate, need, 3, 35_000, 42);
      const slice = sliceUnits(rate, need);
      const bound = (rate.limit / rate.windowMs) * (10_000 + TOLERANCE_MS) + 2 * slice;
      const most = busiest(times, 10_000);
      expect(most).toBeLessThanOrEqual(bound);
      // And the limit is used, not starved: at least 95 % of it in the busiest window.
      expect(most).toBeGreaterThanOrEqual(0.95 * (rate.limit / rate.windowMs) * 10_000);
    });
  }
});

describe("the shared clock in KV", () => {
  let nats: TestNats;
  const conns: NatsConnection[] = [];
  let kvs: KV[];

  beforeAll(async () => {
    nats = await startTestNats({ ownServer: true });
    // Three connections: three processes' worth of takers, racing compare-and-sets on one entry.
    for (let i = 0; i < 3; i++) conns.push(await connect({ servers: nats.url }));
    await new Kvm(nats.nc).create("limits-test", { history: 1 });
    kvs = await Promise.all(conns.map((nc) => new Kvm(nc).open("limits-test")));
  });
  afterAll(async () => {
    for (const nc of conns) await nc.close();
    await nats?.close();
  });

  it("hands out exactly the GCRA's units across takers at one instant, then says when to come back", async () => {
    const now = 1_000_000;
    // 600 per minute, tolerance 1 s: from idle, 1 s / 100 ms + 1 = 11 units at one instant.
    const takers = kvs.map((kv) => new SharedRate(async () => kv, "model/sim/burst/rpm", RPM_600, () => now, 1_000));
    const results = await Promise.all(Array.from({ length: 60 }, (_, i) => takers[i % 3]!.take(1)));
    expect(results.filter((r) => r.ok)).toHaveLength(11);
    const refused = results.filter((r) => !r.ok);
    expect(refused).toHaveLength(49);
    for (const r of refused) expect(r).toEqual({ ok: false, retryAt: now + 100 });
    const entry = await kvs[0]!.get("model/sim/burst/rpm");
    expect(entry?.json()).toEqual({ tat: now + 1_100 });
  });

  it("lets the next units go once the clock has moved on, and overwrites a malformed entry as idle", async () => {
    let now = 2_000_000;
    await kvs[0]!.put("model/sim/later/rpm", "not json");
    const a = new SharedRate(async () => kvs[0]!, "model/sim/later/rpm", RPM_600, () => now, 0);
    const b = new SharedRate(async () => kvs[1]!, "model/sim/later/rpm", RPM_600, () => now, 0);
    expect(await a.take(1)).toEqual({ ok: true });
    expect(await b.take(1)).toEqual({ ok: false, retryAt: now + 100 });
    now += 100;
    expect(await b.take(1)).toEqual({ ok: true });
    expect(await a.take(1)).toEqual({ ok: false, retryAt: now + 100 });
  });

  it("costs a compare-and-set per slice, not per call, at 10,000 calls/s across three takers (measured)", async () => {
    const rate: Rate = { limit: 600_000, windowMs: 60_000 };
    const key = "model/sim/busy/rpm";
    const takers = kvs.map((kv) => new SharedRate(async () => kv, key, rate, Date.now));
    let ok = 0;
    let calls = 0;
    const lastSeq = async () => (await nats.jsm.streams.info("KV_limits-test")).state.last_seq;
    const before = await lastSeq();
    const started = performance.now();
    const runFor = 2_000;
    await Promise.all(
      takers.map(async (t) => {
        while (performance.now() - started < runFor) {
          const got = await t.take(1);
          calls++;
          if (got.ok) ok++;
          else await new Promise((r) => setTimeout(r, Math.max(1, got.retryAt - Date.now())));
        }
      }),
    );
    const elapsed = performance.now() - started;
    const writes = (await lastSeq()) - before;
    const slice = sliceUnits(rate, 1);
    console.log(`10,000/s limit, 3 takers, ${(elapsed / 1000).toFixed(1)} s: ${ok} taken (${((ok / elapsed) * 1000).toFixed(0)}/s) in ${calls} calls, ${writes} KV writes`);
    expect(ok).toBeLessThanOrEqual((rate.limit / rate.windowMs) * (elapsed + TOLERANCE_MS) + 2 * slice * takers.length);
    // One write per slice of 1,000 (and a few lost races), where a write per call would be `ok` writes.
    expect(writes).toBeLessThan(ok / 100);

    // The call path within a slice: one taker, a limit it never reaches, so nearly every take is local.
    const fast = new SharedRate(async () => kvs[0]!, "model/sim/fast/rpm", { limit: 6e9, windowMs: 60_000 }, Date.now);
    const n = 100_000;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) await fast.take(1);
    console.log(`within a slice: ${(((performance.now() - t0) / n) * 1000).toFixed(2)} µs per take (${n} takes, one taker)`);
  });

  it("a concurrency cap holds across processes: slots beyond it are refused until one is given back", async () => {
    const key = "model/sim/conc/concurrency";
    const workers = kvs.map((kv, i) => new SharedSlots(async () => kv, key, 3, `w${i}`, Date.now));
    // Eight calls want a slot at once across three processes; the cap is three.
    const got = await Promise.all(Array.from({ length: 8 }, (_, i) => workers[i % 3]!.tryAcquire().then((ok) => ({ w: i % 3, ok }))));
    const granted = got.filter((g) => g.ok);
    expect(granted).toHaveLength(3);
    const leases = (await kvs[0]!.get(key))!.json<Record<string, { n: number }>>();
    expect(Object.values(leases).reduce((a, l) => a + l.n, 0)).toBe(3);
    // A process that gives its lease back frees its slots for the others.
    const holder = granted[0]!.w;
    for (const g of granted.filter((x) => x.w === holder)) workers[holder]!.release();
    await workers[holder]!.close();
    const other = workers[(holder + 1) % 3]!;
    await new Promise((r) => setTimeout(r, 150));
    expect(await other.tryAcquire()).toBe(true);
    for (const w of workers) await w.close();
  });

  describe("at the router", () => {
    const LITE = "      lite: { upstream: budget-lite, input_per_mtok: 0.05, output_per_mtok: 0.20, context_window: 16000 }";
    const config = parseConfig(testConfigYaml("http://127.0.0.1:1").replace(LITE, LITE.replace(" }", ", limits: { rpm: 1 } }")), "c.yaml", {});
    const catalog = buildCatalog(config, {});
    const lite = catalog.models.get("budget/lite")!;
    const swift = catalog.models.get("swift/mini")!;
    const request = () => ({ model: "auto", messages: [{ role: "user" as const, content: "hi" }] });
    const limitsAt = (i: number, onPause: (p: Pause) => void = () => {}) =>
      createProviderLimits({ nc: conns[i]!, kv: async () => kvs[i]!, config, pauseSubject: "test.pause", clock: Date.now, logger: createLogger("test", "silent"), onPause });

    it("asks nothing of NATS for a model without limits, and waits for quota at most the time it is given", async () => {
      const a = limitsAt(0);
      const b = limitsAt(1);
      expect(a.admit(swift, request(), "moderation", 1_000, new CallCancel())).toBeUndefined();
      await a.admit(lite, request(), "moderation", 1_000, new CallCancel());
      // One request a minute, taken by the other worker: the next is a minute away, past the 50 ms this call may wait.
      const err = await b.admit(lite, request(), "moderation", 50, new CallCancel())!.catch((e: unknown) => e);
      expect(err).toBeInstanceOf(QuotaRefusedError);
      expect((err as QuotaRefusedError).kind).toBe("rate_limited");
      expect((err as QuotaRefusedError).status).toBeNull();
      expect((err as QuotaRefusedError).retryAfterMs).toBeGreaterThan(50_000);
      // A stop cuts a waiting call off.
      const cancel = new CallCancel();
      const waiting = b.admit(lite, request(), "moderation", 120_000, cancel)!.catch((e: unknown) => e);
      cancel.cancel();
      expect(await waiting).toBeInstanceOf(CallAbortedError);
      await Promise.all([a.close(), b.close()]);
    });

    it("publishes a 429's Retry-After as a pause every worker hears, and nothing for a refusal of its own", async () => {
      const heard: Pause[][] = [[], []];
      const a = limitsAt(0, (p) => heard[0]!.push(p));
      const b = limitsAt(1, (p) => heard[1]!.push(p));
      await Promise.all([conns[0]!.flush(), conns[1]!.flush()]);
      a.failed(lite, new QuotaRefusedError("own limit", { retryAfterMs: 1_000 }), 1_000);
      a.failed(lite, new RateLimitedError("no Retry-After", { status: 429 }), 1_000);
      a.failed(lite, new RateLimitedError("slow down", { status: 429, retryAfterMs: 5_000 }), 2_000);
      await conns[0]!.flush();
      await vi.waitFor(() => expect(heard[1]).toEqual([{ m: "budget/lite", p: "budget", until: 7_000, at: 2_000 }]));
      expect(heard[0]).toEqual(heard[1]);
      await Promise.all([a.close(), b.close()]);
    });
  });

  it("keeps gateway key names that KV would refuse distinct and valid", () => {
    expect(keyPart("acme")).toBe("acme");
    expect(keyPart("Team A/β")).toMatch(/^=[0-9a-f]+$/);
    expect(keyPart("x")).not.toBe(keyPart("=78"));
  });
});

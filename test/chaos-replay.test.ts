/**
 * Dead letters you can act on, and batch reprocessing: `switchyard dlq list|show|replay`
 * and `switchyard replay`, run as processes against a real stack. The interruption cases
 * (SIGKILL, SIGINT, two runs at once, re-runs past the duplicate window) are the "replays"
 * chaos scenario (test/chaos/replay-scenario.ts).
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DeadLetter, Result } from "../shared/contract/job.ts";
import { STREAMS } from "../shared/contract/subjects.ts";
import { matchesDeadLetter, parseWhen } from "../services/replay/filters.ts";
import { openLedger } from "../services/replay/ledger.ts";
import { deadLetterReplay, replayId, replayJob } from "../services/replay/lineage.ts";
import { jobsSettled, readAll } from "./harness/nats.ts";
import { spawnCli } from "./harness/processes.ts";
import { moderationJob, startStack, type TestStack } from "./harness/stack.ts";

describe("replay lineage (pure)", () => {
  it("derives the new id from the original: X → X~r1 → X~r2; batch runs append their label", () => {
    expect(deadLetterReplay("X", {})).toEqual({ newId: "X~r1", label: "r1", root: "X", generation: 1 });
    expect(deadLetterReplay("X~r1", { replay_source: "dlq", replay_root: "X", replay_generation: 1 })).toEqual({ newId: "X~r2", label: "r2", root: "X", generation: 2 });
    // A caller's own id that merely looks like a replay is not one.
    expect(deadLetterReplay("Y~r1", {}).newId).toBe("Y~r1~r1");
    expect(replayId("job-7", "best")).toBe("job-7~best");
    const long = replayId("z".repeat(128), "premium/large");
    expect(long.length).toBeLessThanOrEqual(128);
    expect(long).toBe(replayId("z".repeat(128), "premium/large"));
    expect(long).not.toBe(replayId(`${"z".repeat(127)}y`, "premium/large"));
  });

  it("a replayed job keeps request, routing and metadata, takes the new id, model and lineage, and drops the old deadline", () => {
    const original = { id: "a", task: "moderation", request: { model: "auto", messages: [{ role: "user", content: "x" }] }, routing: { strategy: "cost" }, deadline: "2020-01-01T00:00:00Z", metadata: { tenant: "acme" }, x_extra: 1 };
    const lineage = { replay_of: "a", replay_root: "a", replay_run: "r1", replay_source: "dlq" as const, replayed_at: "2026-01-01T00:00:00.000Z" };
    expect(replayJob(original, { newId: "a~r1", task: "moderation", lineage, model: "best" })).toEqual({
      id: "a~r1",
      task: "moderation",
      request: { model: "best", messages: [{ role: "user", content: "x" }] },
      routing: { strategy: "cost" },
      metadata: { tenant: "acme", ...lineage },
      x_extra: 1,
    });
    expect(replayJob(original, { newId: "a~r1", task: "moderation", lineage, deadline: "2030-01-01T00:00:00.000Z" }).deadline).toBe("2030-01-01T00:00:00.000Z");
  });

  it("times are ISO-8601 or a duration ago; filters combine", () => {
    const now = Date.parse("2026-11-24T12:00:00Z");
    expect(parseWhen("90m", now)?.toISOString()).toBe("2026-11-24T10:30:00.000Z");
    expect(parseWhen("2026-11-23T18:00:00Z", now)?.toISOString()).toBe("2026-11-23T18:00:00.000Z");
    expect(parseWhen("yesterday", now)).toBeUndefined();
    const d = { id: "1", task: "moderation", reason: "exhausted", failed_at: "2026-11-24T11:00:00Z", metadata: { tenant: "acme", n: 3 } } as unknown as DeadLetter;
    expect(matchesDeadLetter(d, { task: "moderation", reason: "exhausted", meta: [["tenant", "acme"], ["n", "3"]], since: new Date("2026-11-24T10:00:00Z"), until: new Date("2026-11-24T11:00:00Z") })).toBe(true);
    expect(matchesDeadLetter(d, { meta: [["tenant", "other"]] })).toBe(false);
    expect(matchesDeadLetter(d, { until: new Date("2026-11-24T10:59:59Z") })).toBe(false);
    expect(matchesDeadLetter(d, { ids: new Set(["2"]) })).toBe(false);
  });
});

describe("switchyard dlq and replay, against a real stack", () => {
  let stack: TestStack;
  let env: Record<string, string>;

  beforeAll(async () => {
    stack = await startStack({ routers: 1 });
    const dir = mkdtempSync(join(tmpdir(), "sy-replay-"));
    writeFileSync(join(dir, "switchyard.yaml"), stack.configYaml);
    env = { NATS_URL: stack.nats.url, SWITCHYARD_CONFIG: join(dir, "switchyard.yaml") };
  });
  afterAll(() => stack?.close());

  const cli = async (...args: string[]) => {
    const p = spawnCli(args, env);
    const code = await p.exited;
    return { code, out: p.output() };
  };
  // Every job published so far (replays included) has its outcome once JOBS has settled.
  const settled = () => jobsSettled(stack.nats.jsm);
  const resultOf = async (id: string) => (await readAll<Result>(stack.nats.js, STREAMS.results)).find((r) => r.id === id);
  const deadLetterOf = async (id: string) => (await readAll<DeadLetter>(stack.nats.js, STREAMS.dlq)).find((d) => d.id === id);
  /** A job naming an unknown model: dead-lettered no_route at once, and a replay naming a real model serves it. */
  const unroutable = (id: string, metadata: Record<string, unknown> = {}) => {
    const j = moderationJob(0, { id, metadata });
    return { ...j, request: { ...j.request, model: "nowhere/model" } };
  };
  /** Each test dead-letters its own jobs, so none depends on what an earlier one left. */
  const deadLettered = async (...jobs: ReturnType<typeof unroutable>[]) => {
    await stack.publishJobs("moderation", jobs);
    await settled();
    for (const j of jobs) expect(await deadLetterOf(j.id)).toMatchObject({ reason: "no_route" });
  };

  it("list filters by task, reason, time and metadata; show prints one in full and whether it was replayed", async () => {
    const since = new Date().toISOString();
    await deadLettered(unroutable("dead-0", { tenant: "acme" }), unroutable("dead-1", { tenant: "globex" }), unroutable("dead-2", { tenant: "acme" }));
    const listed = await cli("dlq", "list", "--task", "moderation", "--reason", "no_route", "--since", since, "--until", new Date(Date.now() + 60_000).toISOString(), "--meta", "tenant=acme");
    expect(listed.code).toBe(0);
    expect(listed.out).toContain("2 dead letter(s) matched");
    expect(listed.out).toContain("dead-0");
    expect(listed.out).not.toContain("dead-1");
    const none = await cli("dlq", "list", "--until", since);
    expect(none.out).toContain("0 dead letter(s) matched");
    const shown = await cli("dlq", "show", "dead-1");
    expect(shown.code).toBe(0);
    expect(shown.out).toContain('"tenant": "globex"');
    expect(shown.out).toContain("not replayed");
    expect(shown.out).toContain("dead-1~r1");
    expect((await cli("dlq", "show", "no-such-id")).code).toBe(1);
  });

  it("dlq replay --dry-run counts; replay publishes each dead letter once with --model, --deadline and lineage", async () => {
    await deadLettered(unroutable("rp-0", { tenant: "acme" }), unroutable("rp-1", { tenant: "globex" }));
    const dry = await cli("dlq", "replay", "--id", "rp-0", "--id", "rp-1", "--dry-run");
    expect(dry.code).toBe(0);
    expect(dry.out).toContain("would publish 2 new job(s)");
    const run = await cli("dlq", "replay", "--id", "rp-0", "--id", "rp-1", "--model", "swift/mini", "--deadline", "10m");
    expect(run.code).toBe(0);
    expect(run.out).toContain("published 2 new job(s); 0 already replayed");
    await settled();
    const r = await resultOf("rp-1~r1");
    expect(r).toMatchObject({ provider: "swift", model: "mini" });
    expect(r!.metadata).toMatchObject({ tenant: "globex", replay_of: "rp-1", replay_root: "rp-1", replay_run: "r1", replay_generation: 1, replay_reason: "no_route", replay_source: "dlq" });
    const jobs = await readAll<{ id: string; deadline?: string; request: { model: string } }>(stack.nats.js, STREAMS.jobs);
    const replayed = jobs.find((j) => j.id === "rp-0~r1")!;
    expect(replayed.request.model).toBe("swift/mini");
    expect(Date.parse(replayed.deadline!) - Date.now()).toBeGreaterThan(8 * 60_000);
    const again = await cli("dlq", "replay", "--id", "rp-0", "--id", "rp-1", "--model", "swift/mini");
    expect(again.out).toContain("published 0 new job(s); 2 already replayed");
    expect((await cli("dlq", "show", "rp-1")).out).toMatch(/replayed as rp-1~r1 at .* \(JOBS sequence \d+\)/);
  });

  it("a replay that fails again is replayed as the next generation of the same job", async () => {
    await deadLettered(unroutable("gen-0"));
    // No model override: the replay inherits nowhere/model and is dead-lettered again.
    expect((await cli("dlq", "replay", "--id", "gen-0")).code).toBe(0);
    await settled();
    expect(await deadLetterOf("gen-0~r1")).toMatchObject({ reason: "no_route" });
    expect((await cli("dlq", "replay", "--id", "gen-0~r1", "--model", "budget/lite")).out).toContain("published 1 new job(s)");
    await settled();
    expect((await resultOf("gen-0~r2"))?.metadata).toMatchObject({ replay_of: "gen-0~r1", replay_root: "gen-0", replay_generation: 2 });
  });

  it("replay re-runs a time range of a task from JOBS on another model, once per run label", async () => {
    const since = new Date();
    await stack.publishJobs("moderation", Array.from({ length: 5 }, (_, i) => moderationJob(i, { id: `batch-${i}`, metadata: { batch: "nightly" } })));
    const until = new Date();
    await settled();
    const args = ["replay", "--task", "moderation", "--since", since.toISOString(), "--until", until.toISOString(), "--model", "premium/large", "--meta", "batch=nightly"];
    const run = await cli(...args);
    expect(run.code).toBe(0);
    expect(run.out).toContain("published 5 new job(s)");
    await settled();
    expect(await resultOf("batch-4~premium/large")).toBeDefined();
    expect(await resultOf("batch-0~premium/large")).toMatchObject({ provider: "premium", metadata: { batch: "nightly", replay_of: "batch-0", replay_run: "premium/large", replay_source: "jobs" } });
    expect((await cli(...args)).out).toContain("published 0 new job(s); 5 already replayed");
    // Another label is another run. The range now holds the premium replays too: each counts as its original.
    const second = await cli("replay", "--task", "moderation", "--since", since.toISOString(), "--run", "second", "--meta", "batch=nightly");
    expect(second.out).toContain("published 5 new job(s); 5 already replayed");
  });

  it("a run killed between claim and publish is settled by the next one: found in JOBS → recorded, missing → released", async () => {
    const ledger = await openLedger(stack.nats.nc, stack.config);
    const at = new Date().toISOString();
    await stack.publishJobs("moderation", [moderationJob(0, { id: "claim-a" }), moderationJob(1, { id: "claim-b" })]);
    await settled();
    // As a killed run leaves them: claim-a's replay was published, claim-b's was not.
    await ledger.claim({ id: "claim-a~rerun", of: "claim-a", task: "moderation", at });
    await ledger.claim({ id: "claim-b~rerun", of: "claim-b", task: "moderation", at });
    await stack.nats.js.publish("jobs.moderation", JSON.stringify(moderationJob(0, { id: "claim-a~rerun" })), { msgID: "claim-a~rerun" });
    const run = await cli("replay", "--task", "moderation", "--since", at, "--meta", "selects=nothing");
    expect(run.out).toContain("1 of its jobs had been published (recorded now), 1 had not");
    expect(await ledger.done("claim-a~rerun")).toMatchObject({ of: "claim-a" });
    expect(await ledger.claims()).toEqual([]);
  });

  it("usage mistakes exit 2 with the reason", async () => {
    expect(await cli("replay", "--since", "1h")).toMatchObject({ code: 2, out: expect.stringContaining("--task <task> is required") });
    expect(await cli("replay", "--task", "moderation", "--since", "last tuesday")).toMatchObject({ code: 2, out: expect.stringContaining("neither an ISO-8601 time nor a duration") });
    expect(await cli("dlq", "replay", "--model", "nowhere/x")).toMatchObject({ code: 2, out: expect.stringContaining('--model "nowhere/x" is not a model or alias') });
    expect(await cli("dlq", "purge")).toMatchObject({ code: 2, out: expect.stringContaining("dlq list|show|replay") });
  });
});

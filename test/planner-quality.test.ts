import { describe, expect, it } from "vitest";
import { parseConfig } from "../shared/config/load.ts";
import type { Job } from "../shared/contract/job.ts";
import type { ModelState, TaskQuality } from "../shared/contract/live.ts";
import { buildCatalog } from "../shared/routing/catalog.ts";
import { LocalHealth } from "../shared/routing/health.ts";
import { LiveState, STALE_AFTER_MS } from "../shared/routing/live-state.ts";
import { plan, type Plan } from "../shared/routing/planner.ts";

const CONFIG = `
providers:
  cheap:
    dialect: openai
    base_url: http://127.0.0.1:9/v1
    models:
      a: { input_per_mtok: 0.10, output_per_mtok: 0.40, context_window: 100000 }
  mid:
    dialect: openai
    base_url: http://127.0.0.1:9/v1
    models:
      b: { input_per_mtok: 0.50, output_per_mtok: 1.50, context_window: 100000 }
  pricey:
    dialect: openai
    base_url: http://127.0.0.1:9/v1
    models:
      c: { input_per_mtok: 5.00, output_per_mtok: 15.0, context_window: 100000 }
tasks:
  labels:
    tiers:
      - strategy: cheapest
        models: [mid/b, cheap/a]
      - models: [pricey/c]
    output: { labels: [yes, no] }
  other:
    tiers:
      - strategy: cheapest
        models: [mid/b, cheap/a]
      - models: [pricey/c]
`;
const catalog = buildCatalog(parseConfig(CONFIG, "planner-quality.yaml", {}));
const NOW = 1_000_000;

function job(task = "labels", over: Partial<Job> = {}): Job {
  return { id: "j1", task, request: { model: "auto", messages: [{ role: "user", content: "hello" }] }, ...over };
}

function ids(p: Plan): string[] {
  if (p.kind !== "attempts") throw new Error(`expected attempts, got ${JSON.stringify(p)}`);
  return p.attempts.map((a) => `${a.model.id}@${a.tier}`);
}

const demoted: TaskQuality = { pass_rate: 0.4, samples: 10, status: "demoted", demoted_until: new Date(NOW + 30_000).toISOString() };
const qualified: TaskQuality = { pass_rate: 1, samples: 12, status: "qualified", demoted_until: null };

function entry(id: string, quality: Record<string, TaskQuality> | undefined, over: Partial<ModelState> = {}): ModelState {
  const m = catalog.models.get(id)!;
  const iso = new Date(NOW).toISOString();
  return {
    id,
    provider: m.provider,
    model: m.name,
    input_per_mtok: m.inputPerMtok,
    output_per_mtok: m.outputPerMtok,
    context_window: m.contextWindow,
    price_source: "config",
    price_updated_at: iso,
    health: "healthy",
    error_rate: 0,
    rate_limit_rate: 0,
    latency_p50_ms: null,
    latency_p95_ms: null,
    samples: 0,
    cooldown_until: null,
    health_updated_at: iso,
    updated_at: iso,
    ...(quality ? { quality } : {}),
    ...over,
  };
}

function live(entries: ModelState[], heartbeat = NOW): LiveState {
  const view = new LiveState(new LocalHealth(), () => NOW);
  view.heartbeat(heartbeat);
  for (const e of entries) view.apply(e);
  return view;
}

const run = (view: LiveState, j: Job = job()) => plan({ policy: catalog.tasks.get(j.task)!, catalog, view, job: j, now: NOW, random: () => 0.5 });

describe("planner and per-task demotions", () => {
  it("skips a model demoted for the job's task", () => {
    const view = live([entry("cheap/a", { labels: demoted }), entry("mid/b", { labels: qualified })]);
    expect(ids(run(view))).toEqual(["mid/b@0", "pricey/c@1"]);
  });

  it("a demotion for one task leaves the model's other tasks alone", () => {
    const view = live([entry("cheap/a", { labels: demoted })]);
    expect(ids(run(view, job("other")))).toEqual(["cheap/a@0", "mid/b@0", "pricey/c@1"]);
  });

  it("when every candidate is demoted, plans them all anyway, in the order they would have had", () => {
    const view = live(["cheap/a", "mid/b", "pricey/c"].map((id) => entry(id, { labels: demoted })));
    expect(ids(run(view))).toEqual(["cheap/a@0", "mid/b@0", "pricey/c@1"]);
  });

  it("when the only non-demoted candidates cannot take the job, the demoted ones do", () => {
    // pricey/c is the one good model, but the job's budget excludes it.
    const view = live([entry("cheap/a", { labels: demoted }), entry("mid/b", { labels: demoted })]);
    expect(ids(run(view, job("labels", { routing: { max_cost_usd: 0.001 } })))).toEqual(["cheap/a@0", "mid/b@0"]);
    // Or the job's providers exclude it.
    expect(ids(run(view, job("labels", { routing: { deny_providers: ["pricey"] } })))).toEqual(["cheap/a@0", "mid/b@0"]);
  });

  it("a non-demoted candidate that is only cooling down is waited for rather than replaced by a demoted one", () => {
    const view = live([
      entry("cheap/a", { labels: demoted }),
      entry("mid/b", { labels: demoted }),
      entry("pricey/c", undefined, { health: "down", cooldown_until: new Date(NOW + 2_000).toISOString() }),
    ]);
    expect(run(view)).toEqual({ kind: "wait", until: NOW + 2_000 });
  });

  it("a model named in request.model is used even when demoted: it is the job's only candidate", () => {
    const view = live([entry("cheap/a", { labels: demoted })]);
    expect(ids(run(view, job("labels", { request: { model: "cheap/a", messages: [{ role: "user", content: "x" }] } })))).toEqual(["cheap/a@0"]);
  });

  it("demotions from a silent pricing service are ignored, like its health verdicts", () => {
    const view = live([entry("cheap/a", { labels: demoted })], NOW - STALE_AFTER_MS - 1);
    expect(ids(run(view))).toEqual(["cheap/a@0", "mid/b@0", "pricey/c@1"]);
  });

  it("an entry without the demotion (re-qualified, or from an older pricing service) lifts it", () => {
    const view = live([entry("cheap/a", { labels: demoted })]);
    expect(view.demotedFor("labels")).toBeDefined();
    view.apply(entry("cheap/a", { labels: qualified }));
    expect(view.demotedFor("labels")).toBeUndefined();
    expect(ids(run(view))).toEqual(["cheap/a@0", "mid/b@0", "pricey/c@1"]);
    view.apply(entry("cheap/a", { labels: demoted }));
    view.apply(entry("cheap/a", undefined));
    expect(view.demotedFor("labels")).toBeUndefined();
  });

  it("nothing demoted: the planner's fast path (no lookup for the task)", () => {
    const view = live([entry("cheap/a", { labels: qualified }), entry("mid/b", undefined)]);
    expect(view.demotedFor("labels")).toBeUndefined();
    expect(view.demotedFor("other")).toBeUndefined();
  });
});

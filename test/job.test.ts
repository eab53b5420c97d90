/**
 * The delivery state machine on a fake clock: every decision about a job (escalation, the
 * outcome table, deadlines, a lapsed hold, a stop) without a process, a socket or a sleep.
 */
import { describe, expect, it } from "vitest";
import { bindContract } from "../shared/acceptance/contract.ts";
import { ProviderError, UnavailableError } from "../shared/adapters/errors.ts";
import type { Completion } from "../shared/adapters/types.ts";
import { parseConfig } from "../shared/config/load.ts";
import type { Attempt, Job } from "../shared/contract/job.ts";
import { buildCatalog, type ModelInfo } from "../shared/routing/catalog.ts";
import { plan } from "../shared/routing/planner.ts";
import { LocalHealth } from "../shared/routing/health.ts";
import { beforePlanning, Delivery, holdLapsed, type Step } from "../services/router/job.ts";

const config = parseConfig(
  `
providers:
  a: { dialect: openai, base_url: "http://127.0.0.1:1/v1", timeout_ms: 5s, models: { m: { input_per_mtok: 1, output_per_mtok: 2, context_window: 8000 } } }
  b: { dialect: openai, base_url: "http://127.0.0.1:1/v1", timeout_ms: 5s, models: { m: { input_per_mtok: 2, output_per_mtok: 4, context_window: 8000 } } }
  c: { dialect: openai, base_url: "http://127.0.0.1:1/v1", timeout_ms: 5s, models: { m: { input_per_mtok: 9, output_per_mtok: 9, context_window: 8000 } } }
tasks:
  sort:
    max_deliveries: 3
    tiers:
      - { strategy: cheapest, models: [a/m, b/m] }
      - { models: [c/m] }
    output: { labels: [yes, no] }
`,
  "job-test.yaml",
  {},
);
const catalog = buildCatalog(config);
const policy = catalog.tasks.get("sort")!;
const ACK_WAIT = 30_000;

function delivery(opts: { job?: Partial<Job>; earlier?: Attempt[]; deliveryCount?: number; now?: number } = {}) {
  const job: Job = { id: "j1", task: "sort", request: { model: "auto", messages: [{ role: "user", content: "is it?" }] }, ...opts.job };
  const contract = bindContract(policy.contract, job.request);
  if ("kind" in contract) throw new Error(contract.message);
  const now = opts.now ?? 1_000;
  return new Delivery({
    job,
    policy,
    contract,
    plan: plan({ policy, catalog, view: new LocalHealth(), job, now, random: () => 0.5 }),
    earlier: opts.earlier ?? [],
    deliveryCount: opts.deliveryCount ?? 1,
    backoffMs: [1_000, 5_000],
    timeoutOf: () => 5_000,
    startedAt: now,
    publishedAt: now - 40,
    ackWaitMs: ACK_WAIT,
    random: () => 0.5,
  });
}

const ready = { cooldownUntil: () => 0 };
const at = (now: number, renewedAt = 1_000) => ({ now, renewedAt, stopping: false });
const answer = (content: string): Completion => ({
  response: { id: "x", object: "chat.completion", created: 0, model: "up", choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: "stop" }] },
  usage: { prompt_tokens: 100, completion_tokens: 10, total_tokens: 110 },
  usageEstimated: false,
});
const callOf = (s: Step) => {
  if (s.kind !== "call") throw new Error(`expected a call, got ${s.kind}`);
  return s;
};
const modelOf = (s: Step) => callOf(s).planned.model.id;

describe("a job's delivery, step by step", () => {
  it("calls the cheapest candidate with the contract as its response_format, and a passing answer is the result", () => {
    const d = delivery();
    const call = callOf(d.next(ready, at(1_000)));
    expect(call.planned.model.id).toBe("a/m");
    expect(call.timeoutMs).toBe(5_000);
    expect(call.request.response_format).toMatchObject({ type: "json_schema", json_schema: { schema: { properties: { label: { enum: ["yes", "no"] } } } } });
    expect(d.answered(answer('{"label":"yes"}'), at(1_030))).toBe("ok");
    const step = d.next(ready, at(1_031));
    expect(step.kind).toBe("result");
    if (step.kind !== "result") return;
    expect(step.result).toMatchObject({ output: "yes", provider: "a", model: "m", latency_ms: 30, queued_ms: 40, cost_usd: (100 * 1 + 10 * 2) / 1e6 });
    // The wrapped label reaches the caller bare.
    expect(step.result.response).toMatchObject({ choices: [{ message: { content: "yes" } }] });
    expect(step.result.attempts).toEqual([{ provider: "a", model: "m", tier: 0, outcome: "ok", http_status: 200, latency_ms: 30, error: null, usage: { prompt_tokens: 100, completion_tokens: 10, total_tokens: 110 }, cost_usd: (100 * 1 + 10 * 2) / 1e6 }]);
  });

  it("an invalid answer escalates to the next candidate and tier, one call each, then dead-letters invalid_output at once", () => {
    const d = delivery();
    const seen: string[] = [];
    for (let i = 0; i < 3; i++) {
      seen.push(modelOf(d.next(ready, at(1_000 + i))));
      expect(d.answered(answer("maybe"), at(1_000 + i))).toBe("invalid_output");
    }
    expect(seen).toEqual(["a/m", "b/m", "c/m"]);
    const step = d.next(ready, at(1_010));
    expect(step).toMatchObject({ kind: "dead_letter", deadLetter: { reason: "invalid_output" } });
    if (step.kind === "dead_letter") expect(step.deadLetter.attempts.map((a) => a.error)).toEqual(Array(3).fill('the answer "maybe" is not one of the labels (yes, no)'));
  });

  it("mixed failures redeliver, and the redelivery asks only the models that have not answered invalidly", () => {
    const d = delivery();
    callOf(d.next(ready, at(1_000)));
    d.answered(answer("maybe"), at(1_001));
    callOf(d.next(ready, at(1_001)));
    d.failed(new UnavailableError("HTTP 503"), "HTTP 503", at(1_002));
    callOf(d.next(ready, at(1_002)));
    d.answered(answer("perhaps"), at(1_003));
    expect(d.next(ready, at(1_003))).toEqual({ kind: "redeliver", delayMs: 1_000 });

    const again = delivery({ earlier: [...d.attempts], deliveryCount: 2, now: 3_000 });
    expect(modelOf(again.next(ready, at(3_000, 3_000)))).toBe("b/m");
    again.answered(answer("no"), at(3_005, 3_000));
    const step = again.next(ready, at(3_005, 3_000));
    expect(step.kind).toBe("result");
    if (step.kind === "result") expect(step.result.attempts.map((a) => `${a.provider}:${a.outcome}`)).toEqual(["a:invalid_output", "b:unavailable", "c:invalid_output", "b:ok"]);
  });

  it("a redelivery whose every candidate has already answered invalidly is dead-lettered without a call", () => {
    const invalid = (provider: string): Attempt => ({ provider, model: "m", tier: 0, outcome: "invalid_output", http_status: 200, latency_ms: 1, error: "nope" });
    const d = delivery({ earlier: [invalid("a"), invalid("b"), invalid("c")], deliveryCount: 2 });
    expect(d.next(ready, at(1_000))).toMatchObject({ kind: "dead_letter", deadLetter: { reason: "invalid_output", attempts: [{}, {}, {}] } });
  });

  it("a candidate cooling down is left for later: invalid answers elsewhere then redeliver, not dead-letter", () => {
    const d = delivery();
    const cooling = { cooldownUntil: (m: ModelInfo) => (m.id === "b/m" ? 5_000 : 0) };
    expect(modelOf(d.next(cooling, at(1_000)))).toBe("a/m");
    d.answered(answer("maybe"), at(1_001));
    expect(modelOf(d.next(cooling, at(1_001)))).toBe("c/m");
    d.answered(answer("maybe"), at(1_002));
    expect(d.next(cooling, at(1_002))).toEqual({ kind: "redeliver", delayMs: 1_000 });
  });

  it("the deadline bounds each call's timeout; an answer after it is a timeout attempt and a deadline_exceeded dead letter", () => {
    const deadline = new Date(3_000).toISOString();
    const d = delivery({ job: { deadline } });
    expect(callOf(d.next(ready, at(1_000))).timeoutMs).toBe(2_000);
    expect(d.answered(answer('{"label":"no"}'), at(3_001))).toBe("timeout");
    expect(d.next(ready, at(3_001))).toMatchObject({ kind: "dead_letter", deadLetter: { reason: "deadline_exceeded", attempts: [{ outcome: "timeout", error: "answered after the job's deadline" }] } });
    // Picked up after its deadline: dead-lettered before any planning.
    expect(beforePlanning({ id: "j", task: "sort", request: { model: "auto", messages: [] }, deadline }, policy, [], 1, 3_000, 3_000)).toMatchObject({ reason: "deadline_exceeded" });
  });

  it("a hold that lapsed (paused past ack_wait) publishes nothing: the redelivery decides", () => {
    const d = delivery();
    callOf(d.next(ready, at(1_000)));
    d.answered(answer('{"label":"yes"}'), at(1_000 + ACK_WAIT + 1, 1_000));
    expect(d.next(ready, at(1_000 + ACK_WAIT + 1, 1_000))).toEqual({ kind: "let_go", why: "hold_lapsed" });
    expect(holdLapsed(1_000 + ACK_WAIT, 1_000, ACK_WAIT)).toBe(false);
  });

  it("a stop that cut the call off lets the job go with no attempt recorded", () => {
    const d = delivery();
    callOf(d.next(ready, at(1_000)));
    d.aborted();
    expect(d.next(ready, { now: 1_500, renewedAt: 1_000, stopping: true })).toEqual({ kind: "let_go", why: "stopping" });
    expect(d.attempts).toEqual([]);
  });

  it("a refusal (400) is not retried on the same model, and with nothing transient the job ends exhausted", () => {
    const d = delivery();
    for (let i = 0; i < 3; i++) {
      callOf(d.next(ready, at(1_000)));
      d.failed(new ProviderError("bad_request", "HTTP 400: bad"), "HTTP 400: bad", at(1_001));
    }
    expect(d.next(ready, at(1_002))).toMatchObject({ kind: "dead_letter", deadLetter: { reason: "exhausted" } });
  });
});

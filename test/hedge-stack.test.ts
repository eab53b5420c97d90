/**
 * Hedged requests on the real stack (nats-server, a router, the sim-provider): a primary that
 * hangs is raced by the next candidate, whose answer is the result, and the hanging call is
 * recorded as cut off; a job on the batch lane is never hedged.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Result } from "../shared/contract/job.ts";
import { interactiveJobSubject, jobSubject, STREAMS } from "../shared/contract/subjects.ts";
import { readStream } from "./harness/nats.ts";
import { startStack, testConfigYaml, type TestStack } from "./harness/stack.ts";

let stack: TestStack;

beforeAll(async () => {
  stack = await startStack({
    configYaml: (simUrl) =>
      `${testConfigYaml(simUrl, {}, { providerTimeout: "3s" })}
  hedged:
    expected_completion_tokens: 32
    tiers:
      - models: [budget/lite, swift/mini]
    hedge: { after: 100ms, max_extra_cost_usd: 0.01 }
`,
  });
  // The primary takes every call and never answers (the socket is held past any timeout).
  stack.sim.control("budget", "budget-lite", { outage: "hang", hang_ms: 60_000 });
}, 30_000);

afterAll(async () => {
  await stack?.close();
}, 30_000);

const job = (id: string) => ({ id, request: { messages: [{ role: "user", content: "Say hello." }] } });

describe("hedged requests against a hanging provider", () => {
  it("an interactive job: the hedge answers, the hanging primary is cut off and both attempts are recorded", async () => {
    await stack.nats.js.publish(interactiveJobSubject("hedged"), JSON.stringify(job("hedge-1")), { msgID: "hedge-1" });
    const [r] = await readStream<Result>(stack.nats.js, STREAMS.results, { count: 1, timeoutMs: 10_000 });
    expect(r).toMatchObject({ id: "hedge-1", status: "succeeded", provider: "swift", model: "mini" });
    expect(r!.attempts.map((a) => [a.provider, a.outcome])).toEqual([["swift", "ok"], ["budget", "timeout"]]);
    expect(r!.attempts[1]!.error).toBe("cut off: the hedged call to swift/mini answered first");
    // Billed: the winner only; the cut-off call never answered.
    expect(r!.billed_usd).toBe(r!.cost_usd);
  }, 20_000);

  it("a batch-lane job is not hedged: the primary runs to its timeout before the next candidate", async () => {
    await stack.nats.js.publish(jobSubject("hedged"), JSON.stringify(job("hedge-batch")), { msgID: "hedge-batch" });
    const results = await readStream<Result>(stack.nats.js, STREAMS.results, { count: 2, timeoutMs: 15_000 });
    const r = results.find((x) => x.id === "hedge-batch");
    expect(r).toMatchObject({ status: "succeeded", provider: "swift" });
    expect(r!.attempts.map((a) => [a.provider, a.outcome])).toEqual([["budget", "timeout"], ["swift", "ok"]]);
    expect(r!.attempts[0]!.error).not.toMatch(/cut off/);
  }, 30_000);
});

/**
 * The fast subset of the chaos suite (test/chaos/): the same scenarios as `npm run chaos`,
 * at sizes that add well under a minute to `npm test`. The 3-node cluster and the pricing
 * restarts run only in `npm run chaos` (the latter is also in live-routing.test.ts).
 */
import { request } from "undici";
import { describe, expect, it } from "vitest";
import { parseScenario } from "../services/sim-provider/scenario.ts";
import { createSimProvider } from "../services/sim-provider/server.ts";
import { replays } from "./chaos/replay-scenario.ts";
import { deadlines, hostile, natsRestart, providerStorms, workerKills } from "./chaos/scenarios.ts";

const FAST = [workerKills, natsRestart, providerStorms, hostile, deadlines, replays];

describe("chaos, fast subset: every job ends exactly once in RESULTS ∪ DLQ, nothing left unacknowledged, workers still serving", () => {
  for (const scenario of FAST) {
    it(`${scenario.name}: ${scenario.title}`, { timeout: 180_000 }, async () => {
      const r = await scenario.run("fast");
      expect(r.problems).toEqual([]);
      expect({ lost: r.lost, duplicated: r.duplicated, unexpected: r.unexpected, unacked: r.unacked, serving: r.serving }).toEqual({ lost: 0, duplicated: 0, unexpected: 0, unacked: 0, serving: true });
      expect(r.checks.filter((c) => !c.ok)).toEqual([]);
      expect(r.published).toBeGreaterThan(0);
    });
  }
});

describe("the sim-provider's slow-body fault, which the storms use", () => {
  it("answers 200 at once, then drips a complete, valid body over slow_body_ms", async () => {
    const sim = createSimProvider(parseScenario("providers:\n  p: { models: { m: { errors: { rate_slow_body: 1 }, slow_body_ms: 600 } } }\n", "slow.yaml"));
    const url = await sim.listen(0);
    try {
      const t0 = Date.now();
      const res = await request(`${url}/p/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }] }) });
      const headersAfter = Date.now() - t0;
      const chunks: number[] = [];
      for await (const chunk of res.body) chunks.push((chunk as Buffer).length);
      expect(res.statusCode).toBe(200);
      expect(headersAfter).toBeLessThan(150);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(550);
      expect(chunks.length).toBeGreaterThan(5);
      expect(sim.stats().models["p/m"]).toMatchObject({ slow: 1, responses: { 200: 1 } });
    } finally {
      await sim.close();
    }
  });
});

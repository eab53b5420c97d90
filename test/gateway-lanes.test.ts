/**
 * Priority lanes: the slot rule on its own (services/router/lanes.ts), then end to end on a
 * real stack — interactive requests overtake a queued batch, and a flood of interactive
 * requests does not starve batch work.
 */
import { toFile, type OpenAI } from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { laneSlots, pullSize, type LaneHeld } from "../services/router/lanes.ts";
import { ROUTER_DURABLE, STREAMS } from "../shared/contract/subjects.ts";
import { startGatewayStack, type GatewayStack } from "./harness/gateway.ts";
import { moderationJob } from "./harness/stack.ts";

describe("lane slots (pure)", () => {
  const slots = laneSlots(100, { interactive_reserved: 0.25, batch_reserved: 0.1 });
  const held = (interactive: number, batch: number): LaneHeld => ({ interactive, batch });

  it("turns shares into whole slots, each reserve at least one", () => {
    expect(slots).toEqual({ max: 100, interactiveReserved: 25, batchReserved: 10 });
    expect(laneSlots(4, { interactive_reserved: 0.01, batch_reserved: 0.01 })).toEqual({ max: 4, interactiveReserved: 1, batchReserved: 1 });
  });

  it("batch jobs never take the interactive reserve", () => {
    expect(pullSize("batch", slots, held(0, 0), false)).toBe(75);
    expect(pullSize("batch", slots, held(0, 75), false)).toBe(0);
    // Even with the interactive lane idle, its reserve stays free for the next interactive job.
    expect(pullSize("interactive", slots, held(0, 75), false)).toBe(25);
  });

  it("interactive jobs never take the batch reserve, so batch work never starves", () => {
    expect(pullSize("interactive", slots, held(0, 0), true)).toBe(90);
    expect(pullSize("interactive", slots, held(90, 0), true)).toBe(0);
    expect(pullSize("batch", slots, held(90, 0), true)).toBe(10);
  });

  it("while interactive jobs wait, freed slots go to them and batch keeps only its reserve", () => {
    // Batch held 75 when interactive work arrived: it pulls nothing more until it is down to its reserve.
    expect(pullSize("batch", slots, held(25, 70), true)).toBe(0);
    expect(pullSize("interactive", slots, held(25, 70), true)).toBe(5);
    expect(pullSize("batch", slots, held(85, 5), true)).toBe(5);
  });

  it("an idle interactive lane with its own jobs still filling its reserve keeps a one-job pull open", () => {
    expect(pullSize("interactive", slots, held(40, 50), false)).toBe(1);
    expect(pullSize("interactive", slots, held(40, 60), false)).toBe(0);
  });

  it("never hands out more than max_in_flight in total", () => {
    for (let i = 0; i <= 100; i += 7) {
      for (let b = 0; b + i <= 100; b += 9) {
        for (const busy of [true, false]) {
          const h = held(i, b);
          expect(h.interactive + h.batch + pullSize("interactive", slots, h, busy)).toBeLessThanOrEqual(100);
          expect(h.interactive + h.batch + pullSize("batch", slots, h, busy)).toBeLessThanOrEqual(100);
        }
      }
    }
  });
});

describe("lanes end to end", () => {
  let gs: GatewayStack;
  let client: OpenAI;
  const LATENCY_MS = 50;
  const MAX_IN_FLIGHT = 8;

  beforeAll(async () => {
    gs = await startGatewayStack({ router: { max_in_flight: String(MAX_IN_FLIGHT) }, lanes: { interactive_reserved: 0.25, batch_reserved: 0.25 } });
    client = gs.client();
  });
  afterAll(async () => {
    await gs?.close();
  });

  const slowProviders = () => {
    gs.stack.sim.reset();
    for (const [p, m] of [["budget", "budget-lite"], ["swift", "swift-mini"], ["premium", "premium-large"]] as const) {
      gs.stack.sim.control(p, m, { latency_ms: { min: LATENCY_MS, max: LATENCY_MS } });
    }
  };
  const backlog = async () => {
    const c = await gs.stack.nats.jsm.consumers.info(STREAMS.jobs, ROUTER_DURABLE);
    return c.num_pending + c.num_ack_pending;
  };
  const resultsSoFar = async () => (await gs.stack.nats.jsm.streams.info(STREAMS.results)).state.messages;
  const ask = (text: string) => client.chat.completions.create({ model: "auto", messages: [{ role: "system", content: "You are a content moderation classifier." }, { role: "user", content: text }] });

  it("interactive requests overtake a queued batch", async () => {
    slowProviders();
    // About 3 s of batch work for 8 slots at 50 ms a job, submitted through the Batch API.
    const lines = Array.from({ length: 480 }, (_, i) =>
      JSON.stringify({ custom_id: `q-${i}`, method: "POST", url: "/v1/chat/completions", body: { messages: [{ role: "system", content: "You are a content moderation classifier." }, { role: "user", content: `queued ${i}` }] } }),
    );
    const file = await client.files.create({ file: await toFile(Buffer.from(lines.join("\n")), "queued.jsonl"), purpose: "batch" });
    const batch = await client.batches.create({ input_file_id: file.id, endpoint: "/v1/chat/completions", completion_window: "24h" });
    await expect.poll(async () => (await client.batches.retrieve(batch.id)).request_counts!.completed > 20, { timeout: 10_000 }).toBe(true);

    const started = Date.now();
    const latencies = await Promise.all(
      Array.from({ length: 12 }, async (_, i) => {
        const t0 = Date.now();
        await ask(`interactive ${i}`);
        return Date.now() - t0;
      }),
    );
    const waitedFor = Date.now() - started;
    const left = await backlog();
    // FIFO behind the batch would take seconds; served first, each takes a couple of provider calls.
    expect(Math.max(...latencies)).toBeLessThan(1_000);
    expect(left, "the batch was still queued when every interactive request had its answer").toBeGreaterThan(100);
    expect(waitedFor).toBeLessThan(1_000);
    await expect.poll(async () => (await client.batches.retrieve(batch.id)).status, { timeout: 30_000 }).toBe("completed");
  });

  it("a flood of interactive requests does not starve the batch lane", async () => {
    slowProviders();
    await gs.stack.publishJobs("moderation", Array.from({ length: 400 }, (_, i) => moderationJob(i, { id: `starve-batch-${i}` })));
    await new Promise((r) => setTimeout(r, 300));
    // Twice as many interactive callers as the worker has slots, each asking again at once, for 2 s.
    let stop = false;
    let interactive = 0;
    const flood = Array.from({ length: 2 * MAX_IN_FLIGHT }, async (_, i) => {
      while (!stop) {
        await ask(`flood ${i}`);
        interactive++;
      }
    });
    await new Promise((r) => setTimeout(r, 500));
    const before = await backlog();
    const r0 = await resultsSoFar();
    const i0 = interactive;
    await new Promise((r) => setTimeout(r, 2_000));
    const after = await backlog();
    const served = (await resultsSoFar()) - r0;
    const interactiveServed = interactive - i0;
    stop = true;
    await Promise.all(flood);
    // The batch reserve is 2 of 8 slots at 50 ms a job: up to 80 batch jobs in 2 s, fewer on a busy
    // 2-core box running every process of the stack; anything steady shows it is not starved.
    expect(before - after).toBeGreaterThan(20);
    // …while interactive requests get most of the capacity.
    expect(interactiveServed).toBeGreaterThan(served - interactiveServed);
    await expect.poll(backlog, { timeout: 20_000 }).toBe(0);
  });
});

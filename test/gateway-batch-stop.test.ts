/**
 * The batch service's stop, with its I/O faked: it waits for the steps that are running (no
 * polling), hands over the batches it holds, and gives up on a step that hangs once its
 * timeout has passed, leaving that batch's lease to lapse.
 */
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { newBatchRecord } from "../services/gateway/batch-status.ts";
import { createBatchService } from "../services/gateway/batches.ts";
import type { FileStore } from "../services/gateway/files.ts";
import type { Catalog } from "../shared/routing/catalog.ts";

/** An async iterable that yields `items`, then waits until stopped. */
function until<T>(items: T[] = []) {
  let end!: () => void;
  const ended = new Promise<void>((r) => (end = r));
  return {
    stop: () => end(),
    async *[Symbol.asyncIterator]() {
      yield* items;
      await ended;
    },
  };
}

const record = newBatchRecord({ id: "batch_a1", inputFileId: "file-1", metadata: null, tenant: "acme", task: "moderation" }, Date.now());

/** A service whose KV holds one validating batch; `get` is how the step's first read behaves. */
function service(get: () => Promise<unknown>, stopTimeoutMs: number) {
  const updates: string[] = [];
  const warnings: string[] = [];
  const kv = {
    get,
    watch: async () => until([{ key: record.batch.id, operation: "PUT", revision: 1, string: () => JSON.stringify(record) }]),
    // Every compare-and-set loses (another writer got there first), so a step ends after its read.
    update: async (key: string) => {
      updates.push(key);
      throw new Error("wrong last sequence");
    },
  };
  const js = { consumers: { get: async () => ({ consume: async () => until() }) } };
  const logger = pino({ level: "warn" }, { write: (line: string) => void warnings.push((JSON.parse(line) as { msg: string }).msg) });
  const svc = createBatchService({
    js: js as unknown as JetStreamClient,
    jsm: {} as JetStreamManager,
    kv: kv as unknown as KV,
    files: {} as FileStore,
    catalog: () => ({}) as Catalog,
    maxLines: () => 10,
    logger,
    tuning: { tickMs: 5, stopTimeoutMs },
  });
  return { svc, updates, warnings };
}

describe("batch service stop", () => {
  it("waits for a running step to finish", async () => {
    let stepStarted!: () => void;
    const started = new Promise<void>((r) => (stepStarted = r));
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const events: string[] = [];
    const { svc, warnings } = service(async () => {
      stepStarted();
      await gate;
      // Answered a macrotask later: a stop that did not wait for the step would be done by then.
      await new Promise((r) => setTimeout(r, 30));
      events.push("step's read answered");
      return { operation: "PUT", revision: 1, string: () => JSON.stringify(record) };
    }, 10_000);
    await svc.start();
    await started;
    const stopping = svc.stop().then(() => events.push("stopped"));
    release();
    await stopping;
    expect(events[0]).toBe("step's read answered");
    expect(events.at(-1)).toBe("stopped");
    expect(warnings).toEqual([]);
  });

  it("gives up on a step that hangs once stopTimeoutMs has passed, leaving its lease to lapse", async () => {
    let stepStarted!: () => void;
    const started = new Promise<void>((r) => (stepStarted = r));
    const { svc, updates, warnings } = service(() => {
      stepStarted();
      return new Promise(() => {});
    }, 200);
    await svc.start();
    await started;
    const t0 = Date.now();
    await svc.stop();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(190);
    expect(warnings).toEqual(["batch steps still running at stop; their leases will lapse"]);
    // The hanging batch's lease is not released from under its still-running step.
    expect(updates).toEqual([]);
  });
});

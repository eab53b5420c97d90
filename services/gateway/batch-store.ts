/**
 * Batches in the `switchyard-batches` KV bucket, one entry per batch. Every entry read is
 * parsed by `BatchRecordSchema` (an entry that does not parse is logged and treated as
 * absent); every write but the first is compare-and-set on the revision read, so two gateway
 * instances, or an owner and a client's cancel, never overwrite each other.
 */
import type { KV } from "@nats-io/kv";
import type { Logger } from "../../shared/log.ts";
import { BatchRecordSchema, type BatchRecord } from "./batch-schema.ts";

/** A record and the KV revision it was read at (the base of the next compare-and-set). */
export interface BatchEntry {
  readonly record: BatchRecord;
  readonly revision: number;
}

export class BatchStore {
  readonly #kv: KV;
  readonly #logger: Logger;

  constructor(kv: KV, logger: Logger) {
    this.#kv = kv;
    this.#logger = logger;
  }

  async get(id: string): Promise<BatchEntry | undefined> {
    const e = await this.#kv.get(id);
    if (!e || e.operation !== "PUT") return undefined;
    const record = this.#parse(id, e.string());
    return record && { record, revision: e.revision };
  }

  async create(id: string, record: BatchRecord): Promise<BatchEntry> {
    return { record, revision: await this.#kv.create(id, JSON.stringify(record)) };
  }

  /** Compare-and-set: the new entry, or null when someone else wrote first (a cancel, or another instance that took over). */
  async update(id: string, record: BatchRecord, revision: number): Promise<BatchEntry | null> {
    try {
      return { record, revision: await this.#kv.update(id, JSON.stringify(record), revision) };
    } catch (err) {
      this.#logger.debug({ batch: id, err: (err as Error).message }, "batch entry changed under us");
      return null;
    }
  }

  /**
   * Calls `onChange` with every entry as it is now (`undefined`: deleted), then with every
   * change, until `stop`. `done` settles once the watch has ended.
   */
  async watch(onChange: (id: string, record: BatchRecord | undefined) => void): Promise<{ stop(): void; done: Promise<void> }> {
    const watcher = await this.#kv.watch();
    const done = (async () => {
      for await (const e of watcher) onChange(e.key, e.operation === "PUT" ? this.#parse(e.key, e.string()) : undefined);
    })();
    return { stop: () => watcher.stop(), done };
  }

  #parse(id: string, text: string): BatchRecord | undefined {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      value = undefined;
    }
    const parsed = BatchRecordSchema.safeParse(value);
    if (parsed.success) return parsed.data;
    this.#logger.warn({ batch: id, problem: parsed.error.issues[0]?.message }, "ignoring a batch entry that is not a batch record");
    return undefined;
  }
}

/**
 * The one way to call a model: the router, `switchyard verify` and the pricing service's
 * probes all come through here. A setup (the catalogue, a connection pool per provider, each
 * model's target) is built per config; a reload builds a new one, and the old one closes its
 * pools only once the last call that leased it has ended — a reload never cuts a call off.
 */
import { ADAPTERS } from "../adapters/index.ts";
import { BATCH_APIS } from "../adapters/batch-apis.ts";
import type { BatchLine, BatchLineOutcome, BatchStatus } from "../adapters/batch.ts";
import { ProviderError } from "../adapters/errors.ts";
import { createProviderClient, type CallCancel, type ProviderClient } from "../adapters/http.ts";
import { SseDecoder } from "../adapters/convert.ts";
import type { Adapter, Completion, ProviderTarget, StreamDelta, StreamSink } from "../adapters/types.ts";
import type { Config } from "../config/schema.ts";
import type { ChatRequest } from "../contract/job.ts";
import { buildCatalog, type Catalog, type ModelInfo } from "../routing/catalog.ts";

/** One config's view of the providers, held until `release()` (once per lease). */
export interface ProviderLease {
  readonly config: Config;
  readonly catalog: Catalog;
  /**
   * Calls the model and normalises the answer. Rejects with a `ProviderError` whose message
   * carries no API key (provider error bodies sometimes echo the key they refused), or with
   * `CallAbortedError` when `cancel` fired. With `sink`, the provider is asked to stream, and
   * the answer's pieces reach `sink` as they arrive; the Completion is the same as unstreamed.
   */
  call(model: ModelInfo, request: ChatRequest, timeoutMs: number, cancel?: CallCancel, sink?: StreamSink): Promise<Completion>;
  /** The model's provider batch API on the same pool and target; its errors carry no key, as a call's. */
  batchApi(model: ModelInfo): BoundBatchApi;
  release(): void;
}

/** A dialect's `BatchApi` (`shared/adapters/batch.ts`) bound to one model's provider. */
export interface BoundBatchApi {
  submit(lines: readonly BatchLine[], timeoutMs: number): Promise<BatchStatus>;
  poll(id: string, timeoutMs: number): Promise<BatchStatus>;
  results(status: BatchStatus, lines: readonly BatchLine[], timeoutMs: number): Promise<BatchLineOutcome[]>;
  cancel(id: string, timeoutMs: number): Promise<BatchStatus>;
}

export interface ModelCaller {
  /** Leases the current setup; a job keeps the lease it started with until it ends. */
  lease(): ProviderLease;
  /** New leases use this config from now on; the previous setup closes when its last lease is released. */
  reload(config: Config): void;
  /** Closes every setup once its leases are released. */
  close(): Promise<void>;
}

export interface CallerOptions {
  /** Where task pins (SWITCHYARD_PIN_<TASK>) are read. */
  readonly env?: NodeJS.ProcessEnv;
  /** Connections per provider, overriding each provider's `max_concurrency` (probes need two). */
  readonly maxConcurrency?: number;
}

/** Error messages are cut to this length: a provider's whole HTML error page is no use in an attempt. */
const MAX_ERROR_CHARS = 300;

/**
 * A config's catalogue and pools, counted by its leases. The lease is the setup itself (no
 * object per job): a lease is taken and released once per job on the hot path.
 */
class Setup implements ProviderLease {
  readonly config: Config;
  readonly catalog: Catalog;
  readonly #clients = new Map<string, ProviderClient>();
  readonly #targets = new Map<string, ProviderTarget>();
  #leases = 0;
  #retired = false;
  #closed: Promise<void> | undefined;

  constructor(config: Config, opts: CallerOptions) {
    this.config = config;
    this.catalog = buildCatalog(config, opts.env ?? {});
    for (const [name, p] of Object.entries(config.providers)) {
      this.#clients.set(name, createProviderClient({ base_url: p.base_url, max_concurrency: opts.maxConcurrency ?? p.max_concurrency }));
    }
    for (const model of this.catalog.models.values()) {
      this.#targets.set(model.id, { provider: model.provider, upstream: model.upstream, apiKey: config.providers[model.provider]?.api_key });
    }
  }

  lease(): this {
    this.#leases++;
    return this;
  }

  async call(model: ModelInfo, request: ChatRequest, timeoutMs: number, cancel?: CallCancel, sink?: StreamSink): Promise<Completion> {
    const adapter = ADAPTERS[this.config.providers[model.provider]!.dialect];
    const target = this.#targets.get(model.id)!;
    try {
      if (sink !== undefined) return await streamed(this.#clients.get(model.provider)!, adapter, target, model.id, request, timeoutMs, cancel, sink);
      const reply = await this.#clients.get(model.provider)!.send(adapter.toRequest(request, target), timeoutMs, cancel);
      return adapter.fromResponse(reply, request);
    } catch (err) {
      if (err instanceof ProviderError) redact(err, target.apiKey);
      throw err;
    }
  }

  batchApi(model: ModelInfo): BoundBatchApi {
    const api = BATCH_APIS[this.config.providers[model.provider]!.dialect];
    const target = this.#targets.get(model.id)!;
    const client = this.#clients.get(model.provider)!;
    const redacted = <T>(p: Promise<T>): Promise<T> =>
      p.catch((err: unknown) => {
        if (err instanceof ProviderError) redact(err, target.apiKey);
        throw err;
      });
    return {
      submit: (lines, timeoutMs) => redacted(api.submit(client, target, lines, timeoutMs)),
      poll: (id, timeoutMs) => redacted(api.poll(client, target, id, timeoutMs)),
      results: (status, lines, timeoutMs) =>
        redacted(api.results(client, target, status, lines, timeoutMs)).then((outcomes) => {
          for (const o of outcomes) if (o.kind === "errored") redact(o.error, target.apiKey);
          return outcomes;
        }),
      cancel: (id, timeoutMs) => redacted(api.cancel(client, target, id, timeoutMs)),
    };
  }

  release(): void {
    this.#leases--;
    void this.closeIfDone();
  }

  retire(): Promise<void> {
    this.#retired = true;
    return this.closeIfDone();
  }

  /** Closes the pools once retired and no lease is left; the same promise every time after. */
  closeIfDone(): Promise<void> {
    if (!this.#retired || this.#leases > 0) return Promise.resolve();
    return (this.#closed ??= Promise.all([...this.#clients.values()].map((c) => c.close().catch(() => {}))).then(() => {}));
  }
}

export function createModelCaller(config: Config, opts: CallerOptions = {}): ModelCaller {
  let current = new Setup(config, opts);
  const retired = new Set<Setup>();
  return {
    lease: () => current.lease(),
    reload(next) {
      const previous = current;
      current = new Setup(next, opts);
      retired.add(previous);
      void previous.retire();
    },
    async close() {
      retired.add(current);
      await Promise.all([...retired].map((s) => s.retire()));
    },
  };
}

/** A streamed call: events parsed as each piece of the body arrives, their deltas handed on per piece. */
async function streamed(client: ProviderClient, adapter: Adapter, target: ProviderTarget, model: string, request: ChatRequest, timeoutMs: number, cancel: CallCancel | undefined, sink: StreamSink): Promise<Completion> {
  const decoder = new SseDecoder();
  const parser = adapter.streamParser(request);
  const feed = (text: string): number => {
    let out: StreamDelta[] | undefined;
    let quietMs = 0;
    try {
      for (const event of decoder.push(text)) {
        const deltas = parser.push(event);
        if (deltas.length > 0) (out ??= []).push(...deltas);
      }
    } finally {
      // The tokens that came before an error event in the same read still reach the caller; the error still ends the call.
      if (out !== undefined) quietMs = sink.deltas(out, model);
    }
    return quietMs;
  };
  const reply = await client.stream(adapter.toStreamRequest(request, target), timeoutMs, cancel, feed);
  if (reply.status < 200 || reply.status >= 300) return adapter.fromResponse(reply, request);
  // A final event without its blank line (a server closing right after it) still counts.
  feed("\n\n");
  return parser.finish(reply.headers);
}

/** Cuts the message and removes the key from it, in place: the error then goes anywhere safely. */
function redact(err: ProviderError, apiKey: string | undefined): void {
  // The key goes first, so a cut through the middle of it cannot leave half of it behind.
  const message = apiKey && apiKey.length >= 4 ? err.message.split(apiKey).join("[redacted]") : err.message;
  err.message = message.length > MAX_ERROR_CHARS ? `${message.slice(0, MAX_ERROR_CHARS)}…` : message;
}

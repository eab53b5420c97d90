/**
 * The one way to call a model: the router, `switchyard verify` and the pricing service's
 * probes all come through here. A setup (the catalogue, a connection pool per provider, each
 * model's target) is built per config; a reload builds a new one, and the old one closes its
 * pools only once the last call that leased it has ended — a reload never cuts a call off.
 */
import { ADAPTERS } from "../adapters/index.ts";
import { ProviderError } from "../adapters/errors.ts";
import { createProviderClient, type ProviderClient } from "../adapters/http.ts";
import type { Completion, ProviderTarget } from "../adapters/types.ts";
import type { Config } from "../config/schema.ts";
import type { ChatRequest } from "../contract/job.ts";
import { buildCatalog, type Catalog, type ModelInfo } from "../routing/catalog.ts";

/** One config's view of the providers, held until `release()`. */
export interface ProviderLease {
  readonly config: Config;
  readonly catalog: Catalog;
  /**
   * Calls the model and normalises the answer. Rejects with a `ProviderError` whose message
   * carries no API key (provider error bodies sometimes echo the key they refused), or with
   * `CallAbortedError` when `signal` fired.
   */
  call(model: ModelInfo, request: ChatRequest, timeoutMs: number, signal?: AbortSignal): Promise<Completion>;
  release(): void;
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

interface Setup {
  readonly config: Config;
  readonly catalog: Catalog;
  readonly clients: ReadonlyMap<string, ProviderClient>;
  readonly targets: ReadonlyMap<string, ProviderTarget>;
  leases: number;
  retired: boolean;
  closed: Promise<void> | undefined;
}

/** Error messages are cut to this length: a provider's whole HTML error page is no use in an attempt. */
const MAX_ERROR_CHARS = 300;

export function createModelCaller(config: Config, opts: CallerOptions = {}): ModelCaller {
  let current = build(config, opts);
  const retired = new Set<Setup>();

  function closeIfDone(s: Setup): Promise<void> {
    if (!s.retired || s.leases > 0) return Promise.resolve();
    s.closed ??= Promise.all([...s.clients.values()].map((c) => c.close().catch(() => {}))).then(() => void retired.delete(s));
    return s.closed;
  }

  return {
    lease() {
      const s = current;
      s.leases++;
      let released = false;
      return {
        config: s.config,
        catalog: s.catalog,
        async call(model, request, timeoutMs, signal) {
          const dialect = s.config.providers[model.provider]!.dialect;
          const adapter = ADAPTERS[dialect];
          const target = s.targets.get(model.id)!;
          try {
            const reply = await s.clients.get(model.provider)!.send(adapter.toRequest(request, target), timeoutMs, signal);
            return adapter.fromResponse(reply, request);
          } catch (err) {
            if (err instanceof ProviderError) redact(err, target.apiKey);
            throw err;
          }
        },
        release() {
          if (released) return;
          released = true;
          s.leases--;
          void closeIfDone(s);
        },
      };
    },
    reload(next) {
      const previous = current;
      current = build(next, opts);
      previous.retired = true;
      retired.add(previous);
      void closeIfDone(previous);
    },
    async close() {
      current.retired = true;
      retired.add(current);
      await Promise.all([...retired].map(closeIfDone));
    },
  };
}

function build(config: Config, opts: CallerOptions): Setup {
  const catalog = buildCatalog(config, opts.env ?? {});
  const clients = new Map<string, ProviderClient>();
  for (const [name, p] of Object.entries(config.providers)) {
    clients.set(name, createProviderClient({ base_url: p.base_url, max_concurrency: opts.maxConcurrency ?? p.max_concurrency }));
  }
  const targets = new Map<string, ProviderTarget>();
  for (const model of catalog.models.values()) {
    targets.set(model.id, { provider: model.provider, upstream: model.upstream, apiKey: config.providers[model.provider]?.api_key });
  }
  return { config, catalog, clients, targets, leases: 0, retired: false, closed: undefined };
}

/** Cuts the message and removes the key from it, in place: the error then goes anywhere safely. */
function redact(err: ProviderError, apiKey: string | undefined): void {
  // The key goes first, so a cut through the middle of it cannot leave half of it behind.
  const message = apiKey && apiKey.length >= 4 ? err.message.split(apiKey).join("[redacted]") : err.message;
  err.message = message.length > MAX_ERROR_CHARS ? `${message.slice(0, MAX_ERROR_CHARS)}…` : message;
}

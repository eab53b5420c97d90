/**
 * Everything routing derives from one config: the resolved catalog and policies, a provider
 * client per provider, and each model's call target. A config reload builds a new one and
 * swaps it in; jobs already running finish on the one they started with.
 */
import { createProviderClient, type ProviderClient } from "../../shared/adapters/http.ts";
import type { ProviderTarget } from "../../shared/adapters/types.ts";
import type { Config } from "../../shared/config/schema.ts";
import { buildCatalog, type Catalog } from "../../shared/routing/catalog.ts";

export interface RoutingSetup {
  readonly config: Config;
  readonly catalog: Catalog;
  readonly clients: ReadonlyMap<string, ProviderClient>;
  readonly targets: ReadonlyMap<string, ProviderTarget>;
  /** Closes the provider pools once their in-flight calls are done. */
  close(): Promise<void>;
}

export function createRoutingSetup(config: Config, env: NodeJS.ProcessEnv): RoutingSetup {
  const catalog = buildCatalog(config, env);
  const clients = new Map<string, ProviderClient>();
  for (const [name, p] of Object.entries(config.providers)) clients.set(name, createProviderClient(p));
  const targets = new Map<string, ProviderTarget>();
  for (const model of catalog.models.values()) {
    targets.set(model.id, { provider: model.provider, upstream: model.upstream, apiKey: config.providers[model.provider]?.api_key });
  }
  return {
    config,
    catalog,
    clients,
    targets,
    close: async () => {
      await Promise.all([...clients.values()].map((c) => c.close().catch(() => {})));
    },
  };
}

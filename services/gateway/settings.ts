/**
 * What a config gives a gateway instance — its section, the routing catalogue, the key table
 * — built whole from one config and swapped whole when the file changes, so keys, tasks and
 * limits take effect without a restart, like the router's and the pricing service's reloads.
 * An edit that does not load (bad YAML, a schema mistake, a key naming an unknown task) is
 * logged with `file:line:column` and the settings in force stay.
 */
import { gatewayTaskIssues, type GatewayConfig } from "../../shared/config/gateway-schema.ts";
import { loadYaml } from "../../shared/config/load.ts";
import { ConfigSchema, GatewayConfigSchema, type Config } from "../../shared/config/schema.ts";
import { onFileChange } from "../../shared/config/watch.ts";
import { SwitchyardError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import { buildCatalog, type Catalog } from "../../shared/routing/catalog.ts";
import { KeyTable } from "./auth.ts";

export interface GatewaySettings {
  readonly config: Config;
  /** The `gateway:` section, defaults filled in when the config has none. */
  readonly gateway: GatewayConfig;
  readonly catalog: Catalog;
  readonly keys: KeyTable;
  readonly defaultTask: string;
}

/** The config as the gateway reads it: the shared schema plus the tasks its section names (so a mistake there has a line number). */
const GatewayFileSchema = ConfigSchema.superRefine((cfg, ctx) => {
  for (const issue of gatewayTaskIssues(cfg.tasks, cfg.gateway)) ctx.addIssue({ code: "custom", path: [...issue.path], message: issue.message });
});

/** Throws a `config` SwitchyardError when the gateway section names a task that is not configured. */
export function gatewaySettings(config: Config, devKey: string | undefined, env: NodeJS.ProcessEnv = process.env): GatewaySettings {
  const issues = gatewayTaskIssues(config.tasks, config.gateway);
  if (issues.length > 0) throw new SwitchyardError("config", issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("\n"));
  const gateway = config.gateway ?? GatewayConfigSchema.parse({});
  const catalog = buildCatalog(config, env);
  const defaultTask = gateway.default_task ?? Object.keys(config.tasks)[0]!;
  return { config, gateway, catalog, keys: new KeyTable(gateway.keys, defaultTask, devKey), defaultTask };
}

/**
 * Watches `file` and hands each edit that loads to `apply` as new settings; returns the
 * unwatch. `listen` cannot move without a restart: a changed one is reported, not applied.
 */
export function watchGatewaySettings(
  file: string,
  opts: { readonly logger: Logger; readonly devKey: string | undefined; readonly current: () => GatewaySettings; readonly apply: (s: GatewaySettings) => void },
): () => void {
  const { logger } = opts;
  return onFileChange(file, () => {
    let next: GatewaySettings;
    try {
      next = gatewaySettings(loadYaml(file, GatewayFileSchema), opts.devKey);
    } catch (err) {
      logger.error({ file, err: (err as Error).message }, "config edit rejected; the config in force stays");
      return;
    }
    const was = opts.current().gateway;
    if (next.gateway.listen !== was.listen) logger.warn({ listen: next.gateway.listen, serving: was.listen }, "gateway.listen changed: it takes effect on restart");
    opts.apply(next);
    logger.info({ file, keys: next.keys.size, tasks: next.catalog.tasks.size }, "config reloaded");
  });
}

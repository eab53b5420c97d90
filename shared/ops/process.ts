/**
 * A command's ops endpoint: where it listens (the `--ops-listen` flag, else
 * SWITCHYARD_OPS_LISTEN, else `ops.listen`, else none) and the server itself.
 */
import type { Config } from "../config/schema.ts";
import { UsageError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { LISTEN_PATTERN } from "./config-schema.ts";
import { createOps, startOpsServer, type Ops, type OpsServer } from "./server.ts";

export const OPS_LISTEN_ENV = "SWITCHYARD_OPS_LISTEN";

/** The ops `host:port` for a command, or undefined for none. */
export function opsListen(command: string, flag: string | undefined, config: Pick<Config, "ops"> | undefined, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const given = flag ?? (env[OPS_LISTEN_ENV] || undefined);
  if (given !== undefined && !LISTEN_PATTERN.test(given)) {
    throw new UsageError(`${command}: ${flag !== undefined ? "--ops-listen" : OPS_LISTEN_ENV} must be host:port (e.g. 0.0.0.0:9464), got "${given}"`);
  }
  return given ?? config?.ops?.listen;
}

export interface ProcessOps {
  readonly ops: Ops;
  readonly server: OpsServer;
}

/** Metrics and probes for this process, served on `listen`; undefined (nothing recorded) without one. */
export async function startProcessOps(listen: string | undefined, logger: Logger): Promise<ProcessOps | undefined> {
  if (listen === undefined) return undefined;
  const ops = createOps();
  return { ops, server: await startOpsServer(ops, listen, logger) };
}

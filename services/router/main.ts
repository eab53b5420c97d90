import { jetstreamManager } from "@nats-io/jetstream";
import type { Config } from "../../shared/config/schema.ts";
import { connectNats } from "../../shared/nats/connect.ts";
import { provision } from "../../shared/nats/provision.ts";
import type { Logger } from "../../shared/log.ts";
import { createRouter, type Router } from "./worker.ts";

export interface RunningRouter {
  readonly router: Router;
  stop(): Promise<void>;
}

/** Connects, provisions streams and consumer, and starts one router worker. */
export async function startRouter(opts: { natsUrl: string; config: Config; logger: Logger; name?: string }): Promise<RunningRouter> {
  const nc = await connectNats(opts.natsUrl, opts.name ?? "switchyard-router");
  await provision(await jetstreamManager(nc), opts.config);
  const router = createRouter({ nc, config: opts.config, logger: opts.logger });
  const loop = router.run();
  let stopped: Promise<void> | undefined;
  const stop = () =>
    (stopped ??= (async () => {
      await router.stop();
      await loop.catch(() => {});
      await nc.drain().catch(() => {});
    })());
  loop.catch((err: unknown) => {
    opts.logger.error({ err: (err as Error).message }, "router consume loop failed");
    void stop();
  });
  opts.logger.info({ nats: opts.natsUrl, max_in_flight: opts.config.router.max_in_flight }, "router worker started");
  return { router, stop };
}

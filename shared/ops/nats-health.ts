/**
 * A service's view of its NATS connection, for logs and probes: disconnects and reconnects
 * are logged (warn / info) and flip readiness, and the streams and consumers the service
 * cannot work without are checked at start and after every reconnect (a nats-server
 * restarted without its store comes back empty).
 */
import { JetStreamApiCodes, JetStreamApiError, jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "../log.ts";
import type { Probes } from "./probes.ts";

/** What a service needs to find on the server: stream names, and `stream/durable` consumers. */
export interface Required {
  readonly streams: readonly string[];
  readonly consumers?: readonly (readonly [stream: string, durable: string])[];
}

/** Whether a JetStream API error says the stream or consumer does not exist (as opposed to a timeout or an outage). */
export function isNotFound(err: unknown): boolean {
  return err instanceof JetStreamApiError && (err.code === JetStreamApiCodes.StreamNotFound || err.code === JetStreamApiCodes.ConsumerNotFound);
}

/** The required streams and consumers that the server says do not exist; throws on any other failure (the check could not be made). */
export async function missingResources(jsm: JetStreamManager, required: Required): Promise<string[]> {
  const missing: string[] = [];
  const found = async (what: string, check: () => Promise<unknown>) => {
    try {
      await check();
    } catch (err) {
      if (!isNotFound(err)) throw err;
      missing.push(what);
    }
  };
  for (const s of required.streams) await found(`stream ${s}`, () => jsm.streams.info(s));
  for (const [s, d] of required.consumers ?? []) await found(`consumer ${s}/${d}`, () => jsm.consumers.info(s, d));
  return missing;
}

export interface NatsHealthOptions {
  readonly logger: Logger;
  readonly probes?: Probes;
  /** Prefix of this service's probe conditions, e.g. `router-1`. */
  readonly name: string;
  readonly required?: Required;
  /** Between checks while one could not be made or found something missing. @defaultValue 2000 */
  readonly recheckMs?: number;
}

export interface NatsHealth {
  /** Checks the required resources now (at start; also runs after each reconnect). */
  check(): Promise<void>;
  stop(): void;
}

/**
 * Follows `nc.status()` until the connection closes or `stop()`. Readiness conditions set:
 * `<name>:nats` (disconnected, closed) and `<name>:resources` (a required stream or consumer
 * missing, or not yet checked since the last reconnect).
 */
export function watchNatsHealth(nc: NatsConnection, opts: NatsHealthOptions): NatsHealth {
  const { logger, probes, name, required, recheckMs = 2_000 } = opts;
  const natsCondition = `${name}:nats`;
  const resourcesCondition = `${name}:resources`;
  let stopped = false;
  let connected = true;
  let timer: NodeJS.Timeout | undefined;
  let jsm: JetStreamManager | undefined;
  let lastMissing = "";

  async function check(): Promise<void> {
    clearTimeout(timer);
    if (!required || stopped) return;
    let verdict: string | undefined;
    try {
      jsm ??= await jetstreamManager(nc, { checkAPI: false });
      const missing = await missingResources(jsm, required);
      verdict = missing.length > 0 ? `missing ${missing.join(", ")}` : undefined;
      const key = missing.join(",");
      if (key !== lastMissing) {
        if (missing.length > 0) logger.error({ missing }, "required NATS streams or consumers are missing: not ready until they are back");
        else logger.info("required NATS streams and consumers are present again");
        lastMissing = key;
      }
    } catch (err) {
      verdict = `could not check streams and consumers (${(err as Error).message})`;
    }
    if (stopped) return;
    probes?.ready(resourcesCondition, verdict);
    if (verdict !== undefined && connected) {
      timer = setTimeout(() => void check(), recheckMs);
      timer.unref();
    }
  }

  void (async () => {
    for await (const s of nc.status()) {
      if (stopped) break;
      switch (s.type) {
        case "disconnect":
          connected = false;
          probes?.ready(natsCondition, `disconnected from NATS (${s.server})`);
          logger.warn({ server: s.server }, "NATS disconnected; reconnecting");
          break;
        case "reconnect":
          connected = true;
          logger.info({ server: s.server }, "NATS reconnected");
          probes?.ready(natsCondition, undefined);
          if (required) probes?.ready(resourcesCondition, "checking streams and consumers after a reconnect");
          void check();
          break;
        case "ldm":
          logger.warn({ server: s.server }, "NATS server entering lame duck mode; the client will move to another server");
          break;
        case "staleConnection":
          logger.warn("NATS connection stale (no PONG): reconnecting");
          break;
        case "error":
          logger.warn({ err: s.error.message }, "NATS server error");
          break;
        default:
          break;
      }
    }
  })().catch(() => {});
  void nc.closed().then(() => {
    if (!stopped) probes?.ready(natsCondition, "NATS connection closed");
  });

  return {
    check,
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}

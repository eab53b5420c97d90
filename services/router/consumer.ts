/**
 * The router's consumer: pulls jobs from the two lanes' durable consumers into free handler
 * slots, and keeps every held job's hold alive with `working()`. It knows nothing of what a
 * job is: each delivery is handed to `handle` with its hold, and the slot frees when that
 * settles.
 */
import type { Consumer as LaneConsumer, JetStreamClient, JetStreamManager, JsMsg } from "@nats-io/jetstream";
import { CallCancel } from "../../shared/adapters/http.ts";
import type { RouterConfig } from "../../shared/config/schema.ts";
import { names as namesFor, type Names } from "../../shared/contract/subjects.ts";
import type { Logger } from "../../shared/log.ts";
import { isNotFound } from "../../shared/ops/nats-health.ts";
import type { JobTrace } from "./job-trace.ts";
import { laneSlots, pullSize, type Lane, type LaneHeld } from "./lanes.ts";
import type { LaneShares } from "../../shared/config/lanes-schema.ts";

/** One delivered job as the worker holds it. */
export interface Hold {
  readonly m: JsMsg;
  /** When the delivery reached this worker. */
  readonly startedAt: number;
  /** When JetStream last heard this job is being worked on (delivery or `working()`). */
  renewedAt: number;
  /** Fired when the worker stops past its grace period: the job's call is cut off and nothing is published for it. */
  readonly cancel: CallCancel;
  /** The lane the job came on. */
  readonly lane: Lane;
  /** The delivery's spans; set by the worker only when tracing is on. */
  trace?: JobTrace | undefined;
}

/** A lane's durable consumer (or the JOBS stream) stayed missing: the pull loop has failed for good. */
export class PullLoopFailedError extends Error {
  override readonly name = "PullLoopFailedError";
}

export interface ConsumerDeps {
  readonly js: JetStreamClient;
  readonly router: RouterConfig;
  readonly lanes: LaneShares;
  readonly logger: Logger;
  readonly clock: () => number;
  /** Works the job; the slot frees when the promise settles (it must not reject). */
  readonly handle: (hold: Hold) => Promise<void>;
  /** The deployment's stream and durable names. @defaultValue names() (no namespace) */
  readonly names?: Names;
  /**
   * Told when a lane's durable consumer is found missing (`why` set) or present again (`why`
   * undefined), for the readiness probe.
   */
  readonly onMissing?: (lane: Lane, why: string | undefined) => void;
  /**
   * How long a lane's consumer may stay missing before its pull loop fails for good (and
   * `run()` rejects with a PullLoopFailedError): long enough for another worker's or an
   * operator's provisioning to bring it back, and well past a cluster's leader elections
   * (about 6 s measured, NATS-NOTES). @defaultValue 15000
   */
  readonly missingGraceMs?: number;
  /** Told whenever a slot may have freed (a job settled, a pull ended, a slot given back). */
  readonly onCapacity?: () => void;
}

export interface Consumer {
  /** Pulls until `stop()`; resolves once both lanes' loops have ended. */
  run(): Promise<void>;
  /** Stops pulling (a pull in progress ends within its expiry; what it brings is handed back). */
  stop(): void;
  /** The jobs held now. */
  readonly holds: ReadonlySet<Hold>;
  /** Resolves when no job is held, or after `ms`, whichever first. */
  idle(ms: number): Promise<void>;
  /** Stops renewing holds. */
  close(): void;
  /** Takes an interactive slot for a job that came another way (a fast-path request); false when none is free. */
  takeInteractive(): boolean;
  /** Whether takeInteractive would succeed now. */
  interactiveFree(): boolean;
  /** Gives back a slot takeInteractive took. */
  giveBackInteractive(): void;
}

/** Largest single pull; bigger pulls save little and delay the first job of the batch. */
const FETCH_MAX = 256;
/** A pull's lifetime: also the longest a stop waits for the last pull to end. */
const FETCH_EXPIRES_MS = 1_000;
/**
 * An empty or failed pull does not say whether the consumer still exists (a pull to a
 * deleted consumer just expires): after one, it is looked up, at most this often per lane.
 */
const VERIFY_EVERY_MS = 2_000;

export function createConsumer({ js, router, lanes, logger, clock, handle, onMissing, onCapacity, missingGraceMs = 15_000, names = namesFor() }: ConsumerDeps): Consumer {
  const STREAMS = names.streams;
  const holds = new Set<Hold>();
  // Each lane's jobs in flight plus its open pull; a lane with nothing to pull waits in `waiting`.
  const held: LaneHeld = { interactive: 0, batch: 0 };
  const slots = laneSlots(router.max_in_flight, lanes);
  let interactiveBusy = false;
  const waiting: Partial<Record<Lane, () => void>> = {};
  let idleWaiter: (() => void) | undefined;
  let stopping = false;

  // One timer for all jobs: a long provider call must not let ack_wait run out under it.
  const workingEvery = Math.max(250, Math.floor(router.ack_wait / 3));
  const heartbeat = setInterval(() => {
    const now = clock();
    for (const h of holds) {
      // Past ack_wait the job has been redelivered already: renewing now would not undo it.
      if (now - h.renewedAt > router.ack_wait) continue;
      if (now - h.renewedAt >= workingEvery) {
        h.m.working();
        h.renewedAt = now;
      }
    }
  }, workingEvery);
  heartbeat.unref();

  /** Capacity changed: the interactive lane looks first, so a freed slot goes to it before the batch lane. */
  function wake(): void {
    for (const lane of ["interactive", "batch"] as const) {
      const w = waiting[lane];
      waiting[lane] = undefined;
      w?.();
    }
    onCapacity?.();
  }

  // Jobs of each lane being worked (held counts open pulls too), and slots lent to fast-path requests.
  const running: LaneHeld = { interactive: 0, batch: 0 };
  let lent = 0;
  /**
   * Whether a fast-path request may take a slot: under max_in_flight and the interactive cap,
   * counting the jobs being worked rather than open pulls, which hold slots they may never fill
   * (idle, the two lanes' pulls hold them all). A lent slot counts in `held`, so the next pulls
   * shrink by it; in flight may exceed max_in_flight by what open pulls still bring, for at most
   * one pull's expiry.
   */
  const interactiveFree = () => holds.size + lent < slots.max && running.interactive + lent < slots.max - slots.batchReserved;

  function dispatch(m: JsMsg, lane: Lane): void {
    const now = clock();
    const hold: Hold = { m, startedAt: now, renewedAt: now, cancel: new CallCancel(), lane, trace: undefined };
    holds.add(hold);
    running[lane]++;
    void handle(hold).finally(() => {
      holds.delete(hold);
      running[lane]--;
      held[lane]--;
      wake();
      if (holds.size === 0) idleWaiter?.();
    });
  }

  /**
   * One lane's pull loop. Pulls with `fetch` sized to the slots the lane may take (lanes.ts)
   * rather than `consume`'s standing prefetch: no job waits in a client buffer while its
   * ack_wait runs (NATS-NOTES), and on stop the last pull is allowed to end, so no job is
   * left delivered to nobody. A pull's size is held until it ends, so the two lanes together
   * never exceed max_in_flight.
   */
  async function pullLane(lane: Lane, durable: string): Promise<void> {
    let failures = 0;
    let verifiedAt = clock();
    let missingSince: number | undefined;
    let jsm: JetStreamManager | undefined;
    /** Whether the server says the consumer is gone; a lookup that fails otherwise (NATS down) proves nothing. */
    const verify = async (): Promise<void> => {
      const now = clock();
      if (now - verifiedAt < VERIFY_EVERY_MS) return;
      verifiedAt = now;
      let missing = false;
      try {
        jsm ??= await js.jetstreamManager(false);
        await jsm.consumers.info(STREAMS.jobs, durable);
      } catch (err) {
        if (!isNotFound(err)) return;
        missing = true;
      }
      if (!missing) {
        if (missingSince !== undefined) logger.info({ lane, consumer: durable }, "the lane's consumer is back; pulling again");
        missingSince = undefined;
        onMissing?.(lane, undefined);
        return;
      }
      const why = `consumer ${STREAMS.jobs}/${durable} is missing`;
      if (missingSince === undefined) {
        missingSince = now;
        logger.error({ lane, consumer: durable, grace_ms: missingGraceMs }, `${why}; waiting for it to be provisioned again`);
      }
      onMissing?.(lane, why);
      // Re-creating it here would redeliver every job the stream still holds (deliver policy all): start-up provisioning decides, after a restart.
      if (now - missingSince >= missingGraceMs) throw new PullLoopFailedError(`${why} (for ${now - missingSince} ms); the worker cannot pull jobs`);
    };
    // Gone already at start (deleted between provisioning and here): the same grace as later on.
    let consumer: LaneConsumer | undefined;
    while (consumer === undefined && !stopping) {
      try {
        consumer = await js.consumers.get(STREAMS.jobs, durable);
      } catch (err) {
        if (!isNotFound(err)) throw err;
        verifiedAt = -Infinity;
        await verify();
        await new Promise((r) => setTimeout(r, VERIFY_EVERY_MS));
      }
    }
    if (consumer === undefined) return;
    while (!stopping) {
      const size = Math.min(FETCH_MAX, pullSize(lane, slots, held, interactiveBusy));
      if (size <= 0) {
        await new Promise<void>((r) => (waiting[lane] = r));
        continue;
      }
      held[lane] += size;
      let got = 0;
      let backoffMs = 0;
      try {
        const batch = await consumer.fetch({ max_messages: size, expires: FETCH_EXPIRES_MS });
        for await (const m of batch) {
          got++;
          if (stopping) {
            m.nak();
            held[lane]--;
          } else dispatch(m, lane);
        }
        failures = 0;
      } catch (err) {
        if (stopping) break;
        failures++;
        logger.warn({ err: (err as Error).message, failures, lane }, "pulling jobs failed; retrying");
        backoffMs = Math.min(5_000, 100 * 2 ** failures);
      } finally {
        held[lane] -= size - got;
        if (lane === "interactive") interactiveBusy = got === size;
        wake();
      }
      if (got > 0) verifiedAt = clock();
      else if (!stopping) await verify();
      if (backoffMs > 0) await new Promise((r) => setTimeout(r, backoffMs));
    }
  }

  return {
    holds,
    async run() {
      await Promise.all([pullLane("interactive", names.interactiveDurable), pullLane("batch", names.routerDurable)]);
    },
    stop() {
      stopping = true;
      wake();
    },
    async idle(ms) {
      if (holds.size === 0) return;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([new Promise<void>((r) => (idleWaiter = r)), new Promise<void>((r) => (timer = setTimeout(r, ms)))]);
      clearTimeout(timer);
    },
    close() {
      clearInterval(heartbeat);
    },
    interactiveFree,
    takeInteractive() {
      if (!interactiveFree()) return false;
      lent++;
      held.interactive++;
      return true;
    },
    giveBackInteractive() {
      lent--;
      held.interactive--;
      wake();
    },
  };
}

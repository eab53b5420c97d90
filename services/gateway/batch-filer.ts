/**
 * Files batch jobs' outcomes: every gateway instance reads RESULTS and DLQ through one shared
 * durable consumer per stream (`gateway-batches`, so each outcome reaches one instance) and
 * publishes each batch job's result or dead letter as a line of its batch in BATCH_LINES
 * (`batchlines.<batch>.ok|err`, `Nats-Msg-Id` = the job id, so a redelivered outcome is
 * filed once). Outcomes of other producers' jobs are acknowledged and skipped unparsed.
 */
import type { JetStreamClient, JsMsg } from "@nats-io/jetstream";
import { z } from "zod";
import { names as namesFor, type Names } from "../../shared/contract/subjects.ts";
import type { Logger } from "../../shared/log.ts";
import { failedLine, okLine } from "./batch-lines.ts";
import { BATCH_ID_PATTERN } from "./batch-schema.ts";
import { OutcomeSchema } from "./replies.ts";
import { boundedWindow } from "../../shared/concurrency.ts";
import { parseJsonOrUndefined } from "../../shared/json.ts";
import { atTurnEnd } from "../../shared/nats/turn-end.ts";

const DEFAULT_NAMES = namesFor();

export const linesSubject = (batchId: string, kind: "ok" | "err" | "seqs", names: Names = DEFAULT_NAMES) => `${names.batchLinesSubject}.${batchId}.${kind}`;

/** What a batch line's job carries in `metadata` (besides the tenant). */
const BatchJobMetadataSchema = z.object({ batch_id: z.string().regex(BATCH_ID_PATTERN), custom_id: z.string() });

export interface OutcomeFiler {
  /** Stops taking outcomes and resolves once those being filed are filed (or handed back). */
  stop(): Promise<void>;
}

export interface OutcomeFilerDeps {
  readonly js: JetStreamClient;
  readonly logger: Logger;
  /** Outcomes filed at once per stream. */
  readonly window: number;
  /** The deployment's names. @defaultValue names() (no namespace) */
  readonly names?: Names;
  /** Settles a background response (`resp_…`) from its job's outcome (`responses.ts`); throws to have it redelivered. */
  readonly fileResponse?: (outcomeText: string) => Promise<void>;
}

/**
 * Every outcome in RESULTS and DLQ comes here, most of them not the gateway's (a fast-path
 * request's record, another producer's job): their acks leave together, one socket write per
 * turn rather than one per outcome (turn-end.ts).
 */
const ack = (m: JsMsg) =>
  atTurnEnd(() => {
    try {
      m.ack();
    } catch {
      // A closed connection: the outcome comes again and is skipped or filed again (by its Nats-Msg-Id, once).
    }
  });

export async function startOutcomeFiler(deps: OutcomeFilerDeps): Promise<OutcomeFiler> {
  const { js, logger } = deps;
  const n = deps.names ?? DEFAULT_NAMES;
  const streams = [n.streams.results, n.streams.dlq];
  const loops = await Promise.all(
    streams.map(async (stream) => {
      const messages = await (await js.consumers.get(stream, n.gatewayBatchDurable)).consume({ max_messages: 512 });
      const done = (async () => {
        const window = boundedWindow(deps.window);
        for await (const m of messages) {
          // One outcome that cannot be filed must not stop the filer: it stays unacked and comes again.
          await window.add(file(m).catch((err: unknown) => logger.warn({ stream, err: (err as Error).message }, "filing a batch outcome failed; it will be redelivered")));
        }
        await window.drain();
      })().catch((err: unknown) => logger.error({ stream, err: (err as Error).message }, "batch outcome filer stopped"));
      return { stop: () => void messages.stop(), done };
    }),
  );

  async function file(m: JsMsg): Promise<void> {
    const msgId = m.headers?.get("Nats-Msg-Id") ?? "";
    // Background responses ride this consumer too: one durable reads every outcome once, for whatever the gateway waits on.
    if (deps.fileResponse && msgId.startsWith("resp_")) {
      await deps.fileResponse(m.string()).then(
        () => ack(m),
        (err: unknown) => {
          logger.warn({ err: (err as Error).message }, "settling a background response failed; it will be redelivered");
          m.nak(1_000);
        },
      );
      return;
    }
    // Batch jobs' ids start with their batch's id: anything else is not a batch line.
    if (!msgId.startsWith("batch_")) {
      ack(m);
      return;
    }
    const outcome = OutcomeSchema.safeParse(parseJsonOrUndefined(m.string()));
    const meta = outcome.success ? BatchJobMetadataSchema.safeParse(outcome.data.metadata) : undefined;
    if (!outcome.success || !meta?.success) {
      // Redelivering it would not make it parse. Skipped, as a foreign job's would be; were it
      // really a batch line, its batch waits for it until its window ends and reports it expired.
      logger.warn({ subject: m.subject, seq: m.seq, problem: outcome.success ? "no batch_id/custom_id in metadata" : outcome.error.issues[0]?.message }, "skipping an outcome that is not a batch line");
      ack(m);
      return;
    }
    const o = outcome.data;
    const { batch_id: batchId, custom_id: customId } = meta.data;
    try {
      const line = o.status === "succeeded" ? okLine(o, customId) : failedLine(o, customId);
      await js.publish(linesSubject(batchId, o.status === "succeeded" ? "ok" : "err", n), line, { msgID: o.id });
      ack(m);
    } catch (err) {
      logger.warn({ err: (err as Error).message }, "filing a batch outcome failed; it will be redelivered");
      m.nak(1_000);
    }
  }

  return {
    async stop() {
      for (const l of loops) l.stop();
      await Promise.all(loops.map((l) => l.done));
    },
  };
}

/**
 * This gateway instance's reply subject. Interactive jobs carry it in the Switchyard-Reply-To
 * header; the router publishes each one's result or dead letter there after storing it. So
 * every instance hears only its own requests' outcomes, and instances scale out freely.
 */
import { nuid, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { z } from "zod";
import { DeadLetterSchema, ResultSchema } from "../../shared/contract/job.ts";
import { names as namesFor, type Names } from "../../shared/contract/subjects.ts";
import type { Logger } from "../../shared/log.ts";
import { parseJsonOrUndefined } from "../../shared/json.ts";

/** A job's outcome as the router stores and relays it: a result or a dead letter (wire contract v1). */
export const OutcomeSchema = z.discriminatedUnion("status", [ResultSchema, DeadLetterSchema]);
export type Outcome = z.output<typeof OutcomeSchema>;

export interface ReplyInbox {
  readonly subject: string;
  /** Resolves to the job's outcome, or undefined once `timeoutMs` has passed. Call before publishing the job. */
  wait(jobId: string, timeoutMs: number): Promise<Outcome | undefined>;
  /** Gives up waiting (the job could not be published). */
  cancel(jobId: string): void;
  close(): void;
}

export function createReplyInbox(nc: NatsConnection, logger: Logger, names: Names = namesFor()): ReplyInbox {
  const subject = `${names.replyPrefix}${nuid.next()}`;
  const pending = new Map<string, (o: Outcome | undefined) => void>();
  const sub: Subscription = nc.subscribe(subject, {
    callback: (err, msg) => {
      if (err) {
        logger.error({ err: err.message }, "reply subscription failed");
        return;
      }
      const parsed = OutcomeSchema.safeParse(parseJsonOrUndefined(msg.string()));
      if (!parsed.success) {
        logger.warn({ problem: parsed.error.issues[0]?.message }, "ignoring a reply that is not a job outcome");
        return;
      }
      const outcome = parsed.data;
      // A redelivered job's repeated outcome, or one whose caller gave up: nobody waits for it.
      pending.get(outcome.id)?.(outcome);
    },
  });
  return {
    subject,
    wait(jobId, timeoutMs) {
      return new Promise((resolve) => {
        const timer = setTimeout(() => settle(undefined), timeoutMs);
        const settle = (o: Outcome | undefined) => {
          clearTimeout(timer);
          pending.delete(jobId);
          resolve(o);
        };
        pending.set(jobId, settle);
      });
    },
    cancel(jobId) {
      pending.get(jobId)?.(undefined);
    },
    close() {
      sub.unsubscribe();
      for (const settle of [...pending.values()]) settle(undefined);
    },
  };
}

/**
 * One delivery's spans, made only when tracing is on (the worker holds `undefined` otherwise):
 *
 * - `job <task>` (CONSUMER): from the job's publish to its outcome, the parent of the rest; a
 *   child of the producer's span when the job message carries a `traceparent` header.
 * - `queue wait` (INTERNAL): publish → delivery to this worker.
 * - `chat <model>` (CLIENT): one provider attempt, with the GenAI semantic conventions'
 *   attributes, cost and the attempt's outcome; error status when it failed.
 * - `publish <subject>` (PRODUCER): storing the outcome in RESULTS or DLQ.
 */
import type { JsMsg } from "@nats-io/jetstream";
import type { MsgHdrs } from "@nats-io/transport-node";
import type { Completion } from "../../shared/adapters/types.ts";
import type { AttemptOutcome } from "../../shared/contract/job.ts";
import type { ModelInfo } from "../../shared/routing/catalog.ts";
import { failSpan, KIND, STATUS_ERROR, TRACEPARENT, TRACESTATE, type Context, type Span, type Tracing } from "../../shared/ops/tracing.ts";

/** Where a job came from, as its span describes it: a JOBS message, or a fast-path request (no stream sequence, no queue). */
export interface JobOrigin {
  readonly subject: string;
  readonly headers: MsgHdrs | undefined;
  /** When the job was published (epoch ms); for a request, when it reached the worker. */
  readonly publishedAt: number;
  readonly deliveryCount: number;
  readonly seq: number | undefined;
}

export function originOf(m: JsMsg): JobOrigin {
  return { subject: m.subject, headers: m.headers, publishedAt: m.info.timestampNanos / 1e6, deliveryCount: m.info.deliveryCount, seq: m.seq };
}

export class JobTrace {
  readonly #tracing: Tracing;
  readonly #span: Span;
  readonly #ctx: Context;

  constructor(tracing: Tracing, m: JobOrigin, startedAt: number) {
    this.#tracing = tracing;
    const traceparent = m.headers?.get(TRACEPARENT);
    const parent = tracing.extract(traceparent, traceparent ? m.headers?.get(TRACESTATE) : undefined);
    const publishedAt = m.publishedAt;
    const task = m.subject.slice(m.subject.lastIndexOf(".") + 1);
    this.#span = tracing.tracer.startSpan(
      `job ${task}`,
      {
        kind: KIND.consumer,
        startTime: Math.min(publishedAt, startedAt),
        attributes: {
          "messaging.system": "nats",
          "messaging.operation.type": "process",
          "messaging.destination.name": m.subject,
          "messaging.message.id": m.headers?.get("Nats-Msg-Id") || undefined,
          "switchyard.task": task,
          "switchyard.delivery_count": m.deliveryCount,
          "switchyard.stream_sequence": m.seq,
        },
      },
      parent,
    );
    this.#ctx = tracing.withSpan(parent, this.#span);
    tracing.tracer.startSpan("queue wait", { startTime: Math.min(publishedAt, startedAt), attributes: { "switchyard.delivery_count": m.deliveryCount } }, this.#ctx).end(startedAt);
  }

  /** The job as intake read it. */
  identify(id: string, task: string): void {
    this.#span.setAttribute("switchyard.job.id", id);
    this.#span.setAttribute("switchyard.task", task);
  }

  /** The delivery ended without an outcome of its own (`redelivered`, `hold_lapsed`, `stopping`). */
  outcome(outcome: string): void {
    this.#span.setAttribute("switchyard.job.outcome", outcome);
  }

  /** A provider attempt starting now. */
  attempt(model: ModelInfo, tier: number): AttemptSpan {
    return new AttemptSpan(
      this.#tracing.tracer.startSpan(
        `chat ${model.upstream}`,
        {
          kind: KIND.client,
          attributes: {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": model.provider,
            "gen_ai.system": model.provider,
            "gen_ai.request.model": model.upstream,
            "switchyard.model": model.id,
            "switchyard.attempt.tier": tier,
          },
        },
        this.#ctx,
      ),
    );
  }

  /** Storing the outcome; end it with `published`. */
  publish(kind: "result" | "dead_letter", subject: string, id: string, reason: string | undefined): Span {
    this.#span.setAttribute("switchyard.job.id", id);
    this.#span.setAttribute("switchyard.job.outcome", kind);
    if (reason !== undefined) this.#span.setAttribute("switchyard.dlq.reason", reason);
    return this.#tracing.tracer.startSpan(
      `publish ${subject}`,
      { kind: KIND.producer, attributes: { "messaging.system": "nats", "messaging.operation.type": "send", "messaging.destination.name": subject, "messaging.message.id": id } },
      this.#ctx,
    );
  }

  /** After the job's handling settled. */
  end(): void {
    this.#span.end();
  }
}

export class AttemptSpan {
  readonly #span: Span;
  constructor(span: Span) {
    this.#span = span;
  }

  /** The provider answered; `outcome` is the answer's verdict (`ok`, `invalid_output`, `timeout`). */
  answered(completion: Completion, outcome: AttemptOutcome, costUsd: number): void {
    const s = this.#span;
    const model = (completion.response as { model?: unknown }).model;
    if (typeof model === "string") s.setAttribute("gen_ai.response.model", model);
    const id = (completion.response as { id?: unknown }).id;
    if (typeof id === "string") s.setAttribute("gen_ai.response.id", id);
    const finish = completion.response.choices[0]?.finish_reason;
    if (typeof finish === "string") s.setAttribute("gen_ai.response.finish_reasons", [finish]);
    s.setAttribute("gen_ai.usage.input_tokens", completion.usage.prompt_tokens);
    s.setAttribute("gen_ai.usage.output_tokens", completion.usage.completion_tokens);
    s.setAttribute("switchyard.cost_usd", costUsd);
    s.setAttribute("switchyard.attempt.outcome", outcome);
    s.setAttribute("http.response.status_code", 200);
    if (outcome !== "ok") s.setStatus({ code: STATUS_ERROR, message: outcome === "invalid_output" ? "the answer failed the task's output check" : "answered after the job's deadline" });
    if (outcome !== "ok") s.setAttribute("error.type", outcome);
    s.end();
  }

  /** The call failed (`kind` is the attempt outcome: rate_limited, unavailable, …). */
  failed(kind: string, status: number | null, err: unknown): void {
    this.#span.setAttribute("switchyard.attempt.outcome", kind);
    if (status !== null) this.#span.setAttribute("http.response.status_code", status);
    failSpan(this.#span, err, kind);
    this.#span.end();
  }

  /** A stop cut the call off. */
  aborted(): void {
    this.#span.setAttribute("switchyard.attempt.outcome", "aborted");
    this.#span.end();
  }
}

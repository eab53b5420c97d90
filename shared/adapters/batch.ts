/**
 * The batch-API contract: OpenAI's files + batches, Anthropic's Message Batches and Gemini's
 * batch mode take many chat requests at once and answer within hours at about half price.
 * One file per dialect (`openai-batch.ts`, `anthropic-batch.ts`, `gemini-batch.ts`) holds pure
 * request-out / reply-in functions and thin I/O on top of `http.ts`; each line's answer goes
 * through the dialect's own chat `fromResponse`, so its content and usage come out exactly as
 * a live call's would.
 */
import type { z } from "zod";
import type { ChatRequest } from "../contract/job.ts";
import { parseJsonOrUndefined } from "../json.ts";
import type { ProviderClient } from "./http.ts";
import { BadRequestError, ProviderError } from "./errors.ts";
import type { Completion, Dialect, HttpCall, HttpReply, ProviderTarget } from "./types.ts";

/** One request of a batch. `customId` names it in the results (each API's `custom_id` or `metadata.key`). */
export interface BatchLine {
  readonly customId: string;
  readonly request: ChatRequest;
}

/**
 * A batch's progress in OpenAI's vocabulary, which the other two map into: `validating`
 * (accepted, not started), `in_progress`, `finalizing` (all lines done, results being written),
 * then one final state. `completed`, `expired` and `cancelled` batches have per-line results
 * (an expired or cancelled batch's unfinished lines come back `expired` / `cancelled`); a
 * `failed` batch has none: every line needs another path.
 */
export const BATCH_STATES = ["validating", "in_progress", "finalizing", "completed", "failed", "expired", "cancelling", "cancelled"] as const;
export type BatchState = (typeof BATCH_STATES)[number];

const FINAL: ReadonlySet<BatchState> = new Set(["completed", "failed", "expired", "cancelled"]);

/** The batch will change no more: poll no longer. */
export function isBatchFinal(state: BatchState): boolean {
  return FINAL.has(state);
}

/**
 * Lines by outcome so far. OpenAI counts only `completed` and `failed` while a batch runs, so
 * its expired and cancelled lines show under `errored` until the results are read.
 */
export interface BatchCounts {
  readonly total: number;
  readonly processing: number;
  readonly succeeded: number;
  readonly errored: number;
  readonly expired: number;
  readonly cancelled: number;
}

/** Where the per-line results are read once the batch is final. */
export type BatchResultsLocation =
  /** OpenAI: successes in one file, failures (and expired/cancelled lines) in another; either may be absent. */
  | { readonly kind: "files"; readonly outputFileId: string | undefined; readonly errorFileId: string | undefined }
  /** Anthropic: a JSONL download at `results_url`. */
  | { readonly kind: "url"; readonly url: string }
  /** Gemini: the finished operation carries the responses itself. */
  | { readonly kind: "inline" };

export interface BatchStatus {
  /** The provider's id: `batch_…`, `msgbatch_…`, or Gemini's `batches/…` resource name. */
  readonly id: string;
  readonly state: BatchState;
  readonly counts: BatchCounts;
  /** Set once results can be read (a final state other than `failed`). */
  readonly results: BatchResultsLocation | undefined;
  /** Why a `failed` batch failed, as the provider words it. */
  readonly failure: string | undefined;
}

/**
 * One line's outcome, exactly one per submitted line: its completion, the typed error a live
 * call would have thrown for the same answer, or the batch ended before the line ran.
 */
export type BatchLineOutcome =
  | { readonly customId: string; readonly kind: "completed"; readonly completion: Completion }
  | { readonly customId: string; readonly kind: "errored"; readonly error: ProviderError }
  | { readonly customId: string; readonly kind: "expired" }
  | { readonly customId: string; readonly kind: "cancelled" };

/**
 * A batch API's I/O, one per dialect. Every method throws the dialect's `ProviderError` for a
 * refused or failed call, as a chat call would.
 */
export interface BatchApi {
  readonly dialect: Dialect;
  /** Submits the lines as one batch (OpenAI: uploads the file first); all lines go to `target`'s model. */
  submit(client: ProviderClient, target: ProviderTarget, lines: readonly BatchLine[], timeoutMs: number): Promise<BatchStatus>;
  poll(client: ProviderClient, target: ProviderTarget, id: string, timeoutMs: number): Promise<BatchStatus>;
  /** The outcome of every submitted line of a final batch, in `lines` order. */
  results(client: ProviderClient, target: ProviderTarget, status: BatchStatus, lines: readonly BatchLine[], timeoutMs: number): Promise<BatchLineOutcome[]>;
  /** Asks the provider to stop; lines already answered keep their answers. */
  cancel(client: ProviderClient, target: ProviderTarget, id: string, timeoutMs: number): Promise<BatchStatus>;
}

/**
 * Result files are documented up to 200 MB (OpenAI) and a batch has up to 100,000 lines
 * (Anthropic): far above the 8 MiB a chat reply may have.
 */
export const MAX_BATCH_RESULT_BYTES = 256 * 1024 * 1024;

/**
 * The outcomes in `lines` order, one per line: a line the provider's results do not mention
 * is `expired` when the batch expired, `cancelled` when it was cancelled, and otherwise an
 * error (the provider lost it), so a job never waits on a line that will not come.
 */
export function outcomesInOrder(
  lines: readonly BatchLine[],
  found: ReadonlyMap<string, BatchLineOutcome>,
  state: BatchState,
  lost: (customId: string) => ProviderError,
): BatchLineOutcome[] {
  return lines.map((line): BatchLineOutcome => {
    const outcome = found.get(line.customId);
    if (outcome) return outcome;
    if (state === "expired") return { customId: line.customId, kind: "expired" };
    if (state === "cancelled") return { customId: line.customId, kind: "cancelled" };
    return { customId: line.customId, kind: "errored", error: lost(line.customId) };
  });
}

/**
 * A line's answer through the dialect's chat parser: a completion, or the error it throws
 * for the same reply on a live call (a non-2xx status, a malformed body, an unusable answer).
 */
export function lineOutcome(customId: string, reply: HttpReply, request: ChatRequest, fromResponse: (reply: HttpReply, request: ChatRequest) => Completion): BatchLineOutcome {
  try {
    return { customId, kind: "completed", completion: fromResponse(reply, request) };
  } catch (err) {
    if (err instanceof ProviderError) return { customId, kind: "errored", error: err };
    throw err;
  }
}

/**
 * Throws the dialect's typed error for a non-2xx reply of a batch endpoint. Those endpoints
 * answer errors in the same body shape as the chat endpoint, so the chat parser's error branch
 * reads them (it never looks at the request on that branch).
 */
export function throwIfFailed(reply: HttpReply, fromResponse: (reply: HttpReply, request: ChatRequest) => Completion): void {
  if (reply.status >= 200 && reply.status < 300) return;
  fromResponse(reply, NO_REQUEST);
}

const NO_REQUEST: ChatRequest = { messages: [] } as unknown as ChatRequest;

/**
 * A line's request as the live call's JSON body. A request the dialect cannot express refuses
 * the whole batch with a `BadRequestError` naming the line, so the caller can take that job
 * out (and serve it elsewhere) and submit the rest.
 */
export function lineBody(line: BatchLine, target: ProviderTarget, toRequest: (request: ChatRequest, target: ProviderTarget) => HttpCall): unknown {
  try {
    return JSON.parse(toRequest(line.request, target).body);
  } catch (err) {
    if (err instanceof BadRequestError) throw new BadRequestError(`line ${JSON.stringify(line.customId)}: ${err.message}`, { contextLength: err.contextLength });
    throw err;
  }
}

/** Lines of a JSONL body, blank ones skipped. */
export function jsonlLines(body: string): string[] {
  return body.split("\n").filter((l) => l.trim() !== "");
}

/** A result file's line read as `schema`; undefined when it is not JSON or not that shape: it names no custom id, so its line is reported lost. */
export function parseJsonLine<S extends z.ZodType>(raw: string, schema: S): z.output<S> | undefined {
  const parsed = schema.safeParse(parseJsonOrUndefined(raw));
  return parsed.success ? parsed.data : undefined;
}

/** Batch counts arrive as numbers, or (Gemini's int64) as strings. */
export function count(v: number | string | undefined): number {
  const n = typeof v === "string" ? Number(v) : (v ?? 0);
  return Number.isFinite(n) && n >= 0 ? n : 0;
}

/** Refuses a batch whose custom ids repeat: its results could not be told apart. */
export function checkLines(lines: readonly BatchLine[], pattern: RegExp, dialect: string, refuse: (message: string) => Error): void {
  if (lines.length === 0) throw refuse(`a ${dialect} batch needs at least one line`);
  const seen = new Set<string>();
  for (const { customId } of lines) {
    if (!pattern.test(customId)) throw refuse(`custom id ${JSON.stringify(customId)} does not match ${pattern} (the ${dialect} batch API's rule)`);
    if (seen.has(customId)) throw refuse(`custom id ${JSON.stringify(customId)} appears twice in one batch`);
    seen.add(customId);
  }
}

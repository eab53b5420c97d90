/**
 * Gemini's batch mode with inlined requests: `POST /models/{model}:batchGenerateContent` with
 * `{batch: {displayName, inputConfig: {requests: {requests: [{request, metadata: {key}}]}}}}`
 * answers a long-running operation named `batches/{id}`; `GET /batches/{id}` polls it, and the
 * finished operation carries the responses inline, in request order. Paths are relative to
 * the provider's base URL (`https://generativelanguage.googleapis.com/v1beta`).
 */
import { z } from "zod";
import type { ChatRequest } from "../contract/job.ts";
import {
  checkLines,
  count,
  lineBody,
  lineOutcome,
  MAX_BATCH_RESULT_BYTES,
  outcomesInOrder,
  throwIfFailed,
  type BatchApi,
  type BatchLine,
  type BatchLineOutcome,
  type BatchState,
  type BatchStatus,
} from "./batch.ts";
import { parseReply } from "./convert.ts";
import { BadRequestError, MalformedResponseError } from "./errors.ts";
import { fromResponse, toRequest } from "./gemini.ts";
import type { HttpCall, HttpReply, ProviderTarget } from "./types.ts";

/** A key is echoed in `metadata`; kept to the characters every JSON and URL handles plainly. */
const KEY = /^[a-zA-Z0-9_.:-]{1,128}$/;
const BATCH_NAME = /^batches\/[^/?#]+$/;

/** `BatchState` without its prefix (Vertex spells the same states `JOB_STATE_…`). */
const STATES: Readonly<Record<string, BatchState>> = {
  UNSPECIFIED: "validating",
  PENDING: "validating",
  RUNNING: "in_progress",
  SUCCEEDED: "completed",
  FAILED: "failed",
  CANCELLED: "cancelled",
  EXPIRED: "expired",
};

/** google.rpc.Code → the HTTP status and name the same failure has on a live call. */
const RPC_CODES: Readonly<Record<number, readonly [number, string]>> = {
  1: [499, "CANCELLED"],
  2: [500, "UNKNOWN"],
  3: [400, "INVALID_ARGUMENT"],
  4: [504, "DEADLINE_EXCEEDED"],
  5: [404, "NOT_FOUND"],
  7: [403, "PERMISSION_DENIED"],
  8: [429, "RESOURCE_EXHAUSTED"],
  9: [400, "FAILED_PRECONDITION"],
  13: [500, "INTERNAL"],
  14: [503, "UNAVAILABLE"],
  16: [401, "UNAUTHENTICATED"],
};

const StatusSchema = z.looseObject({ code: z.number().optional(), message: z.string().optional(), details: z.array(z.unknown()).optional() });

const InlinedResponsesSchema = z.looseObject({
  inlinedResponses: z
    .array(z.looseObject({ response: z.unknown().optional(), error: StatusSchema.optional(), metadata: z.looseObject({ key: z.unknown().optional() }).optional() }))
    .optional(),
});

const Int64 = z.union([z.number(), z.string()]).optional();

/** Only what Switchyard reads of the operation and its GenerateContentBatch metadata. */
const OperationSchema = z.looseObject({
  name: z.string(),
  done: z.boolean().optional(),
  error: StatusSchema.optional(),
  metadata: z
    .looseObject({
      state: z.string().optional(),
      batchStats: z
        .looseObject({ requestCount: Int64, successfulRequestCount: Int64, failedRequestCount: Int64, pendingRequestCount: Int64 })
        .optional(),
      output: z.looseObject({ inlinedResponses: InlinedResponsesSchema.optional() }).optional(),
    })
    .optional(),
  response: z.looseObject({ inlinedResponses: InlinedResponsesSchema.optional() }).optional(),
});
type Operation = z.output<typeof OperationSchema>;

function headers(target: ProviderTarget, json: boolean): Record<string, string> {
  const h: Record<string, string> = json ? { "content-type": "application/json" } : {};
  if (target.apiKey) h["x-goog-api-key"] = target.apiKey;
  return h;
}

function batchPath(name: string): string {
  if (!BATCH_NAME.test(name)) throw new BadRequestError(`${JSON.stringify(name)} is no Gemini batch name (batches/{id})`);
  return `/${name}`;
}

/** Each inlined request is the live call's generateContent body; the key rides in `metadata`. */
export function toSubmitCall(lines: readonly BatchLine[], target: ProviderTarget): HttpCall {
  checkLines(lines, KEY, "gemini", (m) => new BadRequestError(m));
  const requests = lines.map((l) => ({ request: lineBody(l, target, toRequest), metadata: { key: l.customId } }));
  return {
    path: `/models/${encodeURIComponent(target.upstream)}:batchGenerateContent`,
    headers: headers(target, true),
    body: JSON.stringify({ batch: { displayName: `switchyard-${lines[0]!.customId}-${lines.length}`, inputConfig: { requests: { requests } } } }),
  };
}

export function toPollCall(name: string, target: ProviderTarget): HttpCall {
  return { method: "GET", path: batchPath(name), headers: headers(target, false), body: "", maxResponseBytes: MAX_BATCH_RESULT_BYTES };
}

/** Answers an empty object; the state is read by polling after it. */
export function toCancelCall(name: string, target: ProviderTarget): HttpCall {
  return { path: `${batchPath(name)}:cancel`, headers: headers(target, false), body: "" };
}

function readOperation(reply: HttpReply): Operation {
  throwIfFailed(reply, fromResponse);
  return parseReply(reply, OperationSchema, "a Gemini batch operation");
}

/** The operation (from create or get) as the normalised status. */
export function fromOperationReply(reply: HttpReply): BatchStatus {
  return statusOf(readOperation(reply));
}

function statusOf(op: Operation): BatchStatus {
  const raw = op.metadata?.state?.replace(/^(BATCH|JOB)_STATE_/, "");
  // A state this code does not know yet is treated as still running: polling goes on, and the
  // deadline fallback bounds how long. A done operation with an error failed whatever its state says.
  let state: BatchState = op.error ? "failed" : ((raw === undefined ? undefined : STATES[raw]) ?? "in_progress");
  if (op.done && state !== "failed" && !(state === "completed" || state === "expired" || state === "cancelled")) state = "completed";
  const s = op.metadata?.batchStats;
  const total = count(s?.requestCount);
  const succeeded = count(s?.successfulRequestCount);
  const errored = count(s?.failedRequestCount);
  const processing = count(s?.pendingRequestCount);
  const rest = Math.max(0, total - succeeded - errored - processing);
  return {
    id: op.name,
    state,
    counts: {
      total,
      processing,
      succeeded,
      errored,
      expired: state === "expired" ? rest : 0,
      cancelled: state === "cancelled" ? rest : 0,
    },
    results: state === "completed" || state === "expired" || state === "cancelled" ? { kind: "inline" } : undefined,
    failure: state === "failed" ? (op.error?.message ?? "the batch failed without a reason") : undefined,
  };
}

/**
 * The lines' outcomes from the finished operation. Responses are matched by `metadata.key`,
 * and by position when the API leaves the metadata out (it is documented to keep request
 * order, and some releases have not echoed the metadata); position only when every line has
 * its response, so a short list is never misattributed.
 */
export function fromOperationResults(reply: HttpReply, lines: readonly BatchLine[]): BatchLineOutcome[] {
  const op = readOperation(reply);
  const state = statusOf(op).state;
  const entries = op.response?.inlinedResponses?.inlinedResponses ?? op.metadata?.output?.inlinedResponses?.inlinedResponses ?? [];
  const requests = new Map<string, ChatRequest>(lines.map((l) => [l.customId, l.request]));
  const found = new Map<string, BatchLineOutcome>();
  entries.forEach((entry, i) => {
    const key = typeof entry.metadata?.key === "string" ? entry.metadata.key : entries.length === lines.length ? lines[i]!.customId : undefined;
    const request = key === undefined ? undefined : requests.get(key);
    if (key === undefined || request === undefined || found.has(key)) return;
    if (entry.error) {
      const [status, name] = RPC_CODES[entry.error.code ?? 2] ?? [500, "UNKNOWN"];
      const body = JSON.stringify({ error: { code: status, message: entry.error.message ?? "no error message", status: name, details: entry.error.details ?? [] } });
      found.set(key, lineOutcome(key, { status, headers: {}, body }, request, fromResponse));
    } else {
      found.set(key, lineOutcome(key, { status: 200, headers: {}, body: JSON.stringify(entry.response ?? null) }, request, fromResponse));
    }
  });
  return outcomesInOrder(lines, found, state, (id) => new MalformedResponseError(`the batch's responses have no line ${JSON.stringify(id)}`));
}

export const geminiBatchApi: BatchApi = {
  dialect: "gemini",
  async submit(client, target, lines, timeoutMs) {
    return fromOperationReply(await client.send(toSubmitCall(lines, target), timeoutMs));
  },
  async poll(client, target, id, timeoutMs) {
    return fromOperationReply(await client.send(toPollCall(id, target), timeoutMs));
  },
  async results(client, target, status, lines, timeoutMs) {
    return fromOperationResults(await client.send(toPollCall(status.id, target), timeoutMs), lines);
  },
  async cancel(client, target, id, timeoutMs) {
    throwIfFailed(await client.send(toCancelCall(id, target), timeoutMs), fromResponse);
    return fromOperationReply(await client.send(toPollCall(id, target), timeoutMs));
  },
};

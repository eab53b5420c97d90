/**
 * Anthropic's Message Batches: `POST /messages/batches` with `{requests: [{custom_id, params}]}`,
 * polled at `GET /messages/batches/{id}`, results as JSONL at `/messages/batches/{id}/results`.
 * Paths are relative to the provider's base URL (`https://api.anthropic.com/v1`), as the chat
 * call's are.
 */
import { z } from "zod";
import type { ChatRequest } from "../contract/job.ts";
import {
  checkLines,
  count,
  jsonlLines,
  lineBody,
  lineOutcome,
  MAX_BATCH_RESULT_BYTES,
  outcomesInOrder,
  parseJsonLine,
  throwIfFailed,
  type BatchApi,
  type BatchLine,
  type BatchLineOutcome,
  type BatchState,
  type BatchStatus,
} from "./batch.ts";
import { parseReply } from "./convert.ts";
import { BadRequestError, MalformedResponseError } from "./errors.ts";
import { ANTHROPIC_VERSION, fromResponse, toRequest } from "./anthropic.ts";
import type { HttpCall, HttpReply, ProviderTarget } from "./types.ts";

/** The API's documented rule for `custom_id`. */
const CUSTOM_ID = /^[a-zA-Z0-9_-]{1,64}$/;

/** Only what Switchyard reads of the MessageBatch object. */
const MessageBatchSchema = z.looseObject({
  id: z.string(),
  processing_status: z.string(),
  request_counts: z
    .looseObject({
      processing: z.number().optional(),
      succeeded: z.number().optional(),
      errored: z.number().optional(),
      canceled: z.number().optional(),
      expired: z.number().optional(),
    })
    .optional(),
  results_url: z.string().nullable().optional(),
  cancel_initiated_at: z.string().nullable().optional(),
});

const ResultLineSchema = z.looseObject({
  custom_id: z.string(),
  result: z.looseObject({ type: z.string(), message: z.unknown().optional(), error: z.unknown().optional() }),
});

/**
 * The HTTP status a live call would have got for each error type, so an errored line goes
 * through the chat parser's error branch and becomes the same typed error.
 */
const ERROR_STATUS: Readonly<Record<string, number>> = {
  invalid_request_error: 400,
  authentication_error: 401,
  permission_error: 403,
  not_found_error: 404,
  request_too_large: 413,
  rate_limit_error: 429,
  api_error: 500,
  timeout_error: 504,
  overloaded_error: 529,
};

function headers(target: ProviderTarget, json: boolean): Record<string, string> {
  const h: Record<string, string> = { "anthropic-version": ANTHROPIC_VERSION };
  if (json) h["content-type"] = "application/json";
  if (target.apiKey) h["x-api-key"] = target.apiKey;
  return h;
}

/** Each line's `params` is the live call's Messages body. */
export function toSubmitCall(lines: readonly BatchLine[], target: ProviderTarget): HttpCall {
  checkLines(lines, CUSTOM_ID, "anthropic", (m) => new BadRequestError(m));
  const requests = lines.map((l) => ({ custom_id: l.customId, params: lineBody(l, target, toRequest) }));
  return { path: "/messages/batches", headers: headers(target, true), body: JSON.stringify({ requests }) };
}

export function toPollCall(id: string, target: ProviderTarget): HttpCall {
  return { method: "GET", path: `/messages/batches/${encodeURIComponent(id)}`, headers: headers(target, false), body: "" };
}

export function toCancelCall(id: string, target: ProviderTarget): HttpCall {
  return { path: `/messages/batches/${encodeURIComponent(id)}/cancel`, headers: headers(target, false), body: "" };
}

/**
 * The documented results endpoint relative to the base URL rather than `results_url` itself:
 * the client is bound to the provider's base URL, and the two name the same resource.
 */
export function toResultsCall(id: string, target: ProviderTarget): HttpCall {
  return { method: "GET", path: `/messages/batches/${encodeURIComponent(id)}/results`, headers: headers(target, false), body: "", maxResponseBytes: MAX_BATCH_RESULT_BYTES };
}

/**
 * A MessageBatch as the normalised status. `ended` covers every final outcome; the counts and
 * `cancel_initiated_at` tell which: cancelled, expired (some lines ran out of time) or completed.
 */
export function fromBatchReply(reply: HttpReply): BatchStatus {
  throwIfFailed(reply, fromResponse);
  const b = parseReply(reply, MessageBatchSchema, "an Anthropic message batch");
  const c = b.request_counts;
  const counts = {
    processing: count(c?.processing),
    succeeded: count(c?.succeeded),
    errored: count(c?.errored),
    expired: count(c?.expired),
    cancelled: count(c?.canceled),
  };
  let state: BatchState;
  if (b.processing_status === "ended") state = b.cancel_initiated_at ? "cancelled" : counts.expired > 0 ? "expired" : "completed";
  else if (b.processing_status === "canceling") state = "cancelling";
  // `in_progress`, or a status this code does not know yet: polling goes on, and the deadline fallback bounds how long.
  else state = "in_progress";
  const total = counts.processing + counts.succeeded + counts.errored + counts.expired + counts.cancelled;
  return {
    id: b.id,
    state,
    counts: { total, ...counts },
    results: b.processing_status === "ended" ? { kind: "url", url: b.results_url ?? "" } : undefined,
    failure: undefined,
  };
}

/** The lines' outcomes from the results JSONL. */
export function fromResults(body: string, lines: readonly BatchLine[], state: BatchState): BatchLineOutcome[] {
  const requests = new Map<string, ChatRequest>(lines.map((l) => [l.customId, l.request]));
  const found = new Map<string, BatchLineOutcome>();
  for (const raw of jsonlLines(body)) {
    const line = parseJsonLine(raw, ResultLineSchema);
    const request = line && requests.get(line.custom_id);
    if (!line || !request || found.has(line.custom_id)) continue;
    const id = line.custom_id;
    const r = line.result;
    if (r.type === "succeeded") found.set(id, lineOutcome(id, { status: 200, headers: {}, body: JSON.stringify(r.message ?? null) }, request, fromResponse));
    else if (r.type === "expired") found.set(id, { customId: id, kind: "expired" });
    else if (r.type === "canceled") found.set(id, { customId: id, kind: "cancelled" });
    else found.set(id, lineOutcome(id, { status: errorStatus(r.error), headers: {}, body: JSON.stringify(r.error ?? null) }, request, fromResponse));
  }
  return outcomesInOrder(lines, found, state, (id) => new MalformedResponseError(`the batch's results have no line ${JSON.stringify(id)}`));
}

/** `error` is the API's error body, `{type: "error", error: {type, message}}`. */
function errorStatus(error: unknown): number {
  const inner = (error as { error?: { type?: unknown } } | null)?.error?.type;
  return (typeof inner === "string" ? ERROR_STATUS[inner] : undefined) ?? 500;
}

export const anthropicBatchApi: BatchApi = {
  dialect: "anthropic",
  async submit(client, target, lines, timeoutMs) {
    return fromBatchReply(await client.send(toSubmitCall(lines, target), timeoutMs));
  },
  async poll(client, target, id, timeoutMs) {
    return fromBatchReply(await client.send(toPollCall(id, target), timeoutMs));
  },
  async results(client, target, status, lines, timeoutMs) {
    const reply = await client.send(toResultsCall(status.id, target), timeoutMs);
    throwIfFailed(reply, fromResponse);
    return fromResults(reply.body, lines, status.state);
  },
  async cancel(client, target, id, timeoutMs) {
    return fromBatchReply(await client.send(toCancelCall(id, target), timeoutMs));
  },
};

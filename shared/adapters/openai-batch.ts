/**
 * OpenAI's Batch API: the lines go up as a JSONL file (`POST /files`, purpose `batch`), a batch
 * is created on it (`POST /batches`), polled (`GET /batches/{id}`), and its output and error
 * files are downloaded (`GET /files/{id}/content`). Paths are relative to the provider's base
 * URL (`https://api.openai.com/v1`), as the chat call's are.
 */
import { z } from "zod";
import type { ChatRequest } from "../contract/job.ts";
import {
  BATCH_STATES,
  checkLines,
  count,
  isBatchFinal,
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
import { BadRequestError, MalformedResponseError, UnavailableError } from "./errors.ts";
import { fromResponse, toRequest } from "./openai.ts";
import type { HttpCall, HttpReply, ProviderTarget } from "./types.ts";

/** The only endpoint Switchyard batches. */
export const BATCH_ENDPOINT = "/v1/chat/completions";
/** The only window the API offers. */
export const COMPLETION_WINDOW = "24h";

/**
 * JSON text holds no raw CR or LF, so no JSONL content can contain "\r\n--" + this boundary:
 * a fixed one is safe and keeps the request body reproducible.
 */
const BOUNDARY = "switchyard-batch-7d1f0c";

const KNOWN_STATES: ReadonlySet<string> = new Set(BATCH_STATES);

/** Only what Switchyard reads of the Batch object. */
const BatchSchema = z.looseObject({
  id: z.string(),
  status: z.string(),
  output_file_id: z.string().nullable().optional(),
  error_file_id: z.string().nullable().optional(),
  request_counts: z.looseObject({ total: z.number().optional(), completed: z.number().optional(), failed: z.number().optional() }).nullable().optional(),
  errors: z
    .looseObject({ data: z.array(z.looseObject({ code: z.string().nullable().optional(), message: z.string().nullable().optional(), line: z.number().nullable().optional() })).optional() })
    .nullable()
    .optional(),
});

const FileSchema = z.looseObject({ id: z.string() });

/** A line of the output or error file. */
const ResultLineSchema = z.looseObject({
  custom_id: z.string(),
  response: z.looseObject({ status_code: z.number().int(), body: z.unknown() }).nullable().optional(),
  error: z.looseObject({ code: z.string().nullable().optional(), message: z.string().nullable().optional() }).nullable().optional(),
});

function headers(target: ProviderTarget, extra: Record<string, string> = {}): Record<string, string> {
  return target.apiKey ? { ...extra, authorization: `Bearer ${target.apiKey}` } : extra;
}

/** The input file: one `{custom_id, method, url, body}` line per request, each body the live call's body. */
export function toBatchFile(lines: readonly BatchLine[], target: ProviderTarget): string {
  checkLines(lines, /^.{1,512}$/, "openai", (m) => new BadRequestError(m));
  return lines
    .map((l) => JSON.stringify({ custom_id: l.customId, method: "POST", url: BATCH_ENDPOINT, body: lineBody(l, target, toRequest) }))
    .join("\n") + "\n";
}

/** `POST /files` as multipart/form-data with `purpose=batch`. */
export function toUploadCall(lines: readonly BatchLine[], target: ProviderTarget): HttpCall {
  const body =
    `--${BOUNDARY}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n` +
    `--${BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="switchyard-batch.jsonl"\r\nContent-Type: application/jsonl\r\n\r\n` +
    toBatchFile(lines, target) +
    `\r\n--${BOUNDARY}--\r\n`;
  return { path: "/files", headers: headers(target, { "content-type": `multipart/form-data; boundary=${BOUNDARY}` }), body };
}

/** The uploaded file's id. */
export function fromUploadReply(reply: HttpReply): string {
  throwIfFailed(reply, fromResponse);
  return parseReply(reply, FileSchema, "an OpenAI file object").id;
}

export function toCreateCall(inputFileId: string, target: ProviderTarget): HttpCall {
  return {
    path: "/batches",
    headers: headers(target, { "content-type": "application/json" }),
    body: JSON.stringify({ input_file_id: inputFileId, endpoint: BATCH_ENDPOINT, completion_window: COMPLETION_WINDOW }),
  };
}

export function toPollCall(id: string, target: ProviderTarget): HttpCall {
  return { method: "GET", path: `/batches/${encodeURIComponent(id)}`, headers: headers(target), body: "" };
}

export function toCancelCall(id: string, target: ProviderTarget): HttpCall {
  return { path: `/batches/${encodeURIComponent(id)}/cancel`, headers: headers(target), body: "" };
}

export function toContentCall(fileId: string, target: ProviderTarget): HttpCall {
  return { method: "GET", path: `/files/${encodeURIComponent(fileId)}/content`, headers: headers(target), body: "", maxResponseBytes: MAX_BATCH_RESULT_BYTES };
}

/** A Batch object (from create, retrieve or cancel) as the normalised status. */
export function fromBatchReply(reply: HttpReply): BatchStatus {
  throwIfFailed(reply, fromResponse);
  const b = parseReply(reply, BatchSchema, "an OpenAI batch object");
  // A status this code does not know yet is treated as still running: polling goes on, and
  // the deadline fallback bounds how long.
  const state: BatchState = KNOWN_STATES.has(b.status) ? (b.status as BatchState) : "in_progress";
  const total = count(b.request_counts?.total);
  const succeeded = count(b.request_counts?.completed);
  const errored = count(b.request_counts?.failed);
  const rest = Math.max(0, total - succeeded - errored);
  const final = isBatchFinal(state);
  return {
    id: b.id,
    state,
    counts: {
      total,
      processing: final ? 0 : rest,
      succeeded,
      errored: final && state !== "expired" && state !== "cancelled" ? errored + rest : errored,
      expired: state === "expired" ? rest : 0,
      cancelled: state === "cancelled" ? rest : 0,
    },
    results: final && state !== "failed" ? { kind: "files", outputFileId: b.output_file_id ?? undefined, errorFileId: b.error_file_id ?? undefined } : undefined,
    failure: state === "failed" ? failureOf(b.errors?.data) : undefined,
  };
}

function failureOf(errors: readonly { code?: string | null; message?: string | null; line?: number | null }[] | undefined): string {
  if (!errors || errors.length === 0) return "the batch failed without a reason";
  return errors.map((e) => `${e.line == null ? "" : `line ${e.line}: `}${e.message ?? e.code ?? "error"}`).join("; ");
}

/**
 * The lines' outcomes from the output and error files' contents. A line whose request was
 * answered carries the answer in `response` (its status and the chat body, which the chat
 * parser reads); a line never run carries only `error`, `batch_expired` or `batch_cancelled`.
 */
export function fromResultFiles(files: readonly string[], lines: readonly BatchLine[], state: BatchState): BatchLineOutcome[] {
  const requests = new Map<string, ChatRequest>(lines.map((l) => [l.customId, l.request]));
  const found = new Map<string, BatchLineOutcome>();
  for (const text of files) {
    for (const raw of jsonlLines(text)) {
      const line = parseJsonLine(raw, ResultLineSchema);
      const request = line && requests.get(line.custom_id);
      if (!line || !request || found.has(line.custom_id)) continue;
      const id = line.custom_id;
      if (line.response) {
        const reply = { status: line.response.status_code, headers: {}, body: JSON.stringify(line.response.body) };
        found.set(id, lineOutcome(id, reply, request, fromResponse));
      } else if (line.error?.code === "batch_expired") found.set(id, { customId: id, kind: "expired" });
      else if (line.error?.code === "batch_cancelled") found.set(id, { customId: id, kind: "cancelled" });
      else {
        const why = line.error?.message ?? line.error?.code ?? "no response and no error";
        found.set(id, { customId: id, kind: "errored", error: new UnavailableError(`the batch did not run the line: ${why}`) });
      }
    }
  }
  return outcomesInOrder(lines, found, state, (id) => new MalformedResponseError(`the batch's result files have no line ${JSON.stringify(id)}`));
}

export const openaiBatchApi: BatchApi = {
  dialect: "openai",
  async submit(client, target, lines, timeoutMs) {
    const fileId = fromUploadReply(await client.send(toUploadCall(lines, target), timeoutMs));
    return fromBatchReply(await client.send(toCreateCall(fileId, target), timeoutMs));
  },
  async poll(client, target, id, timeoutMs) {
    return fromBatchReply(await client.send(toPollCall(id, target), timeoutMs));
  },
  async results(client, target, status, lines, timeoutMs) {
    const files: string[] = [];
    if (status.results?.kind === "files") {
      for (const fileId of [status.results.outputFileId, status.results.errorFileId]) {
        if (fileId === undefined) continue;
        const reply = await client.send(toContentCall(fileId, target), timeoutMs);
        throwIfFailed(reply, fromResponse);
        files.push(reply.body);
      }
    }
    return fromResultFiles(files, lines, status.state);
  },
  async cancel(client, target, id, timeoutMs) {
    return fromBatchReply(await client.send(toCancelCall(id, target), timeoutMs));
  },
};

/**
 * The Batch API's line formats, pure: an input line (`{"custom_id", "method", "url", "body"}`)
 * → the request to run or the reason it cannot run, and a job's outcome → a line of the
 * output file (`response` set) or of the error file (`response` with a non-2xx status, or
 * `error` for a line that never ran).
 */
import { z } from "zod";
import type { ChatRequest, DeadLetter, Result } from "../../shared/contract/job.ts";
import type { Catalog } from "../../shared/routing/catalog.ts";
import { completionOf, errorFromDeadLetter, parseChatBody } from "./chat.ts";
import { GatewayError } from "./openai-error.ts";

export const BATCH_ENDPOINT = "/v1/chat/completions";

const JsonObjectSchema = z.record(z.string(), z.unknown());
const CUSTOM_ID_PROBLEM = "custom_id must be a string of 1 to 512 characters.";
const CustomIdSchema = z.string().min(1).max(512);

/**
 * An input line, `{"custom_id", "method", "url", "body"}`. `body` is checked as a chat
 * completions body (`parseChatBody`), with the catalogue in force; the first problem found is
 * the line's error message.
 */
export const InputLineSchema = z.object({
  custom_id: CustomIdSchema,
  method: z.literal("POST", { error: 'method must be "POST".' }),
  url: z.literal(BATCH_ENDPOINT, { error: `url must be "${BATCH_ENDPOINT}", the batch's endpoint.` }),
  body: z.unknown(),
});

export type ParsedLine =
  | { readonly kind: "request"; readonly lineNo: number; readonly customId: string; readonly request: ChatRequest }
  | { readonly kind: "invalid"; readonly lineNo: number; readonly customId: string | null; readonly message: string };

/** The non-blank lines of a JSONL file, numbered from 1 as an editor shows them. */
export function* fileLines(data: Uint8Array): Generator<{ lineNo: number; text: string }> {
  const text = Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("utf8");
  let lineNo = 0;
  for (const line of text.split("\n")) {
    lineNo++;
    const t = line.trim();
    if (t.length > 0) yield { lineNo, text: t };
  }
}

/** Checks one input line. `seen` collects custom_ids, so a repeated one is refused. */
export function parseLine(text: string, lineNo: number, catalog: Catalog, seen: Set<string>): ParsedLine {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return { kind: "invalid", lineNo, customId: null, message: `Line ${lineNo} is not valid JSON (${(err as Error).message}).` };
  }
  const object = JsonObjectSchema.safeParse(value);
  if (!object.success) return { kind: "invalid", lineNo, customId: null, message: `Line ${lineNo} is not a JSON object.` };
  const id = CustomIdSchema.safeParse(object.data.custom_id);
  const customId = id.success ? id.data : null;
  const invalid = (message: string): ParsedLine => ({ kind: "invalid", lineNo, customId, message: `Line ${lineNo}: ${message}` });
  if (customId === null) return invalid(CUSTOM_ID_PROBLEM);
  if (seen.has(customId)) return invalid(`custom_id "${customId}" is used by an earlier line; each must be unique.`);
  seen.add(customId);
  const line = InputLineSchema.safeParse(object.data);
  if (!line.success) return invalid(line.error.issues[0]!.message);
  try {
    const { request, stream } = parseChatBody(line.data.body, catalog);
    if (stream) return invalid("body.stream must not be true in a batch.");
    return { kind: "request", lineNo, customId, request };
  } catch (err) {
    if (err instanceof GatewayError) return invalid(`body: ${err.message}`);
    throw err;
  }
}

export const jobIdFor = (batchId: string, lineNo: number) => `${batchId}-${lineNo}`;
export const lineNoOf = (jobId: string) => Number(jobId.slice(jobId.lastIndexOf("-") + 1));

/** A served line, for the output file. */
export function okLine(r: Result, customId: string): string {
  return JSON.stringify({ id: `batch_req_${r.id}`, custom_id: customId, response: { status_code: 200, request_id: r.id, body: completionOf(r) }, error: null });
}

/** A dead-lettered line, for the error file: the status and error body the request would have got on its own. */
export function failedLine(dl: DeadLetter, customId: string): string {
  const e = errorFromDeadLetter(dl);
  return JSON.stringify({ id: `batch_req_${dl.id}`, custom_id: customId, response: { status_code: e.status, request_id: dl.id, body: JSON.parse(e.body()) }, error: null });
}

/** A line that never ran (invalid, or withdrawn when the batch expired or was cancelled), for the error file. */
export function notRunLine(jobId: string, customId: string | null, code: string, message: string): string {
  return JSON.stringify({ id: `batch_req_${jobId}`, custom_id: customId, response: null, error: { code, message } });
}

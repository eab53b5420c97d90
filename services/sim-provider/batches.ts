/**
 * The sim-provider's batch APIs, on each provider's existing dialect prefixes:
 *
 * - OpenAI: `POST /<p>/v1/files` (multipart, purpose `batch`), `GET /<p>/v1/files/<id>/content`,
 *   `POST /<p>/v1/batches`, `GET /<p>/v1/batches/<id>`, `POST /<p>/v1/batches/<id>/cancel`;
 * - Anthropic: `POST /<p>/v1/messages/batches`, `GET …/<id>`, `POST …/<id>/cancel`, `GET …/<id>/results`;
 * - Gemini: `POST /<p>/v1beta/models/<model>:batchGenerateContent`, `GET /<p>/v1beta/batches/<id>`,
 *   `POST /<p>/v1beta/batches/<id>:cancel`.
 *
 * Each line gets the reply a live call with the same request would get (the server's own
 * completion builder), or the refusal a live call would get (a malformed line, an unknown
 * model, a prompt over the context window). The provider's `batch` knobs script the rest:
 * lines finish evenly over `turnaround_ms`; a batch whose turnaround exceeds `window_ms`
 * expires at the window with its unfinished lines marked expired; `line_error_rate` of the
 * lines fail with the dialect's server error, chosen by a hash of the seed and the line's id
 * so a run replays. State is computed from the clock when asked, so no timers run.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { estimatePromptTokens } from "../../shared/tokens.ts";
import { isRecord, parseJsonOrUndefined } from "../../shared/json.ts";
import { anthropicDialect, geminiDialect, openaiDialect, type SimDialect, type SimModel, type WireReply } from "./dialects.ts";
import { completionLimit, type SimChatRequest } from "./replies.ts";
import type { Scenario, SimBatchBehaviour } from "./scenario.ts";
import { readBody, send, sendReply } from "./http-io.ts";
import { fnv1a } from "./text.ts";

/** What a batch line needs of a simulated model; the server's model state has it. */
export interface BatchModel extends SimModel {
  readonly model: string;
  readonly behaviour: { readonly context_window?: number | undefined };
}

export interface BatchProvider<M extends BatchModel> {
  readonly apiKey: string | undefined;
  readonly models: ReadonlyMap<string, M>;
}

export interface SimBatchesOptions<M extends BatchModel> {
  readonly scenario: Scenario;
  /** The body of a successful live answer, from the server, so a line answers exactly as a live call. */
  answer(m: M, dialect: SimDialect, request: SimChatRequest, promptTokens: number): string;
}

export interface SimBatches<M extends BatchModel> {
  /** Serves the request when `rest` (the path after `/<provider>`) is a batch route; false when it is not one. */
  handle(req: IncomingMessage, res: ServerResponse, providerName: string, provider: BatchProvider<M>, rest: string, query: string): boolean;
  /** Batches accepted per provider, and their lines. */
  counts(): Record<string, { batches: number; lines: number }>;
}

/**
 * Batch bodies are far larger than chat bodies (OpenAI documents input files up to 200 MB);
 * the sim keeps them in memory, so it stops lower.
 */
const MAX_BATCH_BODY_BYTES = 64 * 1024 * 1024;
const DAY_MS = 86_400_000;
const ANTHROPIC_CUSTOM_ID = /^[a-zA-Z0-9_-]{1,64}$/;
const OPENAI_ENDPOINT = "/v1/chat/completions";
const GEMINI_MODELS = "/v1beta/models/";
const GEMINI_SUBMIT = ":batchGenerateContent";
const GEMINI_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1beta";

/** HTTP status name → google.rpc.Code, for a line's error inside a Gemini operation. */
const RPC_CODES: Readonly<Record<string, number>> = {
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
};

type Kind = "openai" | "anthropic" | "gemini";

interface Line<M> {
  readonly customId: string;
  /** What a live call would have been refused with, or the scripted line failure; undefined: it is answered. */
  readonly failure: WireReply | undefined;
  readonly answer: { readonly m: M; readonly request: SimChatRequest; readonly promptTokens: number } | undefined;
  /** Gemini keeps the request's metadata to echo it. */
  readonly metadata: unknown;
}

type LineResult = { readonly kind: "ok"; readonly body: string } | { readonly kind: "error"; readonly reply: WireReply } | { readonly kind: "expired" } | { readonly kind: "cancelled" };

interface SimBatch<M> {
  readonly kind: Kind;
  readonly id: string;
  readonly provider: string;
  readonly dialect: SimDialect;
  readonly lines: readonly Line<M>[];
  readonly createdAt: number;
  readonly knobs: SimBatchBehaviour;
  /** A whole-batch failure found at submission (OpenAI validates the file as a whole). */
  readonly failed: { readonly code: string; readonly message: string; readonly line: number | null } | undefined;
  /** OpenAI's input file; Gemini's model and display name. */
  readonly inputFileId: string;
  readonly model: string;
  readonly displayName: string;
  cancelledAt: number | undefined;
  /** Filled once, when the batch is first seen final. */
  results: LineResult[] | undefined;
  outputFileId: string | undefined;
  errorFileId: string | undefined;
}

interface Progress {
  readonly state: "running" | "completed" | "expired" | "cancelled" | "failed";
  /** Lines finished so far (all of them once completed). */
  readonly done: number;
  /** When the batch ended, or undefined while it runs. */
  readonly endedAt: number | undefined;
}

interface SimFile {
  readonly id: string;
  readonly filename: string;
  readonly purpose: string;
  readonly content: string;
  readonly createdAt: number;
}

export function createSimBatches<M extends BatchModel>(opts: SimBatchesOptions<M>): SimBatches<M> {
  const now = Date.now;
  /** Keyed `<provider>/<id>`: a provider sees only its own batches and files. */
  const batches = new Map<string, SimBatch<M>>();
  const files = new Map<string, SimFile>();
  let serial = 0;
  const accepted: Record<string, { batches: number; lines: number }> = {};
  /** Batches each provider has received, for `fail_every`. */
  const received = new Map<string, number>();

  function knobs(provider: string): SimBatchBehaviour {
    return opts.scenario.providers[provider]!.batch;
  }

  function handle(req: IncomingMessage, res: ServerResponse, providerName: string, provider: BatchProvider<M>, rest: string, query: string): boolean {
    const route = routeOf(req.method ?? "", rest);
    if (!route) return false;
    const dialect = route.kind === "openai" ? openaiDialect : route.kind === "anthropic" ? anthropicDialect : geminiDialect;
    readBody(req, MAX_BATCH_BODY_BYTES, (raw) => {
      if (provider.apiKey !== undefined) {
        const presented = dialect.presentedKey(req.headers, query);
        if (presented !== provider.apiKey) return sendReply(res, dialect.unauthorized(presented));
      }
      if (raw === undefined) return sendReply(res, dialect.tooLarge());
      const key = (id: string) => `${providerName}/${id}`;
      switch (route.op) {
        case "upload":
          return upload(req, res, providerName, raw);
        case "content": {
          const file = files.get(key(route.id));
          if (!file) return sendReply(res, dialect.notFound(`No such File object: ${route.id}`));
          return send(res, 200, file.content, "application/octet-stream");
        }
        case "submit": {
          const body = jsonBody(raw);
          if (!body) return sendReply(res, dialect.notJson());
          const made = route.kind === "openai"
            ? submitOpenAi(providerName, provider, body)
            : route.kind === "anthropic"
              ? submitAnthropic(providerName, provider, body, req.headers)
              : submitGemini(providerName, provider, body, route.model, req.headers);
          if ("status" in made) return sendReply(res, made);
          batches.set(key(made.id), made);
          const c = (accepted[providerName] ??= { batches: 0, lines: 0 });
          c.batches++;
          c.lines += made.lines.length;
          return send(res, 200, view(made, req));
        }
      }
      const batch = batches.get(key(route.id));
      if (!batch || batch.kind !== route.kind) return sendReply(res, dialect.notFound(`no batch ${route.id}`));
      switch (route.op) {
        case "get":
          return send(res, 200, view(batch, req));
        case "cancel": {
          if (progress(batch).state !== "running") return sendReply(res, conflict(batch, `the batch has ended (${progress(batch).state}) and cannot be cancelled`));
          batch.cancelledAt = now();
          return send(res, 200, batch.kind === "gemini" ? "{}" : view(batch, req, true));
        }
        case "results": {
          if (progress(batch).state === "running") return sendReply(res, conflict(batch, "results are not available until the batch has ended"));
          return send(res, 200, anthropicResults(batch), "application/x-jsonl");
        }
      }
    });
    return true;
  }

  function upload(req: IncomingMessage, res: ServerResponse, provider: string, raw: Buffer): void {
    const fields = multipart(req.headers["content-type"], raw);
    const file = fields?.get("file");
    const purpose = fields?.get("purpose")?.content;
    if (!fields || !file) return sendReply(res, openAiRefusal("Missing required parameter: 'file'.", "file"));
    if (purpose !== "batch") return sendReply(res, openAiRefusal(`Invalid 'purpose': the simulator stores batch input files only, got ${JSON.stringify(purpose)}.`, "purpose"));
    const stored = storeFile(provider, file.filename ?? "upload.jsonl", "batch", file.content);
    send(res, 200, JSON.stringify(fileObject(stored)));
  }

  function storeFile(provider: string, filename: string, purpose: string, content: string): SimFile {
    const file: SimFile = { id: `file-sim${++serial}`, filename, purpose, content, createdAt: now() };
    files.set(`${provider}/${file.id}`, file);
    return file;
  }

  /** A line of a batch as a live call would have met it: refused, failed by the script, or to be answered. */
  function line(provider: string, batchId: string, p: BatchProvider<M>, dialect: SimDialect, customId: string, parsed: ReturnType<SimDialect["parse"]>, metadata?: unknown): Line<M> {
    const refused = (failure: WireReply): Line<M> => ({ customId, failure, answer: undefined, metadata });
    if ("status" in parsed) return refused(parsed);
    const m = p.models.get(parsed.model);
    if (!m) return refused(dialect.unknownModel(parsed.model));
    const promptTokens = estimatePromptTokens(parsed.request.messages);
    const window = m.behaviour.context_window;
    const tooLong = window === undefined ? undefined : dialect.contextCheck(promptTokens, completionLimit(parsed.request) ?? 0, window);
    if (tooLong) return refused(tooLong);
    const rate = knobs(provider).line_error_rate;
    if (rate > 0 && unitHash(`${opts.scenario.seed}/${provider}/${batchId}/${customId}`) < rate) return refused(dialect.serverError());
    return { customId, failure: undefined, answer: { m, request: parsed.request, promptTokens }, metadata };
  }

  function newBatch(kind: Kind, id: string, provider: string, lines: Line<M>[], extra: Partial<Pick<SimBatch<M>, "failed" | "inputFileId" | "model" | "displayName">> = {}): SimBatch<M> {
    const dialect = kind === "openai" ? openaiDialect : kind === "anthropic" ? anthropicDialect : geminiDialect;
    const k = knobs(provider);
    const nth = (received.get(provider) ?? 0) + 1;
    received.set(provider, nth);
    const scripted = k.fail_every > 0 && nth % k.fail_every === 0 ? { code: "server_error", message: `The batch failed on the provider's side (the scenario fails every ${k.fail_every}th batch).`, line: null } : undefined;
    return {
      kind, id, provider, dialect, lines, createdAt: now(), knobs: k,
      failed: extra.failed ?? scripted, inputFileId: extra.inputFileId ?? "", model: extra.model ?? "", displayName: extra.displayName ?? "",
      cancelledAt: undefined, results: undefined, outputFileId: undefined, errorFileId: undefined,
    };
  }

  function submitOpenAi(provider: string, p: BatchProvider<M>, body: Record<string, unknown>): SimBatch<M> | WireReply {
    const fileId = body.input_file_id;
    if (typeof fileId !== "string") return openAiRefusal("Missing required parameter: 'input_file_id'.", "input_file_id");
    if (body.endpoint !== OPENAI_ENDPOINT) return openAiRefusal(`Invalid 'endpoint': the simulator batches ${OPENAI_ENDPOINT} only.`, "endpoint");
    if (body.completion_window !== "24h") return openAiRefusal("Invalid 'completion_window': only '24h' is supported.", "completion_window");
    const file = files.get(`${provider}/${fileId}`);
    if (!file || file.purpose !== "batch") return { status: 404, body: JSON.stringify({ error: { message: `No such File object: ${fileId}`, type: "invalid_request_error", param: "input_file_id", code: null } }) };
    const id = `batch_sim${++serial}`;
    const lines: Line<M>[] = [];
    const seen = new Set<string>();
    const models = new Set<string>();
    const fail = (code: string, message: string, line: number | null) => newBatch("openai", id, provider, [], { failed: { code, message, line }, inputFileId: fileId });
    const texts = file.content.split("\n").filter((l) => l.trim() !== "");
    if (texts.length === 0) return fail("empty_file", "The batch input file is empty.", null);
    for (const [i, text] of texts.entries()) {
      const entry = jsonBody(Buffer.from(text));
      if (!entry || typeof entry.custom_id !== "string" || !isRecord(entry.body)) return fail("invalid_json_line", "This line is not parseable as valid JSON with custom_id and body.", i + 1);
      if (entry.method !== "POST" || entry.url !== OPENAI_ENDPOINT) return fail("invalid_url", `Each line must POST to ${OPENAI_ENDPOINT}.`, i + 1);
      if (seen.has(entry.custom_id)) return fail("duplicate_custom_id", `The custom_id ${entry.custom_id} appears more than once.`, i + 1);
      seen.add(entry.custom_id);
      if (typeof entry.body.model === "string") models.add(entry.body.model);
      if (models.size > 1) return fail("mismatched_model", "The batch input file must use the same model for every request.", i + 1);
      lines.push(line(provider, id, p, openaiDialect, entry.custom_id, openaiDialect.parse(entry.body, {}, undefined)));
    }
    return newBatch("openai", id, provider, lines, { inputFileId: fileId });
  }

  function submitAnthropic(provider: string, p: BatchProvider<M>, body: Record<string, unknown>, headers: IncomingMessage["headers"]): SimBatch<M> | WireReply {
    if (headers["anthropic-version"] === undefined) return anthropicRefusal("anthropic-version: header is required");
    const requests = body.requests;
    if (!Array.isArray(requests) || requests.length === 0) return anthropicRefusal("requests: at least one request is required");
    const id = `msgbatch_sim${++serial}`;
    const seen = new Set<string>();
    const lines: Line<M>[] = [];
    for (const [i, r] of requests.entries()) {
      if (!isRecord(r) || typeof r.custom_id !== "string" || !ANTHROPIC_CUSTOM_ID.test(r.custom_id)) {
        return anthropicRefusal(`requests.${i}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{1,64}$'`);
      }
      if (seen.has(r.custom_id)) return anthropicRefusal(`Duplicate custom_id: ${r.custom_id}. Each custom_id must be unique within a batch.`);
      seen.add(r.custom_id);
      if (!isRecord(r.params)) return anthropicRefusal(`requests.${i}.params: Field required`);
      lines.push(line(provider, id, p, anthropicDialect, r.custom_id, anthropicDialect.parse(r.params, headers, undefined)));
    }
    return newBatch("anthropic", id, provider, lines);
  }

  function submitGemini(provider: string, p: BatchProvider<M>, body: Record<string, unknown>, model: string, headers: IncomingMessage["headers"]): SimBatch<M> | WireReply {
    if (!p.models.has(model)) return geminiDialect.unknownModel(model);
    const batch = isRecord(body.batch) ? body.batch : undefined;
    // Protobuf's JSON mapping accepts both spellings of every field.
    const input = batch && (isRecord(batch.inputConfig) ? batch.inputConfig : isRecord(batch.input_config) ? batch.input_config : undefined);
    const container = input && isRecord(input.requests) ? input.requests : undefined;
    const requests = container?.requests;
    if (!Array.isArray(requests) || requests.length === 0) return googleRefusal("* BatchGenerateContentRequest.batch.input_config: inlined requests are required (the simulator takes no input file)");
    const name = `batches/sim${++serial}`;
    const lines = requests.map((r, i) => {
      const entry = isRecord(r) ? r : {};
      const metadata = isRecord(entry.metadata) ? entry.metadata : undefined;
      const customId = typeof metadata?.key === "string" ? metadata.key : String(i);
      const request = isRecord(entry.request) ? entry.request : {};
      return line(provider, name, p, geminiDialect, customId, geminiDialect.parse(request, headers, model), metadata);
    });
    const displayName = typeof batch?.displayName === "string" ? batch.displayName : typeof batch?.display_name === "string" ? batch.display_name : "";
    return newBatch("gemini", name, provider, lines, { model, displayName });
  }

  function progress(b: SimBatch<M>): Progress {
    const n = b.lines.length;
    if (b.failed) return { state: "failed", done: 0, endedAt: b.createdAt };
    const { turnaround_ms: turnaround, window_ms: window } = b.knobs;
    const doneAt = (ms: number) => (turnaround <= 0 ? n : Math.min(n, Math.floor((n * ms) / turnaround)));
    const t = now();
    if (turnaround <= window && t - b.createdAt >= turnaround && (b.cancelledAt === undefined || b.cancelledAt - b.createdAt >= turnaround)) {
      return { state: "completed", done: n, endedAt: b.createdAt + turnaround };
    }
    if (turnaround > window && t - b.createdAt >= window && (b.cancelledAt === undefined || b.cancelledAt - b.createdAt >= window)) {
      return { state: "expired", done: doneAt(window), endedAt: b.createdAt + window };
    }
    if (b.cancelledAt !== undefined) return { state: "cancelled", done: doneAt(b.cancelledAt - b.createdAt), endedAt: b.cancelledAt };
    return { state: "running", done: doneAt(t - b.createdAt), endedAt: undefined };
  }

  /** Each line's result, built once when the batch has ended (answering then, as the provider would). */
  function results(b: SimBatch<M>, pr: Progress): LineResult[] {
    if (b.results) return b.results;
    b.results = b.lines.map((l, i): LineResult => {
      if (i >= pr.done) return { kind: pr.state === "cancelled" ? "cancelled" : "expired" };
      if (l.failure) return { kind: "error", reply: l.failure };
      const a = l.answer!;
      return { kind: "ok", body: opts.answer(a.m, b.dialect, a.request, a.promptTokens) };
    });
    if (b.kind === "openai") writeOpenAiFiles(b, b.results);
    return b.results;
  }

  function counts(b: SimBatch<M>, pr: Progress): { succeeded: number; errored: number; rest: number } {
    let errored = 0;
    for (let i = 0; i < pr.done; i++) if (b.lines[i]!.failure) errored++;
    return { succeeded: pr.done - errored, errored, rest: b.lines.length - pr.done };
  }

  function view(b: SimBatch<M>, req: IncomingMessage, cancelling = false): string {
    const pr = progress(b);
    if (pr.state !== "running") results(b, pr);
    if (b.kind === "openai") return openAiView(b, pr, cancelling);
    if (b.kind === "anthropic") return anthropicView(b, pr, req, cancelling);
    return geminiView(b, pr);
  }

  function openAiView(b: SimBatch<M>, pr: Progress, cancelling: boolean): string {
    const c = counts(b, pr);
    const s = (ms: number | undefined) => (ms === undefined ? null : Math.floor(ms / 1000));
    const ended = pr.state !== "running";
    const status = cancelling ? "cancelling" : ended ? pr.state : pr.done === 0 ? "validating" : "in_progress";
    return JSON.stringify({
      id: b.id,
      object: "batch",
      endpoint: OPENAI_ENDPOINT,
      errors: b.failed ? { object: "list", data: [{ code: b.failed.code, message: b.failed.message, param: null, line: b.failed.line }] } : null,
      input_file_id: b.inputFileId,
      completion_window: "24h",
      status,
      output_file_id: b.outputFileId ?? null,
      error_file_id: b.errorFileId ?? null,
      created_at: s(b.createdAt),
      in_progress_at: b.failed ? null : s(b.createdAt),
      expires_at: s(b.createdAt + DAY_MS),
      finalizing_at: pr.state === "completed" ? s(pr.endedAt) : null,
      completed_at: pr.state === "completed" ? s(pr.endedAt) : null,
      failed_at: pr.state === "failed" ? s(pr.endedAt) : null,
      expired_at: pr.state === "expired" ? s(pr.endedAt) : null,
      cancelling_at: s(b.cancelledAt),
      cancelled_at: pr.state === "cancelled" ? s(pr.endedAt) : null,
      request_counts: { total: b.lines.length, completed: c.succeeded, failed: c.errored },
      metadata: null,
    });
  }

  /** OpenAI's output file holds the 2xx answers, its error file everything else, as the API splits them. */
  function writeOpenAiFiles(b: SimBatch<M>, rs: readonly LineResult[]): void {
    const output: string[] = [];
    const errors: string[] = [];
    rs.forEach((r, i) => {
      const customId = b.lines[i]!.customId;
      const id = `batch_req_sim${b.id.slice("batch_sim".length)}_${i}`;
      const request_id = `req_sim${fnv1a(`${b.id}/${customId}`).toString(16)}`;
      if (r.kind === "ok") output.push(`{"id":${JSON.stringify(id)},"custom_id":${JSON.stringify(customId)},"response":{"status_code":200,"request_id":"${request_id}","body":${r.body}},"error":null}`);
      else if (r.kind === "error") errors.push(`{"id":${JSON.stringify(id)},"custom_id":${JSON.stringify(customId)},"response":{"status_code":${r.reply.status},"request_id":"${request_id}","body":${r.reply.body}},"error":null}`);
      else {
        const error = r.kind === "expired"
          ? { code: "batch_expired", message: "This request could not be executed before the completion window expired." }
          : { code: "batch_cancelled", message: "This request was not executed because the batch was cancelled." };
        errors.push(JSON.stringify({ id, custom_id: customId, response: null, error }));
      }
    });
    if (output.length > 0) b.outputFileId = storeFile(b.provider, "batch_output.jsonl", "batch_output", output.join("\n") + "\n").id;
    if (errors.length > 0) b.errorFileId = storeFile(b.provider, "batch_errors.jsonl", "batch_output", errors.join("\n") + "\n").id;
  }

  function anthropicView(b: SimBatch<M>, pr: Progress, req: IncomingMessage, cancelling: boolean): string {
    const c = counts(b, pr);
    const iso = (ms: number | undefined) => (ms === undefined ? null : new Date(ms).toISOString());
    const ended = pr.state !== "running";
    return JSON.stringify({
      id: b.id,
      type: "message_batch",
      processing_status: cancelling ? "canceling" : ended ? "ended" : "in_progress",
      request_counts: {
        processing: ended ? 0 : c.rest,
        succeeded: c.succeeded,
        errored: c.errored,
        canceled: pr.state === "cancelled" ? c.rest : 0,
        expired: pr.state === "expired" ? c.rest : 0,
      },
      ended_at: iso(pr.endedAt),
      created_at: iso(b.createdAt),
      expires_at: iso(b.createdAt + DAY_MS),
      archived_at: null,
      cancel_initiated_at: iso(b.cancelledAt),
      results_url: ended ? `http://${req.headers.host ?? "127.0.0.1"}/${b.provider}/v1/messages/batches/${b.id}/results` : null,
    });
  }

  function anthropicResults(b: SimBatch<M>): string {
    const rs = results(b, progress(b));
    return rs
      .map((r, i) => {
        const customId = JSON.stringify(b.lines[i]!.customId);
        if (r.kind === "ok") return `{"custom_id":${customId},"result":{"type":"succeeded","message":${r.body}}}`;
        if (r.kind === "error") return `{"custom_id":${customId},"result":{"type":"errored","error":${r.reply.body}}}`;
        return `{"custom_id":${customId},"result":{"type":"${r.kind === "expired" ? "expired" : "canceled"}"}}`;
      })
      .join("\n") + "\n";
  }

  function geminiView(b: SimBatch<M>, pr: Progress): string {
    const c = counts(b, pr);
    const iso = (ms: number) => new Date(ms).toISOString();
    const ended = pr.state !== "running";
    const state = ended ? `BATCH_STATE_${pr.state === "completed" ? "SUCCEEDED" : pr.state.toUpperCase()}` : pr.done === 0 ? "BATCH_STATE_PENDING" : "BATCH_STATE_RUNNING";
    const metadata = {
      "@type": `${GEMINI_TYPE}.GenerateContentBatch`,
      model: `models/${b.model}`,
      displayName: b.displayName,
      createTime: iso(b.createdAt),
      updateTime: iso(pr.endedAt ?? now()),
      ...(ended ? { endTime: iso(pr.endedAt!) } : {}),
      batchStats: {
        requestCount: String(b.lines.length),
        successfulRequestCount: String(c.succeeded),
        failedRequestCount: String(c.errored),
        pendingRequestCount: String(ended ? 0 : c.rest),
      },
      state,
      name: b.id,
    };
    if (!ended) return JSON.stringify({ name: b.id, metadata });
    // Expired and cancelled batches keep the answers of the lines that finished; the rest are absent.
    const inlined: string[] = [];
    results(b, pr).forEach((r, i) => {
      const meta = b.lines[i]!.metadata === undefined ? "" : `,"metadata":${JSON.stringify(b.lines[i]!.metadata)}`;
      if (r.kind === "ok") inlined.push(`{"response":${r.body}${meta}}`);
      else if (r.kind === "error") inlined.push(`{"error":${JSON.stringify(rpcStatus(r.reply))}${meta}}`);
    });
    return `{"name":${JSON.stringify(b.id)},"metadata":${JSON.stringify(metadata)},"done":true,"response":{"@type":"${GEMINI_TYPE}.GenerateContentBatchOutput","inlinedResponses":{"inlinedResponses":[${inlined.join(",")}]}}}`;
  }

  function conflict(b: SimBatch<M>, message: string): WireReply {
    if (b.kind === "openai") return openAiRefusal(message, null);
    if (b.kind === "anthropic") return anthropicRefusal(message);
    return googleRefusal(message, 400, "FAILED_PRECONDITION");
  }

  return { handle, counts: () => structuredClone(accepted) };
}

type Route =
  | { readonly kind: Kind; readonly op: "submit"; readonly model: string }
  | { readonly kind: "openai"; readonly op: "upload" }
  | { readonly kind: "openai"; readonly op: "content"; readonly id: string }
  | { readonly kind: Kind; readonly op: "get" | "cancel" | "results"; readonly id: string };

/** The batch route `rest` names, or undefined when it is none (the server then answers it as before). */
function routeOf(method: string, rest: string): Route | undefined {
  const post = method === "POST";
  const get = method === "GET";
  if (rest === "/v1/files" && post) return { kind: "openai", op: "upload" };
  if (rest === "/v1/batches" && post) return { kind: "openai", op: "submit", model: "" };
  if (rest === "/v1/messages/batches" && post) return { kind: "anthropic", op: "submit", model: "" };
  let m = /^\/v1\/files\/([^/]+)\/content$/.exec(rest);
  if (m && get) return { kind: "openai", op: "content", id: decode(m[1]!) };
  m = /^\/v1\/batches\/([^/]+)(\/cancel)?$/.exec(rest);
  if (m && (m[2] ? post : get)) return { kind: "openai", op: m[2] ? "cancel" : "get", id: decode(m[1]!) };
  m = /^\/v1\/messages\/batches\/([^/]+)(\/cancel|\/results)?$/.exec(rest);
  if (m && (m[2] === "/cancel" ? post : get)) return { kind: "anthropic", op: m[2] === "/cancel" ? "cancel" : m[2] ? "results" : "get", id: decode(m[1]!) };
  if (rest.startsWith(GEMINI_MODELS) && rest.endsWith(GEMINI_SUBMIT) && post) {
    return { kind: "gemini", op: "submit", model: decode(rest.slice(GEMINI_MODELS.length, -GEMINI_SUBMIT.length)) };
  }
  m = /^\/v1beta\/batches\/([^/:]+)(:cancel)?$/.exec(rest);
  if (m && (m[2] ? post : get)) return { kind: "gemini", op: m[2] ? "cancel" : "get", id: `batches/${decode(m[1]!)}` };
  return undefined;
}

/**
 * A hash in [0, 1). FNV-1a alone barely moves its high bits when only a trailing digit
 * differs (`line-1`, `line-2`, ...), so such ids would all draw alike; murmur3's finaliser
 * spreads them.
 */
function unitHash(text: string): number {
  let h = fnv1a(text);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return (h >>> 0) / 4294967296;
}

function decode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    // A malformed escape stays as sent; it then names nothing and gets 404.
    return s;
  }
}

function jsonBody(raw: Buffer): Record<string, unknown> | undefined {
  const body = parseJsonOrUndefined(raw.toString("utf8"));
  return isRecord(body) ? body : undefined;
}

/** The fields of a multipart/form-data body, or undefined when it is not one. */
function multipart(contentType: string | undefined, raw: Buffer): Map<string, { filename: string | undefined; content: string }> | undefined {
  const boundary = /boundary=(?:"([^"]+)"|([^;]+))/i.exec(contentType ?? "");
  if (!contentType?.startsWith("multipart/form-data") || !boundary) return undefined;
  const delimiter = `--${boundary[1] ?? boundary[2]}`;
  const fields = new Map<string, { filename: string | undefined; content: string }>();
  for (const part of raw.toString("utf8").split(delimiter).slice(1)) {
    if (part.startsWith("--")) break;
    const split = part.indexOf("\r\n\r\n");
    if (split === -1) continue;
    const head = part.slice(0, split);
    const name = /name="([^"]*)"/i.exec(head)?.[1];
    const filename = /filename="([^"]*)"/i.exec(head)?.[1];
    if (name !== undefined) fields.set(name, { filename, content: part.slice(split + 4).replace(/\r\n$/, "") });
  }
  return fields;
}

function fileObject(f: SimFile): Record<string, unknown> {
  return { id: f.id, object: "file", bytes: Buffer.byteLength(f.content), created_at: Math.floor(f.createdAt / 1000), filename: f.filename, purpose: f.purpose, status: "processed" };
}

/** A line's error as google.rpc.Status, which the operation carries in place of an HTTP error body. */
function rpcStatus(reply: WireReply): { code: number; message: string } {
  const error = (JSON.parse(reply.body) as { error?: { message?: string; status?: string } }).error;
  return { code: RPC_CODES[error?.status ?? ""] ?? 2, message: error?.message ?? `HTTP ${reply.status}` };
}

function openAiRefusal(message: string, param: string | null): WireReply {
  return { status: 400, body: JSON.stringify({ error: { message, type: "invalid_request_error", param, code: null } }) };
}

function anthropicRefusal(message: string): WireReply {
  return { status: 400, body: JSON.stringify({ type: "error", error: { type: "invalid_request_error", message } }) };
}

function googleRefusal(message: string, code = 400, status = "INVALID_ARGUMENT"): WireReply {
  return { status: code, body: JSON.stringify({ error: { code, message, status } }) };
}

/**
 * The gateway's HTTP surface on plain node:http. A dozen fixed routes need no framework, and
 * the hot path (chat completions) stays at a body read, one JSON parse and one publish: the
 * measured peers lose most of their throughput to framework, logging and stream overhead
 * (see PERF-NOTES in the team brief). Every error leaves as OpenAI's error shape.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "../../shared/log.ts";
import { logRequest, newRequestNote, type GatewayMetrics, type RequestNote } from "../../shared/ops/gateway-metrics.ts";
import type { Probes } from "../../shared/ops/probes.ts";
import { writeProbe } from "../../shared/ops/server.ts";
import type { Caller } from "./auth.ts";
import type { KeyLimits } from "./key-limits.ts";
import { ListBatchesQuerySchema } from "./batch-schema.ts";
import type { BatchService } from "./batches.ts";
import { chatCompletion, TASK_HEADER, type ChatDeps } from "./chat.ts";
import type { FileStore } from "./files.ts";
import type { ModelCatalogue } from "./models.ts";
import { asGatewayError, GatewayError } from "./openai-error.ts";
import type { ResponsesService } from "./responses.ts";
import { endRequestSpan, passTraceContext, startRequestSpan } from "./request-trace.ts";
import type { Tracing } from "../../shared/ops/tracing.ts";
import type { GatewaySettings } from "./settings.ts";
import { writeJson } from "./json-reply.ts";

export interface GatewayHttpDeps {
  /** The settings in force (keys, limits): read per request, so a config reload applies to the next one. */
  readonly settings: () => GatewaySettings;
  /** Per-key request rates, shared by every gateway (key-limits.ts). */
  readonly limiter: Pick<KeyLimits, "take">;
  readonly chat: ChatDeps;
  readonly models: ModelCatalogue;
  readonly files: FileStore;
  readonly batches: BatchService;
  readonly responses: ResponsesService;
  readonly logger: Logger;
  /** Served at /livez and /readyz on the API port too (they reveal nothing; /metrics stays on the ops port). */
  readonly probes?: Probes;
  readonly metrics?: GatewayMetrics;
  /** One info line per request (`ops.access_log`). @defaultValue true */
  readonly accessLog?: () => boolean;
  /** Request spans (`shared/ops/tracing.ts`); without it the caller's `traceparent` is only passed on to jobs. */
  readonly tracing?: Tracing;
}

/** Room for the multipart framing around an uploaded file. */
const MULTIPART_OVERHEAD = 64 * 1024;

export function createGatewayServer(deps: GatewayHttpDeps): Server {
  const server = createServer((req, res) => {
    const started = performance.now();
    const note = newRequestNote(req.method ?? "GET");
    const span = deps.tracing === undefined ? undefined : startRequestSpan(deps.tracing, req, note);
    if (span === undefined) passTraceContext(req, note);
    res.once("close", () => {
      // Closed before the last byte: the client went away (nginx's 499).
      const status = res.writableFinished ? res.statusCode : 499;
      const ms = performance.now() - started;
      deps.metrics?.observe(note.route, status, ms);
      if (deps.accessLog?.() ?? true) logRequest(deps.logger, note, status, ms);
      if (span !== undefined) endRequestSpan(span, note, status);
    });
    handle(deps, req, res, note).catch((err: unknown) => {
      if (!(err instanceof GatewayError)) deps.logger.error({ err: (err as Error).message, method: req.method, path: req.url?.split("?")[0] }, "request failed");
      const e = asGatewayError(err, "The gateway failed to handle the request.");
      if (res.headersSent) {
        res.destroy();
        return;
      }
      writeJson(res, e.status, e.body(), e.headers);
      // A refused body is not read: close the connection rather than leave it mid-request.
      if (!req.complete) res.once("finish", () => req.destroy());
    });
  });
  // Outlives load balancers' idle timeouts so a kept-alive connection is not closed under a request.
  server.keepAliveTimeout = 65_000;
  return server;
}

export function listenOn(server: Server, listen: string): Promise<string> {
  const i = listen.lastIndexOf(":");
  const host = listen.slice(0, i).replace(/^\[|\]$/g, "");
  const port = Number(listen.slice(i + 1));
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      const a = server.address() as AddressInfo;
      resolve(`http://${a.family === "IPv6" ? `[${a.address}]` : a.address}:${a.port}/v1`);
    });
  });
}

async function handle(deps: GatewayHttpDeps, req: IncomingMessage, res: ServerResponse, note: RequestNote): Promise<void> {
  const url = new URL(req.url ?? "/", "http://gateway");
  const path = url.pathname.replace(/\/+$/, "");
  const method = req.method ?? "GET";
  if (path === "/healthz" || path === "/v1/healthz") {
    note.route = "healthz";
    res.writeHead(200, { "content-type": "text/plain" });
    res.end("ok\n");
    return;
  }
  if (deps.probes && (path === "/livez" || path === "/readyz")) {
    note.route = path.slice(1);
    writeProbe(res, path === "/livez" ? deps.probes.liveness() : deps.probes.readiness());
    return;
  }
  const route = matchRoute(method, path);
  note.route = route.name;
  const { keys, gateway: limits } = deps.settings();
  const caller = keys.authenticate(req.headers.authorization);
  note.key = caller.keyName;
  await deps.limiter.take(caller);
  const json = (status: number, value: unknown) => {
    writeJson(res, status, JSON.stringify(value));
  };
  switch (route.name) {
    case "chat":
      return chatCompletion(deps.chat, caller, req.headers, await readJson(req, limits.max_body_bytes), res, note);
    case "models":
      return json(200, { object: "list", data: deps.models.list() });
    case "model":
      return json(200, deps.models.get(route.id));
    case "file-create":
      return json(200, await uploadFile(deps, caller, req, limits.max_file_bytes));
    case "file-list":
      return json(200, { object: "list", data: await deps.files.list(caller.tenant, url.searchParams.get("purpose") ?? undefined), has_more: false });
    case "file":
      return json(200, await deps.files.get(caller.tenant, route.id));
    case "file-delete":
      return json(200, await deps.files.delete(caller.tenant, route.id));
    case "file-content": {
      const data = await deps.files.content(caller.tenant, route.id);
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": String(data.byteLength) });
      res.end(data);
      return;
    }
    case "batch-create":
      return json(200, await deps.batches.create(caller, req.headers[TASK_HEADER], await readJson(req, limits.max_body_bytes), note));
    case "batch-list": {
      const q = ListBatchesQuerySchema.parse({ after: url.searchParams.get("after") ?? undefined, limit: url.searchParams.get("limit") });
      return json(200, deps.batches.list(caller, q.after, q.limit));
    }
    case "batch":
      return json(200, await deps.batches.get(caller, route.id));
    case "batch-cancel":
      return json(200, await deps.batches.cancel(caller, route.id));
    case "response-create":
      return deps.responses.create(caller, req.headers, await readJson(req, limits.max_body_bytes), res, note);
    case "response":
      return json(200, await deps.responses.get(caller, route.id));
    case "response-cancel":
      return json(200, await deps.responses.cancel(caller, route.id));
    case "response-delete":
      return json(200, await deps.responses.delete(caller, route.id));
  }
}

type Route =
  | { name: "chat" | "models" | "file-create" | "file-list" | "batch-create" | "batch-list" | "response-create" }
  | { name: "model" | "file" | "file-delete" | "file-content" | "batch" | "batch-cancel" | "response" | "response-cancel" | "response-delete"; id: string };

/** The route, or 404/405 in OpenAI's shape; checked before the key, as neither reveals anything. */
function matchRoute(method: string, path: string): Route {
  const allow = (allowed: string, route: Route): Route => {
    if (method !== allowed) throw new GatewayError(405, `Method ${method} is not allowed on ${path}; use ${allowed}.`, { code: "method_not_allowed" });
    return route;
  };
  if (path === "/v1/chat/completions") return allow("POST", { name: "chat" });
  if (path === "/v1/models") return allow("GET", { name: "models" });
  if (path.startsWith("/v1/models/")) return allow("GET", { name: "model", id: decodeURIComponent(path.slice("/v1/models/".length)) });
  if (path === "/v1/files") return method === "POST" ? { name: "file-create" } : allow("GET", { name: "file-list" });
  let m = /^\/v1\/files\/([^/]+)(\/content)?$/.exec(path);
  if (m) {
    const id = decodeURIComponent(m[1]!);
    if (m[2]) return allow("GET", { name: "file-content", id });
    return method === "DELETE" ? { name: "file-delete", id } : allow("GET", { name: "file", id });
  }
  if (path === "/v1/batches") return method === "POST" ? { name: "batch-create" } : allow("GET", { name: "batch-list" });
  m = /^\/v1\/batches\/([^/]+)(\/cancel)?$/.exec(path);
  if (m) {
    const id = decodeURIComponent(m[1]!);
    return m[2] ? allow("POST", { name: "batch-cancel", id }) : allow("GET", { name: "batch", id });
  }
  if (path === "/v1/responses") return allow("POST", { name: "response-create" });
  m = /^\/v1\/responses\/([^/]+)(\/cancel)?$/.exec(path);
  if (m) {
    const id = decodeURIComponent(m[1]!);
    if (m[2]) return allow("POST", { name: "response-cancel", id });
    return method === "DELETE" ? { name: "response-delete", id } : allow("GET", { name: "response", id });
  }
  throw new GatewayError(404, `Unknown request URL: ${method} ${path}.`, { code: "unknown_url" });
}

async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const tooLarge = () => new GatewayError(413, `The request body is over the ${limit}-byte limit.`, { code: "request_too_large" });
  const length = Number(req.headers["content-length"]);
  if (length > limit) throw tooLarge();
  // A declared length within the limit (what SDKs send): node's parser delivers no more than it, so
  // plain events do; an async iterator costs a promise per chunk and more on the hot path (profiled).
  if (length >= 0) return readDeclared(req);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw tooLarge();
    chunks.push(chunk);
  }
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
}

function readDeclared(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.once("end", () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)));
    req.once("error", reject);
    req.once("close", () => {
      if (!req.complete) reject(new Error("the request ended before its body"));
    });
  });
}

async function readJson(req: IncomingMessage, limit: number): Promise<unknown> {
  const body = await readBody(req, limit);
  try {
    return JSON.parse(body.toString("utf8"));
  } catch {
    throw new GatewayError(400, "We could not parse the JSON body of your request. It should be a JSON object.", { code: "invalid_json" });
  }
}

/** POST /v1/files: multipart/form-data with `file` and `purpose`, as the SDKs send it. */
async function uploadFile(deps: GatewayHttpDeps, caller: Caller, req: IncomingMessage, maxFileBytes: number) {
  const type = req.headers["content-type"] ?? "";
  if (!type.startsWith("multipart/form-data")) throw new GatewayError(400, "Upload a file as multipart/form-data with the fields file and purpose.", { code: "invalid_content_type" });
  const body = await readBody(req, maxFileBytes + MULTIPART_OVERHEAD);
  let form: FormData;
  try {
    form = await new Response(new Uint8Array(body), { headers: { "content-type": type } }).formData();
  } catch {
    throw new GatewayError(400, "The multipart body could not be parsed.", { code: "invalid_multipart" });
  }
  const purpose = form.get("purpose");
  const file = form.get("file");
  if (purpose !== "batch") {
    throw new GatewayError(400, 'purpose must be "batch": the gateway stores batch input files (the batch_output ones are those it writes).', { param: "purpose" });
  }
  if (!(file instanceof Blob)) throw new GatewayError(400, "The upload needs a file field.", { param: "file" });
  if (file.size > maxFileBytes) throw new GatewayError(413, `The file is over the ${maxFileBytes}-byte limit.`, { code: "file_too_large", param: "file" });
  const filename = file instanceof File && file.name ? file.name : "upload.jsonl";
  return deps.files.put(caller.tenant, filename, "batch", new Uint8Array(await file.arrayBuffer()));
}

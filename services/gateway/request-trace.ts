/**
 * The gateway's part of a trace: a SERVER span per HTTP request when tracing is on, a child of
 * the caller's `traceparent`; and the trace context a chat completion's job carries to the
 * router (on the request note). With tracing off, the caller's own `traceparent` is passed
 * through unchanged, so a router with tracing on still joins the caller's trace.
 */
import type { IncomingMessage } from "node:http";
import type { RequestNote } from "../../shared/ops/gateway-metrics.ts";
import { KIND, STATUS_ERROR, TRACEPARENT, TRACESTATE, type Span, type Tracing } from "../../shared/ops/tracing.ts";

/** version-traceid-parentid-flags; anything else is not passed on. */
const TRACEPARENT_PATTERN = /^[\da-f]{2}-[\da-f]{32}-[\da-f]{16}-[\da-f]{2}$/;
/** W3C caps tracestate at 32 members; a longer header is dropped rather than carried on every job. */
const TRACESTATE_MAX = 512;

/** The templates of `http.route`, by route name (server.ts). */
const ROUTES: Record<string, string> = {
  chat: "/v1/chat/completions",
  models: "/v1/models",
  model: "/v1/models/{model}",
  "file-create": "/v1/files",
  "file-list": "/v1/files",
  file: "/v1/files/{file_id}",
  "file-delete": "/v1/files/{file_id}",
  "file-content": "/v1/files/{file_id}/content",
  "batch-create": "/v1/batches",
  "batch-list": "/v1/batches",
  batch: "/v1/batches/{batch_id}",
  "batch-cancel": "/v1/batches/{batch_id}/cancel",
};

/** With tracing off: the caller's trace context, if well-formed, goes on with the job. */
export function passTraceContext(req: IncomingMessage, note: RequestNote): void {
  const tp = req.headers[TRACEPARENT];
  if (typeof tp !== "string" || !TRACEPARENT_PATTERN.test(tp)) return;
  note.traceparent = tp;
  const ts = req.headers[TRACESTATE];
  if (typeof ts === "string" && ts.length <= TRACESTATE_MAX) note.tracestate = ts;
}

/** Starts the request's SERVER span and makes it the parent of the job's. */
export function startRequestSpan(tracing: Tracing, req: IncomingMessage, note: RequestNote): Span {
  const tp = req.headers[TRACEPARENT];
  const ts = req.headers[TRACESTATE];
  const parent = tracing.extract(typeof tp === "string" ? tp : undefined, typeof ts === "string" ? ts : undefined);
  const method = req.method ?? "GET";
  const span = tracing.tracer.startSpan(
    method,
    {
      kind: KIND.server,
      attributes: {
        "http.request.method": method,
        "url.path": req.url?.split("?")[0],
        "url.scheme": "http",
        "user_agent.original": req.headers["user-agent"],
      },
    },
    parent,
  );
  const carried = tracing.inject(span);
  note.traceparent = carried.traceparent;
  note.tracestate = carried.tracestate;
  return span;
}

/** Ends the request's span with what the request came to. */
export function endRequestSpan(span: Span, note: RequestNote, status: number): void {
  const route = ROUTES[note.route];
  if (route !== undefined) {
    span.updateName(`${note.method} ${route}`);
    span.setAttribute("http.route", route);
  }
  span.setAttribute("http.response.status_code", status);
  if (note.task !== undefined) span.setAttribute("switchyard.task", note.task);
  if (note.model !== undefined) span.setAttribute("switchyard.model", note.model);
  if (note.key !== undefined) span.setAttribute("switchyard.api_key", note.key);
  if (status >= 500) {
    span.setStatus({ code: STATUS_ERROR });
    span.setAttribute("error.type", String(status));
  }
  span.end();
}

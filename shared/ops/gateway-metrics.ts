/**
 * The gateway's request metrics and its access log line. Routes are the gateway's fixed route
 * names (never paths, which carry file and batch ids); statuses are the few it answers with.
 * Children are cached per (route, status) in nested maps, so a request allocates nothing here.
 */
import type { Logger } from "../log.ts";
import { Counter, Histogram, LATENCY_BUCKETS, type CounterChild, type HistogramChild } from "./metrics.ts";
import type { Ops } from "./server.ts";

/** What the server learns about a request while serving it, for the metrics and the access log. */
export interface RequestNote {
  /** The route's name (`chat`, `models`, `batch-create`, …), `unknown` for a 404/405. */
  route: string;
  method: string;
  /** The API key's name from the config (never the key). */
  key: string | undefined;
  task: string | undefined;
  /** `provider/model` that served a chat completion. */
  model: string | undefined;
  /**
   * The W3C trace context a job published for this request carries (NATS headers): the
   * request span's when tracing is on, else the caller's own `traceparent`, passed through.
   */
  traceparent?: string | undefined;
  tracestate?: string | undefined;
}

export function newRequestNote(method: string): RequestNote {
  return { route: "unknown", method, key: undefined, task: undefined, model: undefined, traceparent: undefined, tracestate: undefined };
}

interface Children {
  readonly count: CounterChild;
  readonly seconds: HistogramChild;
}

export class GatewayMetrics {
  readonly #requests: Counter;
  readonly #seconds: Histogram;
  readonly #children = new Map<string, Map<number, Children>>();

  constructor(ops: Pick<Ops, "metrics">) {
    this.#requests = ops.metrics.add(new Counter("switchyard_gateway_requests_total", "HTTP requests answered by the gateway, by route and status (499: the client went away first).", ["route", "status"]));
    this.#seconds = ops.metrics.add(new Histogram("switchyard_gateway_request_duration_seconds", "From the request's arrival to its last byte written, by route and status.", ["route", "status"], LATENCY_BUCKETS));
  }

  observe(route: string, status: number, ms: number): void {
    let byStatus = this.#children.get(route);
    if (!byStatus) this.#children.set(route, (byStatus = new Map()));
    let c = byStatus.get(status);
    if (!c) byStatus.set(status, (c = { count: this.#requests.labels(route, String(status)), seconds: this.#seconds.labels(route, String(status)) }));
    c.count.inc();
    c.seconds.observe(ms / 1000);
  }
}

const shared = new WeakMap<object, GatewayMetrics>();

/** The process's gateway metrics in `ops`, registered on first use. */
export function gatewayMetrics(ops: Pick<Ops, "metrics">): GatewayMetrics {
  let m = shared.get(ops.metrics);
  if (!m) shared.set(ops.metrics, (m = new GatewayMetrics(ops)));
  return m;
}

/** The access log line: what was asked and how it went, never a body, a key or a path. */
export function logRequest(logger: Logger, note: RequestNote, status: number, ms: number): void {
  logger.info({ route: note.route, method: note.method, status, duration_ms: Math.round(ms * 10) / 10, task: note.task, model: note.model, key: note.key }, "request");
}

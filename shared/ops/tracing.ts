/**
 * OpenTelemetry tracing, set up from the standard OTEL_* variables and off without them. On
 * when `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT` is set (and
 * neither `OTEL_SDK_DISABLED=true` nor `OTEL_TRACES_EXPORTER=none`): spans go over OTLP/HTTP
 * (JSON) in batches, sampled by `OTEL_TRACES_SAMPLER` (default: parent-based, always on),
 * named by `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`.
 *
 * Off, `startTracing` resolves to undefined and callers skip every tracing branch on that one
 * check: no span objects, no header parsing, and the SDK is not even loaded (it is imported
 * only when tracing is on: about 65 ms of start-up and a few MB saved). Each service owns its
 * provider (nothing global is registered), so services sharing a process (the demo, tests)
 * keep their own service name, and the W3C trace context travels explicitly (HTTP headers in,
 * NATS headers between services).
 */
import type { Attributes, Context, Span, SpanKind, SpanStatusCode, Tracer } from "@opentelemetry/api";
import { headers as natsHeaders, type MsgHdrs } from "@nats-io/transport-node";
import { packageVersion } from "../package-root.ts";

export type { Attributes, Context, Span };

/** W3C trace-context header names, as they travel on HTTP requests and NATS messages. */
export const TRACEPARENT = "traceparent";
export const TRACESTATE = "tracestate";

/**
 * A caller's trace context onto NATS headers, so the router's job span joins the caller's
 * trace (README "Tracing"): set on `h`, or on new headers when there is a context to carry;
 * `h` as given (maybe undefined) when there is none.
 */
export function withTraceContext(trace: { readonly traceparent?: string | undefined; readonly tracestate?: string | undefined } | undefined, h?: MsgHdrs): MsgHdrs | undefined {
  if (!trace?.traceparent) return h;
  const out = h ?? natsHeaders();
  out.set(TRACEPARENT, trace.traceparent);
  if (trace.tracestate) out.set(TRACESTATE, trace.tracestate);
  return out;
}

/** @opentelemetry/api's SpanKind values, without loading the API when tracing is off. */
export const KIND = {
  internal: 0 as SpanKind,
  server: 1 as SpanKind,
  client: 2 as SpanKind,
  producer: 3 as SpanKind,
  consumer: 4 as SpanKind,
} as const;
export const STATUS_ERROR = 2 as SpanStatusCode;

export interface Tracing {
  readonly tracer: Tracer;
  /** The parent context a `traceparent` (and `tracestate`) carry; the root context when absent or malformed. */
  extract(traceparent: string | null | undefined, tracestate?: string | null): Context;
  /** `parent` with `span` as its active span: the parent of spans started in it. */
  withSpan(parent: Context, span: Span): Context;
  /** The `traceparent` and `tracestate` values that make `span` the parent downstream. */
  inject(span: Span): { traceparent?: string; tracestate?: string };
  /** Exports what is buffered and stops; bounded, as the collector may be gone. */
  shutdown(): Promise<void>;
}

/** How long a stop waits for the last spans to reach the collector. */
const SHUTDOWN_TIMEOUT_MS = 2_000;

/** Whether the environment turns tracing on. */
export function tracingEnabled(env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === "true") return false;
  if (env.OTEL_TRACES_EXPORTER?.trim().toLowerCase() === "none") return false;
  return Boolean(env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim() || env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim());
}

/**
 * The service's tracing, or undefined when the environment does not turn it on. `serviceName`
 * applies unless OTEL_SERVICE_NAME (or service.name in OTEL_RESOURCE_ATTRIBUTES) says
 * otherwise. `env` decides on/off and the endpoint; the SDK reads the rest (sampler, batch
 * sizes, exporter headers, timeout, TLS files) from process.env.
 */
export async function startTracing(serviceName: string, env: NodeJS.ProcessEnv = process.env): Promise<Tracing | undefined> {
  if (!tracingEnabled(env)) return undefined;
  const [{ ROOT_CONTEXT, trace }, { W3CTraceContextPropagator }, { OTLPTraceExporter }, { defaultResource, detectResources, envDetector, resourceFromAttributes }, { BasicTracerProvider, BatchSpanProcessor }, { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION }] =
    await Promise.all([
      import("@opentelemetry/api"),
      import("@opentelemetry/core"),
      import("@opentelemetry/exporter-trace-otlp-http"),
      import("@opentelemetry/resources"),
      import("@opentelemetry/sdk-trace-base"),
      import("@opentelemetry/semantic-conventions"),
    ]);
  const version = packageVersion();
  const resource = defaultResource()
    .merge(resourceFromAttributes({ [ATTR_SERVICE_NAME]: serviceName, [ATTR_SERVICE_VERSION]: version }))
    .merge(detectResources({ detectors: [envDetector] }));
  const provider = new BasicTracerProvider({ resource, spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter({ url: tracesUrl(env) }))] });
  const tracer = provider.getTracer("switchyard", version);
  const propagator = new W3CTraceContextPropagator();
  let stopped: Promise<void> | undefined;
  return {
    tracer,
    extract(traceparent, tracestate) {
      if (!traceparent) return ROOT_CONTEXT;
      return propagator.extract(ROOT_CONTEXT, { traceparent, tracestate: tracestate ?? undefined }, recordGetter);
    },
    withSpan: (parent, span) => trace.setSpan(parent, span),
    inject(span) {
      const out: { traceparent?: string; tracestate?: string } = {};
      propagator.inject(trace.setSpan(ROOT_CONTEXT, span), out, recordSetter);
      return out;
    },
    shutdown() {
      return (stopped ??= (async () => {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([provider.shutdown().catch(() => {}), new Promise<void>((r) => (timer = setTimeout(r, SHUTDOWN_TIMEOUT_MS)))]);
        clearTimeout(timer);
      })());
    },
  };
}

/** Marks `span` failed with `err`'s message; `type` is its `error.type` (else the error's name). */
export function failSpan(span: Span, err: unknown, type?: string): void {
  const message = err instanceof Error ? err.message : String(err);
  span.setStatus({ code: STATUS_ERROR, message });
  span.setAttribute("error.type", type ?? (err instanceof Error ? err.name : "error"));
}

/** OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as given, else OTEL_EXPORTER_OTLP_ENDPOINT with the signal's path. */
function tracesUrl(env: NodeJS.ProcessEnv): string {
  const traces = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim();
  if (traces) return traces;
  return `${env.OTEL_EXPORTER_OTLP_ENDPOINT!.trim().replace(/\/+$/, "")}/v1/traces`;
}

type Carrier = Record<string, string | undefined>;
const recordGetter = {
  get: (c: Carrier, key: string) => c[key],
  keys: (c: Carrier) => Object.keys(c),
};
const recordSetter = {
  set: (c: Carrier, key: string, value: string) => {
    c[key] = value;
  },
};

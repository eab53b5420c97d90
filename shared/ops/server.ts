/**
 * The ops endpoint of a Switchyard process: `GET /metrics` (Prometheus text format),
 * `GET /livez` and `GET /readyz` (200 or 503 with the failing conditions, one a line). One per
 * process, whatever runs in it; `switchyard up` runs every service in one process and so one
 * of these. Plain node:http: three routes need no framework.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "../log.ts";
import { Gauge, MetricSet } from "./metrics.ts";
import { eventLoopLagSeconds, registerProcessMetrics } from "./process-metrics.ts";
import { Probes, type ProbeReport } from "./probes.ts";

/** What one process exposes: its metric families (process metrics among them) and its probes. */
export interface Ops {
  readonly metrics: MetricSet;
  readonly probes: Probes;
  /** The Prometheus text of every metric. */
  render(): Promise<string>;
}

export interface OpsOptions {
  /** The Node process metrics (CPU, memory, heap, event loop lag; `process-metrics.ts`). @defaultValue true */
  readonly processMetrics?: boolean;
}

export function createOps({ processMetrics = true }: OpsOptions = {}): Ops {
  const metrics = new MetricSet();
  const probes = new Probes();
  let lag = 0;
  if (processMetrics) {
    registerProcessMetrics(metrics);
    metrics.add(new Gauge("nodejs_eventloop_lag_seconds", "Lag of the event loop at the scrape, in seconds.", [], (s) => s(lag)));
  }
  return {
    metrics,
    probes,
    async render() {
      if (processMetrics) lag = await eventLoopLagSeconds();
      return metrics.render();
    },
  };
}

export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** Answers a probe request: 200 "ok", or 503 with one failing condition a line. */
export function writeProbe(res: ServerResponse, report: ProbeReport): void {
  res.writeHead(report.ok ? 200 : 503, { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" });
  res.end(report.ok ? "ok\n" : `${report.failing.join("\n")}\n`);
}

/** Handles /livez, /readyz (and /metrics when `withMetrics`); false when the path is none of them. */
export function serveOps(ops: Ops, req: IncomingMessage, res: ServerResponse, withMetrics: boolean): boolean {
  const path = (req.url ?? "/").split("?")[0]!.replace(/\/+$/, "");
  if (path === "/livez") writeProbe(res, ops.probes.liveness());
  else if (path === "/readyz") writeProbe(res, ops.probes.readiness());
  else if (path === "/metrics" && withMetrics) {
    ops.render().then(
      (text) => {
        res.writeHead(200, { "content-type": METRICS_CONTENT_TYPE });
        res.end(text);
      },
      (err: unknown) => {
        res.writeHead(500, { "content-type": "text/plain" });
        res.end(`${(err as Error).message}\n`);
      },
    );
  } else return false;
  return true;
}

export interface OpsServer {
  /** e.g. `http://127.0.0.1:9464` */
  readonly url: string;
  close(): Promise<void>;
}

/** Serves `ops` on `listen` (`host:port`, port 0 for any free one). */
export async function startOpsServer(ops: Ops, listen: string, logger: Logger): Promise<OpsServer> {
  const server: Server = createServer((req, res) => {
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET" }).end();
      return;
    }
    if (!serveOps(ops, req, res, true)) res.writeHead(404, { "content-type": "text/plain" }).end("GET /metrics, /livez or /readyz\n");
  });
  const i = listen.lastIndexOf(":");
  const host = listen.slice(0, i).replace(/^\[|\]$/g, "");
  const port = Number(listen.slice(i + 1));
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  // A scrape must never keep the process alive.
  server.unref();
  const a = server.address() as AddressInfo;
  const url = `http://${a.family === "IPv6" ? `[${a.address}]` : a.address}:${a.port}`;
  logger.info({ url: `${url}/metrics` }, "ops endpoint listening (/metrics, /livez, /readyz)");
  return {
    url,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

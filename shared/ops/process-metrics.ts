/**
 * The Node process metrics every scrape carries, under the names prom-client and the usual
 * Node dashboards use. All are read at scrape time: nothing runs between scrapes. (prom-client's
 * `collectDefaultMetrics` also installs a GC observer and an event-loop-delay monitor; with
 * them a router measured 3.6 % more CPU per job side by side (a driver since folded into
 * bench/scenarios/metrics.ts),
 * against 0.0 % without: within this machine's noise, but over the 3 % budget for metrics.)
 */
import { Counter, Gauge, type MetricSet } from "./metrics.ts";

const START_SECONDS = Math.round(Date.now() / 1000 - process.uptime());

class ScrapeCounter extends Counter {
  constructor(
    name: string,
    help: string,
    readonly read: () => number,
  ) {
    super(name, help, []);
  }
  override render(out: string[]): void {
    const c = this.labels();
    c.value = this.read();
    super.render(out);
  }
}

export function registerProcessMetrics(set: MetricSet): void {
  set.add(new ScrapeCounter("process_cpu_user_seconds_total", "User CPU time spent, in seconds.", () => process.cpuUsage().user / 1e6));
  set.add(new ScrapeCounter("process_cpu_system_seconds_total", "System CPU time spent, in seconds.", () => process.cpuUsage().system / 1e6));
  set.add(
    new ScrapeCounter("process_cpu_seconds_total", "User and system CPU time spent, in seconds.", () => {
      const u = process.cpuUsage();
      return (u.user + u.system) / 1e6;
    }),
  );
  set.add(new Gauge("process_start_time_seconds", "Start time of the process since the Unix epoch, in seconds.", [], (s) => s(START_SECONDS)));
  set.add(new Gauge("process_resident_memory_bytes", "Resident memory size, in bytes.", [], (s) => s(process.memoryUsage.rss())));
  set.add(
    new Gauge("nodejs_heap_size_total_bytes", "V8 heap size, in bytes.", [], (s) => s(process.memoryUsage().heapTotal)),
  );
  set.add(new Gauge("nodejs_heap_size_used_bytes", "V8 heap used, in bytes.", [], (s) => s(process.memoryUsage().heapUsed)));
  set.add(new Gauge("nodejs_external_memory_bytes", "Memory of C++ objects bound to JavaScript objects (buffers among them), in bytes.", [], (s) => s(process.memoryUsage().external)));
}

/** How late a callback queued now runs: the event loop's lag at this scrape, in seconds. */
export function eventLoopLagSeconds(): Promise<number> {
  const t0 = process.hrtime.bigint();
  return new Promise((resolve) => setImmediate(() => resolve(Number(process.hrtime.bigint() - t0) / 1e9)));
}

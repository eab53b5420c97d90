/**
 * The HTTP client of the gateway benches (bench/gateway-measure.ts, bench/gateway-compare.ts,
 * bench/fast-path-floor.ts): `c` callers on one undici Pool, each sending the next request as
 * soon as the last one answered, for `ms`.
 */
import { createServer } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { Pool } from "undici";
import { percentile } from "../../shared/stats.ts";

export interface Run {
  readonly rps: number;
  readonly p50: number;
  readonly p99: number;
  readonly errors: number;
}

export async function drive(origin: string, path: string, headers: Record<string, string>, body: string, c: number, ms: number): Promise<Run> {
  const pool = new Pool(origin, { connections: c, pipelining: 1 });
  const latencies: number[] = [];
  let errors = 0;
  const end = performance.now() + ms;
  await Promise.all(
    Array.from({ length: c }, async () => {
      while (performance.now() < end) {
        const t0 = performance.now();
        const res = await pool.request({ method: "POST", path, headers: { "content-type": "application/json", ...headers }, body });
        await res.body.text();
        if (res.statusCode === 200) latencies.push(performance.now() - t0);
        else errors++;
      }
    }),
  );
  await pool.close();
  latencies.sort((a, b) => a - b);
  return { rps: latencies.length / (ms / 1000), p50: percentile(latencies, 50), p99: percentile(latencies, 99), errors };
}

/** Waits (at most 30 s) until `url` answers 2xx to `init`. */
export async function ready(url: string, init: RequestInit = {}): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (await fetch(url, init).then((r) => r.ok, () => false)) return;
    await sleep(100);
  }
  throw new Error(`${url} did not come up`);
}

/** A TCP port free on loopback now. */
export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

const MESSAGES = [
  { role: "system", content: "You are a content moderation classifier. Answer with JSON." },
  { role: "user", content: "have a nice day" },
];
/** The same request both ways: the gateway's caller names no model (the task's policy picks), the direct one names the provider's. */
export const GATEWAY_BODY = JSON.stringify({ model: "auto", messages: MESSAGES });
export const DIRECT_BODY = JSON.stringify({ model: "budget-lite-1", messages: MESSAGES });
/** The sim-provider's scenario: one model answering at once. */
export const SIM_SCENARIO = "seed: 1\nproviders:\n  budget:\n    models:\n      budget-lite-1: {}\n";

/** A one-router, one-gateway deployment on the sim-provider's budget model; the key named `key` with the digest `sha256` may call it. */
export function gatewayConfig(o: { simUrl: string; port: number; interactive: "queue" | "request"; key: string; sha256: string; namespace?: string; record?: boolean; maxBytes: string }): string {
  return `${o.namespace === undefined ? "" : `namespace: ${o.namespace}\n`}router: { max_in_flight: 1024, ack_wait: 30s, record_interactive: ${o.record ?? true} }
streams: { max_bytes: ${o.maxBytes} }
providers:
  budget:
    dialect: openai
    base_url: ${o.simUrl}/budget/v1
    timeout_ms: 5s
    models:
      lite: { upstream: budget-lite-1, input_per_mtok: 0.05, output_per_mtok: 0.2, context_window: 16000 }
tasks:
  moderation:
    tiers: [{ models: [budget/lite] }]
gateway:
  listen: 127.0.0.1:${o.port}
  interactive: ${o.interactive}
  keys:
    ${o.key}: { sha256: ${o.sha256}, tenant: ${o.key}, task: moderation, requests_per_second: 1000000 }
`;
}

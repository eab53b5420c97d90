/**
 * Time to first token through the gateway against the provider's own (issue 15, item 2: the
 * gateway's at most the provider's + 2 ms). One nats-server, one sim-provider, one router and
 * one gateway (`gateway.interactive: request`), each its own process; one client, one request
 * at a time, alternating between the two paths so that both see the same machine load.
 *
 * The client is the same for both: undici, the body read as Server-Sent Events, the clock
 * stopped at the first event whose delta carries text. The sim answers after `--latency` ms
 * (its time to first token) and then streams a token every `--token-delay` ms, so the gateway's
 * first chunk is relayed while the provider is still answering.
 *
 * The same for the Responses API streamed through the gateway (its first
 * `response.output_text.delta`), and how many events with text each path's answer came in.
 *
 * Then the CPU each path costs the gateway and the router per request (from /proc), streamed and
 * unstreamed in alternating phases of `--requests` / 2 each.
 *
 *   npx tsx bench/ttft.ts [--requests 400] [--latency 0] [--token-delay 2] [--cpu-prof <dir>]
 */
import { percentile } from "../shared/stats.ts";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Agent, request } from "undici";
import { hashKey } from "../services/gateway/auth.ts";
import { SseDecoder } from "../shared/adapters/convert.ts";
import type { SseEvent } from "../shared/adapters/types.ts";
import { startNatsServer } from "../shared/nats/server-process.ts";
import { cpuMs, spawnCli } from "./lib/procs.ts";

const { values } = parseArgs({
  options: { requests: { type: "string", default: "400" }, latency: { type: "string", default: "0" }, "token-delay": { type: "string", default: "2" }, "cpu-prof": { type: "string" } },
});
/** `--cpu-prof <dir>`: a V8 CPU profile of the router and the gateway there (bench/profile-summary.ts reads them). */
const prof = (name: string) => (values["cpu-prof"] ? ["--cpu-prof", `--cpu-prof-dir=${join(values["cpu-prof"], name)}`] : []);
const REQUESTS = Number(values.requests);
const KEY = "sk-bench-ttft";

const dir = await mkdtemp(join(tmpdir(), "switchyard-ttft-"));
const nats = await startNatsServer();
const scenario = join(dir, "scenario.yaml");
await writeFile(scenario, `providers:\n  budget:\n    models:\n      budget-lite: { latency_ms: { min: ${values.latency}, max: ${values.latency} }, stream_token_delay_ms: ${values["token-delay"]} }\n`);
const sim = spawnCli("sim-provider", ["sim-provider", "--port", "0", "--scenario", scenario], { LOG_LEVEL: "info" });
const simUrl = (JSON.parse(await sim.waitFor(/sim-provider listening/)) as { url: string }).url;
const config = join(dir, "config.yaml");
await writeFile(
  config,
  `providers:
  budget:
    dialect: openai
    base_url: ${simUrl}/budget/v1
    models:
      lite: { upstream: budget-lite, input_per_mtok: 0.05, output_per_mtok: 0.2, context_window: 16000 }
tasks:
  chat:
    tiers:
      - models: [budget/lite]
gateway:
  listen: 127.0.0.1:0
  interactive: request
  keys:
    bench: { sha256: ${hashKey(KEY)}, tenant: bench, task: chat, requests_per_second: 100000 }
`,
);
const env = { NATS_URL: nats.url, SWITCHYARD_CONFIG: config, LOG_LEVEL: "info" };
const provision = spawnCli("provision", ["provision"], env);
await provision.exited;
const router = spawnCli("router", ["router"], env, prof("router"));
const gateway = spawnCli("gateway", ["gateway"], env, prof("gateway"));
// Both watched from the start: a line printed before its watcher is not seen.
const [, listening] = await Promise.all([router.waitFor(/router worker started/), gateway.waitFor(/^\{.*"gateway listening"/)]);
const gatewayUrl = (JSON.parse(listening) as { url: string }).url.replace(/\/v1\/?$/, "");

const agent = new Agent({ connections: 4, keepAliveTimeout: 30_000 });
const body = JSON.stringify({ model: "budget-lite", messages: [{ role: "user", content: "Tell me, in a few words, what the weather is like in Lisbon in spring." }], stream: true });

/** How a stream's first text and its end look: chat chunks, or the Responses API's events. */
interface Framing {
  readonly body: string;
  isText(event: SseEvent): boolean;
  isEnd(event: SseEvent): boolean;
}
const chat: Framing = { body, isText: (e) => /"content":"[^"]/.test(e.data), isEnd: (e) => e.data === "[DONE]" };
const responses: Framing = {
  body: JSON.stringify({ model: "budget-lite", input: "Tell me, in a few words, what the weather is like in Lisbon in spring.", stream: true, store: false }),
  isText: (e) => e.event === "response.output_text.delta",
  isEnd: (e) => e.event === "response.completed",
};

/** Events with text per answer, by URL: how many pieces each path sent (the router gathers the pieces of 10 ms into one). */
const textEvents = new Map<string, number[]>();

/** Milliseconds from sending the request to the first event with text; throws unless the stream then ended as it should. */
async function ttft(url: string, headers: Record<string, string>, framing: Framing = chat): Promise<number> {
  const t0 = performance.now();
  const res = await request(url, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: framing.body, dispatcher: agent });
  if (res.statusCode !== 200) throw new Error(`${url}: ${res.statusCode} ${await res.body.text()}`);
  res.body.setEncoding("utf8");
  const decoder = new SseDecoder();
  let first: number | undefined;
  let done = false;
  let texts = 0;
  for await (const piece of res.body as AsyncIterable<string>) {
    for (const event of decoder.push(piece)) {
      if (framing.isEnd(event)) done = true;
      else if (framing.isText(event)) {
        texts++;
        first ??= performance.now() - t0;
      }
    }
  }
  if (first === undefined || !done) throw new Error(`${url}: no text, or no end of stream`);
  textEvents.set(url, [...(textEvents.get(url) ?? []), texts]);
  return first;
}

const direct = () => ttft(`${simUrl}/budget/v1/chat/completions`, {});
const viaGateway = () => ttft(`${gatewayUrl}/v1/chat/completions`, { authorization: `Bearer ${KEY}` });
const responsesViaGateway = () => ttft(`${gatewayUrl}/v1/responses`, { authorization: `Bearer ${KEY}` }, responses);

/** The unstreamed answer's whole round trip, for the fast path's own overhead in the same run. */
async function whole(url: string, headers: Record<string, string>): Promise<number> {
  const t0 = performance.now();
  const res = await request(url, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: plainBody, dispatcher: agent });
  await res.body.text();
  if (res.statusCode !== 200) throw new Error(`${url}: ${res.statusCode}`);
  return performance.now() - t0;
}
const plainBody = body.replace('"stream":true', '"stream":false');
const directWhole = () => whole(`${simUrl}/budget/v1/chat/completions`, {});
const gatewayWhole = () => whole(`${gatewayUrl}/v1/chat/completions`, { authorization: `Bearer ${KEY}` });

try {
  // Warm both paths (connections, JIT, the router's first plan) before anything counts.
  for (let i = 0; i < 50; i++) {
    await direct();
    await viaGateway();
    await responsesViaGateway();
  }
  const a: number[] = [];
  const b: number[] = [];
  const c: number[] = [];
  const d: number[] = [];
  const e: number[] = [];
  for (let i = 0; i < REQUESTS; i++) {
    // Alternate which path goes first, so neither always follows the other's GC or timers.
    if (i % 2 === 0) {
      a.push(await direct());
      b.push(await viaGateway());
      e.push(await responsesViaGateway());
      c.push(await directWhole());
      d.push(await gatewayWhole());
    } else {
      d.push(await gatewayWhole());
      c.push(await directWhole());
      e.push(await responsesViaGateway());
      b.push(await viaGateway());
      a.push(await direct());
    }
  }
  const q = (xs: number[], p: number) => percentile([...xs].sort((x, y) => x - y), p * 100);
  const diffs = a.map((x, i) => b[i]! - x);
  const row = (name: string, xs: number[]) => `${name.padEnd(28)} p50 ${q(xs, 0.5).toFixed(2).padStart(6)} ms   p90 ${q(xs, 0.9).toFixed(2).padStart(6)} ms   p99 ${q(xs, 0.99).toFixed(2).padStart(6)} ms`;
  console.log(`time to first token, ${REQUESTS} requests per path, c=1, alternating; sim latency ${values.latency} ms, ${values["token-delay"]} ms per token`);
  console.log(row("provider (sim) direct", a));
  console.log(row("through gateway + router", b));
  console.log(row("added (paired difference)", diffs));
  console.log(row("Responses API, added", a.map((x, i) => e[i]! - x)));
  console.log(row("unstreamed, direct", c));
  console.log(row("unstreamed, through gateway", d));
  console.log(row("unstreamed added (paired)", c.map((x, i) => d[i]! - x)));
  console.log(`events with text per answer (median): ${[...textEvents].map(([url, ns]) => `${new URL(url).pathname} ${q(ns, 0.5)}`).join(", ")}`);

  // A streamed request lasts the whole answer (~45 tokens × the token delay), so the services'
  // idle work (timers, NATS pings, pull loops) over that wall time is part of its figure: an
  // idle phase as long as the streamed ones says how much.
  const cpu = { streamed: { gateway: 0, router: 0, n: 0, wall: 0 }, unstreamed: { gateway: 0, router: 0, n: 0, wall: 0 } };
  for (let phase = 0; phase < 4; phase++) {
    const kind = phase % 2 === 0 ? "streamed" : "unstreamed";
    const g0 = cpuMs(gateway.pid);
    const r0 = cpuMs(router.pid);
    const t0 = performance.now();
    for (let i = 0; i < REQUESTS / 2; i++) await (kind === "streamed" ? viaGateway() : gatewayWhole());
    cpu[kind].wall += performance.now() - t0;
    cpu[kind].gateway += cpuMs(gateway.pid) - g0;
    cpu[kind].router += cpuMs(router.pid) - r0;
    cpu[kind].n += REQUESTS / 2;
  }
  const g0 = cpuMs(gateway.pid);
  const r0 = cpuMs(router.pid);
  await new Promise((r) => setTimeout(r, cpu.streamed.wall));
  const idle = { gateway: cpuMs(gateway.pid) - g0, router: cpuMs(router.pid) - r0 };
  for (const kind of ["streamed", "unstreamed"] as const) {
    const k = cpu[kind];
    console.log(`CPU per request, ${kind.padEnd(10)}  gateway ${(k.gateway / k.n).toFixed(3)} ms   router ${(k.router / k.n).toFixed(3)} ms   (${k.n} requests, ${(k.wall / k.n).toFixed(1)} ms each)`);
  }
  const n = cpu.streamed.n;
  console.log(`CPU idle over a streamed request's wall time  gateway ${(idle.gateway / n).toFixed(3)} ms   router ${(idle.router / n).toFixed(3)} ms`);
} finally {
  await agent.close();
  await gateway.stop();
  await router.stop();
  await sim.stop();
  await nats.stop();
  await rm(dir, { recursive: true, force: true });
}

/**
 * Limit (b): the router's provider path with no queue. CONCURRENCY loops each build the
 * OpenAI request with the adapter, call the sim-provider through the same undici Pool client
 * the router uses (shared/adapters/http.ts), and parse the reply with the adapter. After
 * WARMUP_MS it counts calls and its own CPU for DURATION_MS, then prints one JSON line.
 * Env: BASE_URL (the provider's /v1 URL), API_KEY, UPSTREAM, CONCURRENCY, WARMUP_MS, DURATION_MS.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { ADAPTERS } from "../../shared/adapters/index.ts";
import { createProviderClient } from "../../shared/adapters/http.ts";
import { jobRequest } from "../lib/jobs.ts";

const env = (name: string) => process.env[name] ?? "";
const concurrency = Number(env("CONCURRENCY"));
const adapter = ADAPTERS.openai;
const target = { provider: "bench", upstream: env("UPSTREAM"), apiKey: env("API_KEY") };
const client = createProviderClient({ base_url: env("BASE_URL"), max_concurrency: concurrency });
let calls = 0;
let stopping = false;

async function loop(i: number): Promise<void> {
  const request = jobRequest(i);
  while (!stopping) {
    const reply = await client.send(adapter.toRequest(request, target), 5_000);
    adapter.fromResponse(reply, request);
    calls++;
  }
}

const loops = Array.from({ length: concurrency }, (_, i) => loop(i));
await sleep(Number(env("WARMUP_MS")));
const calls0 = calls;
const cpu0 = process.cpuUsage();
const t0 = performance.now();
// The bench reads the sim-provider's CPU when it sees this line and the result line.
process.stdout.write("measuring\n");
await sleep(Number(env("DURATION_MS")));
const seconds = (performance.now() - t0) / 1000;
const cpu = process.cpuUsage(cpu0);
process.stdout.write(`${JSON.stringify({ calls: calls - calls0, seconds, cpuMs: (cpu.user + cpu.system) / 1000 })}\n`);
stopping = true;
await Promise.all(loops);
await client.close();

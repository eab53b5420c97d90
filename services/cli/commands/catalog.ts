/**
 * The `switchyard` commands as the CLI lists them: name and one-line summary, in help order,
 * with the module that implements each loaded only when the command runs (or shows its
 * usage). So `switchyard --help` and `--version` load no NATS client, HTTP stack or config
 * schema, and a service loads only what it uses: startup is module loading, most of it.
 *
 * The summaries live here only; each command's module reads its own from here.
 */
import type { Command } from "./types.ts";

export interface CatalogEntry {
  readonly name: string;
  readonly summary: string;
  load(): Promise<Command>;
}

export const CATALOG: readonly CatalogEntry[] = [
  { name: "up", summary: "run the whole stack in the foreground (nats-server, sim-provider, pricing, router workers, gateway)", load: async () => (await import("./up.ts")).upCommand },
  { name: "router", summary: "run one router worker (any number may share the job consumer)", load: async () => (await import("./router.ts")).routerCommand },
  { name: "gateway", summary: "run the OpenAI-compatible HTTP gateway (chat completions, models, files, batches)", load: async () => (await import("./gateway.ts")).gatewayCommand },
  { name: "pricing", summary: "run the pricing service (price table + health → KV, watched by every worker)", load: async () => (await import("./pricing.ts")).pricingCommand },
  { name: "prices", summary: "show the live price and health table (--watch), or set/unset a price", load: async () => (await import("./prices.ts")).pricesCommand },
  { name: "budgets", summary: "list budgets with this window's spend, or set/rm one at run time (per tenant, gateway API key, task or global; day and month)", load: async () => (await import("./budgets.ts")).budgetsCommand },
  { name: "sim-provider", summary: "run the simulated LLM providers (HTTP, scripted latency and faults)", load: async () => (await import("./sim-provider.ts")).simProviderCommand },
  { name: "publish", summary: "publish jobs from a JSONL file or stdin, with a progress bar and rate", load: async () => (await import("./publish.ts")).publishCommand },
  { name: "tail", summary: "follow results and/or dead letters (filter by task, metadata)", load: async () => (await import("./tail.ts")).tailCommand },
  { name: "dlq", summary: "list, show and replay dead letters (filter by task, reason, time, metadata)", load: async () => (await import("./dlq.ts")).dlqCommand },
  { name: "spend", summary: "what providers billed, by tenant, task, model or key, over a time range (--json)", load: async () => (await import("./spend.ts")).spendCommand },
  { name: "replay", summary: "re-run earlier jobs from the JOBS stream (e.g. last night's batch on a newer model)", load: async () => (await import("./replay.ts")).replayCommand },
  { name: "provision", summary: "create and update every stream, consumer and bucket the stack uses (--check: only report differences)", load: async () => (await import("./provision.ts")).provisionCommand },
  { name: "batches", summary: "show the batch lane's provider batches and their progress (--all, --json)", load: async () => (await import("./batches.ts")).batchesCommand },
  { name: "streams", summary: "show stream and consumer state (--json)", load: async () => (await import("./streams.ts")).streamsCommand },
  { name: "verify", summary: "run a task's sample jobs against every candidate model; pass rates, agreement, latency, cost", load: async () => (await import("./verify.ts")).verifyCommand },
  { name: "demo", summary: "the embedded demo (npm start): the whole stack, 1,200+ jobs, a summary", load: async () => (await import("./demo.ts")).demoCommand },
];

/** A command's one-line summary, for its module's `summary`. */
export function summaryOf(name: string): string {
  const entry = CATALOG.find((c) => c.name === name);
  if (!entry) throw new Error(`no command "${name}" in the catalog`);
  return entry.summary;
}

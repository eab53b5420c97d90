import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BATCH_APIS } from "../shared/adapters/batch-apis.ts";
import { isBatchFinal, type BatchLine, type BatchLineOutcome, type BatchStatus } from "../shared/adapters/batch.ts";
import type { ProviderError } from "../shared/adapters/errors.ts";
import { createProviderClient, type ProviderClient } from "../shared/adapters/http.ts";
import { ADAPTERS } from "../shared/adapters/index.ts";
import { toBatchFile } from "../shared/adapters/openai-batch.ts";
import type { Completion, Dialect, ProviderTarget } from "../shared/adapters/types.ts";
import { ChatRequestSchema, type ChatRequest } from "../shared/contract/job.ts";
import { parseScenario } from "../services/sim-provider/scenario.ts";
import { createSimProvider, type SimProvider } from "../services/sim-provider/server.ts";

const SCENARIO = `
seed: 11
providers:
  fast:
    api_key: fast-key
    batch: { turnaround_ms: 150 }
    models:
      m1: { context_window: 2000 }
  lossy:
    batch: { turnaround_ms: 100, line_error_rate: 0.5 }
    models:
      m1: {}
  late:
    batch: { turnaround_ms: 1000, window_ms: 300 }
    models:
      m1: {}
  slow:
    batch: { turnaround_ms: 60000 }
    models:
      m1: {}
`;

const DIALECTS: readonly Dialect[] = ["openai", "anthropic", "gemini"];
const PREFIX: Readonly<Record<Dialect, string>> = { openai: "/v1", anthropic: "/v1", gemini: "/v1beta" };
const TIMEOUT_MS = 5_000;

const chat = (input: Record<string, unknown>): ChatRequest => ChatRequestSchema.parse(input);

/** A classification, a JSON-schema answer, a forced tool call, and a prompt over the model's context window. */
const MIXED: readonly BatchLine[] = [
  {
    customId: "ticket-1",
    request: chat({
      messages: [
        { role: "system", content: "Classify the ticket. Labels: billing, shipping, other" },
        { role: "user", content: "My invoice shows the wrong amount" },
      ],
      max_tokens: 100,
    }),
  },
  {
    customId: "ticket-2",
    request: chat({
      messages: [{ role: "user", content: "Extract the sentiment of: the parcel arrived broken" }],
      max_tokens: 100,
      response_format: {
        type: "json_schema",
        json_schema: { name: "sentiment", strict: true, schema: { type: "object", properties: { sentiment: { type: "string", enum: ["positive", "negative"] } }, required: ["sentiment"], additionalProperties: false } },
      },
    }),
  },
  {
    customId: "ticket-3",
    request: chat({
      messages: [{ role: "user", content: "Where is order 42?" }],
      max_tokens: 100,
      tools: [{ type: "function", function: { name: "get_order", parameters: { type: "object", properties: { order_id: { type: "string" } }, required: ["order_id"] } } }],
      tool_choice: { type: "function", function: { name: "get_order" } },
    }),
  },
  { customId: "ticket-4", request: chat({ messages: [{ role: "user", content: "long ".repeat(4000) }], max_tokens: 100 }) },
];

function linesOf(n: number, tag: string): BatchLine[] {
  return Array.from({ length: n }, (_, i) => ({
    customId: `${tag}-${i}`,
    request: chat({ messages: [{ role: "system", content: "Labels: yes, no" }, { role: "user", content: `Is ${i} even?` }], max_tokens: 20 }),
  }));
}

let sim: SimProvider;
let url: string;
const clients: ProviderClient[] = [];

beforeAll(async () => {
  sim = createSimProvider(parseScenario(SCENARIO, "batch-scenario.yaml", {}));
  url = await sim.listen();
});
afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await sim.close();
});

function connect(dialect: Dialect, provider: string): { client: ProviderClient; target: ProviderTarget } {
  const client = createProviderClient({ base_url: `${url}/${provider}${PREFIX[dialect]}`, max_concurrency: 4 });
  clients.push(client);
  return { client, target: { provider, upstream: "m1", apiKey: provider === "fast" ? "fast-key" : undefined } };
}

async function untilFinal(dialect: Dialect, client: ProviderClient, target: ProviderTarget, submitted: BatchStatus): Promise<{ status: BatchStatus }> {
  let status = submitted;
  const giveUp = Date.now() + 10_000;
  while (!isBatchFinal(status.state)) {
    if (Date.now() > giveUp) throw new Error(`batch ${status.id} still ${status.state} after 10 s`);
    await new Promise((r) => setTimeout(r, 20));
    status = await BATCH_APIS[dialect].poll(client, target, status.id, TIMEOUT_MS);
  }
  return { status };
}

/** The same request as a live call: its completion, or the error it throws. */
async function live(dialect: Dialect, client: ProviderClient, target: ProviderTarget, request: ChatRequest): Promise<Completion | ProviderError> {
  const adapter = ADAPTERS[dialect];
  const reply = await client.send(adapter.toRequest(request, target), TIMEOUT_MS);
  try {
    return adapter.fromResponse(reply, request);
  } catch (err) {
    return err as ProviderError;
  }
}

/** The choices without tool-call ids, which number responses (as the response id does) rather than describe the answer. */
function withoutCallIds(c: Completion): unknown {
  return c.response.choices.map((choice) => ({
    ...choice,
    message: { ...choice.message, tool_calls: choice.message.tool_calls?.map((t) => ({ ...(t as Record<string, unknown>), id: "call" })) },
  }));
}

function tally(outcomes: readonly BatchLineOutcome[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const o of outcomes) out[o.kind] = (out[o.kind] ?? 0) + 1;
  return out;
}

describe.each(DIALECTS)("the %s batch API against the sim-provider", (dialect) => {
  it("answers every line of a mixed batch exactly as a live call, refusals included", async () => {
    const { client, target } = connect(dialect, "fast");
    const api = BATCH_APIS[dialect];
    const submitted = await api.submit(client, target, MIXED, TIMEOUT_MS);
    // Anthropic's batches start processing at once; the other two validate first.
    expect(submitted.state).toBe(dialect === "anthropic" ? "in_progress" : "validating");
    expect(submitted.counts.total).toBe(MIXED.length);
    const { status } = await untilFinal(dialect, client, target, submitted);
    expect(status.state).toBe("completed");
    expect(status.counts).toMatchObject({ total: 4, succeeded: 3, errored: 1, processing: 0 });

    const outcomes = await api.results(client, target, status, MIXED, TIMEOUT_MS);
    expect(outcomes.map((o) => o.customId)).toEqual(MIXED.map((l) => l.customId));
    for (const [i, line] of MIXED.entries()) {
      const outcome = outcomes[i]!;
      const expected = await live(dialect, client, target, line.request);
      if (expected instanceof Error) {
        expect(outcome.kind, line.customId).toBe("errored");
        if (outcome.kind !== "errored") continue;
        expect(outcome.error.kind).toBe(expected.kind);
        expect(outcome.error.message).toBe(expected.message);
      } else {
        expect(outcome.kind, line.customId).toBe("completed");
        if (outcome.kind !== "completed") continue;
        expect(withoutCallIds(outcome.completion)).toEqual(withoutCallIds(expected));
        expect(outcome.completion.usage).toEqual(expected.usage);
        expect(outcome.completion.usageEstimated).toBe(expected.usageEstimated);
      }
    }
    // The refused line is the one over the context window, refused as a live call is.
    const refused = outcomes[3]!;
    expect(refused.kind === "errored" && refused.error.kind).toBe("bad_request");
  });

  it("reports scripted line failures per line, and the counts agree with the lines", async () => {
    const { client, target } = connect(dialect, "lossy");
    const lines = linesOf(24, "lossy");
    const api = BATCH_APIS[dialect];
    const { status } = await untilFinal(dialect, client, target, await api.submit(client, target, lines, TIMEOUT_MS));
    expect(status.state).toBe("completed");
    const outcomes = await api.results(client, target, status, lines, TIMEOUT_MS);
    const kinds = tally(outcomes);
    expect(kinds.completed).toBeGreaterThan(0);
    expect(kinds.errored).toBeGreaterThan(0);
    expect(kinds.completed! + kinds.errored!).toBe(24);
    expect(status.counts.succeeded).toBe(kinds.completed);
    expect(status.counts.errored).toBe(kinds.errored);
    for (const o of outcomes) if (o.kind === "errored") expect(o.error.kind).toBe("unavailable");
  });

  it("expires a batch whose turnaround outlives its window: finished lines answered, the rest expired", async () => {
    const { client, target } = connect(dialect, "late");
    const lines = linesOf(10, "late");
    const api = BATCH_APIS[dialect];
    const { status } = await untilFinal(dialect, client, target, await api.submit(client, target, lines, TIMEOUT_MS));
    expect(status.state).toBe("expired");
    const outcomes = await api.results(client, target, status, lines, TIMEOUT_MS);
    // Lines finish evenly over the 1000 ms turnaround; the window closes at 300 ms.
    expect(outcomes.map((o) => o.kind)).toEqual([...Array(3).fill("completed"), ...Array(7).fill("expired")]);
    expect(status.counts).toMatchObject({ succeeded: 3, expired: 7, processing: 0 });
  });

  it("cancels a running batch: its unanswered lines come back cancelled", async () => {
    const { client, target } = connect(dialect, "slow");
    const lines = linesOf(5, "slow");
    const api = BATCH_APIS[dialect];
    const submitted = await api.submit(client, target, lines, TIMEOUT_MS);
    const cancelling = await api.cancel(client, target, submitted.id, TIMEOUT_MS);
    expect(["cancelling", "cancelled"]).toContain(cancelling.state);
    const { status } = await untilFinal(dialect, client, target, cancelling);
    expect(status.state).toBe("cancelled");
    const outcomes = await api.results(client, target, status, lines, TIMEOUT_MS);
    expect(tally(outcomes)).toEqual({ cancelled: 5 });
  });

  it("refuses polling a batch that does not exist with the dialect's typed error", async () => {
    const { client, target } = connect(dialect, "fast");
    const id = dialect === "gemini" ? "batches/nope" : "nope";
    await expect(BATCH_APIS[dialect].poll(client, target, id, TIMEOUT_MS)).rejects.toMatchObject({ kind: "bad_request", status: 404 });
  });
});

describe("the sim's batch endpoints", () => {
  it("refuse a batch without the provider's key", async () => {
    const { client, target } = connect("anthropic", "fast");
    await expect(BATCH_APIS.anthropic.submit(client, { ...target, apiKey: "wrong" }, MIXED, TIMEOUT_MS)).rejects.toMatchObject({ kind: "auth_failed", status: 401 });
  });

  it("fail an OpenAI batch whose file mixes models, as the API does, with the reason", async () => {
    const { client, target } = connect("openai", "fast");
    const file = toBatchFile(linesOf(1, "a"), target) + toBatchFile(linesOf(1, "b"), { ...target, upstream: "other" });
    const form = new FormData();
    form.set("purpose", "batch");
    form.set("file", new Blob([file]), "mixed.jsonl");
    const upload = await fetch(`${url}/fast/v1/files`, { method: "POST", body: form, headers: { authorization: "Bearer fast-key" } });
    const { id } = (await upload.json()) as { id: string };
    const created = await fetch(`${url}/fast/v1/batches`, {
      method: "POST",
      headers: { authorization: "Bearer fast-key", "content-type": "application/json" },
      body: JSON.stringify({ input_file_id: id, endpoint: "/v1/chat/completions", completion_window: "24h" }),
    });
    const { id: batchId } = (await created.json()) as { id: string };
    const status = await BATCH_APIS.openai.poll(client, target, batchId, TIMEOUT_MS);
    expect(status.state).toBe("failed");
    expect(status.results).toBeUndefined();
    expect(status.failure).toMatch(/^line 2: .*same model/);
  });
});

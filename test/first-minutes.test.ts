/**
 * A stranger's first minutes, written from the README alone: `switchyard up` on the embedded
 * default (a real process), jobs in a user's own words published to `jobs.<task>` with the
 * NATS client, and the official OpenAI SDK with its default settings (retries on, default
 * timeout) against the gateway. None of the prompts follows the simulator's own shapes.
 */
import { Ajv2020 } from "ajv/dist/2020.js";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstream, DeliverPolicy } from "@nats-io/jetstream";
import { createOpenAI } from "@ai-sdk/openai";
import { generateObject, generateText } from "ai";
import OpenAI from "openai";
import { z } from "zod";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startNatsServer, type NatsServerHandle } from "../shared/nats/server-process.ts";
import { printed, spawnCli, type CliProcess } from "./harness/processes.ts";

const KEY = "sk-first-minutes";
const LABELS = ["billing", "technical", "account", "shipping", "other"];

/** My own words: how people actually ask for this work. */
const QUEUE_JOBS: { task: string; prompt: string }[] = [
  { task: "moderation", prompt: "Is this comment abusive? 'Nobody asked for your opinion, you absolute moron.'" },
  { task: "moderation", prompt: "Please check this forum reply for anything harmful: 'Great write-up, thanks for sharing!'" },
  { task: "moderation", prompt: "Should we remove this post? 'Limited offer!!! Click here and claim free money today'" },
  { task: "moderation", prompt: "Review this chat message before it goes live: 'See you all at the picnic on Sunday.'" },
  { task: "moderation", prompt: "Flag this if it breaks the rules: 'I'm going to find you and murder you.'" },
  { task: "moderation", prompt: "Anything wrong with this review? 'The hotel was clean and the staff were friendly.'" },
  { task: "classification", prompt: "Which team should handle this ticket? 'I was billed twice for the same month.'" },
  { task: "classification", prompt: "Route this customer email to the right queue: 'My package never arrived and tracking has not moved in a week.'" },
  { task: "classification", prompt: "What kind of request is this? 'I forgot my password and the reset link does not work.'" },
  { task: "classification", prompt: "Sort this support message: 'The app crashes whenever I open the settings page.'" },
  { task: "classification", prompt: "Who should answer this? 'Do you ship to Canada, and how long does delivery take?'" },
  { task: "classification", prompt: "Categorise: 'Love the new colours on the website!'" },
  { task: "extraction", prompt: "Pull out the order number and the city: 'Order A-5531 should ship to Lisbon.'" },
  { task: "extraction", prompt: "Summarise this in a few words: 'The quarterly meeting moved from Tuesday to Thursday at 10am.'" },
  { task: "extraction", prompt: "Extract the customer's name from: 'Hi, this is Maria Lopez, my invoice is wrong.'" },
  { task: "chat", prompt: "What is a good name for a golden retriever puppy?" },
  { task: "chat", prompt: "Write two sentences about why the sky is blue." },
  { task: "chat", prompt: "Translate 'good morning' into Spanish." },
  { task: "chat", prompt: "Give me three tips for a job interview." },
  { task: "chat", prompt: "hi" },
];

let nats: NatsServerHandle;
let up: CliProcess;
let nc: NatsConnection;
let gatewayUrl: string;

beforeAll(async () => {
  nats = await startNatsServer();
  up = spawnCli(["up", "--sim-port", "0", "--gateway-listen", "127.0.0.1:0"], { NATS_URL: nats.url, SWITCHYARD_DEV_API_KEY: KEY });
  gatewayUrl = (await printed(up, /gateway \(OpenAI API\): (\S+)/))[1]!;
  nc = await connect({ servers: nats.url });
}, 40_000);

afterAll(async () => {
  await nc?.close();
  up?.child.kill("SIGTERM");
  await up?.exited;
  await nats?.stop();
}, 30_000);

describe("first minutes on the embedded default", () => {
  it("jobs in a user's own words, to jobs.<task>, end as results (≥ 95 %), each with a sensible answer", async () => {
    const js = jetstream(nc);
    const since = new Date();
    const sent = new Map<string, { task: string; prompt: string }>();
    for (const [i, j] of QUEUE_JOBS.entries()) {
      const id = `stranger-${i}-${Date.now()}`;
      sent.set(id, j);
      await js.publish(`jobs.${j.task}`, JSON.stringify({ id, request: { messages: [{ role: "user", content: j.prompt }] } }), { msgID: id });
    }
    const outcomes = new Map<string, { subject: string; body: Record<string, any> }>();
    const consumers = await Promise.all(
      ["RESULTS", "DLQ"].map((s) => js.consumers.get(s, { deliver_policy: DeliverPolicy.StartTime, opt_start_time: since.toISOString() })),
    );
    const deadline = Date.now() + 20_000;
    while (outcomes.size < sent.size && Date.now() < deadline) {
      for (const c of consumers) {
        const batch = await c.fetch({ max_messages: 100, expires: 1_000 });
        for await (const m of batch) {
          const body = m.json<Record<string, any>>();
          if (sent.has(body.id)) outcomes.set(body.id, { subject: m.subject, body });
        }
      }
    }
    expect(outcomes.size).toBe(sent.size);
    const results = [...outcomes.values()].filter((o) => o.subject.startsWith("results."));
    const failures = [...outcomes.values()].filter((o) => o.subject.startsWith("dlq.")).map((o) => `${o.body.task}: ${o.body.reason} ${o.body.error}`);
    expect(results.length / sent.size, failures.join("\n")).toBeGreaterThanOrEqual(0.95);

    for (const { body } of results) {
      const content: string = body.response.choices[0].message.content;
      expect(content.length).toBeGreaterThan(0);
      // No model should need a second delivery or more than a couple of calls for a plain request.
      expect(body.attempts.length).toBeLessThanOrEqual(3);
      if (body.task === "moderation") {
        expect(body.output).toMatchObject({ flagged: expect.any(Boolean), categories: expect.any(Array), score: expect.any(Number) });
      } else if (body.task === "classification") {
        expect(LABELS).toContain(body.output);
        expect(content).toBe(body.output);
      } else if (body.task === "extraction") {
        expect(body.output).toEqual(expect.any(Object));
        expect(JSON.parse(content)).toEqual(body.output);
      } else {
        expect(content).not.toMatch(/^Simulated/);
      }
    }
    const verdict = (fragment: string) => results.find((r) => sent.get(r.body.id)!.prompt.includes(fragment))?.body.output;
    expect(verdict("absolute moron")).toMatchObject({ flagged: true });
    // An extraction answers with the fields asked for, taken from the text.
    expect(verdict("Order A-5531")).toEqual({ order_number: "A-5531", city: "Lisbon" });
    expect(verdict("Maria Lopez")).toEqual({ customer_name: "Maria Lopez" });
    expect(verdict("Great write-up")).toMatchObject({ flagged: false });
    expect(verdict("billed twice")).toBe("billing");
    expect(verdict("package never arrived")).toBe("shipping");
  }, 40_000);

  it("the README's OpenAI SDK example, default settings: free chat, a task's labels, the client's own schema, a stream", async () => {
    const client = new OpenAI({ baseURL: gatewayUrl, apiKey: KEY });

    // No task named: the general-purpose default task serves a free chat as asked.
    const chat = await client.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "Suggest a name for a bakery that sells sourdough." }] });
    expect(chat.choices[0]!.message.content).toMatch(/\w+/);
    expect(chat.choices[0]!.message.content).not.toMatch(/^Simulated/);

    // The README's own example, as printed.
    const reply = await client.chat.completions.create(
      { model: "gpt-4o-mini", messages: [{ role: "user", content: "my invoice is wrong" }] },
      { headers: { "x-switchyard-task": "classification" } },
    );
    expect(reply.choices[0]!.message.content).toBe("billing");

    // The client's own json_schema (as the Vercel AI SDK's generateObject sends it): the answer matches it.
    const schema = {
      type: "object",
      properties: { sentiment: { type: "string", enum: ["positive", "neutral", "negative"] }, confidence: { type: "number", minimum: 0, maximum: 1 }, topics: { type: "array", items: { type: "string" }, maxItems: 3 } },
      required: ["sentiment", "confidence", "topics"],
      additionalProperties: false,
    };
    const structured = await client.chat.completions.create({
      model: "gpt-4o-mini",
      messages: [{ role: "user", content: "How does this customer feel? 'The checkout was quick and the support team was lovely.'" }],
      response_format: { type: "json_schema", json_schema: { name: "feedback", schema, strict: true } },
    });
    const parsed = JSON.parse(structured.choices[0]!.message.content!);
    const validate = new Ajv2020({ strict: false }).compile(schema);
    expect(validate(parsed), JSON.stringify(validate.errors)).toBe(true);

    // Moderation through the gateway, streamed.
    const stream = await client.chat.completions.create(
      { model: "gpt-4o-mini", messages: [{ role: "user", content: "Is this comment abusive? 'Nobody asked for your opinion, loser.'" }], stream: true },
      { headers: { "x-switchyard-task": "moderation" } },
    );
    let text = "";
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? "";
    expect(JSON.parse(text)).toMatchObject({ flagged: true, categories: ["harassment"] });
  }, 40_000);

  it("the Vercel AI SDK, defaults: generateObject with a zod schema gets an object matching it; generateText gets prose", async () => {
    const provider = createOpenAI({ baseURL: gatewayUrl, apiKey: KEY });
    const ticket = z.object({
      team: z.enum(["billing", "support", "sales"]),
      urgent: z.boolean(),
      summary: z.string().max(120),
    });
    const { object } = await generateObject({
      model: provider.chat("gpt-4o-mini"),
      schema: ticket,
      prompt: "Which team should handle this, and is it urgent? 'I was charged twice this month and need a refund today.'",
    });
    expect(ticket.safeParse(object).success).toBe(true);
    expect(object.team).toBe("billing");

    const { text } = await generateText({ model: provider.chat("gpt-4o-mini"), prompt: "Say hello to a new colleague in one sentence." });
    expect(text).toMatch(/\w+/);
    expect(text).not.toMatch(/^Simulated/);
  }, 40_000);
});

/**
 * Jobs shaped like production moderation traffic: a system prompt, one user message of a
 * few sentences, JSON output requested, tenant metadata; 400–600 bytes serialised.
 */
import type { ChatRequest } from "../../shared/contract/job.ts";

export const TASK = "moderation";

const SYSTEM =
  "You are a content moderation classifier for a community forum. Answer with JSON only: " +
  '{"flagged": boolean, "categories": [string], "score": number between 0 and 1}.';

const TEXTS = [
  "Thanks for the quick reply yesterday, the replacement part arrived and the printer works again. Have a nice day!",
  "This is the third time my order was cancelled without notice. If nobody answers today I will report the shop to my bank.",
  "Limited offer: buy now and get free money back on every purchase, click here before midnight to claim your voucher.",
  "Does anyone know whether the garden centre on Mill Road is open on Sundays? I need compost and a few tomato plants.",
  "You are a stupid loser and everyone in this thread knows it. Shut up and stop posting your useless opinions here.",
  "The new firmware fixed the Wi-Fi drops for me, but battery life seems shorter. Has anyone else measured it yet?",
];

export function jobRequest(i: number): ChatRequest {
  return {
    model: "auto",
    messages: [
      { role: "system", content: SYSTEM },
      { role: "user", content: TEXTS[i % TEXTS.length]! },
    ],
    temperature: 0,
    max_tokens: 64,
    response_format: { type: "json_object" },
  };
}

/** One job, serialised; `id` must be unique within the stream's duplicate window. */
export function jobPayload(id: string, i: number): string {
  return JSON.stringify({
    id,
    request: jobRequest(i),
    metadata: { tenant: "acme", batch: "bench", n: i },
  });
}

/** Smallest and largest serialised job, with an id like the bench's. */
export function jobSizeRange(): [number, number] {
  const sizes = TEXTS.map((_, i) => jobPayload(`e2e-1w-0-${10_000 + i}`, i).length);
  return [Math.min(...sizes), Math.max(...sizes)];
}

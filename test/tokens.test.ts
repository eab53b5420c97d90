import { readFileSync } from "node:fs";
import { encodeChat } from "gpt-tokenizer/model/gpt-4o";
import { describe, expect, it } from "vitest";
import { estimatePromptTokens } from "../shared/tokens.ts";

/**
 * Calibrates Switchyard's prompt-token estimate (4 characters per token plus 4 per message)
 * against a real tokenizer, o200k (GPT-4o's), on English prompts of the kind Switchyard
 * routes. The figures are printed so the README's error statement can be checked.
 */
const README = readFileSync(new URL("../README.md", import.meta.url), "utf8");
const paragraphs = README.split(/\n\s*\n/).filter((p) => p.length > 200 && !p.startsWith("```") && !p.startsWith("|"));
const SHORT = [
  "I was charged twice for my subscription this month, please refund the billing error.",
  "The app crashes with a technical error every time I open settings.",
  "You are a stupid loser and everyone knows it.",
  "Buy now!!! Free money, click here to claim your prize.",
  "Can anyone recommend a good book about sailing?",
];
const SYSTEM = "You are a content moderation classifier. Reply with a JSON verdict.";

describe("prompt token estimate", () => {
  it("stays within 25 % of o200k on typical chat prompts, on average", () => {
    const prompts = [...SHORT, ...paragraphs].map((text) => [
      { role: "system" as const, content: SYSTEM },
      { role: "user" as const, content: text },
    ]);
    const errors = prompts.map((messages) => {
      const actual = encodeChat(messages).length;
      return (estimatePromptTokens(messages) - actual) / actual;
    });
    const mean = errors.reduce((a, b) => a + b, 0) / errors.length;
    const meanAbs = errors.reduce((a, b) => a + Math.abs(b), 0) / errors.length;
    const worst = Math.max(...errors.map(Math.abs));
    console.log(`token estimate vs o200k over ${errors.length} prompts: mean ${(mean * 100).toFixed(1)} %, mean |error| ${(meanAbs * 100).toFixed(1)} %, worst ${(worst * 100).toFixed(1)} %`);
    expect(errors.length).toBeGreaterThanOrEqual(15);
    expect(meanAbs).toBeLessThan(0.25);
  });
});

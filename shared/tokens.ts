/**
 * Token estimate used where no tokenizer for the serving model is at hand: expected cost
 * and context fit in the planner, and usage when a provider omits it. About 4 characters per
 * token for English text (OpenAI's published rule of thumb), plus a small per-message
 * overhead for the role and separators, as the chat formats add.
 */
const CHARS_PER_TOKEN = 4;
const PER_MESSAGE_OVERHEAD = 4;

export function estimateTextTokens(text: string): number {
  return Math.ceil(text.length / CHARS_PER_TOKEN);
}

type MessageLike = { content?: unknown };

export function estimatePromptTokens(messages: readonly MessageLike[]): number {
  let tokens = 3;
  for (const m of messages) {
    tokens += PER_MESSAGE_OVERHEAD;
    if (typeof m.content === "string") tokens += estimateTextTokens(m.content);
    else if (Array.isArray(m.content)) {
      for (const part of m.content as { text?: unknown }[]) {
        if (typeof part.text === "string") tokens += estimateTextTokens(part.text);
      }
    }
  }
  return tokens;
}

/**
 * The content a simulated model answers with. It is derived from the request, never random,
 * so that a test or benchmark can check the router's output end to end: a classification
 * reply is always one of the offered labels, a moderation verdict always follows the keyword
 * table below, and the same request always gets the same reply.
 */
import { estimateTextTokens } from "../../shared/tokens.ts";

/**
 * The parts of a chat request the replies read, in the OpenAI shape: each dialect reads its own
 * body into it (an Anthropic `system` or Gemini `systemInstruction` becomes a system message).
 */
export interface SimChatRequest {
  readonly messages: readonly SimMessage[];
  readonly response_format?: unknown;
  readonly max_tokens?: unknown;
  readonly max_completion_tokens?: unknown;
}
export interface SimMessage {
  readonly role?: unknown;
  readonly content?: unknown;
}

export interface Reply {
  content: string;
  finish_reason: "stop" | "length";
}

export interface ModerationVerdict {
  flagged: boolean;
  categories: string[];
  score: number;
}

/** Matches the same 4-characters-per-token rule as `estimateTextTokens`, so a cut reply estimates to exactly the limit. */
const CHARS_PER_TOKEN = 4;
const ECHO_CHARS = 60;

/**
 * Keywords per moderation category, matched at the start of a word (so "kill" catches
 * "killed" but not "skill"). Small on purpose: the verdict has to be predictable by hand.
 */
export const MODERATION_KEYWORDS: Readonly<Record<string, readonly string[]>> = {
  harassment: ["idiot", "stupid", "loser", "moron", "shut up"],
  hate: ["subhuman", "vermin", "inferior race"],
  violence: ["kill", "attack", "bomb", "shoot", "murder"],
  self_harm: ["suicide", "hurt myself", "end my life"],
  spam: ["buy now", "free money", "click here", "limited offer"],
};

/**
 * Picks the reply: a classification prompt (some message has a `Labels: a, b, c` line) gets
 * one label; otherwise a moderation prompt (a system or developer message mentions
 * moderation) gets a JSON verdict; anything else gets a short echo. Labels win over
 * moderation because they are the more explicit instruction.
 */
export function buildReply(model: string, request: SimChatRequest): Reply {
  const content = replyContent(model, request);
  const limit = completionLimit(request);
  if (limit !== undefined && estimateTextTokens(content) > limit) {
    return { content: content.slice(0, limit * CHARS_PER_TOKEN), finish_reason: "length" };
  }
  return { content, finish_reason: "stop" };
}

/** The completion-token limit the request asks for: the smaller of `max_completion_tokens` and `max_tokens` when both are given. */
export function completionLimit(request: SimChatRequest): number | undefined {
  const a = positive(request.max_completion_tokens);
  const b = positive(request.max_tokens);
  if (a === undefined) return b;
  return b === undefined ? a : Math.min(a, b);
}

function replyContent(model: string, request: SimChatRequest): string {
  const { messages } = request;
  const text = lastUserText(messages);
  const json = wantsJson(request.response_format);

  const labels = findLabels(messages);
  if (labels) {
    const label = classify(labels, text);
    return json ? JSON.stringify({ label }) : label;
  }
  if (isModerationPrompt(messages)) return JSON.stringify(moderate(text));

  const reply = `Simulated ${model} reply: ${text.slice(0, ECHO_CHARS)}`;
  return json ? JSON.stringify({ reply }) : reply;
}

const LABELS_LINE = /\blabels[ \t]*:[ \t]*([^\r\n]+)/i;
const LABEL_TRIM = /^[\s"'`]+|[\s"'`.]+$/g;

/** The labels of the first message holding a `Labels:` line, or undefined when none does. */
export function findLabels(messages: readonly SimMessage[]): string[] | undefined {
  for (const m of messages) {
    const match = LABELS_LINE.exec(messageText(m));
    if (!match?.[1]) continue;
    const labels = match[1]
      .split(",")
      .map((l) => l.replace(LABEL_TRIM, ""))
      .filter((l) => l.length > 0);
    if (labels.length > 0) return labels;
  }
  return undefined;
}

/** The first label (in the order offered) that occurs as a whole word in the text; else one picked by a hash of the text. */
export function classify(labels: readonly string[], text: string): string {
  const haystack = text.toLowerCase();
  for (const label of labels) {
    if (findWord(haystack, label.toLowerCase(), true)) return label;
  }
  return labels[fnv1a(text) % labels.length] as string;
}

export function moderate(text: string): ModerationVerdict {
  const haystack = text.toLowerCase();
  const categories: string[] = [];
  let matches = 0;
  for (const [category, keywords] of Object.entries(MODERATION_KEYWORDS)) {
    let hit = false;
    for (const keyword of keywords) {
      if (findWord(haystack, keyword, false)) {
        matches++;
        hit = true;
      }
    }
    if (hit) categories.push(category);
  }
  const score = Math.round(Math.min(1, 0.4 * matches) * 100) / 100;
  return { flagged: categories.length > 0, categories, score };
}

function isModerationPrompt(messages: readonly SimMessage[]): boolean {
  return messages.some((m) => (m.role === "system" || m.role === "developer") && messageText(m).toLowerCase().includes("moderat"));
}

function lastUserText(messages: readonly SimMessage[]): string {
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i] as SimMessage;
    if (m.role === "user") return messageText(m);
  }
  return "";
}

/** String content, or the text parts of multi-part content joined by newlines. */
function messageText(m: SimMessage): string {
  if (typeof m.content === "string") return m.content;
  if (!Array.isArray(m.content)) return "";
  const texts: string[] = [];
  for (const part of m.content as unknown[]) {
    const text = (part as { text?: unknown } | null)?.text;
    if (typeof text === "string") texts.push(text);
  }
  return texts.join("\n");
}

function wantsJson(format: unknown): boolean {
  const type = (format as { type?: unknown } | null | undefined)?.type;
  return type === "json_object" || type === "json_schema";
}

function positive(n: unknown): number | undefined {
  return typeof n === "number" && Number.isInteger(n) && n > 0 ? n : undefined;
}

const WORD_CHAR = /[\p{L}\p{N}_]/u;

/** Whether `needle` occurs in `haystack` starting at a word boundary (and ending at one when `whole`). Both already lower-cased. */
function findWord(haystack: string, needle: string, whole: boolean): boolean {
  if (needle.length === 0) return false;
  for (let at = haystack.indexOf(needle); at !== -1; at = haystack.indexOf(needle, at + 1)) {
    const before = at === 0 ? "" : haystack.charAt(at - 1);
    const after = haystack.charAt(at + needle.length);
    if (!WORD_CHAR.test(before) && (!whole || !WORD_CHAR.test(after))) return true;
  }
  return false;
}

/** 32-bit FNV-1a: a stable, dependency-free string hash. */
export function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

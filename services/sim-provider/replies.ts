/**
 * The answer a simulated model gives. It is derived from the request, never random, so a test
 * or benchmark can check the router's output end to end, and it obeys the request the way a
 * real model does: a forced tool choice gets a tool call whose arguments fit the tool's
 * parameters, a schema gets JSON valid against it, offered choices get one of them, the sim's
 * moderation prompt gets the keyword verdict, JSON mode the fields a prompt asks to have
 * extracted (or `{"reply": …}`), anything else a short prose answer. The same
 * request always gets the same answer; only `disobey` (drawn by the server from the model's
 * seeded stream) makes it deliberately break the request's contract.
 */
import { estimateTextTokens } from "../../shared/tokens.ts";
import { extractionSchema } from "./extraction.ts";
import { findChoices, findLabels, offChoice, pickChoice, subjectWithoutInstruction, type Choices } from "./instructions.ts";
import { isModerationPrompt, moderate } from "./moderation.ts";
import { isRecord } from "../../shared/json.ts";
import { breakValue, valueForSchema, type ValueContext } from "./schema-value.ts";
import { clipCodePoints, fnv1a, lastUserText, type SimMessage } from "./text.ts";

export type { SimMessage } from "./text.ts";
export { classify } from "./instructions.ts";
export { moderate, MODERATION_KEYWORDS, type ModerationVerdict } from "./moderation.ts";
export { fnv1a } from "./text.ts";

/**
 * A chat request as the replies read it, whatever the dialect: each dialect reads its own body
 * into it (an Anthropic `system` or Gemini `systemInstruction` becomes a system message, each
 * API's structured-output and tool fields become `json`, `schema`, `tools` and `toolChoice`).
 */
export interface SimChatRequest {
  readonly messages: readonly SimMessage[];
  readonly max_tokens?: unknown;
  readonly max_completion_tokens?: unknown;
  /** The answer must be JSON: OpenAI `json_object`/`json_schema`, Anthropic's output format or JSON instruction, Gemini `application/json`. */
  readonly json?: boolean;
  /** The JSON Schema the answer must satisfy (a Gemini `responseSchema` already converted); implies `json`. */
  readonly schema?: unknown;
  /** Function tools on offer. */
  readonly tools?: readonly SimTool[];
  /** A tool the model must call; absent (auto, none) means the model answers in text. */
  readonly toolChoice?: SimToolChoice;
  /** How many choices (OpenAI `n`) or candidates (Gemini `candidateCount`) to return. @defaultValue 1 */
  readonly n?: number;
  /** Answer as the dialect's event stream: OpenAI and Anthropic `stream: true`, Gemini `streamGenerateContent`. */
  readonly stream?: boolean;
  /** OpenAI `stream_options.include_usage`: a usage chunk before `[DONE]`. */
  readonly streamUsage?: boolean;
}

export interface SimTool {
  readonly name: string;
  readonly description?: string;
  /** A JSON Schema for the arguments; absent means none. */
  readonly parameters?: unknown;
}

/** `any`: one of the tools (of `names`, when given); `tool`: that one. */
export type SimToolChoice = { readonly kind: "any"; readonly names?: readonly string[] } | { readonly kind: "tool"; readonly name: string };

export interface SimToolCall {
  readonly name: string;
  readonly input: Record<string, unknown>;
  /** `input` serialised, as OpenAI sends `arguments`. */
  readonly arguments: string;
}

export interface Reply {
  /** The text; empty when the answer is a tool call. */
  content: string;
  finish_reason: "stop" | "length" | "tool_calls";
  toolCall?: SimToolCall;
  /** The answer was deliberately made invalid against the request's contract. */
  disobeyed: boolean;
}

/** Matches the same 4-characters-per-token rule as `estimateTextTokens`, so a cut reply estimates to exactly the limit. */
const CHARS_PER_TOKEN = 4;
const ECHO_CHARS = 60;

/**
 * Builds the answer. In order: a forced tool choice → a tool call; a schema → a value valid
 * against it; a `Labels:` line or choices offered in words → one of them (`{"label": …}` in JSON
 * mode); the moderation prompt → the keyword verdict; JSON mode → `{"reply": …}`; else prose.
 * With `disobey`, an answer that carries a contract breaks it (see `ModelBehaviour.disobey_rate`).
 */
export function buildReply(model: string, request: SimChatRequest, disobey = false): Reply {
  const { toolChoice, tools } = request;
  if (toolChoice !== undefined && tools !== undefined && tools.length > 0) {
    const call = toolReply(model, request, tools, toolChoice, disobey);
    if (call) return call;
  }
  const answer = replyContent(model, request, disobey);
  const limit = completionLimit(request);
  if (limit !== undefined && estimateTextTokens(answer.content) > limit) {
    return { content: answer.content.slice(0, limit * CHARS_PER_TOKEN), finish_reason: "length", disobeyed: answer.disobeyed };
  }
  return { content: answer.content, finish_reason: "stop", disobeyed: answer.disobeyed };
}

/** The completion tokens of one choice: the text, or the tool's name and arguments. */
export function replyTokens(reply: Reply): number {
  return reply.toolCall ? estimateTextTokens(reply.toolCall.name) + estimateTextTokens(reply.toolCall.arguments) : estimateTextTokens(reply.content);
}

/** The completion-token limit the request asks for: the smaller of `max_completion_tokens` and `max_tokens` when both are given. */
export function completionLimit(request: SimChatRequest): number | undefined {
  const a = positive(request.max_completion_tokens);
  const b = positive(request.max_tokens);
  if (a === undefined) return b;
  return b === undefined ? a : Math.min(a, b);
}

interface Answer {
  content: string;
  disobeyed: boolean;
}

function toolReply(model: string, request: SimChatRequest, tools: readonly SimTool[], choice: SimToolChoice, disobey: boolean): Reply | undefined {
  const text = lastUserText(request.messages);
  const tool = chooseTool(tools, choice, text);
  if (!tool) return undefined;
  const schema = tool.parameters ?? { type: "object", properties: {} };
  const choices = findLabels(request.messages) ?? findChoices(request.messages);
  const generated = valueForSchema(schema, context(model, text, choices));
  let input = isRecord(generated) ? generated : {};
  if (disobey) {
    const broken = breakValue(schema, input, text);
    // Nothing to break in the arguments: the disobedient model answers in words instead of calling.
    if (!isRecord(broken)) return { content: disobedientProse(text), finish_reason: "stop", disobeyed: true };
    input = broken;
  }
  return { content: "", finish_reason: "tool_calls", toolCall: { name: tool.name, input, arguments: JSON.stringify(input) }, disobeyed: disobey };
}

/** The named tool, or of those allowed the one whose name the text mentions most (the first on a tie). */
function chooseTool(tools: readonly SimTool[], choice: SimToolChoice, text: string): SimTool | undefined {
  if (choice.kind === "tool") return tools.find((t) => t.name === choice.name);
  const allowed = choice.names && choice.names.length > 0 ? tools.filter((t) => choice.names!.includes(t.name)) : tools;
  const lower = text.toLowerCase();
  let best = allowed[0];
  let bestScore = 0;
  for (const tool of allowed) {
    const score = tool.name
      .toLowerCase()
      .split(NON_WORD)
      .filter((w) => w.length >= 3 && lower.includes(w)).length;
    if (score > bestScore) {
      best = tool;
      bestScore = score;
    }
  }
  return best;
}

function context(model: string, text: string, choices: Choices | undefined): ValueContext {
  return { text, subject: choices?.subject ?? subjectWithoutInstruction(text), choices: choices?.options, reply: jsonReply(model, text) };
}

/** The sim's answer in JSON mode when nothing more is asked: `{"reply": <this>}`. */
function jsonReply(model: string, text: string): string {
  return `Simulated ${model} reply: ${text.slice(0, ECHO_CHARS)}`;
}

function replyContent(model: string, request: SimChatRequest, disobey: boolean): Answer {
  const { messages } = request;
  const text = lastUserText(messages);
  const json = request.json === true || request.schema !== undefined;
  const choices = findLabels(messages) ?? findChoices(messages);

  if (request.schema !== undefined) {
    const value = valueForSchema(request.schema, context(model, text, choices));
    if (!disobey) return { content: JSON.stringify(value), disobeyed: false };
    const broken = breakValue(request.schema, value, text);
    return { content: broken === undefined ? disobedientProse(text) : JSON.stringify(broken), disobeyed: true };
  }
  if (choices) {
    const label = disobey ? offChoice(choices.options) : pickChoice(choices.options, choices.subject, text);
    return { content: json ? JSON.stringify({ label }) : label, disobeyed: disobey };
  }
  if (isModerationPrompt(messages)) {
    if (json && disobey) return { content: disobedientProse(text), disobeyed: true };
    return { content: JSON.stringify(moderate(text)), disobeyed: false };
  }
  if (json) {
    if (disobey) return { content: disobedientProse(text), disobeyed: true };
    const asked = extractionSchema(text);
    if (asked) return { content: JSON.stringify(valueForSchema(asked, context(model, text, choices))), disobeyed: false };
    return { content: JSON.stringify({ reply: jsonReply(model, text) }), disobeyed: false };
  }
  return { content: prose(text), disobeyed: false };
}

/** What a model that ignores the requested format says: words, no JSON, none of the offered choices. */
function disobedientProse(text: string): string {
  const topic = topicOf(text);
  return topic ? `Sure, happy to help with ${topic}. Let me know if you need anything else.` : "Sure, happy to help. Let me know if you need anything else.";
}

const GREETING = /^\s*(?:hi|hello|hey|good (?:morning|afternoon|evening)|thanks|thank you)\b[\s\p{P}]*$/iu;
const QUESTION_WORD = /^\s*(?:what|who|whom|whose|where|when|why|how|which)(?:'s|'re| is| are| was| were| do| does| did| can| could| should| would| will| much| many)?\s+/i;
const AUXILIARY = /^\s*(?:is|are|was|were|can|could|do|does|did|should|would|will|may|might)\s+(?:i|you|we|they|it|there)?\s*/i;
const TASK = /^\s*(?:please\s+|can you\s+|could you\s+)?(write|compose|draft|create|generate|give me|tell me|explain|describe|summari[sz]e|list|translate|suggest|recommend)\b\s*/i;
const POEM = /\b(haiku|poem|limerick|verse|song)\b/i;
const ABOUT = /\b(?:about|on|of|for)\s+(.+)$/i;
const END_PUNCTUATION = /[.!?]+$/;
const TASK_OBJECT = /^[\s:,-]*(?:this|the following|it)?[\s:,-]*/i;
const WORK_ABOUT = /^(?:me\s+)?(?:an?\s+|the\s+)?(?:short\s+|brief\s+|quick\s+)?(?:haiku|poem|summary|list|explanation|description)\s+(?:about|of|on)\s+/i;
const TRAILING = /[\s?!.:;,]+$/;
const FIRST_SENTENCE = /^[^\n]*?[.!?](?=\s|$)/;
const NON_WORD = /[^a-z0-9]+/;

/**
 * A short, sensible answer in prose: a greeting for a greeting, a little poem for a poem, a
 * summary line for a summary, otherwise a few generic sentences that name the topic.
 */
export function prose(text: string): string {
  const trimmed = text.trim();
  if (trimmed === "" || GREETING.test(trimmed)) return "Hello! How can I help you today?";
  const topic = topicOf(trimmed) || "that";
  const task = TASK.exec(trimmed);
  if (task) {
    const verb = (task[1] as string).toLowerCase();
    if (POEM.test(trimmed)) {
      const subject = ABOUT.exec(firstSentence(trimmed))?.[1]?.replace(END_PUNCTUATION, "") ?? topic;
      return `${capitalise(subject)} in the quiet,\nthe hours lean in to listen,\n${subject}, and then calm.`;
    }
    const rest = subjectWithoutInstruction(trimmed.slice(task[0].length).replace(TASK_OBJECT, "")) || topic;
    if (verb.startsWith("summar")) return `In short: ${clipWords(firstSentence(rest), 120)}`;
    if (verb === "list" || verb === "suggest" || verb === "recommend") {
      return `Here are three ideas about ${topic}:\n1. Start with the basics of ${topic}.\n2. Look at a concrete example.\n3. Note what to watch out for.`;
    }
    if (verb === "translate") return `Here is the translation: ${clipWords(rest, 200)}`;
    return `Here is a short answer about ${topic}: it comes down to a few main points, how they fit together, and why they matter. Start with the basics, then look at a concrete example.`;
  }
  if (QUESTION_WORD.test(trimmed) || AUXILIARY.test(trimmed) || trimmed.endsWith("?")) {
    const closers = [
      "the usual answer holds in most cases, and the details depend on your situation.",
      "in brief, it depends on a few factors, but the common case is straightforward.",
      "the short version is that it is well understood, and a reliable reference can confirm the specifics.",
    ];
    return `Here is a short answer about ${topic}: ${closers[fnv1a(trimmed) % closers.length]}`;
  }
  return `Thanks for your message about ${topic}. I understand, and I can help with that: could you share a little more detail so I can give a precise answer?`;
}

/** The topic of a text: its first sentence without the question word or request verb, up to 60 characters. */
function topicOf(text: string): string {
  let s = firstSentence(text.trim());
  s = s.replace(QUESTION_WORD, "").replace(TASK, "").replace(AUXILIARY, "");
  const about = ABOUT.exec(s);
  if (about?.[1] && POEM.test(s)) s = about[1];
  s = s.replace(WORK_ABOUT, "");
  s = s.replace(TRAILING, "");
  return clipWords(s, ECHO_CHARS);
}

function firstSentence(text: string): string {
  const m = FIRST_SENTENCE.exec(text);
  return (m ? m[0] : (text.split("\n")[0] ?? "")).trim();
}

function clipWords(text: string, max: number): string {
  if (text.length <= max) return text;
  const cut = clipCodePoints(text, max);
  const space = cut.lastIndexOf(" ");
  return `${space > max / 2 ? cut.slice(0, space) : cut}…`;
}

function capitalise(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

function positive(n: unknown): number | undefined {
  return typeof n === "number" && Number.isInteger(n) && n > 0 ? n : undefined;
}

/**
 * Instructions the simulated model reads from the words of a prompt: a `Labels: a, b, c`
 * line, a short list of choices offered in ordinary words ("Answer with exactly one of: …",
 * "Classify it into billing, bug or other", "Is it X or Y?", "Which team: sales, support or
 * legal?"), and which of the offered choices fits a text. All of it deterministic.
 */
import { categoryFor, moderate } from "./moderation.ts";
import { findWord, fnv1a, lastUserText, messageText, subjectOf, type SimMessage } from "./text.ts";

/** Choices the prompt offers, and the text the choice is about. */
export interface Choices {
  readonly options: readonly string[];
  /** The last user message without the instruction, narrowed to its quoted passage if it has one. */
  readonly subject: string;
}

const LABELS_LINE = /\blabels[ \t]*:[ \t]*([^\r\n]+)/i;
const LABEL_TRIM = /^[\s"'`]+|[\s"'`.]+$/g;

/**
 * The labels of the first message holding a `Labels: a, b, c` line, or undefined when none
 * does. Any comma list counts here: the line says outright that these are the labels.
 */
export function findLabels(messages: readonly SimMessage[]): Choices | undefined {
  for (const m of messages) {
    const text = messageText(m);
    const match = LABELS_LINE.exec(text);
    if (!match?.[1]) continue;
    const labels = match[1]
      .split(",")
      .map((l) => l.replace(LABEL_TRIM, ""))
      .filter((l) => l.length > 0);
    if (labels.length === 0) continue;
    const user = lastUserText(messages);
    // A label line inside the user message is no part of what is being classified.
    const subject = m.role === "user" && text === user ? subjectOf(text.slice(0, match.index) + text.slice(match.index + match[0].length)) : subjectOf(user);
    return { options: labels, subject };
  }
  return undefined;
}

/*
 * Choice phrasings, each ending where the list starts. The list itself is read by `splitList`,
 * which is what keeps this conservative: 2–8 options of at most three words each, or nothing.
 */
const LIST_TAIL = String.raw`([^\n?!:;(]{1,200}?)(?:\.(?=\s|$)|[\n?!:;(]|$)`;
const OPENERS: readonly RegExp[] = [
  // "Answer with exactly one of these labels and nothing else: a, b, c"
  new RegExp(
    String.raw`\b(?:answer|respond|reply|output|return|say)\b[^.\n:]{0,30}?\b(?:one\s+(?:of|word)|a\s+single\s+word)\b[^:\n.]{0,40}:\s*` + LIST_TAIL,
    "iu",
  ),
  // "Answer with exactly one of: a, b, c", "Reply with one word: yes or no"
  new RegExp(
    String.raw`\b(?:answer|respond|reply|output|return|say)\b[^.\n:]{0,30}?\b(?:one\s+(?:of|word(?:\s+(?:from|of))?)|a\s+single\s+word(?:\s+(?:from|of))?)\b(?:\s+(?:the\s+)?(?:following|these|those)(?:\s+\w+)?)?\s*:?\s*` + LIST_TAIL,
    "iu",
  ),
  // "Classify it into billing, bug or other", "Label the sentiment as positive, negative or neutral"
  new RegExp(
    String.raw`\b(?:classify|categori[sz]e|label|tag|sort|route|assign)\b[^.\n:?]{0,40}?\b(?:into|as|to)\b(?:\s+(?:exactly\s+)?one\s+of|\s+either)?(?:\s+(?:the\s+)?(?:following|these)(?:\s+\w+)?)?\s*:?\s*` + LIST_TAIL,
    "iu",
  ),
  // "Choose from: a, b, c", "either a or b"
  new RegExp(String.raw`\b(?:one\s+of|choose\s+(?:from|between|among)|pick\s+(?:from|between|one\s+of)|select\s+(?:from|one\s+of)|either)\b\s*:?\s*` + LIST_TAIL, "iu"),
  // "Which team should handle this: sales, support or legal?"
  /\bwhich\b[^?:\n]{1,60}?[:,]\s*([^\n?!:;(]{1,200}?)\s*\?/iu,
  // "Is it a bug or a feature request?"
  /\b(?:is|was|are|does|should|would)\s+(?:(?:this|that|these|those|the)\s+\w+|it|this|that)\s+([^?\n,:;]{1,60}?\s+or\s+[^?\n,:;]{1,40}?)\s*\?/iu,
];
/** What every opener needs somewhere in the text, in one pass: most prompts offer no choice, and this keeps them cheap. */
const MAY_OFFER = /one (?:of|word)|single word|classify|categori[sz]|\b(?:label|tag|sort|route|assign|choose|pick|select|either) |which| or /i;
/**
 * Choices offered in ordinary words in a system or developer message or the last user message,
 * or undefined. The `Labels:` line is read separately (`findLabels`).
 */
export function findChoices(messages: readonly SimMessage[]): Choices | undefined {
  let user: string | undefined;
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i] as SimMessage;
    if (m.role === "user") {
      user = messageText(m);
      break;
    }
  }
  for (const m of messages) {
    if (m.role !== "system" && m.role !== "developer") continue;
    const found = choicesIn(messageText(m));
    if (found) return { options: found.options, subject: subjectOf(user ?? "") };
  }
  if (user === undefined) return undefined;
  const found = choicesIn(user);
  if (!found) return undefined;
  const rest = `${user.slice(0, found.start)} ${user.slice(found.end)}`;
  return { options: found.options, subject: subjectOf(rest) };
}

/** The text without a choice instruction or `Labels:` line it holds, narrowed to its quoted passage: what a label is picked for. */
export function subjectWithoutInstruction(text: string): string {
  return subjectOf(withoutInstruction(text));
}

/** The text without a choice instruction or `Labels:` line it holds, whose option names would otherwise count as mentions. */
export function withoutInstruction(text: string): string {
  const labels = LABELS_LINE.exec(text);
  const rest = labels ? `${text.slice(0, labels.index)} ${text.slice(labels.index + labels[0].length)}` : text;
  const found = choicesIn(rest);
  return found ? `${rest.slice(0, found.start)} ${rest.slice(found.end)}` : rest;
}

function choicesIn(text: string): { options: string[]; start: number; end: number } | undefined {
  if (!MAY_OFFER.test(text)) return undefined;
  for (const opener of OPENERS) {
    const m = opener.exec(text);
    const options = m?.[1] === undefined ? undefined : splitList(m[1]);
    if (m && options) return { options, start: m.index, end: m.index + m[0].length };
  }
  return undefined;
}

const SEPARATOR = /\s*,\s*(?:or\s+|and\s+)?|\s+or\s+|\s*[/|]\s*/i;
const ITEM_TRIM = /^[\s"'`*“”‘’]+|[\s"'`*“”‘’.]+$/g;
const ARTICLE = /^(?:a|an|the)\s+/i;
const SPACES = /\s+/;
const JOINERS = /[_-]+/g;

/** A short list of 2–8 options of at most three words each, or undefined: anything longer is prose, not a choice. */
export function splitList(text: string): string[] | undefined {
  const items = text.split(SEPARATOR).map((s) => s.replace(ITEM_TRIM, "").replace(ARTICLE, ""));
  if (items.length < 2 || items.length > 8) return undefined;
  const seen = new Set<string>();
  for (const item of items) {
    const key = item.toLowerCase();
    if (item.length === 0 || item.length > 32 || item.split(SPACES).length > 3 || seen.has(key) || key === "not") return undefined;
    seen.add(key);
  }
  return items;
}

/**
 * Words that point to an option, keyed by a stem the option's name starts with (or holds as a
 * word: "billing_issue", "Technical support"). Matched at the start of a word in the text.
 */
const LEXICON: Readonly<Record<string, readonly string[]>> = {
  bill: ["bill", "charge", "invoice", "refund", "payment", "paid", "pay ", "receipt", "subscription", "overcharge", "credit card", "price"],
  payment: ["bill", "charge", "invoice", "refund", "payment", "paid", "credit card"],
  refund: ["refund", "money back", "reimburse"],
  technical: ["error", "bug", "crash", "broken", "does not work", "doesn't work", "not working", "fails", "failure", "freez", "exception", "outage", "won't load"],
  bug: ["error", "bug", "crash", "broken", "does not work", "doesn't work", "not working", "fails", "failure", "freez", "exception"],
  tech: ["error", "bug", "crash", "broken", "does not work", "doesn't work", "not working"],
  account: ["password", "login", "log in", "sign in", "signin", "reset", "username", "locked out", "two-factor", "2fa", "my account"],
  login: ["password", "login", "log in", "sign in", "locked out"],
  shipping: ["package", "parcel", "deliver", "tracking", "arrived", "arrive", "shipped", "shipping", "courier", "shipment"],
  delivery: ["package", "parcel", "deliver", "tracking", "arrived", "arrive", "shipped", "courier", "shipment"],
  order: ["order", "package", "parcel", "tracking"],
  sales: ["buy", "purchase", "pricing", "quote", "demo", "upgrade", "discount", "enterprise plan"],
  legal: ["lawyer", "legal", "lawsuit", "gdpr", "contract", "sue ", "court", "privacy", "terms of service"],
  cancel: ["cancel", "unsubscribe", "terminate", "close my account"],
  complaint: ["complain", "terrible", "awful", "unacceptable", "disappointed"],
  feature: ["feature", "would be nice", "please add", "suggest", "wish"],
  positive: ["thank", "great", "love", "excellent", "awesome", "happy", "wonderful", "works again", "nice"],
  praise: ["thank", "great", "love", "excellent", "awesome"],
  negative: ["bad", "terrible", "awful", "hate", "worst", "disappointed", "angry", "broken", "never arrived", "not happy", "useless"],
  urgent: ["urgent", "asap", "immediately", "emergency", "right now", "critical"],
  high: ["urgent", "asap", "immediately", "emergency", "critical"],
  question: ["how do", "how can", "what is", "where is", "when will", "can i", "?"],
  greeting: ["hello", "hi ", "good morning", "hey"],
};
const LEXICON_KEYS = Object.keys(LEXICON);

/** Options a flagged text picks, and options a clean text picks, when the choice is a moderation one. */
const FLAG_WORDS = new Set(["toxic", "abusive", "offensive", "harmful", "unsafe", "flagged", "flag", "inappropriate", "block", "blocked", "reject", "rejected", "remove", "violation", "nsfw", "bad", "not safe"]);
const SAFE_WORDS = new Set(["safe", "clean", "ok", "okay", "acceptable", "allowed", "allow", "approve", "approved", "benign", "harmless", "appropriate", "fine", "not flagged", "none", "good", "not toxic", "non-toxic"]);
const FALLBACK_WORDS = new Set(["other", "others", "general", "misc", "miscellaneous", "unknown", "none", "neutral", "n/a"]);

/**
 * Which option fits the text: the first (in the order offered) named in it as a whole word;
 * else, for a moderation choice, the verdict of `moderate`; else the option whose associated
 * words the text uses most ("I was billed twice" → billing); else an "other"-like option; else
 * one picked by a hash of the text.
 */
export function classify(options: readonly string[], text: string): string {
  return matchChoice(options, text) ?? fallbackChoice(options, text);
}

/**
 * `classify` for a subject cut from a wider text (a quoted passage, the text without its
 * instruction): the subject decides when it points to an option, else the wider text does,
 * else the fallback for the subject.
 */
export function pickChoice(options: readonly string[], subject: string, wider: string): string {
  return matchChoice(options, subject) ?? (wider !== subject ? matchChoice(options, withoutInstruction(wider)) : undefined) ?? fallbackChoice(options, subject);
}

function matchChoice(options: readonly string[], text: string): string | undefined {
  const haystack = text.toLowerCase();
  for (const option of options) {
    if (findWord(haystack, option.toLowerCase(), true)) return option;
  }
  const moderation = moderationPick(options, text);
  if (moderation !== undefined) return moderation;
  let best: string | undefined;
  let bestScore = 0;
  for (const option of options) {
    const score = lexiconScore(option, haystack);
    if (score > bestScore) {
      best = option;
      bestScore = score;
    }
  }
  return best;
}

function fallbackChoice(options: readonly string[], text: string): string {
  for (const option of options) {
    if (FALLBACK_WORDS.has(option.toLowerCase())) return option;
  }
  return options[fnv1a(text) % options.length] as string;
}

function moderationPick(options: readonly string[], text: string): string | undefined {
  let moderationChoice = false;
  for (const o of options) {
    const key = o.toLowerCase();
    if (FLAG_WORDS.has(key) || SAFE_WORDS.has(key) || categoryFor(key) !== undefined) {
      moderationChoice = true;
      break;
    }
  }
  if (!moderationChoice) return undefined;
  const verdict = moderate(text);
  if (verdict.flagged) {
    for (const o of options) {
      const category = categoryFor(o);
      if (category !== undefined && verdict.categories.includes(category)) return o;
    }
    for (const o of options) if (FLAG_WORDS.has(o.toLowerCase())) return o;
    return undefined;
  }
  for (const o of options) if (SAFE_WORDS.has(o.toLowerCase())) return o;
  return undefined;
}

/** The options named in the text as whole words or pointed to by their associated words, in the order offered. */
export function matchingOptions(options: readonly string[], text: string): string[] {
  const haystack = text.toLowerCase();
  return options.filter((o) => findWord(haystack, o.toLowerCase(), true) || lexiconScore(o, haystack) > 0);
}

function lexiconScore(option: string, haystack: string): number {
  const name = option.toLowerCase().replace(JOINERS, " ");
  const cues = new Set<string>();
  for (const key of LEXICON_KEYS) {
    if (name.startsWith(key) || findWord(name, key, false)) for (const cue of LEXICON[key] as readonly string[]) cues.add(cue);
  }
  let score = 0;
  for (const cue of cues) {
    if (cue === "?" ? haystack.includes("?") : findWord(haystack, cue.trimEnd(), cue.endsWith(" "))) score++;
  }
  return score;
}

/** A word that is none of the options: what a disobedient model answers instead of a choice. */
export function offChoice(options: readonly string[]): string {
  const taken = new Set(options.map((o) => o.toLowerCase()));
  for (const word of ["unsure", "undecided", "none of these", "maybe later"]) {
    if (!taken.has(word)) return word;
  }
  return `not ${options[0] ?? "sure"}`;
}

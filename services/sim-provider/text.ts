/**
 * Text helpers the simulated model reads prompts with: message text, the last user message,
 * the part of it the request is about, whole-word search and a stable hash. No state, no
 * randomness: the same prompt always reads the same.
 */

/** The message fields the replies read, in the OpenAI shape; every dialect's request is read into it. */
export interface SimMessage {
  readonly role?: unknown;
  readonly content?: unknown;
}

/** String content, or the text parts of multi-part content joined by newlines. */
export function messageText(m: SimMessage): string {
  if (typeof m.content === "string") return m.content;
  if (!Array.isArray(m.content)) return "";
  const texts: string[] = [];
  for (const part of m.content as unknown[]) {
    const text = (part as { text?: unknown } | null)?.text;
    if (typeof text === "string") texts.push(text);
  }
  return texts.join("\n");
}

export function lastUserText(messages: readonly SimMessage[]): string {
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i] as SimMessage;
    if (m.role === "user") return messageText(m);
  }
  return "";
}

/** The system and developer messages, joined: where instructions usually sit. */
export function instructionText(messages: readonly SimMessage[]): string {
  let out = "";
  for (const m of messages) {
    if (m.role === "system" || m.role === "developer") out += (out ? "\n" : "") + messageText(m);
  }
  return out;
}

const QUOTED = /"([^"\n]{3,})"|“([^”\n]{3,})”|'([^'\n]{3,})'(?![\p{L}\p{N}])|«([^»\n]{3,})»|```(?:[a-z]*\n)?([\s\S]{3,}?)```/u;

/**
 * What the text is about: the first quoted passage when there is one ("Route this email:
 * 'My package never arrived'" is about the package), else the whole text. A single quote only
 * opens a passage after a non-letter, so "don't" and "it's" are no quotes.
 */
export function subjectOf(text: string): string {
  if (text.indexOf('"') === -1 && text.indexOf("'") === -1 && text.indexOf("“") === -1 && text.indexOf("«") === -1 && text.indexOf("`") === -1) return text;
  const m = QUOTED.exec(text);
  if (!m || (m[3] !== undefined && m.index > 0 && WORD_CHAR.test(text.charAt(m.index - 1)))) return text;
  return (m[1] ?? m[2] ?? m[3] ?? m[4] ?? m[5] ?? text).trim();
}

export const WORD_CHAR = /[\p{L}\p{N}_]/u;

/** Whether `needle` occurs in `haystack` starting at a word boundary (and ending at one when `whole`). Both already lower-cased. */
export function findWord(haystack: string, needle: string, whole: boolean): boolean {
  return wordIndex(haystack, needle, whole) !== -1;
}

/** Where `needle` first occurs as a word (see `findWord`), or -1. */
export function wordIndex(haystack: string, needle: string, whole: boolean): number {
  if (needle.length === 0) return -1;
  for (let at = haystack.indexOf(needle); at !== -1; at = haystack.indexOf(needle, at + 1)) {
    const before = at === 0 ? "" : haystack.charAt(at - 1);
    const after = haystack.charAt(at + needle.length);
    if (!WORD_CHAR.test(before) && (!whole || !WORD_CHAR.test(after))) return at;
  }
  return -1;
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

/** Length in code points, as JSON Schema's minLength and maxLength count (ajv's ucs2length). */
export function codePoints(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; ) {
    n++;
    const c = s.charCodeAt(i++);
    if (c >= 0xd800 && c <= 0xdbff && i < s.length && (s.charCodeAt(i) & 0xfc00) === 0xdc00) i++;
  }
  return n;
}

/** The first `max` code points of `s`, never half a surrogate pair. */
export function clipCodePoints(s: string, max: number): string {
  if (s.length <= max) return s;
  return Array.from(s).slice(0, max).join("");
}

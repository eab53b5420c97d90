/**
 * The simulated moderation verdict: a keyword table, so a test can predict it by hand. Used
 * for the sim's own moderation prompt, and wherever a schema or a choice asks the same question
 * (a `flagged` boolean, a `categories` array, a "toxic or clean" choice).
 */
import { findWord, instructionText, type SimMessage } from "./text.ts";

export interface ModerationVerdict {
  flagged: boolean;
  categories: string[];
  score: number;
}

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

/** A system or developer message mentions moderation: the sim's own moderation prompt. */
export function isModerationPrompt(messages: readonly SimMessage[]): boolean {
  return instructionText(messages).toLowerCase().includes("moderat");
}

/**
 * The verdict's category that a name stands for ("violent" → violence, "self-harm" → self_harm,
 * "abusive" → harassment), or undefined. Compared without case, spaces, dashes or underscores.
 */
export function categoryFor(name: string): string | undefined {
  const key = name.toLowerCase().replace(NON_LETTER, "");
  for (const [alias, category] of CATEGORY_ALIASES) {
    if (key.startsWith(alias)) return category;
  }
  return undefined;
}

const NON_LETTER = /[^a-z]/g;

const CATEGORY_ALIASES: readonly (readonly [string, string])[] = [
  ["harass", "harassment"],
  ["insult", "harassment"],
  ["abus", "harassment"],
  ["bully", "harassment"],
  ["hate", "hate"],
  ["hateful", "hate"],
  ["violen", "violence"],
  ["threat", "violence"],
  ["selfharm", "self_harm"],
  ["suicid", "self_harm"],
  ["spam", "spam"],
  ["scam", "spam"],
  ["promot", "spam"],
];

/**
 * The fields a prompt asks to have pulled out of a text, as a JSON Schema: "Pull out the order
 * number and the city: '…'" → `{order_number, city}`. A real model in JSON mode with no schema
 * answers such a prompt with exactly those fields; without this the sim wrapped its prose in
 * `{"reply": …}`, an answer no user asking for an extraction would accept.
 */

const ASK = /^\s*(?:please\s+)?(?:(?:can|could|would) you\s+)?(?:pull out|extract|get|find|identify|pick out|grab|capture|parse out)\s+(?:me\s+)?/i;
/** Where the list of fields ends: the text it is taken from begins. */
const LIST_END = /\s*(?::|["'“‘]|\bfrom\b|\bout of\b|\bin (?:this|the following)\b|\n)/i;
const SEPARATOR = /\s*,\s*(?:and\s+)?|\s+and\s+|\s*&\s*/i;
const LEADING = /^(?:the|a|an|any|all|its|their|his|her|each)\s+/i;
const POSSESSIVE = /['’]s\b/g;
const NON_WORD = /[^\p{L}\p{N}]+/gu;
const MAX_FIELDS = 8;
const MAX_WORDS = 4;

export interface ExtractionSchema {
  readonly type: "object";
  readonly properties: Readonly<Record<string, { readonly type: "string" }>>;
  readonly required: readonly string[];
  readonly additionalProperties: false;
}

/** The object the prompt asks for, or undefined when it asks for no named fields. */
export function extractionSchema(text: string): ExtractionSchema | undefined {
  const ask = ASK.exec(text);
  if (!ask) return undefined;
  // "the customer's name": the apostrophe is not the quote the text starts with.
  const rest = text.slice(ask[0].length).replace(POSSESSIVE, "");
  const end = LIST_END.exec(rest);
  if (!end || end.index === 0) return undefined;
  const names: string[] = [];
  for (const item of rest.slice(0, end.index).split(SEPARATOR)) {
    const words = item.replace(LEADING, "").toLowerCase().split(NON_WORD).filter((w) => w.length > 0);
    if (words.length === 0 || words.length > MAX_WORDS) return undefined;
    const name = words.join("_");
    if (!names.includes(name)) names.push(name);
  }
  if (names.length === 0 || names.length > MAX_FIELDS) return undefined;
  return {
    type: "object",
    properties: Object.fromEntries(names.map((n) => [n, { type: "string" as const }])),
    required: names,
    additionalProperties: false,
  };
}

/**
 * A JSON value for a JSON Schema, taken from the prompt where that is cheap: what a model
 * that obeys a structured-output request answers. The value satisfies the schema for the
 * keywords schemas use (types, properties, required, additionalProperties, items, prefixItems,
 * enum, const, lengths, pattern, formats, bounds, multipleOf, uniqueItems, anyOf, oneOf, allOf,
 * local `$ref`); each candidate is checked (`schema-check.ts`) before it is used, so where a
 * schema asks for more than this knows, the next candidate is tried rather than a wrong one sent.
 *
 * The content follows the text: a `flagged` boolean, a `categories` array and a `score` take the
 * moderation verdict; an enum picks the option the text points to; `order_number` takes a token
 * like `A-5531`, `city` the capitalised word after "to" or "in"; other strings echo the passage
 * the prompt is about. Same schema and text, same value.
 */
import { classify, matchingOptions, offChoice, pickChoice, subjectWithoutInstruction } from "./instructions.ts";
import { categoryFor, moderate, type ModerationVerdict } from "./moderation.ts";
import { sampleForPattern, patternRegExp } from "./pattern.ts";
import { checkValue, deepEqual, isMultipleOf, resolveRef } from "./schema-check.ts";
import { isRecord } from "../../shared/json.ts";
import { clipCodePoints, codePoints, findWord, fnv1a } from "./text.ts";

/** What the value is derived from. */
export interface ValueContext {
  /** The last user message, whole: moderation keywords count anywhere in it. */
  readonly text: string;
  /** What the request is about (the quoted passage, the text without its instruction); defaults from `text`. */
  readonly subject?: string;
  /** Choices the prompt offers in words, for a label-like string property that has no enum. */
  readonly choices?: readonly string[];
  /** The sim's own JSON-mode reply (`{"reply": …}` without a schema): a `reply` string property says the same. */
  readonly reply?: string;
}

/** A value valid against `schema`, derived from the context. */
export function valueForSchema(schema: unknown, context: ValueContext): unknown {
  return new Generator(schema, context).value();
}

/**
 * A value deliberately invalid against `schema`, made from a valid one: a required property
 * dropped, or an enum value that is not in the enum, or undefined for "answer in prose
 * instead"; which of those the schema allows is picked by a hash of the text. A broken value
 * that would still pass (the schema allows it another way) also comes back as undefined.
 */
export function breakValue(schema: unknown, value: unknown, text: string): unknown {
  const flat = flatten(schema, schema);
  const options: (() => unknown)[] = [() => undefined];
  if (flat !== false) {
    const s = flat.s;
    const required = Array.isArray(s.required) ? s.required.filter((k): k is string => typeof k === "string") : [];
    const present = isRecord(value) ? required.find((k) => k in value) : undefined;
    if (isRecord(value) && present !== undefined) {
      options.push(() => Object.fromEntries(Object.entries(value).filter(([k]) => k !== present)));
    }
    if (Array.isArray(s.enum)) options.push(() => offChoice((s.enum as unknown[]).map(String)));
    else if (isRecord(value) && isRecord(s.properties)) {
      const props = s.properties;
      for (const key of Object.keys(value)) {
        const sub = flatten(props[key], schema);
        if (sub !== false && Array.isArray(sub.s.enum)) {
          const values = (sub.s.enum as unknown[]).map(String);
          options.push(() => ({ ...value, [key]: offChoice(values) }));
          break;
        }
      }
    }
  }
  const broken = (options[fnv1a(text) % options.length] as () => unknown)();
  return broken === undefined || checkValue(schema, broken, schema) ? undefined : broken;
}

/**
 * Gemini's `Schema` (an OpenAPI 3.0 subset: upper-case `type`, `nullable`, int64 bounds sent as
 * strings) as the JSON Schema it means, so one generator serves every dialect.
 */
export function fromOpenApiSchema(schema: unknown): unknown {
  if (!isRecord(schema)) return schema;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(schema)) {
    switch (key) {
      case "type":
        if (typeof value === "string" && value !== "TYPE_UNSPECIFIED") out.type = value.toLowerCase();
        break;
      case "nullable":
        break;
      case "properties":
        if (isRecord(value)) out.properties = Object.fromEntries(Object.entries(value).map(([k, v]) => [k, fromOpenApiSchema(v)]));
        break;
      case "items":
        out.items = fromOpenApiSchema(value);
        break;
      case "anyOf":
        if (Array.isArray(value)) out.anyOf = value.map(fromOpenApiSchema);
        break;
      case "format":
        // Gemini marks a string enum with format "enum"; it is no JSON Schema format.
        if (value !== "enum") out.format = value;
        break;
      case "minItems":
      case "maxItems":
      case "minLength":
      case "maxLength":
      case "minProperties":
      case "maxProperties":
      case "minimum":
      case "maximum":
        out[key] = typeof value === "string" && value.trim() !== "" && Number.isFinite(Number(value)) ? Number(value) : value;
        break;
      default:
        out[key] = value;
    }
  }
  if (schema.nullable === true) {
    if (typeof out.type === "string") out.type = [out.type, "null"];
    if (Array.isArray(out.enum)) out.enum = [...out.enum, null];
  }
  return out;
}

/**
 * A schema with its `$ref`s and `allOf`s merged away (`s`), with what merging cannot say kept
 * beside it: each part's own object keywords (`additionalProperties` only speaks for the
 * properties its own part names) and the schema as written (`origin`), which values are checked
 * against.
 */
interface Flat {
  readonly s: Record<string, unknown>;
  readonly parts: readonly ObjectPart[];
  readonly origin: unknown;
}

interface ObjectPart {
  readonly properties: Record<string, unknown> | undefined;
  readonly patterns: readonly (readonly [string, unknown])[];
  readonly additional: unknown;
}

const MAX_DEPTH = 24;
/** Below this depth optional properties are filled and arrays get an item; deeper, only what is required. */
const FULL_DEPTH = 4;
const SPAN_CHARS = 60;

class Generator {
  private readonly subject: string;
  private verdictMemo: ModerationVerdict | undefined;

  constructor(
    private readonly root: unknown,
    private readonly context: ValueContext,
  ) {
    this.subject = context.subject ?? subjectWithoutInstruction(context.text);
  }

  value(): unknown {
    return this.gen(this.root, "", 0, 0);
  }

  private get verdict(): ModerationVerdict {
    return (this.verdictMemo ??= moderate(this.context.text));
  }

  private gen(schema: unknown, name: string, depth: number, variant: number): unknown {
    if (depth > MAX_DEPTH) return null;
    const flat = flatten(schema, this.root);
    return flat === false ? null : this.genFlat(flat, name, depth, variant);
  }

  private genFlat(flat: Flat, name: string, depth: number, variant: number): unknown {
    const { s, origin } = flat;
    if ("const" in s) return s.const;
    const branches = Array.isArray(s.anyOf) ? "anyOf" : Array.isArray(s.oneOf) ? "oneOf" : undefined;
    if (branches) return this.branch(flat, branches, name, depth, variant);
    if (Array.isArray(s.enum)) return this.pickEnum(flat, variant);
    let first: unknown;
    let tried = false;
    for (const type of typesOf(s)) {
      const v = this.ofType(type, flat, name, depth, variant);
      if (checkValue(origin, v, this.root)) return v;
      if (!tried) {
        first = v;
        tried = true;
      }
    }
    return first;
  }

  /** The first branch (merged with the keywords beside it) whose value checks against the whole schema. */
  private branch(flat: Flat, key: "anyOf" | "oneOf", name: string, depth: number, variant: number): unknown {
    const options = flat.s[key] as unknown[];
    const base: Flat = { s: without(flat.s, key), parts: flat.parts, origin: flat.origin };
    let first: unknown;
    for (let i = 0; i < options.length; i++) {
      const b = flatten(options[i], this.root);
      if (b === false) continue;
      const merged: Flat = { s: mergeSchemas(base.s, b.s), parts: [...base.parts, ...b.parts], origin: { allOf: [flat.origin, options[i]] } };
      const v = this.genFlat(merged, name, depth, variant);
      if (checkValue(flat.origin, v, this.root)) return v;
      if (i === 0) first = v;
    }
    return first ?? this.genFlat(base, name, depth, variant);
  }

  private pickEnum(flat: Flat, variant: number): unknown {
    const values = flat.s.enum as unknown[];
    if (values.length === 0) return null;
    const strings = values.filter((v): v is string => typeof v === "string");
    const preferred = strings.length > 0 ? this.pickLabel(strings) : values[0];
    const order = [preferred, ...values.filter((v) => v !== preferred)];
    // Successive variants (items of a unique array) take the next options round.
    for (let i = 0; i < order.length; i++) {
      const v = order[(i + variant) % order.length];
      if (checkValue(flat.origin, v, this.root)) return v;
    }
    return order[variant % order.length];
  }

  /** The option the text points to; for a moderation-like set of options, the verdict's. */
  private pickLabel(options: readonly string[]): string {
    return pickChoice(options, this.subject, this.context.text);
  }

  private ofType(type: string, flat: Flat, name: string, depth: number, variant: number): unknown {
    switch (type) {
      case "object":
        return this.object(flat, depth, variant);
      case "array":
        return this.array(flat.s, name, depth, variant);
      case "string":
        return this.string(flat, name, variant);
      case "integer":
        return this.number(flat.s, name, true, variant);
      case "number":
        return this.number(flat.s, name, false, variant);
      case "boolean":
        return this.boolean(name, variant);
      default:
        return null;
    }
  }

  private object(flat: Flat, depth: number, variant: number): Record<string, unknown> {
    const { s, parts } = flat;
    const props = isRecord(s.properties) ? s.properties : {};
    const required = Array.isArray(s.required) ? s.required.filter((k): k is string => typeof k === "string") : [];
    const max = typeof s.maxProperties === "number" ? s.maxProperties : Infinity;
    const min = typeof s.minProperties === "number" ? s.minProperties : 0;
    /** What every part says of a property: its own schema, the patterns it matches, else the part's additionalProperties. */
    const schemaOf = (k: string): unknown[] => {
      const out: unknown[] = [];
      for (const part of parts) {
        const before = out.length;
        if (part.properties && Object.hasOwn(part.properties, k)) out.push(part.properties[k]);
        for (const [p, sub] of part.patterns) if (patternRegExp(p)?.test(k)) out.push(sub);
        if (out.length === before && part.additional !== undefined) out.push(part.additional);
      }
      return out;
    };
    const allowed = (k: string) => !schemaOf(k).includes(false);

    const ordering = Array.isArray(s.propertyOrdering) ? s.propertyOrdering.filter((k): k is string => typeof k === "string" && Object.hasOwn(props, k)) : [];
    const order = [...new Set([...ordering, ...Object.keys(props), ...required])];
    const chosen = new Set(required);
    const optional = new Set<string>();
    for (const k of order) {
      if (chosen.has(k) || !allowed(k)) continue;
      if (chosen.size >= max || (depth >= FULL_DEPTH && chosen.size >= min)) break;
      chosen.add(k);
      optional.add(k);
    }
    if (isRecord(s.dependentRequired)) {
      for (const [k, deps] of Object.entries(s.dependentRequired)) {
        if (chosen.has(k) && Array.isArray(deps)) for (const d of deps) if (typeof d === "string") chosen.add(d);
      }
    }
    for (let i = 1; chosen.size < min && i <= min + order.length; i++) {
      const k = `extra_${i}`;
      if (!chosen.has(k) && allowed(k)) chosen.add(k);
    }

    const out: Record<string, unknown> = {};
    for (const k of [...order, ...[...chosen].filter((k) => !order.includes(k))]) {
      if (!chosen.has(k)) continue;
      const subs = schemaOf(k);
      const sub = subs.length === 0 ? true : subs.length === 1 ? subs[0] : { allOf: subs };
      const v = this.gen(sub, k, depth + 1, variant);
      // An optional property the parts disagree on is better left out than sent wrong.
      if (optional.has(k) && subs.length > 1 && !checkValue(sub, v, this.root) && Object.keys(out).length + 1 > min) continue;
      out[k] = v;
    }
    return out;
  }

  private array(s: Record<string, unknown>, name: string, depth: number, variant: number): unknown[] {
    const prefix: unknown[] = Array.isArray(s.prefixItems) ? s.prefixItems : Array.isArray(s.items) ? s.items : [];
    const rest: unknown = Array.isArray(s.items) ? (s.additionalItems ?? true) : (s.items ?? true);
    const min = typeof s.minItems === "number" ? s.minItems : 0;
    const max = Math.min(typeof s.maxItems === "number" ? s.maxItems : Infinity, rest === false ? prefix.length : Infinity);
    const itemName = singular(name);

    const restFlat = rest === false ? false : flatten(rest, this.root);
    let picks: unknown[] | undefined;
    if (restFlat !== false && Array.isArray(restFlat.s.enum)) picks = this.enumPicks(restFlat.s.enum, name);
    else if (restFlat !== false && MODERATION_LIST.test(name) && typesOf(restFlat.s).includes("string")) picks = this.verdict.categories;
    if (picks) picks = picks.filter((p) => restFlat !== false && checkValue(restFlat.s, p, this.root));

    const wanted = picks ? prefix.length + picks.length : depth < FULL_DEPTH ? Math.max(1, prefix.length) : 0;
    const count = Math.max(min, Math.min(wanted, max));
    const unique = s.uniqueItems === true;
    const items: unknown[] = [];
    for (let i = 0; i < count; i++) {
      const itemSchema = i < prefix.length ? prefix[i] : rest;
      const pick = picks && i >= prefix.length ? picks[i - prefix.length] : undefined;
      let v = pick !== undefined ? pick : this.gen(itemSchema, itemName, depth + 1, variant + i);
      for (let k = 1; unique && k <= 12 && items.some((x) => deepEqual(x, v)); k++) v = this.gen(itemSchema, itemName, depth + 1, variant + i + k * 7);
      items.push(v);
    }
    if (s.contains !== undefined && typeof s.maxContains !== "number") {
      const need = typeof s.minContains === "number" ? s.minContains : 1;
      for (let i = 0, have = items.filter((v) => checkValue(s.contains, v, this.root)).length; have < need && i < need + 4; i++) {
        const v = this.gen({ allOf: [rest === false ? true : rest, s.contains] }, itemName, depth + 1, variant + i);
        if (items.length < max) items.push(v);
        else {
          const at = items.findIndex((x) => !checkValue(s.contains, x, this.root));
          if (at === -1) break;
          items[at] = v;
        }
        have = items.filter((x) => checkValue(s.contains, x, this.root)).length;
      }
    }
    return items;
  }

  /** Enum options the text points to: the verdict's categories for a moderation set, else those named or implied, else the single best. */
  private enumPicks(values: unknown[], name: string): unknown[] {
    const strings = values.filter((v): v is string => typeof v === "string");
    if (strings.length === 0) return [];
    if (strings.some((v) => categoryFor(v) !== undefined) && (MODERATION_LIST.test(name) || strings.filter((v) => categoryFor(v) !== undefined).length >= 2)) {
      const { categories } = this.verdict;
      return strings.filter((v) => {
        const c = categoryFor(v);
        return c !== undefined && categories.includes(c);
      });
    }
    const matched = matchingOptions(strings, this.subject);
    return matched.length > 0 ? matched : [this.pickLabel(strings)];
  }

  private string(flat: Flat, name: string, variant: number): string {
    const { s, origin } = flat;
    const min = typeof s.minLength === "number" ? s.minLength : 0;
    const max = typeof s.maxLength === "number" ? s.maxLength : Infinity;
    // Text candidates take the variant as a tag when fitted; exact ones (formats, pattern samples, tokens) vary by themselves.
    const textual: string[] = [];
    const exact: string[] = [];
    const format = typeof s.format === "string" ? s.format : undefined;
    const formatted = format === undefined ? undefined : this.formatted(format, name, variant);
    if (formatted !== undefined) exact.push(...formatted);
    else {
      const named = this.named(name);
      if (named !== undefined) textual.push(named);
      if (typeof s.pattern === "string") exact.push(...this.tokensMatching(s.pattern, variant));
      textual.push(this.span(name));
    }
    if (typeof s.pattern === "string") {
      for (let v = 0; v < 4; v++) {
        const sample = sampleForPattern(s.pattern, min, variant + v);
        if (sample !== undefined) exact.push(sample);
      }
    }
    const ok = (c: string) => checkValue(origin, c, this.root);
    for (const c of formatted !== undefined ? exact : [...textual, ...exact]) {
      if (variant === 0) {
        if (ok(c)) return c;
        const f = this.fit(c, min, max);
        if (ok(f)) return f;
        continue;
      }
      // Another item of a unique array: a tagged form first, so it differs from the first item.
      for (const f of [this.fit(c, min, max, variant), `${c}${variant + 1}`, this.fit(String(variant + 1), min, max), ...(textual.includes(c) ? [] : [c])]) if (ok(f)) return f;
    }
    return this.fit(textual[0] ?? exact[0] ?? "", min, max, variant);
  }

  /**
   * Clipped to `max` code points and padded with the subject to `min`; a variant's number is
   * kept at the end through the clipping, so the items of a unique array differ.
   */
  private fit(text: string, min: number, max: number, variant = 0): string {
    const tag = variant > 0 ? ` ${variant + 1}` : "";
    const room = Math.max(0, max - codePoints(tag));
    let out = codePoints(text) > room ? clipCodePoints(text, room) : text;
    if (tag) out = `${out}${tag}`;
    const filler = this.subject.trim() || "n/a";
    while (codePoints(out) < min) out = out ? `${out} ${filler}` : filler;
    return clipCodePoints(out, Math.min(max, Math.max(min, codePoints(text) + codePoints(tag))));
  }

  /** The passage the prompt is about, up to 60 characters; a placeholder naming the field when there is no text. */
  private span(name: string): string {
    return this.subject.trim() ? clipCodePoints(this.subject.trim().replace(WHITESPACE, " "), SPAN_CHARS).trimEnd() : `sample ${words(name).join(" ") || "text"}`;
  }

  /** Text tokens that already match the pattern (an order number for `^[A-Z]-\d{4}$`). */
  private tokensMatching(pattern: string, variant: number): string[] {
    const re = patternRegExp(pattern);
    if (!re) return [];
    const found: string[] = [];
    for (const token of this.context.text.match(TOKENS) ?? []) {
      if (re.test(token) && !found.includes(token)) found.push(token);
      if (found.length > variant + 1) break;
    }
    return found.slice(variant);
  }

  /** A value for a property whose name says what it holds, found in the text; undefined when the text has none. */
  private named(name: string): string | undefined {
    if (!name) return undefined;
    const w = words(name);
    const has = (field: ReadonlySet<string>) => w.some((x) => field.has(x));
    const text = this.context.text;
    if (has(LABEL_FIELD) && this.context.choices?.length) {
      return pickChoice(this.context.choices, this.subject, this.context.text);
    }
    if (name === "reply" && this.context.reply !== undefined) return this.context.reply;
    if (has(SENTIMENT_FIELD)) return classify(["positive", "negative", "neutral"], this.subject);
    if (has(EMAIL_FIELD)) return EMAIL.exec(text)?.[0];
    if (has(PHONE_FIELD)) return PHONE.exec(text)?.[0];
    if (has(URL_FIELD)) return URL_TEXT.exec(text)?.[0];
    // Before ids: an invoice's total or an order's date is money or a date, not the invoice's number.
    if (has(MONEY_FIELD)) return MONEY.exec(text)?.[0];
    if (has(DATE_FIELD)) return DATE_TEXT.exec(text)?.[0];
    if (has(ID_FIELD)) return (ID_TOKEN.exec(text) ?? NUMBER_TOKEN.exec(text))?.[0];
    if (has(PLACE_FIELD)) return PLACE.exec(text)?.[1];
    if (has(ADDRESS_FIELD)) return ADDRESS.exec(text)?.[0];
    if (has(PERSON_FIELD)) {
      return (NAME_AFTER.exec(text) ?? FULL_NAME.exec(text))?.[1];
    }
    return undefined;
  }

  private formatted(format: string, name: string, variant: number): string[] | undefined {
    const text = this.context.text;
    const day = String(15 + (variant % 13)).padStart(2, "0");
    switch (format) {
      case "date-time": {
        const found = ISO_DATE_TIME.exec(text)?.[0];
        const date = ISO_DATE.exec(text)?.[0];
        return [...(found ? [found] : []), ...(date ? [`${date}T09:00:00Z`] : []), `2026-01-${day}T09:00:00Z`];
      }
      case "date": {
        const date = ISO_DATE.exec(text)?.[0];
        return [...(date ? [date] : []), `2026-01-${day}`];
      }
      case "time":
        return [`09:${String(variant % 60).padStart(2, "0")}:00Z`];
      case "email":
      case "idn-email": {
        const found = EMAIL.exec(text)?.[0];
        const local = words(name).filter((x) => x !== "email").join(".") || "user";
        return [...(found && variant === 0 ? [found] : []), `${local}${variant || ""}@example.com`];
      }
      case "uri":
      case "url":
      case "iri":
      case "uri-reference":
      case "iri-reference": {
        const found = URL_TEXT.exec(text)?.[0];
        return [...(found && variant === 0 ? [found] : []), `https://example.com/${variant ? `item-${variant}` : ""}`];
      }
      case "uuid":
        return [uuidFrom(`${text}\u0000${name}\u0000${variant}`)];
      case "hostname":
      case "idn-hostname":
        return [variant ? `host${variant}.example.com` : "example.com"];
      case "ipv4":
        return [`192.0.2.${1 + (variant % 250)}`];
      case "ipv6":
        return [`2001:db8::${(1 + variant).toString(16)}`];
      case "duration":
        return [`P${1 + variant}D`];
      case "json-pointer":
        return [`/${words(name)[0] ?? "a"}${variant || ""}`];
      case "regex":
        return [`^${words(name)[0] ?? "a"}${variant || ""}$`];
      case "byte":
        return [Buffer.from(`${this.span(name)}${variant || ""}`).toString("base64")];
      default:
        return undefined;
    }
  }

  private number(s: Record<string, unknown>, name: string, integer: boolean, variant: number): number {
    const w = words(name);
    const has = (field: ReadonlySet<string>) => w.some((x) => field.has(x));
    const upper = typeof s.maximum === "number" ? s.maximum : typeof s.exclusiveMaximum === "number" ? s.exclusiveMaximum : undefined;
    let c: number | undefined;
    if (has(SCORE_FIELD)) {
      c = this.verdict.score * (upper !== undefined && upper > 1 ? upper : 1);
    } else if (has(CONFIDENCE_FIELD)) {
      c = 0.9 * (upper !== undefined && upper > 1 ? upper : 1);
    } else if (has(NUMBER_FIELD)) {
      const money = has(MONEY_FIELD) ? MONEY.exec(this.context.text)?.[0]?.replace(/[^\d.,-]/g, "") : undefined;
      const found = money || NUMBER.exec(this.context.text)?.[0];
      if (found !== undefined) c = Number(found.replace(/,/g, ""));
    }
    const base = fitNumber(c ?? 1, s, integer);
    if (variant === 0) return base;
    // Another value for another item of a unique array: a step up, else a step down (the bounds may stop one of them).
    const step = typeof s.multipleOf === "number" && s.multipleOf > 0 ? s.multipleOf : 1;
    for (const next of [base + variant * step, base - variant * step, base + (variant * step) / 8, base - (variant * step) / 8]) {
      const v = fitNumber(next, s, integer);
      if (v !== base) return v;
    }
    return base;
  }

  private boolean(name: string, variant: number): boolean {
    const w = words(name).filter((x) => !BOOLEAN_FILLER.has(x));
    let value: boolean;
    if (w.some((x) => FLAG_NAMES.test(x))) value = this.verdict.flagged;
    else if (w.some((x) => SAFE_NAMES.test(x))) value = !this.verdict.flagged;
    else {
      const category = w.map(categoryFor).find((c) => c !== undefined);
      if (category !== undefined) value = this.verdict.categories.includes(category);
      else {
        const lower = this.subject.toLowerCase();
        value = w.some((x) => x.length >= 3 && findWord(lower, x, false));
      }
    }
    return variant % 2 === 1 ? !value : value;
  }
}

/** Words of a property name that say what the property holds. */
const LABEL_FIELD: ReadonlySet<string> = new Set(["label", "category", "class", "queue", "team", "department", "intent", "topic", "route", "bucket"]);
const SENTIMENT_FIELD: ReadonlySet<string> = new Set(["sentiment"]);
const EMAIL_FIELD: ReadonlySet<string> = new Set(["email", "mail"]);
const PHONE_FIELD: ReadonlySet<string> = new Set(["phone", "tel", "telephone", "mobile"]);
const URL_FIELD: ReadonlySet<string> = new Set(["url", "uri", "link", "website", "href"]);
const ID_FIELD: ReadonlySet<string> = new Set(["order", "ticket", "invoice", "reference", "ref", "tracking", "booking", "confirmation", "id", "sku", "code", "number", "no"]);
const PLACE_FIELD: ReadonlySet<string> = new Set(["city", "town", "destination", "location", "place", "country", "region", "origin"]);
const ADDRESS_FIELD: ReadonlySet<string> = new Set(["address"]);
const PERSON_FIELD: ReadonlySet<string> = new Set(["name", "customer", "person", "author", "contact", "sender", "recipient", "requester", "user"]);
const MONEY_FIELD: ReadonlySet<string> = new Set(["amount", "price", "total", "cost", "fee"]);
const DATE_FIELD: ReadonlySet<string> = new Set(["date", "day", "deadline", "due"]);
const SCORE_FIELD: ReadonlySet<string> = new Set(["score", "toxicity", "severity", "risk", "harm", "harmfulness"]);
const CONFIDENCE_FIELD: ReadonlySet<string> = new Set(["confidence", "probability", "certainty", "likelihood"]);
const NUMBER_FIELD: ReadonlySet<string> = new Set(["count", "quantity", "qty", "number", "num", "no", "amount", "total", "price", "cost", "age", "year", "id", "order", "ticket", "rating", "stars", "minutes", "hours", "days", "weeks", "items", "units"]);
const FLAG_NAMES = /^(?:flagged|flag|abusive|abuse|harmful|toxic|unsafe|offensive|inappropriate|nsfw|violat\w*)$/;
const SAFE_NAMES = /^(?:safe|appropriate|clean|allowed|acceptable|ok)$/;
const BOOLEAN_FILLER = new Set(["is", "has", "was", "needs", "requires", "contains", "should", "did", "does", "are"]);
const MODERATION_LIST = /categor|violation|flags|harms/i;

const TOKENS = /[\p{L}\p{N}][\p{L}\p{N}\-_./@#:+]*[\p{L}\p{N}]|[\p{L}\p{N}]/gu;
const EMAIL = /[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}/i;
const PHONE = /\+?\d[\d\s().-]{6,}\d/;
const URL_TEXT = /\bhttps?:\/\/[^\s"'<>]+[^\s"'<>.,;:!?)]/i;
const ID_TOKEN = /\b[A-Z]{1,5}-?\d{2,}[A-Z0-9-]*\b/;
const NUMBER_TOKEN = /#?\b\d{3,}\b/;
const PLACE = /\b(?:to|in|into|at|near)\s+((?:[A-Z][\p{L}'-]+)(?:\s+[A-Z][\p{L}'-]+)?)/u;
const ADDRESS = /\b\d+\s+(?:[A-Z][\p{L}'-]*\.?\s+){1,3}(?:St|Street|Ave|Avenue|Rd|Road|Lane|Ln|Blvd|Drive|Dr|Way|Court|Ct|Place|Pl)\b\.?/u;
const NAME_AFTER = /\b(?:from|by|for|name is|I am|I'm|this is|signed)\s+([A-Z][\p{L}'-]+(?:\s+[A-Z][\p{L}'-]+)?)/u;
const FULL_NAME = /\b([A-Z][a-z]+\s+[A-Z][a-z]+)\b/;
const MONEY = /[$€£]\s?\d[\d,]*(?:\.\d+)?|\b\d[\d,]*(?:\.\d+)?\s?(?:USD|EUR|GBP|dollars|euros)\b/;
const DATE_TEXT = /\b\d{4}-\d{2}-\d{2}\b|\b(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\.?\s+\d{1,2}(?:st|nd|rd|th)?(?:,?\s+\d{4})?\b|\b(?:today|tomorrow|yesterday|next \w+day)\b/i;
const ISO_DATE = /\b\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|1\d|2[0-8])\b/;
const ISO_DATE_TIME = /\b\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|1\d|2[0-8])T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d+)?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)/;
/** A number standing on its own: not the digits of "A-5531" or "2026-03-04". */
const NUMBER = /(?<![\p{L}\p{N}_-])-?\d[\d,]*(?:\.\d+)?(?![\p{L}\p{N}_-])/u;

const CAMEL_HUMP = /([a-z0-9])([A-Z])/g;
const NON_WORD = /[^a-z0-9]+/;
const WHITESPACE = /\s+/g;

/** The words of a property name: `orderNumber`, `order_number` and `order-number` are all ["order", "number"]. */
function words(name: string): string[] {
  return name
    .replace(CAMEL_HUMP, "$1 $2")
    .toLowerCase()
    .split(NON_WORD)
    .filter((x) => x.length > 0);
}

function singular(name: string): string {
  if (name.endsWith("ies")) return `${name.slice(0, -3)}y`;
  if (name.endsWith("s") && !name.endsWith("ss")) return name.slice(0, -1);
  return name;
}

/** A version-4-shaped UUID from a hash of the text: stable, and different for different texts. */
function uuidFrom(seed: string): string {
  let hex = "";
  for (let i = 0; hex.length < 32; i++) hex += fnv1a(`${i}:${seed}`).toString(16).padStart(8, "0");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-8${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

/** The types to try, in order: the listed ones (null last), else those the keywords imply, else string. */
function typesOf(s: Record<string, unknown>): string[] {
  if (typeof s.type === "string") return [s.type];
  if (Array.isArray(s.type)) {
    const types = s.type.filter((t): t is string => typeof t === "string");
    return [...types.filter((t) => t !== "null"), ...types.filter((t) => t === "null")];
  }
  const out: string[] = [];
  if (["properties", "required", "additionalProperties", "patternProperties", "minProperties", "maxProperties", "propertyOrdering"].some((k) => k in s)) out.push("object");
  if (["items", "prefixItems", "minItems", "maxItems", "uniqueItems", "contains"].some((k) => k in s)) out.push("array");
  if (["minLength", "maxLength", "pattern", "format"].some((k) => k in s)) out.push("string");
  if (["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"].some((k) => k in s)) out.push("number");
  return out.length > 0 ? out : ["string"];
}

/**
 * The number nearest `c` that the bounds, `multipleOf` and integer-ness allow. Multiples are
 * searched on the lattice `k * step` and each checked with ajv's own division rule, because
 * `0.3` is not a multiple of `0.1` in floating point.
 */
export function fitNumber(c: number, s: Record<string, unknown>, integer: boolean): number {
  let lo = -Infinity;
  let loEx = false;
  let hi = Infinity;
  let hiEx = false;
  if (typeof s.minimum === "number") {
    lo = s.minimum;
    loEx = s.exclusiveMinimum === true;
  }
  if (typeof s.exclusiveMinimum === "number" && s.exclusiveMinimum >= lo) {
    lo = s.exclusiveMinimum;
    loEx = true;
  }
  if (typeof s.maximum === "number") {
    hi = s.maximum;
    hiEx = s.exclusiveMaximum === true;
  }
  if (typeof s.exclusiveMaximum === "number" && s.exclusiveMaximum <= hi) {
    hi = s.exclusiveMaximum;
    hiEx = true;
  }
  const m = typeof s.multipleOf === "number" && s.multipleOf > 0 ? s.multipleOf : undefined;
  const ok = (v: number) =>
    Number.isFinite(v) && (loEx ? v > lo : v >= lo) && (hiEx ? v < hi : v <= hi) && (!integer || Number.isInteger(v)) && (m === undefined || isMultipleOf(v, m));
  if (!Number.isFinite(c)) c = 1;
  if (ok(c)) return c;

  const step = m === undefined ? (integer ? 1 : undefined) : integer ? integerStep(m) : m;
  if (step === undefined) {
    if (Number.isFinite(lo) && Number.isFinite(hi)) {
      const mid = (lo + hi) / 2;
      if (ok(mid)) return mid;
      return lo;
    }
    if (Number.isFinite(lo)) return loEx ? lo + 1 : lo;
    if (Number.isFinite(hi)) return hiEx ? hi - 1 : hi;
    return c;
  }
  const kLo = Number.isFinite(lo) ? Math.floor(lo / step) : -Infinity;
  const kHi = Number.isFinite(hi) ? Math.ceil(hi / step) : Infinity;
  const k0 = Math.min(kHi, Math.max(kLo, Math.round(c / step)));
  for (let d = 0; d < 400; d++) {
    for (const k of d === 0 ? [k0] : [k0 + d, k0 - d]) {
      const raw = k * step;
      for (const v of [Number(raw.toPrecision(12)), raw]) if (ok(v)) return v;
    }
  }
  return ok(0) ? 0 : k0 * step;
}

/** The smallest integer multiple of `m` (m itself when it is an integer; 1.5 → 3). */
function integerStep(m: number): number {
  if (Number.isInteger(m)) return m;
  for (let q = 2; q <= 1000; q++) {
    const v = m * q;
    if (Math.abs(v - Math.round(v)) < 1e-9) return Math.round(v);
  }
  return Math.ceil(m);
}

/** Resolves `$ref` and merges `allOf` into one schema; false when a part is `false`. */
function flatten(schema: unknown, root: unknown): Flat | false {
  if (schema === false) return false;
  if (!isRecord(schema)) return { s: {}, parts: [], origin: true };
  if (schema.$ref === undefined && schema.allOf === undefined) return { s: schema, parts: [partOf(schema)], origin: schema };
  let out: Record<string, unknown> = {};
  const parts: ObjectPart[] = [];
  const queue: unknown[] = [schema];
  for (let guard = 0; queue.length > 0 && guard < 64; guard++) {
    const next = queue.shift();
    if (next === false) return false;
    if (!isRecord(next)) continue;
    let part = next;
    if (typeof part.$ref === "string") {
      queue.push(resolveRef(root, part.$ref) ?? true);
      part = without(part, "$ref");
    }
    if (Array.isArray(part.allOf)) {
      queue.push(...part.allOf);
      part = without(part, "allOf");
    }
    parts.push(partOf(part));
    out = mergeSchemas(out, part);
  }
  return { s: out, parts, origin: schema };
}

function partOf(s: Record<string, unknown>): ObjectPart {
  return {
    properties: isRecord(s.properties) ? s.properties : undefined,
    patterns: isRecord(s.patternProperties) ? Object.entries(s.patternProperties) : [],
    additional: s.additionalProperties,
  };
}

function without(s: Record<string, unknown>, key: string): Record<string, unknown> {
  const { [key]: _drop, ...rest } = s;
  return rest;
}

const LOWER_BOUNDS = new Set(["minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties", "minContains"]);
const UPPER_BOUNDS = new Set(["maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties", "maxContains"]);
const SUBSCHEMAS = new Set(["items", "additionalProperties", "contains", "propertyNames", "additionalItems", "not"]);

/** Both schemas at once, as far as one schema can say it; what it cannot (two patterns) is checked on the value afterwards. */
export function mergeSchemas(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [key, value] of Object.entries(b)) {
    if (!(key in out)) {
      out[key] = value;
      continue;
    }
    const prev = out[key];
    if (key === "properties" || key === "patternProperties" || key === "dependentRequired") {
      if (isRecord(prev) && isRecord(value)) {
        const merged: Record<string, unknown> = { ...prev };
        for (const [k, v] of Object.entries(value)) {
          if (!(k in merged)) merged[k] = v;
          else if (key === "dependentRequired") merged[k] = [...new Set([...(merged[k] as unknown[]), ...(v as unknown[])])];
          else merged[k] = { allOf: [merged[k], v] };
        }
        out[key] = merged;
      }
    } else if (key === "required") {
      out.required = [...new Set([...(Array.isArray(prev) ? prev : []), ...(Array.isArray(value) ? value : [])])];
    } else if (key === "type") {
      out.type = intersectTypes(prev, value);
    } else if (key === "enum") {
      if (Array.isArray(prev) && Array.isArray(value)) out.enum = prev.filter((x) => value.some((y) => deepEqual(x, y)));
    } else if (LOWER_BOUNDS.has(key) && typeof prev === "number" && typeof value === "number") {
      out[key] = Math.max(prev, value);
    } else if (UPPER_BOUNDS.has(key) && typeof prev === "number" && typeof value === "number") {
      out[key] = Math.min(prev, value);
    } else if (key === "multipleOf" && typeof prev === "number" && typeof value === "number") {
      out.multipleOf = isMultipleOf(prev, value) ? prev : isMultipleOf(value, prev) ? value : prev * value;
    } else if (SUBSCHEMAS.has(key)) {
      out[key] = prev === false || value === false ? false : { allOf: [prev, value] };
    } else if (key === "prefixItems" && Array.isArray(prev) && Array.isArray(value)) {
      const n = Math.max(prev.length, value.length);
      out.prefixItems = Array.from({ length: n }, (_, i) => (i < prev.length && i < value.length ? { allOf: [prev[i], value[i]] } : (prev[i] ?? value[i])));
    } else if ((key === "anyOf" || key === "oneOf") && Array.isArray(prev) && Array.isArray(value) && prev.length * value.length <= 16) {
      // (A1 | A2) & (B1 | B2) is (A1 & B1) | (A1 & B2) | ...: still one list of branches. Exact for
      // anyOf; for oneOf the checked value tells whether the branch picked really worked.
      out[key] = prev.flatMap((p) => value.map((v) => ({ allOf: [p, v] })));
    }
    // Anything else (pattern, format, uniqueItems, annotations): the first one stands.
  }
  return out;
}

function intersectTypes(a: unknown, b: unknown): unknown {
  const list = (t: unknown) => (Array.isArray(t) ? t : [t]).filter((x): x is string => typeof x === "string");
  const as = list(a);
  const bs = list(b);
  const out: string[] = [];
  for (const t of as) {
    if (bs.includes(t)) out.push(t);
    else if (t === "number" && bs.includes("integer")) out.push("integer");
    else if (t === "integer" && bs.includes("number")) out.push("integer");
  }
  return out.length === 1 ? out[0] : out;
}

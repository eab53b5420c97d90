/**
 * Property test of the sim-provider's schema generator: random JSON Schemas (objects, arrays,
 * enums, bounded and stepped numbers, strings with lengths, patterns and formats, anyOf, oneOf,
 * allOf, nullable types, $defs/$ref) with random prompts, and every generated value must pass
 * ajv. The PRNG is seeded here, so a failure names the case that reproduces it.
 */
import { Ajv2020 } from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseScenario } from "../services/sim-provider/scenario.ts";
import { breakValue, fromOpenApiSchema, valueForSchema } from "../services/sim-provider/schema-value.ts";
import { createSimProvider, type SimProvider } from "../services/sim-provider/server.ts";

type Schema = Record<string, unknown>;

const SEEDS = Number(process.env.SIM_SCHEMA_SEEDS ?? 600);

/** mulberry32: the same sequence on every platform. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Gen {
  readonly defs: Record<string, Schema> = {};
  private names = 0;
  constructor(readonly r: () => number) {}

  int(lo: number, hi: number): number {
    return lo + Math.floor(this.r() * (hi - lo + 1));
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.r() * xs.length)] as T;
  }
  chance(p: number): boolean {
    return this.r() < p;
  }

  schema(depth: number): Schema {
    const leaf = ["string", "format", "pattern", "number", "integer", "boolean", "enum", "const", "null"];
    const nested = ["object", "object", "array", "anyOf", "oneOf", "allOf", "nullable", "ref"];
    const kind = this.pick(depth <= 0 ? leaf : [...leaf, ...nested, ...nested]);
    switch (kind) {
      case "string":
        return this.string();
      case "format":
        return { type: "string", format: this.pick(["date-time", "date", "email", "uri", "uuid"]) };
      case "pattern":
        return this.pattern();
      case "number":
        return this.number(false);
      case "integer":
        return this.number(true);
      case "boolean":
        return { type: "boolean" };
      case "null":
        return { type: "null" };
      case "enum":
        return this.enumSchema();
      case "const":
        return { const: this.pick(["fixed", 42, true, null, { a: 1 }]) };
      case "object":
        return this.object(depth);
      case "array":
        return this.array(depth);
      case "anyOf":
        return { anyOf: [this.schema(depth - 1), this.schema(depth - 1)] };
      case "oneOf":
        // Branches of different types, so exactly one can hold.
        return { oneOf: [{ type: "string", maxLength: this.int(3, 30) }, this.number(true)] };
      case "allOf": {
        // Branches with distinct property names and no additionalProperties: always satisfiable together.
        const a = this.object(depth - 1, false, ["label", "order_number", "city", "flagged", "score", "id", "email"]);
        const b = this.object(depth - 1, false, ["customer", "categories", "summary", "count", "tags", "is_urgent", "notes"]);
        return { allOf: [a, b] };
      }
      case "nullable": {
        const base = this.pick([this.string(), this.number(false), this.number(true), { type: "boolean" }, this.object(depth - 1)]);
        return { ...base, type: [base.type as string, "null"] };
      }
      case "ref": {
        const name = `d${this.names++}`;
        this.defs[name] = this.schema(depth - 1);
        return this.chance(0.5) ? { $ref: `#/$defs/${name}` } : { $ref: `#/$defs/${name}`, description: "a reference" };
      }
      default:
        throw new Error(kind);
    }
  }

  string(): Schema {
    const s: Schema = { type: "string" };
    if (this.chance(0.5)) s.minLength = this.int(0, 12);
    // At least 2: a unique array of these needs a few distinct strings.
    if (this.chance(0.5)) s.maxLength = ((s.minLength as number | undefined) ?? 0) + this.int(2, 40);
    return s;
  }

  /** Patterns with the lengths they can take, so the length bounds chosen stay satisfiable. */
  pattern(): Schema {
    const [pattern, min, max] = this.pick<[string, number, number]>([
      ["^[A-Z]-\\d{4}$", 6, 6],
      ["^[a-z]+$", 1, 1000],
      ["^[A-Z]{2,3}-[0-9]{3,5}$", 6, 9],
      ["^(foo|bar|baz)_[0-9]+$", 5, 1000],
      ["^\\d{4}-\\d{2}$", 7, 7],
      ["^[a-z0-9._-]+@[a-z]+\\.com$", 7, 1000],
      ["order", 5, 1000],
      ["^[A-Za-z ]{3,20}$", 3, 20],
      ["^\\w+(\\s\\w+)*$", 1, 1000],
      ["^#[0-9a-fA-F]{6}$", 7, 7],
    ]);
    const s: Schema = { type: "string", pattern };
    if (this.chance(0.4)) s.minLength = this.int(0, Math.min(min + 4, max));
    if (this.chance(0.4)) s.maxLength = Math.max((s.minLength as number | undefined) ?? 0, min) + this.int(0, 10);
    return s;
  }

  number(integer: boolean): Schema {
    const s: Schema = { type: integer ? "integer" : "number" };
    const step = this.chance(0.4) ? this.pick(integer ? [2, 3, 5, 10] : [0.5, 0.25, 2, 3, 0.1, 0.01]) : undefined;
    if (step !== undefined) s.multipleOf = step;
    const width = (step ?? 1) * this.int(12, 60);
    const lo = this.int(-50, 50) * (integer ? 1 : 0.5);
    if (this.chance(0.6)) s[this.chance(0.5) ? "minimum" : "exclusiveMinimum"] = lo;
    if (this.chance(0.6)) s[this.chance(0.5) ? "maximum" : "exclusiveMaximum"] = lo + width;
    return s;
  }

  enumSchema(): Schema {
    return this.pick<Schema>([
      { enum: ["billing", "technical", "account", "shipping", "other"] },
      { type: "string", enum: ["positive", "negative", "neutral"] },
      { enum: ["harassment", "hate", "violence", "spam", "none"] },
      { enum: [1, 2, 3] },
      { enum: ["a", 1, null, true] },
    ]);
  }

  object(depth: number, open = true, names = ["label", "order_number", "city", "customer", "flagged", "score", "categories", "summary", "count", "email", "tags", "is_urgent", "notes", "id"]): Schema {
    const properties: Record<string, Schema> = {};
    const n = this.int(1, 4);
    for (let i = 0; i < n; i++) properties[this.pick(names)] = this.schema(depth - 1);
    const keys = Object.keys(properties);
    const s: Schema = { type: "object", properties, required: keys.filter(() => this.chance(0.6)) };
    if (open && this.chance(0.3)) s.additionalProperties = false;
    else if (open && this.chance(0.15)) s.additionalProperties = { type: "string" };
    if (this.chance(0.1)) s.minProperties = keys.length;
    return s;
  }

  array(depth: number): Schema {
    const items = this.pick([this.string(), this.number(true), this.enumSchema(), this.object(depth - 1), this.pattern()]);
    const s: Schema = { type: "array", items };
    const values = Array.isArray(items.enum) ? items.enum.length : 50;
    // Unique items need items that can differ: objects here are often all-const, so they stay out.
    const unique = items.type !== "object" && this.chance(0.4);
    if (unique) s.uniqueItems = true;
    const cap = unique ? Math.min(values, 4) : 4;
    s.minItems = this.int(0, Math.min(3, cap));
    if (this.chance(0.5)) s.maxItems = (s.minItems as number) + this.int(0, cap - (s.minItems as number));
    return s;
  }

  root(): Schema {
    const schema = this.schema(this.int(1, 4));
    return Object.keys(this.defs).length > 0 ? { ...schema, $defs: this.defs } : schema;
  }
}

const PROMPTS = [
  "I was billed twice for the same month, please refund me.",
  "Route this customer email to the right queue: 'My package never arrived and tracking has not moved in a week.'",
  "You stupid idiot, I will kill you",
  "Order A-5531 from Dana Smith, ship to Berlin by 2026-03-04. Contact dana@acme.io.",
  "The app crashes every time I open settings.",
  "",
  "buy now! free money, click here",
  "Ünïcödé tèxt with emoji 🚀🚀 and more",
];

function prompt(g: Gen): string {
  const words = ["urgent", "refund", "login", "error", "Paris", "order", "A-1234", "42", "tracking", "hello", "idiot", "the", "and"];
  if (g.chance(0.6)) return g.pick(PROMPTS);
  return Array.from({ length: g.int(1, 12) }, () => g.pick(words)).join(" ");
}

function newAjv() {
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  addFormats.default(ajv);
  return ajv;
}

describe("schema-value property test", () => {
  it("every generated value validates against its random schema (600 schemas)", () => {
    const ajv = newAjv();
    const failures: string[] = [];
    for (let seed = 1; seed <= SEEDS; seed++) {
      const g = new Gen(prng(seed));
      const schema = g.root();
      const text = prompt(g);
      const validate = ajv.compile(schema);
      const value = valueForSchema(schema, { text });
      if (!validate(value)) failures.push(`seed ${seed}: ${JSON.stringify(schema)}\n  text ${JSON.stringify(text)}\n  value ${JSON.stringify(value)}\n  ${ajv.errorsText(validate.errors)}`);
    }
    expect(failures.slice(0, 3).join("\n\n")).toBe("");
  });

  it("is deterministic: the same schema and text give the same value", () => {
    for (let seed = 1; seed <= 50; seed++) {
      const g = new Gen(prng(seed));
      const schema = g.root();
      const text = prompt(g);
      expect(valueForSchema(schema, { text })).toEqual(valueForSchema(schema, { text }));
    }
  });

  it("a broken value fails its schema whenever the generator breaks one", () => {
    const ajv = newAjv();
    let broken = 0;
    for (let seed = 1; seed <= 300; seed++) {
      const g = new Gen(prng(seed));
      const schema = g.root();
      const text = prompt(g);
      const value = valueForSchema(schema, { text });
      const bad = breakValue(schema, value, text);
      if (bad === undefined) continue;
      broken++;
      expect(ajv.validate(schema, bad), `seed ${seed}`).toBe(false);
    }
    expect(broken).toBeGreaterThan(20);
  });

  it("reads Gemini's OpenAPI Schema: upper-case types, nullable, string bounds, enum format", () => {
    const ajv = newAjv();
    const gemini = {
      type: "OBJECT",
      properties: {
        label: { type: "STRING", format: "enum", enum: ["billing", "shipping"] },
        note: { type: "STRING", nullable: true, maxLength: "20" },
        items: { type: "ARRAY", items: { type: "INTEGER", minimum: 1, maximum: 5 }, minItems: "2" },
        either: { anyOf: [{ type: "STRING" }, { type: "NUMBER" }] },
      },
      required: ["label", "note", "items"],
      propertyOrdering: ["items", "label", "note", "either"],
    };
    const schema = fromOpenApiSchema(gemini) as Record<string, unknown>;
    expect(schema).toMatchObject({ type: "object", properties: { note: { type: ["string", "null"], maxLength: 20 }, items: { minItems: 2 } } });
    const value = valueForSchema(schema, { text: "My parcel is lost in shipping" }) as Record<string, unknown>;
    expect(ajv.validate(schema, value), ajv.errorsText()).toBe(true);
    expect(Object.keys(value)).toEqual(["items", "label", "note", "either"]);
    expect(value.label).toBe("shipping");
  });
});

const SCENARIO = `
seed: 3
providers:
  p:
    models:
      m: {}
`;

describe("schema-value through the HTTP server, in each dialect's native form", () => {
  let sim: SimProvider;
  let url: string;
  beforeAll(async () => {
    sim = createSimProvider(parseScenario(SCENARIO, "sim-schema.yaml", {}));
    url = await sim.listen();
  });
  afterAll(async () => {
    await sim.close();
  });

  async function post(path: string, body: unknown, headers: Record<string, string> = {}): Promise<Record<string, unknown>> {
    const res = await request(`${url}${path}`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });
    const json = (await res.body.json()) as Record<string, unknown>;
    expect(res.statusCode, JSON.stringify(json)).toBe(200);
    return json;
  }

  const dialects: Record<string, (schema: Schema, text: string) => Promise<string>> = {
    openai: async (schema, text) => {
      const body = await post("/p/v1/chat/completions", {
        model: "m",
        messages: [{ role: "user", content: text }],
        response_format: { type: "json_schema", json_schema: { name: "out", schema, strict: false } },
      });
      return (body as { choices: { message: { content: string } }[] }).choices[0]!.message.content;
    },
    anthropic: async (schema, text) => {
      const body = await post(
        "/p/v1/messages",
        { model: "m", max_tokens: 4096, messages: [{ role: "user", content: text }], output_config: { format: { type: "json_schema", schema } } },
        { "anthropic-version": "2023-06-01" },
      );
      return (body as { content: { text: string }[] }).content[0]!.text;
    },
    gemini: async (schema, text) => {
      const body = await post("/p/v1beta/models/m:generateContent", {
        contents: [{ role: "user", parts: [{ text }] }],
        generationConfig: { responseMimeType: "application/json", responseJsonSchema: schema },
      });
      return (body as { candidates: { content: { parts: { text: string }[] } }[] }).candidates[0]!.content.parts[0]!.text;
    },
  };

  it.each(Object.keys(dialects))("%s: 15 random schemas answer valid JSON", async (dialect) => {
    const ajv = newAjv();
    for (let seed = 1000; seed < 1015; seed++) {
      const g = new Gen(prng(seed));
      const schema = g.root();
      const text = prompt(g) || "hello";
      const content = await dialects[dialect]!(schema, text);
      const validate = ajv.compile(schema);
      expect(validate(JSON.parse(content)), `seed ${seed}: ${ajv.errorsText(validate.errors)}`).toBe(true);
    }
  });
});

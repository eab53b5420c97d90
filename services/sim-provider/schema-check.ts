/**
 * A small JSON Schema (2020-12) checker the generator verifies its own candidates with: which
 * `anyOf` branch worked, whether a string met its `pattern`, whether a deliberately broken
 * answer really is broken. It follows ajv's rules for the keywords it knows (formats come from
 * ajv-formats itself; `multipleOf` divides as ajv does) and ignores the rest, so it never
 * compiles anything: it runs per request without a schema cache.
 */
import { fullFormats } from "ajv-formats/dist/formats.js";
import { patternRegExp } from "./pattern.ts";
import { codePoints } from "./text.ts";
import { isRecord } from "../../shared/json.ts";

export type Schema = boolean | Record<string, unknown>;

type FormatDef = RegExp | ((s: string) => boolean) | { validate: RegExp | ((v: never) => boolean); type?: string } | true;
const FORMATS = fullFormats as unknown as Record<string, FormatDef>;

/** Resolves a local reference (`#`, `#/$defs/x`, `#/definitions/x`, any JSON pointer into the root); undefined when it points nowhere. */
export function resolveRef(root: unknown, ref: string): unknown {
  if (!ref.startsWith("#")) return undefined;
  let node: unknown = root;
  const pointer = ref.slice(1);
  if (pointer === "") return root;
  if (!pointer.startsWith("/")) return undefined;
  for (const raw of pointer.slice(1).split("/")) {
    let token = raw.replace(/~1/g, "/").replace(/~0/g, "~");
    try {
      token = decodeURIComponent(token);
    } catch {
      // As written.
    }
    if (typeof node !== "object" || node === null) return undefined;
    node = (node as Record<string, unknown>)[token];
  }
  return node;
}


/** Whether `value` satisfies `schema`; `$ref`s resolve against `root`. */
export function checkValue(schema: unknown, value: unknown, root: unknown = schema): boolean {
  return check(schema, value, root, 0);
}

function check(schema: unknown, value: unknown, root: unknown, depth: number): boolean {
  if (schema === true || schema === undefined) return true;
  if (schema === false) return false;
  if (!isRecord(schema) || depth > 64) return true;
  const s = schema;

  if (typeof s.$ref === "string") {
    const target = resolveRef(root, s.$ref);
    if (target !== undefined && !check(target, value, root, depth + 1)) return false;
  }
  if (s.type !== undefined && !typeMatches(s.type, value)) return false;
  if (Array.isArray(s.enum) && !s.enum.some((e) => deepEqual(e, value))) return false;
  if ("const" in s && !deepEqual(s.const, value)) return false;

  if (typeof value === "number") {
    if (typeof s.minimum === "number" && value < s.minimum) return false;
    if (typeof s.maximum === "number" && value > s.maximum) return false;
    if (typeof s.exclusiveMinimum === "number" && value <= s.exclusiveMinimum) return false;
    if (typeof s.exclusiveMaximum === "number" && value >= s.exclusiveMaximum) return false;
    if (typeof s.multipleOf === "number" && !isMultipleOf(value, s.multipleOf)) return false;
    if (typeof s.format === "string" && !formatMatches(s.format, value)) return false;
  } else if (typeof value === "string") {
    if (typeof s.minLength === "number" && codePoints(value) < s.minLength) return false;
    if (typeof s.maxLength === "number" && codePoints(value) > s.maxLength) return false;
    if (typeof s.pattern === "string") {
      const re = patternRegExp(s.pattern);
      if (re && !re.test(value)) return false;
    }
    if (typeof s.format === "string" && !formatMatches(s.format, value)) return false;
  } else if (Array.isArray(value)) {
    if (!checkArray(s, value, root, depth)) return false;
  } else if (isRecord(value)) {
    if (!checkObject(s, value, root, depth)) return false;
  }

  if (Array.isArray(s.allOf) && !s.allOf.every((b) => check(b, value, root, depth + 1))) return false;
  if (Array.isArray(s.anyOf) && !s.anyOf.some((b) => check(b, value, root, depth + 1))) return false;
  if (Array.isArray(s.oneOf) && s.oneOf.filter((b) => check(b, value, root, depth + 1)).length !== 1) return false;
  if (s.not !== undefined && check(s.not, value, root, depth + 1)) return false;
  if (s.if !== undefined) {
    const branch = check(s.if, value, root, depth + 1) ? s.then : s.else;
    if (branch !== undefined && !check(branch, value, root, depth + 1)) return false;
  }
  return true;
}

function checkArray(s: Record<string, unknown>, value: unknown[], root: unknown, depth: number): boolean {
  if (typeof s.minItems === "number" && value.length < s.minItems) return false;
  if (typeof s.maxItems === "number" && value.length > s.maxItems) return false;
  const prefix = Array.isArray(s.prefixItems) ? s.prefixItems : Array.isArray(s.items) ? s.items : [];
  const rest = Array.isArray(s.items) ? s.additionalItems : s.items;
  for (let i = 0; i < value.length; i++) {
    const item = i < prefix.length ? prefix[i] : rest;
    if (item !== undefined && !check(item, value[i], root, depth + 1)) return false;
  }
  if (s.uniqueItems === true) {
    for (let i = 0; i < value.length; i++) {
      for (let j = i + 1; j < value.length; j++) if (deepEqual(value[i], value[j])) return false;
    }
  }
  if (s.contains !== undefined) {
    const matches = value.filter((v) => check(s.contains, v, root, depth + 1)).length;
    const min = typeof s.minContains === "number" ? s.minContains : 1;
    if (matches < min) return false;
    if (typeof s.maxContains === "number" && matches > s.maxContains) return false;
  }
  return true;
}

function checkObject(s: Record<string, unknown>, value: Record<string, unknown>, root: unknown, depth: number): boolean {
  const keys = Object.keys(value);
  if (typeof s.minProperties === "number" && keys.length < s.minProperties) return false;
  if (typeof s.maxProperties === "number" && keys.length > s.maxProperties) return false;
  if (Array.isArray(s.required) && !s.required.every((k) => typeof k !== "string" || k in value)) return false;
  const props = isRecord(s.properties) ? s.properties : undefined;
  const patterns = isRecord(s.patternProperties) ? Object.entries(s.patternProperties) : [];
  for (const key of keys) {
    let known = false;
    if (props && Object.hasOwn(props, key)) {
      known = true;
      if (!check(props[key], value[key], root, depth + 1)) return false;
    }
    for (const [pattern, sub] of patterns) {
      if (patternRegExp(pattern)?.test(key)) {
        known = true;
        if (!check(sub, value[key], root, depth + 1)) return false;
      }
    }
    if (!known && s.additionalProperties !== undefined && !check(s.additionalProperties, value[key], root, depth + 1)) return false;
    if (s.propertyNames !== undefined && !check(s.propertyNames, key, root, depth + 1)) return false;
  }
  if (isRecord(s.dependentRequired)) {
    for (const [key, deps] of Object.entries(s.dependentRequired)) {
      if (key in value && Array.isArray(deps) && !deps.every((d) => typeof d !== "string" || d in value)) return false;
    }
  }
  return true;
}

function typeMatches(type: unknown, value: unknown): boolean {
  if (Array.isArray(type)) return type.some((t) => typeMatches(t, value));
  switch (type) {
    case "string":
      return typeof value === "string";
    case "number":
      return typeof value === "number" && Number.isFinite(value);
    case "integer":
      return typeof value === "number" && Number.isInteger(value);
    case "boolean":
      return typeof value === "boolean";
    case "null":
      return value === null;
    case "array":
      return Array.isArray(value);
    case "object":
      return isRecord(value);
    default:
      return true;
  }
}

/** ajv's rule, to the bit: the quotient must be an exact integer in floating point. */
export function isMultipleOf(value: number, multipleOf: number): boolean {
  if (multipleOf === 0) return false;
  const q = value / multipleOf;
  return q === parseInt(String(q), 10);
}

function formatMatches(format: string, value: string | number): boolean {
  const def = FORMATS[format];
  if (def === undefined || def === true) return true;
  if (def instanceof RegExp) return typeof value !== "string" || def.test(value);
  if (typeof def === "function") return typeof value !== "string" || def(value);
  const wanted = def.type ?? "string";
  if (typeof value !== wanted) return true;
  return def.validate instanceof RegExp ? def.validate.test(String(value)) : (def.validate as (v: unknown) => boolean)(value);
}

export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) {
    const bb = b as unknown[];
    return a.length === bb.length && a.every((x, i) => deepEqual(x, bb[i]));
  }
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  return ka.length === kb.length && ka.every((k) => Object.hasOwn(b, k) && deepEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

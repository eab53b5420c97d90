/**
 * Strings for a JSON Schema `pattern`: a small reader of the regular-expression syntax that
 * schemas use in practice (literals, classes, `\d \w \s`, groups, alternation, quantifiers,
 * anchors) that writes one string the expression matches. It is a candidate, not a proof:
 * callers check it with the real `RegExp` (`patternRegExp`) and try another when it fails,
 * which covers what this reader does not understand (lookarounds, back-references).
 */

type Node =
  | { readonly k: "seq"; readonly items: readonly Node[] }
  | { readonly k: "alt"; readonly options: readonly Node[] }
  | { readonly k: "lit"; readonly ch: string }
  | { readonly k: "set"; readonly ranges: readonly (readonly [number, number])[]; readonly negated: boolean }
  | { readonly k: "rep"; readonly node: Node; readonly min: number; readonly max: number; readonly id: number }
  | { readonly k: "empty" };

interface Parsed {
  readonly root: Node;
  readonly reps: readonly Extract<Node, { k: "rep" }>[];
}

const MAX_CACHED = 512;
const parsedCache = new Map<string, Parsed | null>();
const regexpCache = new Map<string, RegExp | null>();

/** The pattern compiled as ajv compiles it (`u` flag), cached; null when it does not compile. */
export function patternRegExp(pattern: string): RegExp | null {
  let re = regexpCache.get(pattern);
  if (re === undefined) {
    try {
      re = new RegExp(pattern, "u");
    } catch {
      re = null;
    }
    if (regexpCache.size >= MAX_CACHED) regexpCache.clear();
    regexpCache.set(pattern, re);
  }
  return re;
}

/**
 * A string the pattern should match, at least `minLength` code points long where the
 * pattern's open quantifiers allow it; `variant` picks other characters and alternatives, so
 * successive variants differ. Undefined when the pattern is beyond this reader.
 */
export function sampleForPattern(pattern: string, minLength: number, variant: number): string | undefined {
  let parsed = parsedCache.get(pattern);
  if (parsed === undefined) {
    try {
      parsed = parse(pattern);
    } catch {
      parsed = null;
    }
    if (parsedCache.size >= MAX_CACHED) parsedCache.clear();
    parsedCache.set(pattern, parsed);
  }
  if (parsed === null) return undefined;
  const counts = new Map<number, number>();
  let out = render(parsed.root, counts, variant);
  for (const rep of parsed.reps) {
    const length = [...out].length;
    if (length >= minLength) break;
    if (rep.max <= rep.min) continue;
    const unit = [...render(rep.node, counts, variant)].length;
    if (unit === 0) continue;
    counts.set(rep.id, Math.min(rep.max, rep.min + Math.ceil((minLength - length) / unit)));
    out = render(parsed.root, counts, variant);
  }
  return out;
}

function render(node: Node, counts: Map<number, number>, variant: number): string {
  switch (node.k) {
    case "seq": {
      let s = "";
      for (const item of node.items) s += render(item, counts, variant);
      return s;
    }
    case "alt":
      return render(node.options[variant % node.options.length] as Node, counts, variant);
    case "lit":
      return node.ch;
    case "set":
      return pickChar(node, variant);
    case "rep": {
      const n = counts.get(node.id) ?? node.min;
      let s = "";
      // Each repetition shifts the variant, so "[a-z]{3}" gives "abc" rather than "aaa".
      for (let i = 0; i < n; i++) s += render(node.node, counts, variant + i);
      return s;
    }
    case "empty":
      return "";
  }
}

const PREFERRED = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-. @/:";

function pickChar(set: Extract<Node, { k: "set" }>, variant: number): string {
  const inSet = (cp: number) => set.ranges.some(([lo, hi]) => cp >= lo && cp <= hi) !== set.negated;
  const fits: string[] = [];
  for (const ch of PREFERRED) if (inSet(ch.codePointAt(0) as number)) fits.push(ch);
  if (fits.length > 0) return fits[variant % fits.length] as string;
  if (!set.negated && set.ranges.length > 0) {
    const [lo, hi] = set.ranges[variant % set.ranges.length] as readonly [number, number];
    return String.fromCodePoint(lo + (variant % (hi - lo + 1)));
  }
  for (let cp = 0xa1; cp < 0x2000; cp++) if (inSet(cp)) return String.fromCodePoint(cp);
  return "a";
}

const DIGIT: readonly (readonly [number, number])[] = [[48, 57]];
const WORD: readonly (readonly [number, number])[] = [[48, 57], [65, 90], [95, 95], [97, 122]];
const SPACE: readonly (readonly [number, number])[] = [[9, 13], [32, 32], [0xa0, 0xa0]];
const UPPER: readonly (readonly [number, number])[] = [[65, 90]];
const LOWER: readonly (readonly [number, number])[] = [[97, 122]];
const LETTER: readonly (readonly [number, number])[] = [[65, 90], [97, 122], [0xc0, 0x24f]];

class Unsupported extends Error {}

function parse(pattern: string): Parsed {
  const chars = [...pattern];
  let at = 0;
  let nextId = 0;
  const reps: Extract<Node, { k: "rep" }>[] = [];

  const peek = () => chars[at];
  const eat = () => chars[at++] as string;

  function alternation(): Node {
    const options = [sequence()];
    while (peek() === "|") {
      at++;
      options.push(sequence());
    }
    return options.length === 1 ? (options[0] as Node) : { k: "alt", options };
  }

  function sequence(): Node {
    const items: Node[] = [];
    while (at < chars.length && peek() !== "|" && peek() !== ")") {
      const atom = atomNode();
      items.push(quantified(atom));
    }
    return { k: "seq", items };
  }

  function quantified(atom: Node): Node {
    let min: number;
    let max: number;
    const c = peek();
    if (c === "*") [min, max] = [0, Infinity];
    else if (c === "+") [min, max] = [1, Infinity];
    else if (c === "?") [min, max] = [0, 1];
    else if (c === "{") {
      const m = /^\{(\d+)(,(\d*))?\}/.exec(chars.slice(at, at + 24).join(""));
      if (!m) return atom;
      min = Number(m[1]);
      max = m[2] === undefined ? min : m[3] === "" ? Infinity : Number(m[3]);
      at += m[0].length - 1;
    } else return atom;
    at++;
    if (peek() === "?") at++;
    const rep = { k: "rep" as const, node: atom, min, max, id: nextId++ };
    reps.push(rep);
    return rep;
  }

  function atomNode(): Node {
    const c = eat();
    switch (c) {
      case "^":
      case "$":
        return { k: "empty" };
      case ".":
        return { k: "set", ranges: [[10, 10], [13, 13], [0x2028, 0x2029]], negated: true };
      case "(": {
        if (peek() === "?") {
          at++;
          const kind = eat();
          if (kind === "<" && peek() !== "=" && peek() !== "!") {
            while (at < chars.length && eat() !== ">");
          } else if (kind !== ":") {
            throw new Unsupported("lookaround");
          }
        }
        const inner = alternation();
        if (eat() !== ")") throw new Unsupported("unclosed group");
        return inner;
      }
      case "[":
        return classNode();
      case "\\":
        return escapeNode(false);
      default:
        return { k: "lit", ch: c };
    }
  }

  function classNode(): Node {
    let negated = false;
    if (peek() === "^") {
      negated = true;
      at++;
    }
    const ranges: (readonly [number, number])[] = [];
    while (at < chars.length && peek() !== "]") {
      const lo = classAtom();
      if (peek() === "-" && chars[at + 1] !== "]" && chars[at + 1] !== undefined && typeof lo === "number") {
        at++;
        const hi = classAtom();
        if (typeof hi !== "number") throw new Unsupported("class range");
        ranges.push([lo, hi]);
      } else if (typeof lo === "number") ranges.push([lo, lo]);
      else ranges.push(...lo);
    }
    if (eat() !== "]") throw new Unsupported("unclosed class");
    return { k: "set", ranges, negated };
  }

  function classAtom(): number | readonly (readonly [number, number])[] {
    const c = eat();
    if (c !== "\\") return c.codePointAt(0) as number;
    const node = escapeNode(true);
    if (node.k === "lit") return node.ch.codePointAt(0) as number;
    if (node.k === "set" && !node.negated) return node.ranges;
    throw new Unsupported("negated escape in class");
  }

  function escapeNode(inClass: boolean): Node {
    const c = eat();
    switch (c) {
      case "d":
        return { k: "set", ranges: DIGIT, negated: false };
      case "D":
        return { k: "set", ranges: DIGIT, negated: true };
      case "w":
        return { k: "set", ranges: WORD, negated: false };
      case "W":
        return { k: "set", ranges: WORD, negated: true };
      case "s":
        return { k: "set", ranges: SPACE, negated: false };
      case "S":
        return { k: "set", ranges: SPACE, negated: true };
      case "b":
        return inClass ? { k: "lit", ch: "\b" } : { k: "empty" };
      case "B":
        return { k: "empty" };
      case "n":
        return { k: "lit", ch: "\n" };
      case "r":
        return { k: "lit", ch: "\r" };
      case "t":
        return { k: "lit", ch: "\t" };
      case "f":
        return { k: "lit", ch: "\f" };
      case "v":
        return { k: "lit", ch: "\v" };
      case "0":
        return { k: "lit", ch: "\0" };
      case "x": {
        const hex = chars.slice(at, at + 2).join("");
        at += 2;
        return { k: "lit", ch: String.fromCodePoint(parseInt(hex, 16)) };
      }
      case "u": {
        if (peek() === "{") {
          const close = chars.indexOf("}", at);
          const hex = chars.slice(at + 1, close).join("");
          at = close + 1;
          return { k: "lit", ch: String.fromCodePoint(parseInt(hex, 16)) };
        }
        const hex = chars.slice(at, at + 4).join("");
        at += 4;
        return { k: "lit", ch: String.fromCharCode(parseInt(hex, 16)) };
      }
      case "p":
      case "P": {
        if (peek() !== "{") throw new Unsupported("property escape");
        const close = chars.indexOf("}", at);
        const name = chars.slice(at + 1, close).join("");
        at = close + 1;
        const ranges = name === "Lu" || name === "Uppercase_Letter" ? UPPER : name === "Ll" || name === "Lowercase_Letter" ? LOWER : /^(?:N|Nd|Number|Decimal_Number|digit)$/.test(name) ? DIGIT : LETTER;
        return { k: "set", ranges, negated: c === "P" };
      }
      default:
        if (/[1-9k]/.test(c)) throw new Unsupported("back-reference");
        return { k: "lit", ch: c };
    }
  }

  const root = alternation();
  if (at < chars.length) throw new Unsupported("stray )");
  return { root, reps };
}

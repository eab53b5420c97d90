import { readFileSync } from "node:fs";
import { isMap, isScalar, LineCounter, parseDocument, visit, type Document } from "yaml";
import { ConfigError } from "../errors.ts";
import { packagePath } from "../package-root.ts";
import type { z } from "zod";
import { ConfigSchema, type Config } from "./schema.ts";
import { NAMESPACE_PATTERN } from "../contract/subjects.ts";

/** The embedded default: simulated providers, no API keys. */
export const DEFAULT_CONFIG_PATH = packagePath("config", "switchyard.yaml");

export function configPath(env: NodeJS.ProcessEnv = process.env): string {
  return env.SWITCHYARD_CONFIG || DEFAULT_CONFIG_PATH;
}

type Problem = ConfigError["problems"][number];

/**
 * Reads, substitutes `${ENV_VAR}` and validates a config file. Every mistake is reported
 * with the file, line and column it sits on; nothing partially valid is returned.
 */
export function loadConfig(file = configPath(), env: NodeJS.ProcessEnv = process.env): Config {
  return withEnvNamespace(loadYaml(file, ConfigSchema, env), file, env);
}

export function parseConfig(text: string, file: string, env: NodeJS.ProcessEnv = process.env): Config {
  return withEnvNamespace(parseYaml(text, file, ConfigSchema, env), file, env);
}

/** `SWITCHYARD_NAMESPACE`, when set, overrides the config's `namespace`. */
function withEnvNamespace(cfg: Config, file: string, env: NodeJS.ProcessEnv): Config {
  const ns = env.SWITCHYARD_NAMESPACE;
  if (!ns) return cfg;
  if (!NAMESPACE_PATTERN.test(ns)) throw new ConfigError(file, [{ path: "namespace", line: 0, column: 0, message: `SWITCHYARD_NAMESPACE "${ns}" must match [a-z0-9_-]{1,32}` }]);
  return { ...cfg, namespace: ns };
}

/** Any YAML file validated by a zod schema, with the same error reporting as the main config. */
export function loadYaml<S extends z.ZodType>(file: string, schema: S, env: NodeJS.ProcessEnv = process.env): z.output<S> {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new ConfigError(file, [{ path: "", line: 0, column: 0, message: `cannot read the file (${(err as NodeJS.ErrnoException).code ?? String(err)})` }]);
  }
  return parseYaml(text, file, schema, env);
}

export function parseYaml<S extends z.ZodType>(text: string, file: string, schema: S, env: NodeJS.ProcessEnv = process.env): z.output<S> {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const at = (offset: number | undefined) => {
    const p = lines.linePos(offset ?? 0);
    return { line: p.line, column: p.col };
  };
  if (doc.errors.length > 0) {
    throw new ConfigError(file, doc.errors.map((e) => ({ path: "", ...at(e.pos[0]), message: e.message.split("\n")[0] ?? e.message })));
  }

  const problems: Problem[] = substituteEnv(doc, env, at);
  if (problems.length > 0) throw new ConfigError(file, problems);

  const parsed = schema.safeParse(doc.toJS() ?? {});
  if (parsed.success) return parsed.data;
  throw new ConfigError(
    file,
    parsed.error.issues.map((issue) => {
      const path = issue.path.map(String);
      // Point at the offending key itself rather than at the map that holds it.
      const keyPath = issue.code === "unrecognized_keys" && issue.keys[0] !== undefined ? [...path, issue.keys[0]] : path;
      return { path: path.join("."), ...at(nearestNodeOffset(doc, keyPath, issue.code === "unrecognized_keys")), message: issue.message };
    }),
  );
}

const ENV_REF = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

/**
 * Replaces `${NAME}` and `${NAME:-fallback}` in every string value; a variable that is not
 * set and has no fallback is an error naming it.
 */
function substituteEnv(doc: Document, env: NodeJS.ProcessEnv, at: (o: number | undefined) => { line: number; column: number }): Problem[] {
  const problems: Problem[] = [];
  visit(doc, {
    Scalar(key, node, path) {
      if (key === "key" || typeof node.value !== "string" || !node.value.includes("${")) return;
      node.value = node.value.replace(ENV_REF, (_, name: string, fallback: string | undefined) => {
        const value = env[name] || fallback;
        if (value === undefined) {
          const keys = path.filter((n) => isScalar((n as { key?: unknown }).key)).map((n) => String(((n as { key: { value: unknown } }).key).value));
          problems.push({ path: keys.join("."), ...at(node.range?.[0]), message: `environment variable ${name} is not set` });
          return "";
        }
        return value;
      });
    },
  });
  return problems;
}

/** The offset of the deepest node along `path` that exists (a missing key points at its parent). */
function nearestNodeOffset(doc: Document, path: string[], lastIsKey = false): number | undefined {
  const keys = path.map((k) => (/^\d+$/.test(k) ? Number(k) : k));
  if (lastIsKey && keys.length > 0) {
    const parent = doc.getIn(keys.slice(0, -1), true);
    if (isMap(parent)) {
      const pair = parent.items.find((p) => isScalar(p.key) && p.key.value === keys[keys.length - 1]);
      if (pair && isScalar(pair.key) && pair.key.range) return pair.key.range[0];
    }
  }
  for (let n = keys.length; n >= 0; n--) {
    const node = doc.getIn(keys.slice(0, n), true) as { range?: [number, number, number] } | undefined;
    if (node && typeof node === "object" && node.range) return node.range[0];
  }
  return undefined;
}

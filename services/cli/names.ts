/**
 * The names a CLI command uses when it does not otherwise load the config (publish, tail, dlq
 * list/show, streams): the namespace from SWITCHYARD_NAMESPACE, else the config's `namespace:`
 * key (read on its own, so a config whose provider keys are not in this shell still names its
 * namespace), else none.
 */
import { readFileSync } from "node:fs";
import { parseDocument } from "yaml";
import { configPath } from "../../shared/config/load.ts";
import { names, NAMESPACE_PATTERN, type Names } from "../../shared/contract/subjects.ts";
import { UsageError } from "../../shared/errors.ts";

export function cliNames(env: NodeJS.ProcessEnv = process.env): Names {
  const fromEnv = env.SWITCHYARD_NAMESPACE;
  if (fromEnv) {
    if (!NAMESPACE_PATTERN.test(fromEnv)) throw new UsageError(`SWITCHYARD_NAMESPACE "${fromEnv}" must match [a-z0-9_-]{1,32}`);
    return names(fromEnv);
  }
  const file = configPath(env);
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    // No config to read: the commands that need one say so themselves.
    return names();
  }
  const ns: unknown = parseDocument(text).get("namespace");
  if (ns === undefined || ns === null) return names();
  if (typeof ns !== "string" || !NAMESPACE_PATTERN.test(ns)) throw new UsageError(`${file}: namespace must match [a-z0-9_-]{1,32}`);
  return names(ns);
}

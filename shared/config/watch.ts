import { unwatchFile, watchFile } from "node:fs";
import type { Logger } from "../log.ts";
import { loadConfig } from "./load.ts";
import type { Config } from "./schema.ts";

/**
 * Calls `onChange` whenever the file's modification time changes (polled every 500 ms, which
 * also catches editors that replace the file rather than write it). Returns the unwatch.
 */
export function onFileChange(file: string, onChange: () => void): () => void {
  const listener = (cur: { mtimeMs: number }, prev: { mtimeMs: number }) => {
    if (cur.mtimeMs !== prev.mtimeMs) onChange();
  };
  watchFile(file, { interval: 500 }, listener);
  return () => unwatchFile(file, listener);
}

/**
 * Reloads the config file on every change and hands the new config to `apply`; an edit that
 * does not load is logged with its file and line and changes nothing. Returns the unwatch.
 */
export function watchConfig(file: string, logger: Logger, apply: (config: Config) => void): () => void {
  return onFileChange(file, () => {
    try {
      apply(loadConfig(file));
      logger.info({ file }, "config reloaded");
    } catch (err) {
      logger.error({ file, err: (err as Error).message }, "config edit rejected; the config in force stays");
    }
  });
}

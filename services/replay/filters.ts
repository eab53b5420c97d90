/**
 * Selecting dead letters and jobs: the filters `dlq list`, `dlq replay` and `replay` share.
 */
import type { DeadLetter } from "../../shared/contract/job.ts";
import { isRecord } from "../../shared/json.ts";

export interface DeadLetterFilter {
  readonly task?: string;
  readonly reason?: string;
  /** On `failed_at`, inclusive. */
  readonly since?: Date;
  readonly until?: Date;
  /** Every pair must match the dead letter's metadata (compared as strings). */
  readonly meta?: readonly (readonly [string, string])[];
  /** When given, only these ids. */
  readonly ids?: ReadonlySet<string>;
}

export function matchesDeadLetter(d: DeadLetter, f: DeadLetterFilter): boolean {
  if (f.task !== undefined && d.task !== f.task) return false;
  if (f.reason !== undefined && d.reason !== f.reason) return false;
  if (f.ids && !f.ids.has(d.id)) return false;
  const at = Date.parse(d.failed_at);
  if (f.since && !(at >= f.since.getTime())) return false;
  if (f.until && !(at <= f.until.getTime())) return false;
  return matchesMeta(d.metadata, f.meta);
}

export function matchesMeta(metadata: unknown, meta: DeadLetterFilter["meta"]): boolean {
  if (!meta || meta.length === 0) return true;
  const m = isRecord(metadata) ? metadata : {};
  return meta.every(([k, v]) => k in m && String(m[k]) === v);
}

const RELATIVE = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;
const UNIT = { ms: 1, s: 1e3, m: 60e3, h: 3600e3, d: 86400e3 } as const;

/**
 * A point in time from the command line: an ISO-8601 date or date-time, or a duration
 * meaning that long ago (`90m`, `12h`, `7d`). Undefined when it is neither.
 */
export function parseWhen(value: string, now = Date.now()): Date | undefined {
  const rel = RELATIVE.exec(value.trim());
  if (rel) return new Date(now - Number(rel[1]) * UNIT[rel[2] as keyof typeof UNIT]);
  const t = Date.parse(value);
  return Number.isNaN(t) ? undefined : new Date(t);
}

/** A duration from the command line (`30m`), in ms, or undefined. */
export function parseDuration(value: string): number | undefined {
  const rel = RELATIVE.exec(value.trim());
  return rel ? Number(rel[1]) * UNIT[rel[2] as keyof typeof UNIT] : undefined;
}

/** `key=value` pairs (`--meta`), or the offending one. */
export function parseMeta(pairs: readonly string[]): { meta: [string, string][] } | { bad: string } {
  const meta: [string, string][] = [];
  for (const kv of pairs) {
    const i = kv.indexOf("=");
    if (i <= 0) return { bad: kv };
    meta.push([kv.slice(0, i), kv.slice(i + 1)]);
  }
  return { meta };
}

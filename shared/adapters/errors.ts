/**
 * Why a provider call failed, as a small class hierarchy whose `kind` is the attempt outcome
 * written into results and dead letters. Built from HTTP status and body by each dialect's
 * `fromResponse`, or from a transport failure by the HTTP client.
 */
import type { AttemptOutcome } from "../contract/job.ts";
import { isTransient } from "../routing/outcomes.ts";

export type FailureKind = Exclude<AttemptOutcome, "ok">;

export class ProviderError extends Error {
  readonly kind: FailureKind;
  /** HTTP status, or null when no response arrived. */
  readonly status: number | null;
  /** The provider asked to wait this long before calling again (429 Retry-After). */
  readonly retryAfterMs: number | undefined;
  constructor(kind: FailureKind, message: string, opts: { status?: number | null; retryAfterMs?: number; cause?: unknown } = {}) {
    super(message, { cause: opts.cause });
    this.name = "ProviderError";
    this.kind = kind;
    this.status = opts.status ?? null;
    this.retryAfterMs = opts.retryAfterMs;
  }

  /** Transient: waiting and calling again may succeed (the one outcome table, `routing/outcomes.ts`, says which kinds are). */
  get transient(): boolean {
    return isTransient(this.kind);
  }
}

export class RateLimitedError extends ProviderError {
  constructor(message: string, opts: { status?: number; retryAfterMs?: number } = {}) {
    super("rate_limited", message, opts);
  }
}
export class UnavailableError extends ProviderError {
  constructor(message: string, opts: { status?: number } = {}) {
    super("unavailable", message, opts);
  }
}
export class ProviderTimeoutError extends ProviderError {
  constructor(message: string, opts: { status?: number; cause?: unknown } = {}) {
    super("timeout", message, opts);
  }
}
/** The model answered, but not to the output contract (or with nothing usable: no candidate, a malformed call). */
export class InvalidOutputError extends ProviderError {
  constructor(message: string, opts: { status?: number } = {}) {
    super("invalid_output", message, opts);
  }
}
/** A 2xx whose body is not JSON or not the API's response shape: the provider misbehaved, not the model. */
export class MalformedResponseError extends ProviderError {
  constructor(message: string, opts: { status?: number } = {}) {
    super("malformed_response", message, opts);
  }
}
export class BadRequestError extends ProviderError {
  /** The prompt did not fit the model's context window: a larger-context model may still serve it. */
  readonly contextLength: boolean;
  constructor(message: string, opts: { status?: number; contextLength?: boolean } = {}) {
    super("bad_request", message, opts);
    this.contextLength = opts.contextLength ?? false;
  }
}
export class AuthFailedError extends ProviderError {
  constructor(message: string, opts: { status?: number } = {}) {
    super("auth_failed", message, opts);
  }
}
export class NetworkError extends ProviderError {
  constructor(message: string, opts: { cause?: unknown } = {}) {
    super("network_error", message, opts);
  }
}

const MAX_RETRY_AFTER_MS = 60_000;

/**
 * `retry-after-ms`, then `retry-after` as seconds or an HTTP date, as openai-node reads
 * them; values above a minute are ignored (the cooldown would outlive the job's patience).
 */
export function parseRetryAfter(headers: Readonly<Record<string, string | string[] | undefined>>, now = Date.now()): number | undefined {
  const first = (v: string | string[] | undefined) => (Array.isArray(v) ? v[0] : v);
  const ms = Number(first(headers["retry-after-ms"]));
  if (Number.isFinite(ms) && ms >= 0 && first(headers["retry-after-ms"]) !== undefined) return ms <= MAX_RETRY_AFTER_MS ? ms : undefined;
  const raw = first(headers["retry-after"]);
  if (raw === undefined) return undefined;
  const seconds = Number(raw);
  const value = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(raw) - now;
  return Number.isFinite(value) && value >= 0 && value <= MAX_RETRY_AFTER_MS ? value : undefined;
}

/**
 * The error for a non-2xx status, shared by the dialects (each extracts its own message and
 * context-length signal from its error body first).
 */
export function errorForStatus(
  status: number,
  message: string,
  headers: Readonly<Record<string, string | string[] | undefined>>,
  contextLength = false,
): ProviderError {
  if (status === 429) return new RateLimitedError(message, { status, retryAfterMs: parseRetryAfter(headers) });
  if (status === 401 || status === 403) return new AuthFailedError(message, { status });
  if (status === 408) return new ProviderTimeoutError(message, { status });
  if (status >= 500) return new UnavailableError(message, { status });
  return new BadRequestError(message, { status, contextLength });
}

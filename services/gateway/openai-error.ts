/**
 * Errors in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, with the status
 * OpenAI uses for each case, so the official SDKs raise their own typed errors
 * (BadRequestError, AuthenticationError, PermissionDeniedError, NotFoundError,
 * RateLimitError, InternalServerError…).
 */
export const ERROR_TYPES = {
  400: "invalid_request_error",
  401: "invalid_request_error",
  403: "permission_error",
  404: "invalid_request_error",
  405: "invalid_request_error",
  409: "invalid_request_error",
  413: "invalid_request_error",
  422: "invalid_request_error",
  429: "requests",
  500: "server_error",
  502: "server_error",
  503: "server_error",
  504: "timeout",
} as const;
export type ErrorStatus = keyof typeof ERROR_TYPES;

export class GatewayError extends Error {
  readonly status: ErrorStatus;
  /** OpenAI's error `type`: the status's usual one unless given (a 429 is `insufficient_quota` when a budget is spent). */
  readonly type: string;
  readonly code: string | null;
  readonly param: string | null;
  /** Extra response headers, e.g. retry-after on a 429. */
  readonly headers: Readonly<Record<string, string>>;
  constructor(status: ErrorStatus, message: string, opts: { type?: string; code?: string | null; param?: string | null; headers?: Record<string, string> } = {}) {
    super(message);
    this.name = "GatewayError";
    this.status = status;
    this.type = opts.type ?? ERROR_TYPES[status];
    this.code = opts.code ?? null;
    this.param = opts.param ?? null;
    this.headers = opts.headers ?? {};
  }

  body(): string {
    return JSON.stringify({ error: { message: this.message, type: this.type, param: this.param, code: this.code } });
  }
}

/** A zod issue path as OpenAI's `param`: `messages[0].content`. */
export function paramOf(path: readonly PropertyKey[]): string | null {
  if (path.length === 0) return null;
  return path.map((p, i) => (typeof p === "number" ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`)).join("");
}

/**
 * The OpenAI-shaped error a failure is answered with: a GatewayError as it is, anything else
 * (a bug, an unexpected reply) a 500 whose cause only the log shows, never the caller.
 */
export function asGatewayError(err: unknown, message: string): GatewayError {
  return err instanceof GatewayError ? err : new GatewayError(500, message, { code: "internal_error" });
}

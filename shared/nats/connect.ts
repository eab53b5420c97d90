import { connect, errors, type NatsConnection } from "@nats-io/transport-node";
import { configPath } from "../config/load.ts";
import { SwitchyardError } from "../errors.ts";
import { loadNatsSection, natsSettings, natsTarget, redactUrl, type NatsTarget } from "./auth.ts";

export { DEFAULT_NATS_URL, natsTarget, redactUrl, type NatsTarget } from "./auth.ts";

/**
 * Where and how this process connects to NATS: the NATS_* variables over the `nats:` section of
 * the config file (SWITCHYARD_CONFIG, else the embedded default). Files (creds, nkey, TLS) are
 * read now, so a missing one stops start-up with the variable and path named. Every command
 * and service resolves its connection here; `display` is the only form of the URL to print.
 */
export function natsFromEnvironment(env: NodeJS.ProcessEnv = process.env, file = configPath(env)): NatsTarget {
  return natsTarget(natsSettings(env, loadNatsSection(file, env), file));
}

/**
 * Connects with reconnects enabled for the life of the process (a broker restart must not
 * kill a worker), but fails fast with a clear error when the first connection cannot be made.
 * `target` is a resolved target (`natsFromEnvironment`, `natsTarget`) or a bare URL, whose own
 * user and password (or token) are used. Errors name the URL redacted, never a secret.
 */
export async function connectNats(target: NatsTarget | string, name: string): Promise<NatsConnection> {
  const t = typeof target === "string" ? natsTarget(target) : target;
  try {
    return await connect({
      servers: t.servers,
      name,
      ...(t.authenticator ? { authenticator: t.authenticator } : {}),
      ...(t.tls ? { tls: t.tls } : {}),
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      timeout: 5_000,
      // Capturing a stack per request costs about 6 % of a router's CPU (profiled); errors still carry their own.
      noAsyncTraces: true,
    });
  } catch (err) {
    throw new SwitchyardError("nats_unreachable", connectProblem(err as Error, t), { cause: err });
  }
}

/** The URL of a target (or a bare URL) as it may be printed: credentials replaced by `***`. */
export function displayUrl(target: NatsTarget | string): string {
  return typeof target === "string" ? redactUrl(target) : target.display;
}

/** Says what went wrong connecting, and what to set about it. */
export function connectProblem(err: Error, t: NatsTarget): string {
  const why = err.message;
  if (err instanceof errors.UserAuthenticationExpiredError) {
    return `NATS at ${t.display} refused the credentials from ${t.authFrom ?? "the connection"}: the user JWT has expired (${why})`;
  }
  if (err instanceof errors.AuthorizationError || /authori[sz]ation violation|authentication/i.test(why)) {
    return t.authFrom
      ? `NATS at ${t.display} refused the credentials from ${t.authFrom} (${why})`
      : `NATS at ${t.display} requires authentication (${why}): set NATS_CREDS, NATS_NKEY, NATS_USER and NATS_PASSWORD, or NATS_TOKEN (or the config's nats: section)`;
  }
  const code = String((err as NodeJS.ErrnoException).code ?? (err.cause as NodeJS.ErrnoException | undefined)?.code ?? "");
  const text = `${why} ${code} ${(err.cause as Error | undefined)?.message ?? ""}`;
  if (/does not support 'tls'|tls is not available/i.test(text)) {
    return `TLS to NATS at ${t.display} failed: the server does not offer TLS (${why}); use a nats:// URL and unset NATS_CA, NATS_CERT and NATS_KEY`;
  }
  if (/certificate required|alert number 116|handshake failure|alert number 40/i.test(text)) {
    return `TLS to NATS at ${t.display} failed: the server asks for a client certificate (${why}); set NATS_CERT and NATS_KEY`;
  }
  if (/CERT|SELF_SIGNED|UNABLE_TO|self[- ]signed|certificate|altnames|ERR_TLS|ERR_SSL|SSL/i.test(text)) {
    return `TLS to NATS at ${t.display} failed: the server's certificate was not accepted (${why}); set NATS_CA to the CA that signed it`;
  }
  if (t.tls && (err instanceof errors.TimeoutError || /timeout/i.test(why))) {
    return (
      `cannot reach NATS at ${t.display} over TLS (${why}): the server did not complete the connection` +
      (t.tls.cert ? "; check that it accepts this client certificate (its CA, NATS_CA)" : "; if it verifies clients (tls { verify: true }), set NATS_CERT and NATS_KEY")
    );
  }
  return (
    `cannot reach NATS at ${t.display} (${why}). Start one with \`switchyard up\` (which runs a local nats-server), ` +
    "or set NATS_URL to a server with JetStream enabled (`nats-server -js`)."
  );
}

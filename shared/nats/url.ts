/**
 * NATS server URLs as the `nats` CLI takes them: `nats://host:4222`, `tls://host:4222`, a bare
 * `host:4222`, a comma-separated list of these, and credentials in the URL
 * (`nats://user:password@host`, or `nats://token@host`). The NATS client ignores the scheme and
 * the credentials of a URL, so they are taken out here and handed to it as options.
 *
 * Every message here names the URL redacted: a URL may hold a password.
 */

export interface ServerUrl {
  /** `nats`, `tls`, or undefined for a bare `host:port`. */
  readonly scheme: "nats" | "tls" | undefined;
  /** What the client dials: the URL without its credentials. */
  readonly server: string;
  /** `user:password@` (a password may be empty), or `token@`; percent-decoded. */
  readonly credentials: { readonly user: string; readonly pass: string } | { readonly token: string } | undefined;
}

/** The URL (or comma-separated list) with every password and token replaced by `***`: `nats://user:***@host:4222`. */
export function redactUrl(url: string): string {
  return url
    .split(",")
    .map((part) => {
      const { prefix, authority, tail } = pieces(part);
      const at = authority.lastIndexOf("@");
      if (at < 0) return part;
      const lead = /^\s*/.exec(part)![0];
      const info = authority.slice(0, at);
      const colon = info.indexOf(":");
      // A user alone (`nats://token@host`) is a token: nothing of it is shown.
      const shown = colon < 0 ? "***" : `${info.slice(0, colon)}:***`;
      return `${lead}${prefix}${shown}@${authority.slice(at + 1)}${tail}`;
    })
    .join(",");
}

/** Whether any URL of the list carries a user, password or token. */
export function hasCredentials(list: string): boolean {
  return list.split(",").some((part) => pieces(part).authority.includes("@"));
}

/**
 * Splits a URL list into the servers to dial and the credentials they carry. Throws an Error
 * whose message names the URL redacted, for the caller to prefix with where the URL came from.
 */
export function parseServerUrls(list: string): ServerUrl[] {
  const parts = list.split(",").map((p) => p.trim()).filter((p) => p !== "");
  if (parts.length === 0) throw new Error("no server URL given");
  return parts.map(parseOne);
}

function parseOne(part: string): ServerUrl {
  const shown = redactUrl(part);
  const { prefix, authority, tail } = pieces(part);
  const scheme = prefix === "" ? undefined : prefix.slice(0, -3).toLowerCase();
  if (scheme !== undefined && scheme !== "nats" && scheme !== "tls") {
    throw new Error(`"${shown}" is not a NATS URL: the scheme must be nats:// or tls://`);
  }
  if (tail !== "" && tail !== "/") throw new Error(`"${shown}" is not a NATS URL: a server URL has no path or query`);
  const at = authority.lastIndexOf("@");
  const hostPort = authority.slice(at + 1);
  let host: URL;
  try {
    host = new URL(`nats://${hostPort}`);
  } catch {
    throw new Error(`"${shown}" is not a NATS URL: no valid host and port`);
  }
  if (host.hostname === "") throw new Error(`"${shown}" is not a NATS URL: no host`);
  return {
    scheme: scheme as ServerUrl["scheme"],
    server: `${scheme ?? "nats"}://${hostPort}`,
    credentials: at < 0 ? undefined : credentials(authority.slice(0, at), shown),
  };
}

function credentials(info: string, shown: string): ServerUrl["credentials"] {
  const decode = (s: string) => {
    try {
      return decodeURIComponent(s);
    } catch {
      throw new Error(`"${shown}": the user or password is not validly percent-encoded`);
    }
  };
  const colon = info.indexOf(":");
  if (colon < 0) {
    if (info === "") throw new Error(`"${shown}": an empty user before "@"`);
    return { token: decode(info) };
  }
  const user = decode(info.slice(0, colon));
  if (user === "") throw new Error(`"${shown}": a password without a user`);
  return { user, pass: decode(info.slice(colon + 1)) };
}

/** `scheme://`, the authority (userinfo and host:port) and whatever follows it. */
function pieces(part: string): { prefix: string; authority: string; tail: string } {
  const m = /^\s*([A-Za-z][A-Za-z0-9+.-]*:\/\/)?(.*)$/s.exec(part)!;
  const prefix = m[1] ?? "";
  const rest = m[2] ?? "";
  // The authority ends at the first "/", "?" or "#" after the last "@" (a password may hold those characters).
  const at = rest.lastIndexOf("@");
  const end = rest.slice(at + 1).search(/[/?#]/);
  const cut = end < 0 ? rest.length : at + 1 + end;
  return { prefix, authority: rest.slice(0, cut), tail: rest.slice(cut).trimEnd() };
}

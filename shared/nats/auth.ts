/**
 * How Switchyard finds and authenticates to NATS, following the `nats` CLI's conventions:
 *
 * | variable | config key | what |
 * |---|---|---|
 * | NATS_URL | nats.url | server URL(s); `tls://` turns TLS on; `user:password@` or `token@` authenticate |
 * | NATS_CREDS | nats.creds | credentials file (user JWT and nkey seed) |
 * | NATS_NKEY | nats.nkey | file holding a user nkey seed |
 * | NATS_USER, NATS_PASSWORD | nats.user, nats.password | user and password |
 * | NATS_TOKEN | nats.token | token |
 * | NATS_CA, NATS_CERT, NATS_KEY | nats.tls.ca, .cert, .key | TLS: the server's CA, the client certificate and key (mutual TLS) |
 *
 * A variable that is set overrides its config key. Credentials come whole from one place: from
 * the environment when it gives any (one of the credential variables, or credentials in
 * NATS_URL), else from the config, so a config's password never joins an environment's user.
 * Credentials in a URL belong to that URL: a config URL overridden by NATS_URL takes its
 * credentials with it. One way to authenticate at a time; two is an error naming both.
 *
 * Files are read here, once, at start-up: a missing or unreadable file is an error naming the
 * variable (or key) and the path, never the content. No message, log line or error made here
 * holds a password, token, seed or key: URLs are shown through `redactUrl`.
 */
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import {
  credsAuthenticator,
  nkeyAuthenticator,
  nkeys,
  tokenAuthenticator,
  usernamePasswordAuthenticator,
  type Authenticator,
  type TlsOptions,
} from "@nats-io/transport-node";
import { isMap, isScalar, parseDocument } from "yaml";
import { z } from "zod";
import { parseYaml } from "../config/load.ts";
import { NatsConfigSchema, type NatsConfig } from "../config/nats-schema.ts";
import { SwitchyardError } from "../errors.ts";
import { hasCredentials, parseServerUrls, redactUrl, type ServerUrl } from "./url.ts";

export { redactUrl } from "./url.ts";

export const DEFAULT_NATS_URL = "nats://127.0.0.1:4222";

/** The environment variables, by config key. */
export const NATS_ENV = {
  url: "NATS_URL",
  creds: "NATS_CREDS",
  nkey: "NATS_NKEY",
  user: "NATS_USER",
  password: "NATS_PASSWORD",
  token: "NATS_TOKEN",
  ca: "NATS_CA",
  cert: "NATS_CERT",
  key: "NATS_KEY",
} as const;

/** A setting and where it came from, for messages: `NATS_CREDS`, `nats.creds in /etc/switchyard.yaml`. */
export interface Sourced {
  readonly value: string;
  readonly from: string;
}

/** Where to connect and with what, before any file is read (`natsSettings`). */
export interface NatsSettings {
  /** Absent: the default, nats://127.0.0.1:4222. */
  readonly url?: Sourced;
  /** Whether the credentials in `url` are used (they belong to the layer whose credentials won). */
  readonly urlCredentials: boolean;
  readonly creds?: Sourced;
  readonly nkey?: Sourced;
  readonly user?: Sourced;
  readonly password?: Sourced;
  readonly token?: Sourced;
  readonly ca?: Sourced;
  readonly cert?: Sourced;
  readonly key?: Sourced;
}

/** Everything `connect()` needs, resolved: files read, credentials out of the URL. */
export interface NatsTarget {
  /** What the client dials: the URLs without credentials. */
  readonly servers: string[];
  /** The URL as given, redacted (`nats://user:***@host:4222`): the only form to print or log. */
  readonly display: string;
  /** What gave the credentials, for messages ("NATS_USER and NATS_PASSWORD"); undefined without any. */
  readonly authFrom: string | undefined;
  readonly authenticator: Authenticator | undefined;
  /** Set when TLS is on (a `tls://` URL, or a CA, certificate or key given). */
  readonly tls: TlsOptions | undefined;
}

type Key = keyof typeof NATS_ENV;
const CREDENTIAL_KEYS = ["creds", "nkey", "user", "password", "token"] as const satisfies readonly Key[];
const FILE_KEYS = new Set<Key>(["creds", "nkey", "ca", "cert", "key"]);

/**
 * Merges the environment over the config's `nats:` section (see the table above). Pure: reads
 * no file. `configFile` names the config in messages and anchors its relative paths.
 */
export function natsSettings(env: NodeJS.ProcessEnv, config?: NatsConfig, configFile?: string): NatsSettings {
  const fromEnv = (k: Key): Sourced | undefined => {
    const value = env[NATS_ENV[k]];
    return value ? { value, from: NATS_ENV[k] } : undefined;
  };
  const fromConfig = (k: Key): Sourced | undefined => {
    const value = k === "url" || CREDENTIAL_KEYS.includes(k as never) ? config?.[k as "url"] : config?.tls?.[k as "ca"];
    if (value === undefined) return undefined;
    const name = k === "ca" || k === "cert" || k === "key" ? `nats.tls.${k}` : `nats.${k}`;
    const path = FILE_KEYS.has(k) && configFile ? resolve(dirname(configFile), value) : value;
    return { value: path, from: configFile ? `${name} in ${configFile}` : name };
  };
  const envUrl = fromEnv("url");
  const envGivesCredentials = CREDENTIAL_KEYS.some((k) => fromEnv(k)) || (envUrl !== undefined && hasCredentials(envUrl.value));
  const layer = envGivesCredentials ? fromEnv : fromConfig;
  const url = envUrl ?? fromConfig("url");
  return {
    url,
    urlCredentials: url !== undefined && (url === envUrl) === envGivesCredentials,
    creds: layer("creds"),
    nkey: layer("nkey"),
    user: layer("user"),
    password: layer("password"),
    token: layer("token"),
    ca: fromEnv("ca") ?? fromConfig("ca"),
    cert: fromEnv("cert") ?? fromConfig("cert"),
    key: fromEnv("key") ?? fromConfig("key"),
  };
}

/**
 * Resolves settings (or a bare URL, whose own credentials are used) into what `connect()`
 * takes: reads the files, takes the credentials out of the URL, checks that one way to
 * authenticate is given. Throws a SwitchyardError of kind `config` naming the variable or key.
 */
export function natsTarget(settings: NatsSettings | string, readFile: (path: string) => Buffer = readFileSync): NatsTarget {
  const s: NatsSettings = typeof settings === "string" ? { url: { value: settings, from: "the NATS URL" }, urlCredentials: true } : settings;
  const url = s.url ?? { value: DEFAULT_NATS_URL, from: "the default NATS URL" };
  let servers: ServerUrl[];
  try {
    servers = parseServerUrls(url.value);
  } catch (err) {
    throw problem(`${url.from}: ${(err as Error).message}`);
  }

  const ways: { from: string; make: () => Authenticator }[] = [];
  if (s.urlCredentials) {
    const given = [...new Set(servers.map((v) => v.credentials).filter((c) => c !== undefined).map((c) => JSON.stringify(c)))];
    if (given.length > 1) throw problem(`${url.from}: the servers carry different credentials; give one user or token for all`);
    const c = servers.find((v) => v.credentials !== undefined)?.credentials;
    if (c && "token" in c) ways.push({ from: `the token in ${url.from}`, make: () => tokenAuthenticator(c.token) });
    else if (c) ways.push({ from: `the user and password in ${url.from}`, make: () => usernamePasswordAuthenticator(c.user, c.pass) });
  }
  if (s.password && !s.user) throw problem(`${s.password.from} is set without a user (${userName(s.password.from)})`);
  if (s.user && !s.password) throw problem(`${s.user.from} is set without a password (${passwordName(s.user.from)})`);
  if (s.creds) ways.push({ from: `${s.creds.from} (${s.creds.value})`, make: () => credsAuthenticator(credsFile(s.creds!, readFile)) });
  if (s.nkey) ways.push({ from: `${s.nkey.from} (${s.nkey.value})`, make: () => nkeyAuthenticator(nkeySeed(s.nkey!, readFile)) });
  if (s.user && s.password) ways.push({ from: `${s.user.from} and ${s.password.from}`, make: () => usernamePasswordAuthenticator(s.user!.value, s.password!.value) });
  if (s.token) ways.push({ from: s.token.from, make: () => tokenAuthenticator(s.token!.value) });
  if (ways.length > 1) throw problem(`give one way to authenticate to NATS, not ${ways.map((w) => w.from).join(" and ")}`);
  const way = ways[0];

  if (s.cert && !s.key) throw problem(`${s.cert.from} is set without its key (${keyName(s.cert.from, "key")})`);
  if (s.key && !s.cert) throw problem(`${s.key.from} is set without its certificate (${keyName(s.key.from, "cert")})`);
  const tlsOn = servers.some((v) => v.scheme === "tls") || Boolean(s.ca || s.cert || s.key);
  const tls: TlsOptions | undefined = tlsOn
    ? {
        ...(s.ca ? { ca: pemFile(s.ca, readFile) } : {}),
        ...(s.cert ? { cert: pemFile(s.cert, readFile) } : {}),
        ...(s.key ? { key: pemFile(s.key, readFile) } : {}),
      }
    : undefined;

  return {
    servers: servers.map((v) => v.server),
    display: redactUrl(url.value.trim()),
    authFrom: way?.from,
    authenticator: way?.make(),
    tls,
  };
}

/**
 * The `nats:` section of a config file, validated, without requiring the rest of the file to
 * be complete: commands that need only NATS (`streams`, `tail`, `publish`) must not fail on an
 * unset provider key elsewhere in the file. Errors carry `file:line:column` like the main config.
 */
export function loadNatsSection(file: string, env: NodeJS.ProcessEnv = process.env): NatsConfig | undefined {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    // The command's own config load reports an unreadable file, where it needs one at all.
    return undefined;
  }
  const schema = z.looseObject({ nats: NatsConfigSchema.optional() });
  const doc = parseDocument(text, { uniqueKeys: true });
  if (doc.errors.length > 0 || !isMap(doc.contents) || doc.contents.flow) return parseYaml(text, file, schema, env).nats;
  const natsPair = doc.contents.items.find((p) => isScalar(p.key) && p.key.value === "nats");
  if (!natsPair) return undefined;
  // Blank out every other top-level entry, keeping line and column of what stays.
  const chars = [...text];
  for (const pair of doc.contents.items) {
    if (pair === natsPair || !isScalar(pair.key) || !pair.key.range) continue;
    const end = (pair.value as { range?: [number, number, number] } | null)?.range?.[2] ?? pair.key.range[2];
    for (let i = pair.key.range[0]; i < end && i < text.length; i++) if (text[i] !== "\n" && text[i] !== "\r") chars[i] = " ";
  }
  try {
    return parseYaml(chars.join(""), file, schema, env).nats;
  } catch {
    // Anything the blanking broke (an alias into another section): read the whole file as before.
    return parseYaml(text, file, schema, env).nats;
  }
}

function problem(message: string): SwitchyardError {
  return new SwitchyardError("config", message);
}

function readSecretFile(setting: Sourced, readFile: (path: string) => Buffer): Buffer {
  try {
    return readFile(setting.value);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : code === "EISDIR" ? "it is a directory" : (code ?? "unreadable");
    throw problem(`${setting.from}: cannot read ${setting.value} (${why})`);
  }
}

function credsFile(setting: Sourced, readFile: (path: string) => Buffer): Uint8Array {
  const data = readSecretFile(setting, readFile);
  const text = data.toString("utf8");
  if (!/-----BEGIN NATS USER JWT-----/.test(text) || !/-----BEGIN USER NKEY SEED-----/.test(text)) {
    throw problem(`${setting.from}: ${setting.value} is not a NATS credentials file (it needs a user JWT and a user nkey seed, as \`nsc generate creds\` writes them)`);
  }
  return new Uint8Array(data);
}

function nkeySeed(setting: Sourced, readFile: (path: string) => Buffer): Uint8Array {
  const line = readSecretFile(setting, readFile)
    .toString("utf8")
    .split(/\r?\n/)
    .map((l) => l.trim())
    .find((l) => l.startsWith("SU"));
  const seed = line === undefined ? undefined : new TextEncoder().encode(line);
  let valid = false;
  try {
    valid = seed !== undefined && nkeys.fromSeed(seed).getPublicKey().startsWith("U");
  } catch {
    valid = false;
  }
  if (!valid) throw problem(`${setting.from}: ${setting.value} holds no valid user nkey seed (a line starting with SU, as \`nk -gen user\` writes it)`);
  return seed!;
}

function pemFile(setting: Sourced, readFile: (path: string) => Buffer): string {
  const text = readSecretFile(setting, readFile).toString("utf8");
  if (!text.includes("-----BEGIN ")) throw problem(`${setting.from}: ${setting.value} is not a PEM file`);
  return text;
}

/** The name of the partner setting, in the same layer as `from`. */
function partner(from: string, envName: string, configKey: string): string {
  return from.startsWith("NATS_") ? envName : configKey;
}
const userName = (from: string) => partner(from, "NATS_USER", "nats.user");
const passwordName = (from: string) => partner(from, "NATS_PASSWORD", "nats.password");
const keyName = (from: string, which: "key" | "cert") => partner(from, which === "key" ? "NATS_KEY" : "NATS_CERT", `nats.tls.${which}`);

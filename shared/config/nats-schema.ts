/**
 * `nats:`: where the NATS server is and how to authenticate to it, the config-file twin of the
 * `nats` CLI's variables (NATS_URL, NATS_CREDS, NATS_NKEY, NATS_USER, NATS_PASSWORD, NATS_TOKEN,
 * NATS_CA, NATS_CERT, NATS_KEY). A variable that is set overrides its key here; credentials are
 * taken whole from the environment when it gives any (see `shared/nats/auth.ts`).
 *
 * Secrets are best given as `${ENV_VAR}`; an empty value (`${NATS_TOKEN:-}`) counts as absent.
 */
import { z } from "zod";
import { parseServerUrls } from "../nats/url.ts";

/** A string where "" means "not set", so `${VAR:-}` makes a key optional. */
const text = z
  .string()
  .transform((s) => (s === "" ? undefined : s))
  .optional();

export const NatsTlsConfigSchema = z
  .strictObject({
    /** PEM file of the CA that signed the server's certificate (default: the system's CAs). */
    ca: text,
    /** PEM file of this client's certificate, for a server that verifies clients (`verify: true`); needs `key`. */
    cert: text,
    /** PEM file of the private key of `cert`. */
    key: text,
  })
  .superRefine((t, ctx) => {
    if (t.cert !== undefined && t.key === undefined) ctx.addIssue({ code: "custom", path: ["key"], message: "a client certificate (cert) needs its key" });
    if (t.key !== undefined && t.cert === undefined) ctx.addIssue({ code: "custom", path: ["cert"], message: "a client key needs its certificate (cert)" });
  });

export const NatsConfigSchema = z
  .strictObject({
    /**
     * Server URL, or a comma-separated list: `nats://host:4222`, `tls://host:4222` (TLS), and
     * optionally `user:password@` or `token@` before the host.
     * @defaultValue nats://127.0.0.1:4222 (`switchyard up` and the demo start their own server instead)
     */
    url: text,
    /** Credentials file (a user JWT and its nkey seed), as `nsc` writes it. */
    creds: text,
    /** File holding a user nkey seed (`SU…`), as `nk -gen user` writes it. */
    nkey: text,
    /** User name; needs `password`. */
    user: text,
    password: text,
    /** Authentication token. */
    token: text,
    /** TLS: set any key (or use a `tls://` URL) and the connection is encrypted and the server verified. */
    tls: NatsTlsConfigSchema.optional(),
  })
  .superRefine((n, ctx) => {
    let urlCredentials = false;
    if (n.url !== undefined) {
      try {
        urlCredentials = parseServerUrls(n.url).some((s) => s.credentials !== undefined);
      } catch (err) {
        ctx.addIssue({ code: "custom", path: ["url"], message: (err as Error).message });
      }
    }
    if (n.password !== undefined && n.user === undefined) ctx.addIssue({ code: "custom", path: ["password"], message: "a password needs a user" });
    if (n.user !== undefined && n.password === undefined) ctx.addIssue({ code: "custom", path: ["user"], message: "a user needs a password" });
    const ways = [...(urlCredentials ? ["url"] : []), ...(["creds", "nkey", "user", "token"] as const).filter((k) => n[k] !== undefined)];
    if (ways.length > 1) {
      ctx.addIssue({ code: "custom", path: [ways[1]!], message: `give one way to authenticate, not ${ways.map((w) => (w === "url" ? "credentials in url" : w)).join(" and ")}` });
    }
  });

export type NatsConfig = z.output<typeof NatsConfigSchema>;

/**
 * Switchyard on a secured NATS, against real nats-servers that each test file configures itself:
 * user and password (in the URL and in NATS_USER/NATS_PASSWORD), a token, an nkey, mutual TLS
 * with certificates made here by openssl, and the config file's `nats:` section. For each, a
 * router (in this process through `startRouter`, and as a `switchyard` process) connects and
 * serves a job; with wrong or missing credentials a command stops with a clear error, and no
 * password, token, seed or key appears in anything it printed. The banner of `switchyard up`
 * shows a URL's password as `***`.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { createAccount, createOperator, createUser as createJwtUser, encodeAccount, encodeOperator, encodeUser, fmtCreds } from "@nats-io/jwt";
import { nkeys } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { startRouter } from "../services/router/main.ts";
import { createSimProvider, type SimProvider } from "../services/sim-provider/server.ts";
import { parseScenario } from "../services/sim-provider/scenario.ts";
import { parseConfig } from "../shared/config/load.ts";
import type { Config } from "../shared/config/schema.ts";
import type { Result } from "../shared/contract/job.ts";
import { STREAMS } from "../shared/contract/subjects.ts";
import { ConfigError, SwitchyardError } from "../shared/errors.ts";
import { createLogger } from "../shared/log.ts";
import { loadNatsSection, natsSettings, natsTarget } from "../shared/nats/auth.ts";
import { connectNats, type NatsTarget } from "../shared/nats/connect.ts";
import { provision } from "../shared/nats/provision.ts";
import { startNatsServer, type NatsServerHandle } from "../shared/nats/server-process.ts";
import { redactUrl } from "../shared/nats/url.ts";
import { readAll } from "./harness/nats.ts";
import { printed, spawnCli } from "./harness/processes.ts";
import { moderationJob, TEST_SCENARIO, testConfigYaml } from "./harness/stack.ts";

/** Every NATS_* variable empty (which counts as unset), so nothing from the outer environment leaks in. */
const NO_NATS_ENV = { NATS_URL: "", NATS_CREDS: "", NATS_NKEY: "", NATS_USER: "", NATS_PASSWORD: "", NATS_TOKEN: "", NATS_CA: "", NATS_CERT: "", NATS_KEY: "" };

const dir = mkdtempSync(join(tmpdir(), "sy-nats-security-"));
let sim: SimProvider;
let configYaml: string;
let config: Config;
let configFile: string;
const logger = createLogger("test-security", process.env.LOG_LEVEL ?? "silent");

beforeAll(async () => {
  sim = createSimProvider(parseScenario(TEST_SCENARIO, "test-scenario.yaml"));
  configYaml = testConfigYaml(await sim.listen(0));
  config = parseConfig(configYaml, "test-config.yaml", {});
  configFile = join(dir, "switchyard.yaml");
  writeFileSync(configFile, configYaml);
});

afterAll(async () => {
  await sim?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A nats-server with JetStream and `conf` added to its config. */
async function server(conf: string): Promise<NatsServerHandle> {
  return startNatsServer({ extraConfig: conf });
}

/** Publishes one moderation job through `target` and waits for its result. */
async function serveOne(target: NatsTarget, id: string): Promise<Result> {
  const nc = await connectNats(target, "test-producer");
  try {
    const js = jetstream(nc);
    await provision(await jetstreamManager(nc), config);
    await js.publish("jobs.moderation", JSON.stringify(moderationJob(0, { id })), { msgID: id });
    let result: Result | undefined;
    await vi.waitFor(
      async () => {
        result = (await readAll<Result>(js, STREAMS.results)).find((r) => r.id === id);
        expect(result).toBeDefined();
      },
      { timeout: 20_000, interval: 100 },
    );
    return result!;
  } finally {
    await nc.close();
  }
}

/** `switchyard <args>` to its end. */
async function run(args: string[], env: Record<string, string>): Promise<{ code: number | string; out: string }> {
  const p = spawnCli(args, { ...NO_NATS_ENV, SWITCHYARD_CONFIG: configFile, ...env });
  const code = await p.exited;
  return { code, out: p.output() };
}

/** A `switchyard router` process serves a job published through `producer`, then stops cleanly on SIGTERM. */
async function routerProcessServes(env: Record<string, string>, producer: NatsTarget, id: string): Promise<string> {
  const p = spawnCli(["router"], { ...NO_NATS_ENV, SWITCHYARD_CONFIG: configFile, LOG_LEVEL: "info", ...env });
  try {
    await printed(p, /router worker started/);
    const result = await serveOne(producer, id);
    expect(result.status).toBe("succeeded");
  } finally {
    p.child.kill("SIGTERM");
  }
  expect(await p.exited, p.output()).toBe(0);
  return p.output();
}


function expectNoSecret(out: string, ...secrets: string[]) {
  for (const s of secrets) expect(out.includes(s), `a secret appears in:\n${out}`).toBe(false);
}

describe("NATS URLs and settings", () => {
  it("redacts passwords and tokens in URLs and URL lists, keeping the user", () => {
    expect(redactUrl("nats://alice:s3cret@host:4222")).toBe("nats://alice:***@host:4222");
    expect(redactUrl("nats://t0ken@host:4222")).toBe("nats://***@host:4222");
    expect(redactUrl("tls://a:p%40ss@h1:4222, nats://b:q@ss/x@h2")).toBe("tls://a:***@h1:4222, nats://b:***@h2");
    expect(redactUrl("alice:pw@127.0.0.1:4222")).toBe("alice:***@127.0.0.1:4222");
    expect(redactUrl("nats://127.0.0.1:4222")).toBe("nats://127.0.0.1:4222");
  });

  it("takes user and password (or a token) out of the URL, percent-decoded, and dials the bare server", () => {
    const t = natsTarget("nats://alice:p%40ss@127.0.0.1:4222,tls://alice:p%40ss@[::1]:4223");
    expect(t.servers).toEqual(["nats://127.0.0.1:4222", "tls://[::1]:4223"]);
    expect(t.display).toBe("nats://alice:***@127.0.0.1:4222,tls://alice:***@[::1]:4223");
    expect(t.authFrom).toBe("the user and password in the NATS URL");
    expect(t.tls).toEqual({});
    expect(natsTarget("nats://t0k@h:1").authFrom).toBe("the token in the NATS URL");
    expect(natsTarget("127.0.0.1:4222")).toMatchObject({ servers: ["nats://127.0.0.1:4222"], authFrom: undefined, tls: undefined });
  });

  it("refuses a bad URL or two ways to authenticate, naming the variables and never the secret", () => {
    const fail = (env: NodeJS.ProcessEnv) => {
      try {
        natsTarget(natsSettings(env));
      } catch (err) {
        expect(err).toBeInstanceOf(SwitchyardError);
        expect((err as SwitchyardError).kind).toBe("config");
        return (err as Error).message;
      }
      throw new Error("expected an error");
    };
    const url = fail({ NATS_URL: "http://alice:hunter2@h:4222" });
    expect(url).toContain('NATS_URL: "http://alice:***@h:4222" is not a NATS URL');
    expect(url).not.toContain("hunter2");
    expect(fail({ NATS_TOKEN: "hunter2", NATS_USER: "alice", NATS_PASSWORD: "x" })).toBe(
      "give one way to authenticate to NATS, not NATS_USER and NATS_PASSWORD and NATS_TOKEN",
    );
    expect(fail({ NATS_URL: "nats://a:hunter2@h", NATS_TOKEN: "t" })).toContain("not the user and password in NATS_URL and NATS_TOKEN");
    expect(fail({ NATS_PASSWORD: "hunter2" })).toBe("NATS_PASSWORD is set without a user (NATS_USER)");
    expect(fail({ NATS_CERT: "/x/client.pem" })).toBe("NATS_CERT is set without its key (NATS_KEY)");
    expect(fail({ NATS_CREDS: join(dir, "missing.creds") })).toBe(`NATS_CREDS: cannot read ${join(dir, "missing.creds")} (no such file)`);
    writeFileSync(join(dir, "junk.nk"), "not a seed hunter2\n");
    const junk = fail({ NATS_NKEY: join(dir, "junk.nk") });
    expect(junk).toContain(`NATS_NKEY: ${join(dir, "junk.nk")} holds no valid user nkey seed`);
    expect(junk).not.toContain("hunter2");
  });

  it("lets each variable override its config key, and takes credentials whole from the environment when it gives any", () => {
    const cfg = { url: "nats://cfg:4222", user: "bob", password: "cfg-pw", tls: { ca: "ca.pem" } };
    const fromConfig = natsSettings({}, cfg, "/etc/sy/switchyard.yaml");
    expect(fromConfig.url).toEqual({ value: "nats://cfg:4222", from: "nats.url in /etc/sy/switchyard.yaml" });
    expect(fromConfig.user?.value).toBe("bob");
    // A relative path in the config is relative to the config file.
    expect(fromConfig.ca).toEqual({ value: "/etc/sy/ca.pem", from: "nats.tls.ca in /etc/sy/switchyard.yaml" });

    const env = natsSettings({ NATS_URL: "nats://env:4222", NATS_TOKEN: "t", NATS_CA: "/env/ca.pem" }, cfg, "/etc/sy/switchyard.yaml");
    expect(env).toMatchObject({ url: { value: "nats://env:4222", from: "NATS_URL" }, token: { from: "NATS_TOKEN" }, ca: { value: "/env/ca.pem" } });
    expect(env.user).toBeUndefined();
    expect(env.password).toBeUndefined();

    // A URL's credentials go with it: the config's URL, overridden, takes its password along.
    const overridden = natsSettings({ NATS_URL: "nats://env:4222" }, { url: "nats://u:p@cfg:4222" });
    expect(overridden.urlCredentials).toBe(false);
    expect(natsTarget(overridden).authFrom).toBeUndefined();
    const userInEnvUrl = natsSettings({ NATS_URL: "nats://u:p@env:4222" }, { token: "cfg-token" });
    expect(natsTarget(userInEnvUrl).authFrom).toBe("the user and password in NATS_URL");
  });

  it("reads the config's nats: section without the rest of the file, with file:line errors", () => {
    const file = join(dir, "partial.yaml");
    writeFileSync(file, `${configYaml.replace("timeout_ms: 2s", "api_key: \${SOME_UNSET_KEY}\n    timeout_ms: 2s")}nats:\n  url: nats://127.0.0.1:4999\n  token: \${SY_TEST_TOKEN:-}\n`);
    expect(loadNatsSection(file, { SY_TEST_TOKEN: "tok" })).toEqual({ url: "nats://127.0.0.1:4999", token: "tok" });
    // `${VAR:-}` left empty counts as absent.
    expect(loadNatsSection(file, {})).toEqual({ url: "nats://127.0.0.1:4999" });
    writeFileSync(file, `${configYaml}nats:\n  url: nats://127.0.0.1:4999\n  password: hunter2\n`);
    const line = readFileSync(file, "utf8").split("\n").indexOf("  password: hunter2") + 1;
    let err: unknown;
    try {
      loadNatsSection(file, {});
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).message).toBe(`${file}:${line}:13: nats.password: a password needs a user`);
    // The whole config validates the section the same way.
    expect(() => parseConfig(`${configYaml}nats:\n  creds: a.creds\n  token: t\n`, "c.yaml", {})).toThrow("nats.token: give one way to authenticate, not creds and token");
  });
});

describe("user and password", () => {
  const password = `pw-${randomBytes(6).toString("hex")}@/x`;
  const encoded = encodeURIComponent(password);
  let nats: NatsServerHandle;
  let withPassword: string;

  beforeAll(async () => {
    nats = await server(`authorization { users = [ { user: "alice", password: "${password}" } ] }`);
    withPassword = `nats://alice:${encoded}@127.0.0.1:${nats.port}`;
  });
  afterAll(async () => {
    await nats?.stop();
  });

  it("a router started with the user and password in the URL serves a job", async () => {
    const target = natsTarget(withPassword);
    const running = await startRouter({ natsUrl: target, config, logger });
    try {
      expect((await serveOne(target, "userpass-1")).status).toBe("succeeded");
    } finally {
      await running.stop();
    }
  });

  it("`switchyard streams` connects with NATS_USER and NATS_PASSWORD, and with the password in NATS_URL", async () => {
    const vars = await run(["streams", "--json"], { NATS_URL: nats.url, NATS_USER: "alice", NATS_PASSWORD: password });
    expect(vars.code, vars.out).toBe(0);
    expect(vars.out).toContain('"name":"JOBS"');
    const inUrl = await run(["streams", "--json"], { NATS_URL: withPassword });
    expect(inUrl.code, inUrl.out).toBe(0);
  });

  it("a wrong password stops the command with the URL redacted, and no password printed", async () => {
    const wrong = `nope-${randomBytes(4).toString("hex")}`;
    const url = await run(["streams"], { NATS_URL: `nats://alice:${wrong}@127.0.0.1:${nats.port}` });
    expect(url.code).toBe(1);
    expect(url.out).toContain(`switchyard: NATS at nats://alice:***@127.0.0.1:${nats.port} refused the credentials from the user and password in NATS_URL (`);
    expectNoSecret(url.out, wrong, password, encoded);

    const vars = await run(["router"], { NATS_URL: nats.url, NATS_USER: "alice", NATS_PASSWORD: wrong });
    expect(vars.code).toBe(1);
    expect(vars.out).toContain(`NATS at ${nats.url} refused the credentials from NATS_USER and NATS_PASSWORD`);
    expectNoSecret(vars.out, wrong);

    const none = await run(["streams"], { NATS_URL: nats.url });
    expect(none.code).toBe(1);
    expect(none.out).toContain(`NATS at ${nats.url} requires authentication`);
  });

  it("the banner and logs of `switchyard up` show the URL's password as ***", async () => {
    const up = spawnCli(["up", "--sim-port", "0", "--gateway-listen", "127.0.0.1:0", "--data", join(dir, "up")], { ...NO_NATS_ENV, NATS_URL: withPassword, LOG_LEVEL: "info" });
    try {
      await printed(up, /gateway \(OpenAI API\)/);
      expect(up.output()).toContain(`NATS_URL=nats://alice:***@127.0.0.1:${nats.port}\n`);
      // The gateway logs where it is connected, redacted.
      await printed(up, /"nats":"nats:\/\/alice:\*\*\*@127\.0\.0\.1:\d+"/);
    } finally {
      up.child.kill("SIGTERM");
    }
    expect(await up.exited, up.output()).toBe(0);
    expectNoSecret(up.output(), password, encoded);
  });
});

describe("token", () => {
  const token = `tok-${randomBytes(8).toString("hex")}`;
  let nats: NatsServerHandle;

  beforeAll(async () => {
    nats = await server(`authorization { token: "${token}" }`);
  });
  afterAll(async () => {
    await nats?.stop();
  });

  it("a `switchyard router` process with NATS_TOKEN serves a job", async () => {
    const out = await routerProcessServes({ NATS_URL: nats.url, NATS_TOKEN: token }, natsTarget(natsSettings({ NATS_URL: nats.url, NATS_TOKEN: token })), "token-1");
    expectNoSecret(out, token);
  });

  it("takes the token from the config's nats: section (through ${ENV}), and NATS_TOKEN overrides it", async () => {
    const file = join(dir, "token.yaml");
    writeFileSync(file, `${configYaml}nats:\n  url: ${nats.url}\n  token: \${SY_TEST_TOKEN}\n`);
    const fromConfig = await run(["streams", "--json"], { SWITCHYARD_CONFIG: file, SY_TEST_TOKEN: token });
    expect(fromConfig.code, fromConfig.out).toBe(0);
    const overridden = await run(["streams", "--json"], { SWITCHYARD_CONFIG: file, SY_TEST_TOKEN: "wrong-token", NATS_TOKEN: token });
    expect(overridden.code, overridden.out).toBe(0);
    const wrong = await run(["streams"], { SWITCHYARD_CONFIG: file, SY_TEST_TOKEN: "wrong-token-value" });
    expect(wrong.code).toBe(1);
    expect(wrong.out).toContain(`refused the credentials from nats.token in ${file}`);
    expectNoSecret(wrong.out, "wrong-token-value", token);
  });

  it("a wrong token in the URL is refused with the token redacted", async () => {
    const bad = `bad-${randomBytes(4).toString("hex")}`;
    const r = await run(["streams"], { NATS_URL: `nats://${bad}@127.0.0.1:${nats.port}` });
    expect(r.code).toBe(1);
    expect(r.out).toContain(`NATS at nats://***@127.0.0.1:${nats.port} refused the credentials from the token in NATS_URL`);
    expectNoSecret(r.out, bad, token);
  });
});

describe("nkey", () => {
  const user = nkeys.createUser();
  const seed = new TextDecoder().decode(user.getSeed());
  const seedFile = join(dir, "user.nk");
  let nats: NatsServerHandle;

  beforeAll(async () => {
    writeFileSync(seedFile, `${seed}\n`);
    nats = await server(`authorization { users = [ { nkey: "${user.getPublicKey()}" } ] }`);
  });
  afterAll(async () => {
    await nats?.stop();
  });

  it("a router started with NATS_NKEY serves a job, and `switchyard router` does too", async () => {
    const target = natsTarget(natsSettings({ NATS_URL: nats.url, NATS_NKEY: seedFile }));
    expect(target.authFrom).toBe(`NATS_NKEY (${seedFile})`);
    const running = await startRouter({ natsUrl: target, config, logger });
    try {
      expect((await serveOne(target, "nkey-1")).status).toBe("succeeded");
    } finally {
      await running.stop();
    }
    expectNoSecret(await routerProcessServes({ NATS_URL: nats.url, NATS_NKEY: seedFile }, target, "nkey-2"), seed);
  });

  it("another user's seed is refused, and a missing seed file is named; no seed is printed", async () => {
    const other = nkeys.createUser();
    const otherSeed = new TextDecoder().decode(other.getSeed());
    const otherFile = join(dir, "other.nk");
    writeFileSync(otherFile, otherSeed);
    const refused = await run(["streams"], { NATS_URL: nats.url, NATS_NKEY: otherFile });
    expect(refused.code).toBe(1);
    expect(refused.out).toContain(`NATS at ${nats.url} refused the credentials from NATS_NKEY (${otherFile})`);
    expectNoSecret(refused.out, otherSeed, seed);

    const missing = await run(["router"], { NATS_URL: nats.url, NATS_NKEY: join(dir, "absent.nk") });
    expect(missing.code).toBe(1);
    expect(missing.out).toContain(`switchyard: NATS_NKEY: cannot read ${join(dir, "absent.nk")} (no such file)`);
  });
});

describe("creds file (operator mode)", () => {
  let nats: NatsServerHandle;
  let credsFile: string;
  let userSeed: string;

  beforeAll(async () => {
    // An operator, an account with JetStream, and a user of that account, as `nsc` would make them.
    const operator = createOperator();
    const account = createAccount();
    const system = createAccount();
    // Unlimited, JetStream included (a limit left out is 0: no connections at all).
    const jsLimits = { conn: -1, subs: -1, data: -1, payload: -1, imports: -1, exports: -1, wildcards: true, leaf: -1, mem_storage: -1, disk_storage: -1, streams: -1, consumer: -1 };
    const operatorJwt = await encodeOperator("switchyard-test", operator, { system_account: system.getPublicKey() });
    const accountJwt = await encodeAccount("switchyard", account, { limits: jsLimits }, { signer: operator });
    const systemJwt = await encodeAccount("SYS", system, {}, { signer: operator });
    const user = createJwtUser();
    userSeed = new TextDecoder().decode(user.getSeed());
    credsFile = join(dir, "router.creds");
    writeFileSync(credsFile, fmtCreds(await encodeUser("router", user, account), user));
    nats = await server(
      [
        `operator: "${operatorJwt}"`,
        `system_account: "${system.getPublicKey()}"`,
        "resolver: MEMORY",
        `resolver_preload: { ${account.getPublicKey()}: "${accountJwt}", ${system.getPublicKey()}: "${systemJwt}" }`,
      ].join("\n"),
    );
  });
  afterAll(async () => {
    await nats?.stop();
  });

  it("a router started with NATS_CREDS serves a job, and so does `switchyard router`", async () => {
    const target = natsTarget(natsSettings({ NATS_URL: nats.url, NATS_CREDS: credsFile }));
    expect(target.authFrom).toBe(`NATS_CREDS (${credsFile})`);
    const running = await startRouter({ natsUrl: target, config, logger });
    try {
      expect((await serveOne(target, "creds-1")).status).toBe("succeeded");
    } finally {
      await running.stop();
    }
    expectNoSecret(await routerProcessServes({ NATS_URL: nats.url, NATS_CREDS: credsFile }, target, "creds-2"), userSeed);
  });

  it("a user of an unknown account is refused, and a file that is no creds file is named; no seed is printed", async () => {
    const stranger = createJwtUser();
    const strangerSeed = new TextDecoder().decode(stranger.getSeed());
    const strangerFile = join(dir, "stranger.creds");
    writeFileSync(strangerFile, fmtCreds(await encodeUser("stranger", stranger, createAccount()), stranger));
    const refused = await run(["streams"], { NATS_URL: nats.url, NATS_CREDS: strangerFile });
    expect(refused.code).toBe(1);
    expect(refused.out).toContain(`NATS at ${nats.url} refused the credentials from NATS_CREDS (${strangerFile})`);
    expectNoSecret(refused.out, strangerSeed, userSeed);

    const notCreds = await run(["streams"], { NATS_URL: nats.url, NATS_CREDS: join(certsDirFor("seed-only"), "x") });
    expect(notCreds.code).toBe(1);
    expect(notCreds.out).toContain("is not a NATS credentials file");
    expectNoSecret(notCreds.out, userSeed);

    const none = await run(["streams"], { NATS_URL: nats.url });
    expect(none.code).toBe(1);
    expect(none.out).toContain("requires authentication");
  });

  /** A folder holding `x`: a file with only the user's seed in it, no JWT. */
  function certsDirFor(name: string): string {
    const d = join(dir, name);
    execFileSync("mkdir", ["-p", d]);
    writeFileSync(join(d, "x"), `${userSeed}\n`);
    return d;
  }
});

describe("mutual TLS", () => {
  const certs = join(dir, "certs");
  let nats: NatsServerHandle;
  let tlsUrl: string;
  let clientKey: string;

  beforeAll(async () => {
    clientKey = makeCertificates(certs);
    nats = await server(
      `tls { cert_file: "${join(certs, "server.pem")}", key_file: "${join(certs, "server.key")}", ca_file: "${join(certs, "ca.pem")}", verify: true, timeout: 2 }`,
    );
    tlsUrl = `tls://127.0.0.1:${nats.port}`;
  });
  afterAll(async () => {
    await nats?.stop();
  });

  const tlsEnv = () => ({ NATS_URL: tlsUrl, NATS_CA: join(certs, "ca.pem"), NATS_CERT: join(certs, "client.pem"), NATS_KEY: join(certs, "client.key") });

  it("a router started with NATS_CA, NATS_CERT and NATS_KEY serves a job, and so does `switchyard router` from the config's nats.tls", async () => {
    const target = natsTarget(natsSettings(tlsEnv()));
    const running = await startRouter({ natsUrl: target, config, logger });
    try {
      expect((await serveOne(target, "tls-1")).status).toBe("succeeded");
    } finally {
      await running.stop();
    }
    // Relative paths in the config are relative to the config file; a nats:// URL with a CA is TLS too.
    const file = join(certs, "switchyard.yaml");
    writeFileSync(file, `${configYaml}nats:\n  url: nats://127.0.0.1:${nats.port}\n  tls: { ca: ca.pem, cert: client.pem, key: client.key }\n`);
    const out = await routerProcessServes({ SWITCHYARD_CONFIG: file }, target, "tls-2");
    expectNoSecret(out, clientKeyLine(clientKey));
  });

  it("without a client certificate, or without the CA, the command stops with a clear error", async () => {
    const noCert = await run(["streams"], { NATS_URL: tlsUrl, NATS_CA: join(certs, "ca.pem") });
    expect(noCert.code).toBe(1);
    // The server drops the connection without a word the client passes on: the message says what to check.
    expect(noCert.out).toContain(`switchyard: cannot reach NATS at ${tlsUrl} over TLS (timeout)`);
    expect(noCert.out).toContain("set NATS_CERT and NATS_KEY");
    const noCa = await run(["streams"], { ...tlsEnv(), NATS_CA: "" });
    expect(noCa.code).toBe(1);
    expect(noCa.out).toContain(`switchyard: TLS to NATS at ${tlsUrl} failed: the server's certificate was not accepted`);
    expect(noCa.out).toContain("set NATS_CA");
    expectNoSecret(noCert.out + noCa.out, clientKeyLine(clientKey));
    const noKey = await run(["streams"], { ...tlsEnv(), NATS_KEY: "" });
    expect(noKey.out).toContain("switchyard: NATS_CERT is set without its key (NATS_KEY)");
  });
});

/** A CA, a server certificate for 127.0.0.1 and localhost, and a client certificate, all signed by the CA; returns the client key. */
function makeCertificates(to: string): string {
  execFileSync("mkdir", ["-p", to]);
  const ssl = (...args: string[]) => execFileSync("openssl", args, { cwd: to, stdio: "pipe" });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  ssl("req", "-x509", ...ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Switchyard test CA",
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign");
  const exts = { server: "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n", client: "extendedKeyUsage=clientAuth\n" };
  for (const [name, ext] of Object.entries(exts)) {
    writeFileSync(join(to, `${name}.ext`), ext);
    ssl("req", ...ec, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=switchyard-${name}`);
    ssl("x509", "-req", "-in", `${name}.csr`, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", `${name}.pem`, "-days", "2", "-extfile", `${name}.ext`);
  }
  return execFileSync("cat", [join(to, "client.key")]).toString();
}

/** The first line of key material in a PEM private key. */
function clientKeyLine(pem: string): string {
  return pem.split("\n").find((l) => l.length > 0 && !l.startsWith("-----"))!;
}

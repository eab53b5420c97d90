/**
 * docker-compose.yml and the Dockerfile, checked without a Docker engine: every container
 * built from the project's image runs a real `switchyard` command, reaches the compose NATS
 * server, reads the mounted config, has a health check and no secret in the file; that server
 * keeps JetStream data on a volume. The image is built in two stages (compile, then production
 * dependencies and dist/ only) and its bin finds the compiled CLI where the build puts it. Each
 * command is also run with --help through bin/switchyard.js, as the image's ENTRYPOINT does.
 */
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { COMMANDS } from "../services/cli/commands/index.ts";
import { OPS_LISTEN_ENV } from "../shared/ops/process.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const run = promisify(execFile);

interface ComposeService {
  image?: string;
  build?: string | { context?: string; dockerfile?: string };
  command?: string | string[];
  environment?: Record<string, string | number | boolean | null> | string[];
  volumes?: (string | { type?: string; source?: string; target?: string })[];
  depends_on?: string[] | Record<string, { condition?: string }>;
  healthcheck?: { test?: string | string[]; disable?: boolean };
  profiles?: string[];
}
interface ComposeFile {
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
}

// `merge`: the file shares settings between services with YAML merge keys (`<<: *switchyard`), as compose does.
const compose = parse(readFileSync(`${ROOT}docker-compose.yml`, "utf8"), { merge: true }) as ComposeFile;
const dockerfile = readFileSync(`${ROOT}Dockerfile`, "utf8");
const pkg = JSON.parse(readFileSync(`${ROOT}package.json`, "utf8")) as { engines: { node: string }; scripts: Record<string, string>; dependencies: Record<string, string> };

function builtFromDockerfile(s: ComposeService): boolean {
  if (s.build === undefined) return false;
  const b = typeof s.build === "string" ? { context: s.build } : s.build;
  const context = (b.context ?? ".").replace(/\/+$/, "");
  return (context === "." || context === "") && (b.dockerfile ?? "Dockerfile") === "Dockerfile";
}

function words(command: string | string[] | undefined): string[] {
  if (command === undefined) return [];
  return Array.isArray(command) ? command.map(String) : command.trim().split(/\s+/);
}

function env(s: ComposeService): Record<string, string> {
  if (Array.isArray(s.environment)) {
    return Object.fromEntries(s.environment.map((kv) => (kv.includes("=") ? [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)] : [kv, ""])));
  }
  // A name without a value (`KEY:`) passes the host's variable through: kept as "".
  return Object.fromEntries(Object.entries(s.environment ?? {}).map(([k, v]) => [k, v === null ? "" : String(v)]));
}

/** Value of a flag given as `-x v`, `--long v` or `--long=v`. */
function flag(args: string[], names: string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (names.includes(a)) return args[i + 1];
    const eq = names.find((n) => a.startsWith(`${n}=`));
    if (eq) return a.slice(eq.length + 1);
  }
  return undefined;
}

const appServices = Object.entries(compose.services).filter(([, s]) => builtFromDockerfile(s));
const natsEntry = Object.entries(compose.services).find(([, s]) => /^(docker\.io\/(library\/)?)?nats:/.test(s.image ?? ""));

describe("docker-compose.yml", () => {
  it("has a NATS service and the Switchyard services built from the Dockerfile", () => {
    expect(natsEntry, "a service running the nats image").toBeDefined();
    expect(appServices.map(([name]) => name)).toEqual(expect.arrayContaining(["router", "sim-provider"]));
  });

  it("runs a real CLI command in every service built from the Dockerfile", () => {
    const names = COMMANDS.map((c) => c.name);
    for (const [name, s] of appServices) {
      const first = words(s.command)[0];
      expect(first, `service ${name}: command`).toBeDefined();
      expect(names, `service ${name}: "${first}" is not a switchyard command`).toContain(first);
    }
  });

  it("points every Switchyard service at the compose NATS server and starts it after NATS is healthy", () => {
    const [natsName] = natsEntry!;
    for (const [name, s] of appServices) {
      const url = env(s).NATS_URL;
      expect(url, `service ${name}: NATS_URL`).toBeDefined();
      expect(new URL(url!).hostname, `service ${name}: NATS_URL host`).toBe(natsName);
      expect(["4222", ""]).toContain(new URL(url!).port);
      const deps = s.depends_on;
      expect(deps && !Array.isArray(deps) ? deps[natsName]?.condition : undefined, `service ${name}: depends_on ${natsName}`).toBe("service_healthy");
    }
  });

  it("wires the router to the sim-provider container", () => {
    const url = env(compose.services.router!).SIM_PROVIDER_URL;
    expect(url).toBeDefined();
    const u = new URL(url!);
    expect(compose.services[u.hostname], `SIM_PROVIDER_URL host "${u.hostname}" is a compose service`).toBeDefined();
    const simArgs = words(compose.services[u.hostname]!.command);
    expect(flag(simArgs, ["--port"])).toBe(u.port);
    expect(flag(simArgs, ["--host"])).toBe("0.0.0.0");
  });

  it("gives every long-running service a health check; the image's ops check for Switchyard's own", () => {
    for (const [name, s] of Object.entries(compose.services)) {
      if (s.profiles?.length) continue; // one-off tools (`docker compose run`), not started by `up`
      expect(s.healthcheck?.test, `service ${name}: healthcheck`).toBeDefined();
      expect(s.healthcheck?.disable, `service ${name}: healthcheck disabled`).not.toBe(true);
    }
    // The sim-provider has no ops endpoint; the check asks its own /healthz on the port it serves.
    for (const [name, s] of appServices.filter(([, s]) => !s.profiles?.length)) {
      const test = words(s.healthcheck?.test as string[]);
      expect(test.slice(0, 3), `service ${name}`).toEqual(["CMD", "node", "bin/healthcheck.js"]);
      if (words(s.command)[0] === "sim-provider") expect(test[3]).toBe(`http://127.0.0.1:${flag(words(s.command), ["--port"])}/healthz`);
      else expect(test, `service ${name}`).toHaveLength(3);
    }
  });

  it("mounts the config read-only and points SWITCHYARD_CONFIG at it", () => {
    for (const [name, s] of appServices) {
      const file = env(s).SWITCHYARD_CONFIG;
      expect(file, `service ${name}: SWITCHYARD_CONFIG`).toBeDefined();
      const mount = (s.volumes ?? []).map(String).find((v) => file!.startsWith(`${v.split(":")[1]}/`));
      expect(mount, `service ${name}: a volume holding ${file}`).toBeDefined();
      const [source, , mode] = mount!.split(":");
      expect(source).toBe("./config");
      expect(mode).toBe("ro");
    }
    expect(existsSync(`${ROOT}config/switchyard.yaml`)).toBe(true);
  });

  it("holds no secret: provider keys and the dev key pass through from the host's environment", () => {
    const secretName = /KEY|SECRET|TOKEN|PASSWORD|CREDENTIAL/i;
    for (const [name, s] of Object.entries(compose.services)) {
      for (const [k, v] of Object.entries(env(s))) {
        if (!secretName.test(k)) continue;
        expect(v === "" || /^\$\{[A-Z0-9_]+(:-)?\}$/.test(v), `service ${name}: ${k} has a value in the file`).toBe(true);
      }
    }
    // Every key the embedded config reads from the environment reaches the services that call providers.
    const keyVars = [...readFileSync(`${ROOT}config/switchyard.yaml`, "utf8").matchAll(/^\s+api_key: \$\{([A-Z0-9_]+)/gm)].map((m) => m[1]!);
    expect(keyVars.length).toBeGreaterThan(0);
    for (const name of ["router", "pricing", "gateway"]) expect(Object.keys(env(compose.services[name]!)), name).toEqual(expect.arrayContaining(keyVars));
  });

  it("runs NATS with JetStream on a persistent named volume, with a healthcheck", () => {
    const [, nats] = natsEntry!;
    const args = words(nats.command);
    expect(args.some((a) => a === "-js" || a === "--jetstream")).toBe(true);
    const storeDir = flag(args, ["-sd", "--store_dir"]);
    expect(storeDir, "JetStream store dir (-sd)").toBeDefined();
    const mounts = (nats.volumes ?? []).map((v) => (typeof v === "string" ? { source: v.split(":")[0], target: v.split(":")[1] } : v));
    const store = mounts.find((m) => m.target === storeDir);
    expect(store, `a volume mounted at ${storeDir}`).toBeDefined();
    expect(Object.keys(compose.volumes ?? {}), "the store is a named volume").toContain(store!.source);
    expect(nats.healthcheck?.test).toBeDefined();
  });
});

describe("Dockerfile", () => {
  const stages = dockerfile.split(/^(?=FROM\s)/m).filter((part) => /^FROM\s/.test(part));
  const runtime = stages.at(-1) ?? "";

  it("runs bin/switchyard.js as its ENTRYPOINT, as a non-root numeric user (so Kubernetes can check runAsNonRoot)", () => {
    const entrypoint = /^ENTRYPOINT\s+(\[.*\])\s*$/m.exec(dockerfile)?.[1];
    expect(entrypoint, "ENTRYPOINT in exec form").toBeDefined();
    expect(JSON.parse(entrypoint!)).toEqual(["node", "bin/switchyard.js"]);
    const users = [...runtime.matchAll(/^USER\s+(\S+)/gm)].map((m) => m[1]!);
    expect(users.length).toBeGreaterThan(0);
    expect(users.at(-1)).toMatch(/^\d+(:\d+)?$/);
    expect(users.at(-1)).not.toMatch(/^0(:|$)/);
  });

  it("pins Node to a release, the same in every stage", () => {
    const version = /^ARG NODE_VERSION=(\S+)$/m.exec(dockerfile)?.[1];
    expect(version, "ARG NODE_VERSION").toMatch(/^\d+\.\d+\.\d+$/);
    const froms = stages.map((st) => /^FROM\s+(\S+)/.exec(st)![1]);
    expect(froms.length).toBeGreaterThanOrEqual(2);
    for (const from of froms) expect(from).toMatch(/^node:\$\{NODE_VERSION\}-[a-z]+-slim$/);
    // The image's Node satisfies package.json's engines.
    const floor = /^>=\s*(\d+)\.(\d+)/.exec(pkg.engines.node)!;
    const [major, minor] = version!.split(".").map(Number);
    expect(major! > Number(floor[1]) || (major === Number(floor[1]) && minor! >= Number(floor[2]))).toBe(true);
  });

  it("compiles in a build stage and ships only dist/, production dependencies and the runtime files", () => {
    expect(stages[0]).toMatch(/^RUN npm ci\b/m);
    expect(stages[0]).toMatch(/^RUN npm run build$/m);
    expect(pkg.scripts.build).toContain("tsconfig.build.json");
    expect(runtime).toMatch(/^RUN npm ci\b[^\n]*--omit=dev/m);
    expect(runtime).toMatch(/^COPY --from=\S+ \S*\/dist dist$/m);
    for (const dir of ["bin", "config"]) expect(runtime).toMatch(new RegExp(`^COPY ${dir} ${dir}$`, "m"));
    expect(runtime, "no TypeScript sources in the runtime image").not.toMatch(/^COPY (\.|services|shared)\s/m);
    expect(Object.keys(pkg.dependencies), "the image runs compiled JavaScript: tsx is a dev dependency").not.toContain("tsx");
  });

  it("puts the compiled CLI where bin/switchyard.js looks for it", () => {
    const build = parse(readFileSync(`${ROOT}tsconfig.build.json`, "utf8")) as { compilerOptions: { outDir: string; rootDir: string; rewriteRelativeImportExtensions?: boolean }; include: string[] };
    expect(build.compilerOptions.outDir).toBe("dist");
    expect(build.compilerOptions.rootDir).toBe(".");
    expect(build.compilerOptions.rewriteRelativeImportExtensions).toBe(true);
    expect(build.include).toEqual(expect.arrayContaining(["services", "shared"]));
    expect(readFileSync(`${ROOT}bin/switchyard.js`, "utf8")).toContain(`"../${build.compilerOptions.outDir}/services/cli/main.js"`);
  });

  it("checks health with bin/healthcheck.js against the ops endpoint it sets and exposes", () => {
    const healthcheck = /^HEALTHCHECK\s.*CMD\s+(\[.*\])\s*$/m.exec(runtime)?.[1];
    expect(healthcheck, "HEALTHCHECK ... CMD [...]").toBeDefined();
    expect(JSON.parse(healthcheck!)).toEqual(["node", "bin/healthcheck.js"]);
    const listen = new RegExp(`^ENV ${OPS_LISTEN_ENV}=0\\.0\\.0\\.0:(\\d+)$`, "m").exec(runtime)?.[1];
    expect(listen, `ENV ${OPS_LISTEN_ENV}=0.0.0.0:<port>`).toBeDefined();
    expect(exposed(runtime)).toContain(Number(listen));
    expect(readFileSync(`${ROOT}bin/healthcheck.js`, "utf8")).toContain(OPS_LISTEN_ENV);
  });

  it("exposes the ports the compose services listen on", () => {
    for (const [name, s] of appServices) {
      const args = words(s.command);
      const listen = flag(args, ["--listen"]) ?? flag(args, ["--port"]);
      if (listen === undefined) continue;
      expect(exposed(runtime), `service ${name}`).toContain(Number(listen.split(":").at(-1)));
    }
  });

  it("keeps the host's node_modules and dist/ out of the build context", () => {
    const ignored = readFileSync(`${ROOT}.dockerignore`, "utf8").split("\n").map((l) => l.trim().replace(/^\/|\/$/g, ""));
    expect(ignored).toEqual(expect.arrayContaining(["node_modules", "dist"]));
  });
});

/** The ports of a stage's EXPOSE lines. */
function exposed(stage: string): number[] {
  return [...stage.matchAll(/^EXPOSE\s+(.+)$/gm)].flatMap((m) => m[1]!.trim().split(/\s+/).map((p) => Number(p.split("/")[0])));
}

describe("compose commands through bin/switchyard.js", () => {
  const commands = [...new Set(appServices.map(([, s]) => words(s.command)[0]).filter((c): c is string => c !== undefined))];
  it.each(commands)("`switchyard %s --help` exits 0", async (command) => {
    const { stdout } = await run(process.execPath, ["bin/switchyard.js", command, "--help"], { cwd: ROOT, timeout: 30_000 });
    expect(stdout).toContain(`switchyard ${command}`);
  });
});

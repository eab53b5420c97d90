/**
 * docker-compose.yml and the Dockerfile, checked without a Docker engine: every container
 * built from the project's image runs a real `switchyard` command, reaches the compose NATS
 * server, and that server keeps JetStream data on a volume. Each command is also run with
 * --help through bin/switchyard.js, as the image's ENTRYPOINT does.
 */
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { COMMANDS } from "../services/cli/commands/index.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const run = promisify(execFile);

interface ComposeService {
  image?: string;
  build?: string | { context?: string; dockerfile?: string };
  command?: string | string[];
  environment?: Record<string, string | number | boolean | null> | string[];
  volumes?: (string | { type?: string; source?: string; target?: string })[];
  depends_on?: string[] | Record<string, { condition?: string }>;
  healthcheck?: { test?: string | string[] };
}
interface ComposeFile {
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
}

const compose = parse(readFileSync(`${ROOT}docker-compose.yml`, "utf8")) as ComposeFile;
const dockerfile = readFileSync(`${ROOT}Dockerfile`, "utf8");

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
  return Object.fromEntries(Object.entries(s.environment ?? {}).map(([k, v]) => [k, String(v)]));
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
  it("runs bin/switchyard.js as its ENTRYPOINT, as a non-root user", () => {
    const entrypoint = /^ENTRYPOINT\s+(\[.*\])\s*$/m.exec(dockerfile)?.[1];
    expect(entrypoint, "ENTRYPOINT in exec form").toBeDefined();
    expect(JSON.parse(entrypoint!)).toEqual(["node", "bin/switchyard.js"]);
    const users = [...dockerfile.matchAll(/^USER\s+(\S+)/gm)].map((m) => m[1]);
    expect(users.length).toBeGreaterThan(0);
    expect(users.at(-1)).not.toMatch(/^(root|0)(:|$)/);
  });

  it("installs only production dependencies, which must include tsx (the bin runs TypeScript through it)", () => {
    expect(dockerfile).toMatch(/npm ci\b[^\n]*--omit=dev/);
    const pkg = JSON.parse(readFileSync(`${ROOT}package.json`, "utf8")) as { dependencies?: Record<string, string> };
    expect(Object.keys(pkg.dependencies ?? {})).toContain("tsx");
    expect(readFileSync(`${ROOT}bin/switchyard.js`, "utf8")).toContain("tsx");
  });

  it("keeps the host's node_modules out of the build context", () => {
    const ignored = readFileSync(`${ROOT}.dockerignore`, "utf8").split("\n").map((l) => l.trim().replace(/^\/|\/$/g, ""));
    expect(ignored).toContain("node_modules");
  });
});

describe("compose commands through bin/switchyard.js", () => {
  const commands = [...new Set(appServices.map(([, s]) => words(s.command)[0]).filter((c): c is string => c !== undefined))];
  it.each(commands)("`switchyard %s --help` exits 0", async (command) => {
    const { stdout } = await run(process.execPath, ["bin/switchyard.js", command, "--help"], { cwd: ROOT, timeout: 30_000 });
    expect(stdout).toContain(`switchyard ${command}`);
  });
});

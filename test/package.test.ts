/**
 * The npm package as a user gets it: `npm pack` (which builds dist/ first, `prepack`), the
 * tarball installed into an empty directory, and `switchyard` run from there — compiled
 * JavaScript, no TypeScript and no tsx, the embedded config found inside the installed package
 * whatever the working directory. Dependencies come from npm's cache when it has them
 * (--prefer-offline), else from the registry.
 */
import { execFile, spawn } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestNats, type TestNats } from "./harness/nats.ts";
import { printed } from "./harness/processes.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const run = promisify(execFile);
const pkg = JSON.parse(await readFile(join(ROOT, "package.json"), "utf8")) as { name: string; version: string; files: string[]; dependencies: Record<string, string> };

interface PackResult {
  filename: string;
  files: { path: string }[];
}

let work: string;
let packed: PackResult;
let bin: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "switchyard-package-"));
  const { stdout } = await run("npm", ["pack", "--json", "--pack-destination", work], { cwd: ROOT, timeout: 120_000, maxBuffer: 16 << 20 });
  // npm prints the prepack script's output before the JSON.
  packed = (JSON.parse(stdout.slice(stdout.indexOf("\n[") + 1)) as PackResult[])[0]!;
  const app = join(work, "app");
  await mkdir(app);
  await writeFile(join(app, "package.json"), JSON.stringify({ name: "switchyard-consumer", private: true }));
  await run("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error", join(work, packed.filename)], { cwd: app, timeout: 120_000 });
  bin = join(app, "node_modules", ".bin", "switchyard");
}, 240_000);

afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

describe("the npm package", () => {
  it("ships the compiled CLI, its bin, the embedded config and the licence, and no sources, tests or benches", () => {
    const paths = packed.files.map((f) => f.path);
    expect(paths).toEqual(expect.arrayContaining(["package.json", "README.md", "LICENSE", "bin/switchyard.js", "dist/services/cli/main.js", "config/switchyard.yaml", "config/sim-scenario.yaml"]));
    const allowed = /^(package\.json|README\.md|LICENSE|bin\/[^/]+\.js|dist\/.+\.js|config\/.+)$/;
    expect(paths.filter((p) => !allowed.test(p))).toEqual([]);
    expect(paths.filter((p) => /(^|\/)(test|bench)\/|\.test\.js$|\.ts$/.test(p))).toEqual([]);
  });

  it("needs no TypeScript tooling at run time", () => {
    expect(Object.keys(pkg.dependencies)).not.toContain("tsx");
    expect(Object.keys(pkg.dependencies)).not.toContain("typescript");
  });

  it("`switchyard --version` prints the package's version, from any directory", async () => {
    const { stdout } = await run(bin, ["--version"], { cwd: tmpdir(), timeout: 30_000 });
    expect(stdout.trim()).toBe(pkg.version);
  });
});

describe("`switchyard up` from the installed package", () => {
  let nats: TestNats;
  beforeAll(async () => {
    nats = await startTestNats({ ownServer: true });
  });
  afterAll(async () => {
    await nats?.close();
  });

  it("starts the stack on the embedded config and serves /v1/models through its gateway, then stops on SIGTERM", async () => {
    const devKey = "sk-package-test";
    const child = spawn(bin, ["up", "--gateway-listen", "127.0.0.1:0", "--data", join(work, "data")], {
      cwd: tmpdir(),
      env: { ...process.env, NATS_URL: nats.url, SWITCHYARD_DEV_API_KEY: devKey, LOG_LEVEL: "warn", SWITCHYARD_CONFIG: "" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | string>((resolve) => child.once("exit", (code, signal) => resolve(code ?? signal ?? -1)));
    try {
      const gateway = (await printed({ output: () => out, exited }, /gateway \(OpenAI API\): (http:\/\/\S+)/))[1]!;
      expect(out).toContain("Switchyard is up.");
      expect(out).toContain(`NATS_URL=${nats.url}`);
      const base = gateway.replace(/\/v1\/?$/, "");
      const res = await request(`${base}/v1/models`, { headers: { authorization: `Bearer ${devKey}` } });
      const body = (await res.body.json()) as { object: string; data: { id: string }[] };
      expect(res.statusCode).toBe(200);
      expect(body.object).toBe("list");
      expect(body.data.map((m) => m.id)).toContain("swift/mini");
    } finally {
      child.kill("SIGTERM");
    }
    expect(await exited).toBe(0);
  });
});


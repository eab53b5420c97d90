/**
 * bin/healthcheck.js, the image's HEALTHCHECK: 0 when the ops endpoint's /livez (or the path
 * or URL given) answers 2xx, 1 when it answers otherwise, is not there, or nothing says where.
 */
import { execFile } from "node:child_process";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const SCRIPT = fileURLToPath(new URL("../bin/healthcheck.js", import.meta.url));

let server: Server;
let port: number;
const seen: string[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    seen.push(req.url ?? "");
    res.writeHead(req.url === "/livez" || req.url === "/healthz" ? 200 : 503).end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
});

function check(args: string[], env: Record<string, string | undefined>): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [SCRIPT, ...args], { env: { PATH: process.env.PATH, ...env }, timeout: 10_000 }, (err, _stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stderr });
    });
    child.stdin?.end();
  });
}

describe("bin/healthcheck.js", () => {
  it("passes when /livez on SWITCHYARD_OPS_LISTEN answers 200, a wildcard host reached on loopback", async () => {
    expect((await check([], { SWITCHYARD_OPS_LISTEN: `0.0.0.0:${port}` })).code).toBe(0);
    expect(seen.at(-1)).toBe("/livez");
  });

  it("fails when the endpoint answers 503, naming the URL", async () => {
    const r = await check(["/readyz"], { SWITCHYARD_OPS_LISTEN: `127.0.0.1:${port}` });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`http://127.0.0.1:${port}/readyz answered 503`);
  });

  it("fails when nothing listens there", async () => {
    const idle = createServer();
    await new Promise<void>((resolve) => idle.listen(0, "127.0.0.1", resolve));
    const free = (idle.address() as AddressInfo).port;
    await new Promise((resolve) => idle.close(resolve));
    const r = await check([], { SWITCHYARD_OPS_LISTEN: `0.0.0.0:${free}` });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("ECONNREFUSED");
  });

  it("fails, saying why, when no ops endpoint is configured and no URL given", async () => {
    const r = await check([], { SWITCHYARD_OPS_LISTEN: undefined });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("SWITCHYARD_OPS_LISTEN");
  });

  it("checks a whole URL for a service without an ops endpoint (the sim-provider's /healthz)", async () => {
    expect((await check([`http://127.0.0.1:${port}/healthz`], {})).code).toBe(0);
  });
});

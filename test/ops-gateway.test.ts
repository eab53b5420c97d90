/**
 * The gateway's operability: one access log line per request with the route, status,
 * duration, task, model and key name (never a body or a key), request metrics by route and
 * status on the ops endpoint, and /livez and /readyz on the API port.
 */
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startGateway, type RunningGateway } from "../services/gateway/main.ts";
import { startRouter, type RunningRouter } from "../services/router/main.ts";
import { createLogger } from "../shared/log.ts";
import { createOps, startOpsServer, type OpsServer } from "../shared/ops/server.ts";
import { gatewayConfigYaml, KEYS } from "./harness/gateway.ts";
import { startStack, type TestStack } from "./harness/stack.ts";
import { parseScrape, sample } from "./harness/scrape.ts";

interface Line {
  msg: string;
  route?: string;
  method?: string;
  status?: number;
  duration_ms?: number;
  task?: string;
  model?: string;
  key?: string;
}

describe("the gateway's access log, metrics and probes", () => {
  let stack: TestStack;
  let gateway: RunningGateway;
  let router: RunningRouter;
  let server: OpsServer;
  const raw: string[] = [];
  const lines = () => raw.map((l) => JSON.parse(l) as Line).filter((l) => l.msg === "request");
  const base = () => gateway.url.replace(/\/v1$/, "");
  const SECRET_TEXT = "my card number is 4111 1111 1111 1111";

  beforeAll(async () => {
    stack = await startStack({ routers: 0, configYaml: (simUrl) => gatewayConfigYaml(simUrl) });
    const ops = createOps({ processMetrics: false });
    const quiet = createLogger("test-ops-gateway", process.env.LOG_LEVEL ?? "silent");
    server = await startOpsServer(ops, "127.0.0.1:0", quiet);
    router = await startRouter({ natsUrl: stack.nats.url, config: stack.config, logger: quiet, ops });
    const logger = pino({ level: "info" }, { write: (line: string) => void raw.push(line) });
    gateway = await startGateway({ natsUrl: stack.nats.url, config: stack.config, logger, ops });
  });

  afterAll(async () => {
    await gateway?.stop();
    await router?.stop();
    await server?.close();
    await stack?.close();
  });

  const chat = (key: string) =>
    fetch(`${gateway.url}/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json", "x-switchyard-task": "moderation" },
      body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: SECRET_TEXT }] }),
    });

  it("logs one line per request with route, status, duration, task, model and key name, and no key or body", async () => {
    const ok = await chat(KEYS.acme);
    expect(ok.status).toBe(200);
    const served = ok.headers.get("x-switchyard-model");
    await ok.text();
    const refused = await chat("sk-not-a-real-key-0123456789");
    expect(refused.status).toBe(401);
    await refused.text();
    await new Promise((r) => setTimeout(r, 50));

    const [first, second] = lines();
    expect(lines()).toHaveLength(2);
    expect(first).toMatchObject({ route: "chat", method: "POST", status: 200, task: "moderation", model: served, key: "acme" });
    expect(first!.duration_ms).toBeGreaterThan(0);
    expect(second).toMatchObject({ route: "chat", status: 401 });
    expect(second!.key).toBeUndefined();
    const all = raw.join("\n");
    for (const secret of [KEYS.acme, "sk-not-a-real-key-0123456789", SECRET_TEXT, "4111"]) expect(all).not.toContain(secret);
  });

  it("counts requests by route and status on the ops endpoint", async () => {
    const s = parseScrape(await (await fetch(`${server.url}/metrics`)).text());
    expect(sample(s, "switchyard_gateway_requests_total", { route: "chat", status: "200" })).toBe(1);
    expect(sample(s, "switchyard_gateway_requests_total", { route: "chat", status: "401" })).toBe(1);
    expect(sample(s, "switchyard_gateway_request_duration_seconds_count", { route: "chat", status: "200" })).toBe(1);
  });

  it("answers /livez and /readyz on the API port, without a key", async () => {
    for (const path of ["/livez", "/readyz"]) {
      const res = await fetch(`${base()}${path}`);
      expect(res.status).toBe(200);
      expect(await res.text()).toBe("ok\n");
    }
    const res = await fetch(`${server.url}/readyz`);
    expect(res.status).toBe(200);
  });
});

import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { DEFAULT_CONFIG_PATH, loadConfig, parseConfig } from "../shared/config/load.ts";
import { ConfigError } from "../shared/errors.ts";

const MINIMAL = `
providers:
  acme:
    dialect: openai
    base_url: http://127.0.0.1:9/v1
    api_key: \${ACME_KEY}
    models:
      small: { input_per_mtok: 0.1, output_per_mtok: 0.4, context_window: 8000 }
tasks:
  moderation:
    tiers:
      - models: [acme/small]
`;

function errorOf(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error("expected a ConfigError");
}

describe("config", () => {
  it("loads the embedded default with defaults filled in and durations parsed", () => {
    const cfg = loadConfig(DEFAULT_CONFIG_PATH, {});
    expect(Object.keys(cfg.tasks)).toEqual(expect.arrayContaining(["moderation", "classification"]));
    expect(cfg.tasks.moderation!.tiers.length).toBeGreaterThanOrEqual(2);
    expect(cfg.router.ack_wait).toBe(30_000);
    expect(cfg.streams.max_msg_size).toBe(1024 * 1024);
    expect(cfg.providers.budget!.base_url).toBe("http://127.0.0.1:8790/budget/v1");
  });

  it("substitutes ${ENV} and ${ENV:-fallback}", () => {
    const cfg = parseConfig(MINIMAL, "x.yaml", { ACME_KEY: "sk-test" });
    expect(cfg.providers.acme!.api_key).toBe("sk-test");
    const def = loadConfig(DEFAULT_CONFIG_PATH, { SIM_PROVIDER_URL: "http://10.0.0.1:1" });
    expect(def.providers.swift!.base_url).toBe("http://10.0.0.1:1/swift/v1");
  });

  it("names a missing environment variable with its file, line and path", () => {
    const err = errorOf(() => parseConfig(MINIMAL, "cfg.yaml", {}));
    expect(err.kind).toBe("config");
    expect(err.problems[0]).toMatchObject({ path: "providers.acme.api_key", line: 6 });
    expect(err.message).toContain("cfg.yaml:6:");
    expect(err.message).toContain("ACME_KEY");
  });

  it("reports an unknown model reference at the line it is on", () => {
    const text = MINIMAL.replace("models: [acme/small]", "models: [acme/small, acme/huge]");
    const err = errorOf(() => parseConfig(text, "cfg.yaml", { ACME_KEY: "k" }));
    expect(err.problems).toHaveLength(1);
    expect(err.problems[0]).toMatchObject({ path: "tasks.moderation.tiers.0.models.1", line: 12 });
    expect(err.problems[0]!.message).toContain('unknown model "acme/huge"');
  });

  it("reports a wrong type, an unknown key and a bad duration each with its own line", () => {
    const text = MINIMAL.replace("input_per_mtok: 0.1", 'input_per_mtok: "cheap"') + "router:\n  ack_wait: soon\n  max_inflight: 3\n";
    const err = errorOf(() => parseConfig(text, "cfg.yaml", { ACME_KEY: "k" }));
    const byPath = Object.fromEntries(err.problems.map((p) => [p.path, p]));
    expect(byPath["providers.acme.models.small.input_per_mtok"]?.line).toBe(8);
    expect(byPath["router.ack_wait"]?.line).toBe(14);
    expect(byPath["router.ack_wait"]?.message).toContain("not a duration");
    expect(byPath["router"]).toMatchObject({ line: 15 });
    expect(byPath["router"]!.message).toContain("max_inflight");
  });

  it("reports YAML syntax errors with their line", () => {
    const err = errorOf(() => parseConfig("providers:\n  a: [1, 2\ntasks: {}\n", "bad.yaml", {}));
    expect(err.problems[0]!.line).toBeGreaterThanOrEqual(2);
    expect(err.message).toMatch(/^bad\.yaml:\d+:\d+: /);
  });

  it("reports an unreadable file with its path", () => {
    const err = errorOf(() => loadConfig("/nonexistent/switchyard.yaml", {}));
    expect(err.message).toContain("/nonexistent/switchyard.yaml");
    expect(err.message).toContain("ENOENT");
  });

  it("rejects a weighted tier without one weight per model", () => {
    const dir = mkdtempSync(join(tmpdir(), "sy-cfg-"));
    const file = join(dir, "c.yaml");
    writeFileSync(file, MINIMAL.replace("      - models: [acme/small]", "      - strategy: weighted\n        models: [acme/small]"));
    const err = errorOf(() => loadConfig(file, { ACME_KEY: "k" }));
    expect(err.problems[0]).toMatchObject({ path: "tasks.moderation.tiers.0.weights", line: 12 });
  });
});

import { describe, expect, it } from "vitest";
import { parseConfig } from "../shared/config/load.ts";
import { routerLanes } from "../shared/config/schema.ts";
import { ConfigError } from "../shared/errors.ts";

const base = `
providers:
  p: { dialect: openai, base_url: "http://127.0.0.1:1/v1", models: { m: { input_per_mtok: 1, output_per_mtok: 1, context_window: 1000 } } }
tasks:
  t: { tiers: [{ models: [p/m] }] }
`;

describe("router.lanes: the lane shares belong to the router", () => {
  it("are read from router.lanes, default when absent", () => {
    expect(routerLanes(parseConfig(`${base}router: { lanes: { interactive_reserved: 0.5, batch_reserved: 0.2 } }\n`, "a.yaml", {}))).toEqual({ interactive_reserved: 0.5, batch_reserved: 0.2 });
    expect(routerLanes(parseConfig(base, "b.yaml", {}))).toEqual({ interactive_reserved: 0.25, batch_reserved: 0.1 });
  });

  it("still come from the deprecated gateway.lanes when router.lanes is absent", () => {
    expect(routerLanes(parseConfig(`${base}gateway: { lanes: { interactive_reserved: 0.4 } }\n`, "c.yaml", {}))).toEqual({ interactive_reserved: 0.4, batch_reserved: 0.1 });
  });

  it("set in both places is a config error naming the deprecated one", () => {
    let err: unknown;
    try {
      parseConfig(`${base}router: { lanes: { interactive_reserved: 0.5 } }\ngateway: { lanes: { interactive_reserved: 0.4 } }\n`, "d.yaml", {});
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toContain("gateway.lanes");
    expect((err as Error).message).toContain("router.lanes");
  });
});

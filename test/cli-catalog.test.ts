/**
 * The CLI's catalog (services/cli/commands/catalog.ts: names and summaries, modules loaded on
 * demand so `switchyard --help` starts fast) against the commands themselves (index.ts): the
 * same commands, in the same order, with the same summaries, each loading its own module.
 */
import { describe, expect, it } from "vitest";
import { CATALOG } from "../services/cli/commands/catalog.ts";
import { COMMANDS } from "../services/cli/commands/index.ts";

describe("the CLI catalog", () => {
  it("lists every command, in help order, with the command's own summary", () => {
    expect(CATALOG.map((c) => [c.name, c.summary])).toEqual(COMMANDS.map((c) => [c.name, c.summary]));
  });

  it.each(CATALOG.map((c) => [c.name, c] as const))("`%s` loads the command of that name", async (name, entry) => {
    const command = await entry.load();
    expect(command).toBe(COMMANDS.find((c) => c.name === name));
  });
});

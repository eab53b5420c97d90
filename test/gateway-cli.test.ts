/**
 * The gateway as a user meets it: `switchyard up` with SWITCHYARD_DEV_API_KEY prints the
 * gateway's URL and accepts that key, and `switchyard gateway hash-key` prints the digest a
 * config stores.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hashKey } from "../services/gateway/auth.ts";
import { startTestNats, type TestNats } from "./harness/nats.ts";
import { spawnCli } from "./harness/processes.ts";

let nats: TestNats;
let data: string;

beforeAll(async () => {
  nats = await startTestNats({ ownServer: true });
  data = await mkdtemp(join(tmpdir(), "switchyard-up-"));
});
afterAll(async () => {
  await nats?.close();
  await rm(data, { recursive: true, force: true });
});

describe("switchyard up with the gateway", () => {
  it("prints the gateway URL and accepts SWITCHYARD_DEV_API_KEY with no config edit", async () => {
    const up = spawnCli(["up", "--sim-port", "0", "--gateway-listen", "127.0.0.1:0", "--data", data], { NATS_URL: nats.url, SWITCHYARD_DEV_API_KEY: "sk-local-trial" });
    try {
      let url: string | undefined;
      await expect
        .poll(
          () => {
            url = /gateway \(OpenAI API\): (http:\/\/\S+)/.exec(up.output())?.[1];
            return url;
          },
          { timeout: 30_000, interval: 100 },
        )
        .toBeDefined();
      const client = new OpenAI({ baseURL: url, apiKey: "sk-local-trial", maxRetries: 0 });
      const completion = await client.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "system", content: "You are a content moderation classifier." }, { role: "user", content: "have a nice day" }] });
      expect(JSON.parse(completion.choices[0]!.message.content!)).toMatchObject({ flagged: false });
      await expect(new OpenAI({ baseURL: url, apiKey: "sk-other", maxRetries: 0 }).models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
      expect(up.output()).not.toContain("sk-local-trial");
    } finally {
      up.child.kill("SIGTERM");
    }
    expect(await up.exited).toBe(0);
  });

  it("gateway hash-key prints the SHA-256 a config stores, reading the key from an argument", async () => {
    const cli = spawnCli(["gateway", "hash-key", "sk-some-key"], {});
    expect(await cli.exited).toBe(0);
    expect(cli.output().trim()).toBe(hashKey("sk-some-key"));
  });
});

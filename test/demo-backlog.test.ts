/**
 * The demo (`npm start`) as a user runs it, made small: after the main run it publishes a
 * nightly backlog due in 24 h, which the embedded config sends through the simulated
 * providers' batch APIs; the demo prints the backlog's bill against live prices, loses
 * nothing, and exits 0.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { natsServersUnder, spawnCli } from "./harness/processes.ts";

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) {
    for (const pid of natsServersUnder(d)) process.kill(pid, "SIGKILL");
    await rm(d, { recursive: true, force: true });
  }
});

it("runs a nightly backlog through provider batches at about half the live bill, losing nothing", async () => {
  const tmp = await mkdtemp(join(tmpdir(), "switchyard-demo-backlog-"));
  dirs.push(tmp);
  // The demo starts its own nats-server: NATS_URL must not point it at another.
  const demo = spawnCli(["demo", "--jobs-per-task", "30", "--rate", "200", "--backlog", "40"], { TMPDIR: tmp, NATS_URL: "", LOG_LEVEL: "error" });
  expect(await demo.exited).toBe(0);
  const out = demo.output();
  expect(out).toMatch(/A nightly backlog: 40 moderation jobs due in 24 h/);
  const served = /served by a provider batch\s+(\d+) \(in (\d+) batch/.exec(out);
  expect(served).not.toBeNull();
  expect(Number(served![1])).toBeGreaterThan(30);
  const billed = Number(/^billed\s+\$([\d.]+)/m.exec(out)![1]);
  const live = Number(/the same answers at live prices\s+\$([\d.]+)/.exec(out)![1]);
  expect(billed).toBeGreaterThan(0);
  expect(billed / live).toBeLessThan(0.6);
  expect(out.match(/lost = published − results − dead letters\s+0/g)).toHaveLength(2);
}, 120_000);

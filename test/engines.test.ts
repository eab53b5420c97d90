/**
 * package.json's `engines` is a promise: every Node it admits runs Switchyard, and `npm ci`
 * on it warns about nothing. So no runtime dependency in the lockfile may ask for a newer Node
 * than our floor (as @nats-io/nuid 3.0.0 did with ">= 22.x"; package.json pins 2.0.3 through
 * `overrides`, see README "The two commands").
 *
 * Dev-only tools are left out: vitest, vite and rolldown exclude a few lines our range admits
 * (Node 21, 22.0–22.11, 23), none of which the image or CI runs, and they are not installed in
 * the image (`npm ci --omit=dev`).
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";

const ROOT = new URL("../", import.meta.url);
const pkg = JSON.parse(readFileSync(new URL("package.json", ROOT), "utf8")) as { engines: { node: string } };
const lock = JSON.parse(readFileSync(new URL("package-lock.json", ROOT), "utf8")) as {
  packages: Record<string, { version?: string; dev?: boolean; engines?: { node?: string } | string[] }>;
};

/** The lowest Node a lower-bound range (">=20.19", ">= 18.x", ">=20.18.1") admits, or undefined for any other form. */
function floorOf(range: string): [number, number, number] | undefined {
  const m = /^>=\s*(\d+)(?:\.(\d+|x))?(?:\.(\d+|x))?$/.exec(range.trim());
  if (!m) return undefined;
  const n = (s: string | undefined) => (s === undefined || s === "x" ? 0 : Number(s));
  return [n(m[1]), n(m[2]), n(m[3])];
}

const atMost = (a: readonly number[], b: readonly number[]) => {
  for (let i = 0; i < 3; i++) if (a[i] !== b[i]) return a[i]! < b[i]!;
  return true;
};

describe("engines", () => {
  it("package.json promises a lower bound on Node", () => {
    expect(floorOf(pkg.engines.node), pkg.engines.node).toBeDefined();
  });

  it("every runtime dependency in the lockfile accepts every Node package.json admits", () => {
    const ours = floorOf(pkg.engines.node)!;
    const disagree: string[] = [];
    for (const [path, entry] of Object.entries(lock.packages)) {
      if (path === "" || entry.dev) continue;
      const node = Array.isArray(entry.engines) ? undefined : entry.engines?.node;
      if (node === undefined) continue;
      // Admits every Node from our floor up when one of its alternatives is a lower bound at or below it
      // ("^8.16.0 || ^10.6.0 || >=11.0.0": the others only add older lines).
      const floors = node.split("||").map(floorOf);
      if (!floors.some((f) => f !== undefined && atMost(f, ours))) disagree.push(`${path}@${entry.version} wants node "${node}", package.json says "${pkg.engines.node}"`);
    }
    expect(disagree).toEqual([]);
  });
});

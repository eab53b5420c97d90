/**
 * Summarises a V8 CPU profile (`npm run bench -- --cpu-prof` writes one per router worker
 * into bench/out/profiles): where the samples fall by package or project folder, and the
 * functions with the most self and inclusive time. Idle and GC are listed separately, so
 * the shares of the rest are shares of the busy time.
 *
 *   npx tsx bench/profile-summary.ts <file.cpuprofile> [--top 25]
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const { values, positionals } = parseArgs({ options: { top: { type: "string", default: "25" } }, allowPositionals: true });
const file = positionals[0];
if (!file) {
  process.stderr.write("usage: tsx bench/profile-summary.ts <file.cpuprofile> [--top 25]\n");
  process.exit(2);
}
const top = Number(values.top);
const profile = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;

const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

/** A package name for node_modules code, the project path otherwise, or the V8 pseudo-frame. */
function area(url: string, name: string): string {
  if (!url) return `(${name || "native"})`;
  const nm = url.lastIndexOf("node_modules/");
  if (nm >= 0) {
    const rest = url.slice(nm + "node_modules/".length).split("/");
    return rest[0]!.startsWith("@") ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  if (url.startsWith("node:")) return "node:*";
  const m = /\/(services|shared|bench)\/(.*)$/.exec(url);
  return m ? `${m[1]}/${m[2]}` : url;
}
const label = (n: ProfileNode) => {
  const f = n.callFrame;
  return `${f.functionName || "(anonymous)"}  ${area(f.url, f.functionName)}:${f.lineNumber + 1}`;
};

const self = new Map<string, number>();
const inclusive = new Map<string, number>();
const areas = new Map<string, number>();
let total = 0;
let idle = 0;
let gc = 0;
profile.samples.forEach((id, i) => {
  const dt = profile.timeDeltas[i] ?? 0;
  const node = byId.get(id)!;
  const name = node.callFrame.functionName;
  total += dt;
  if (name === "(idle)") return void (idle += dt);
  if (name === "(garbage collector)") gc += dt;
  self.set(label(node), (self.get(label(node)) ?? 0) + dt);
  const a = area(node.callFrame.url, name);
  areas.set(a, (areas.get(a) ?? 0) + dt);
  const seen = new Set<string>();
  for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
    const l = label(byId.get(cur)!);
    if (seen.has(l)) continue;
    seen.add(l);
    inclusive.set(l, (inclusive.get(l) ?? 0) + dt);
  }
});

const busy = total - idle;
const pct = (us: number) => `${((100 * us) / busy).toFixed(1).padStart(5)} %`;
const print = (title: string, m: Map<string, number>) => {
  process.stdout.write(`\n${title}\n`);
  for (const [k, us] of [...m].sort((a, b) => b[1] - a[1]).slice(0, top)) process.stdout.write(`${pct(us)}  ${k}\n`);
};
process.stdout.write(`${file}\nsampled ${(total / 1e6).toFixed(2)} s: busy ${(busy / 1e6).toFixed(2)} s, idle ${(idle / 1e6).toFixed(2)} s; GC ${pct(gc).trim()} of busy\n`);
print("busy time by area (self)", areas);
print("functions by self time", self);
print("functions by inclusive time", new Map([...inclusive].filter(([k]) => !k.startsWith("(root)"))));

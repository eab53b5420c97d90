/**
 * The chaos scenarios. Each starts its own world (stack.ts), publishes a paced batch while
 * injecting its faults, then checks the exactly-once invariant (invariant.ts) plus its own
 * checks. `fast` sizes run inside `npm test`; `full` sizes make up `npm run chaos`.
 */
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { jobSubject, STREAMS } from "../../shared/contract/subjects.ts";
import { scan } from "../../shared/nats/read.ts";
import { checkInvariant, type Outcome, type Verdict } from "./invariant.ts";
import { replicasCurrent, streamLeader } from "./nats.ts";
import { moderationJob, startChaosStack, type ChaosStack, type OutgoingJob } from "./stack.ts";

export type Size = "fast" | "full";

export interface Check {
  readonly name: string;
  readonly ok: boolean;
  readonly detail: string;
}

export interface ScenarioReport extends Omit<Verdict, "outcomes"> {
  readonly name: string;
  readonly faultsInjected: number;
  /** What the faults were, for the report. */
  readonly faultNote: string;
  readonly checks: readonly Check[];
  readonly wallMs: number;
}

export interface Scenario {
  readonly name: string;
  /** One line for the report: what is done to the system. */
  readonly title: string;
  run(size: Size): Promise<ScenarioReport>;
}

/** Runs `body` in a fresh stack and turns the verdict into a report; the stack is always torn down. */
async function inStack(
  name: string,
  opts: Parameters<typeof startChaosStack>[0],
  body: (s: ChaosStack) => Promise<{ faultNote: string; faultsInjected?: number; checks?: (o: readonly Outcome[]) => Check[] | Promise<Check[]>; canary?: boolean }>,
): Promise<ScenarioReport> {
  const t0 = Date.now();
  const stack = await startChaosStack(opts);
  try {
    const r = await body(stack);
    const { outcomes, ...verdict } = await checkInvariant(stack, { canary: r.canary });
    if (process.env.CHAOS_DUMP) writeFileSync(process.env.CHAOS_DUMP, JSON.stringify(outcomes));
    const checks = r.checks ? await r.checks(outcomes) : [];
    return { name, ...verdict, faultsInjected: r.faultsInjected ?? stack.faults.length, faultNote: r.faultNote, checks, wallMs: Date.now() - t0 };
  } finally {
    await stack.close();
  }
}

const ids = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}-${i}`);

/** Runs `faults` while `publishing` is in flight, then waits for both. */
async function during(publishing: Promise<void>, faults: () => Promise<void>): Promise<void> {
  let failed: unknown;
  const p = publishing.catch((err: unknown) => {
    failed = err;
  });
  await faults();
  await p;
  if (failed) throw failed;
}

export const workerKills: Scenario = {
  name: "worker-kills",
  title: "router workers SIGKILLed mid-batch, all at once and then one at a time, each restarted",
  run: (size) => {
    const n = size === "full" ? 6000 : 800;
    const rate = size === "full" ? 200 : 130;
    const workers = size === "full" ? 3 : 2;
    return inStack("worker-kills", { workers }, async (s) => {
      let kills = 0;
      let publishing = true;
      const batch = s.publish(ids("wk", n).map((id) => moderationJob(id)), rate).finally(() => (publishing = false));
      await during(batch, async () => {
        await sleep(1_000);
        // Every worker at once: nobody serves until they are back, and all their jobs wait for ack_wait.
        s.fault("SIGKILL all workers");
        await Promise.all(s.workers.map((_, i) => s.killWorker(i)));
        kills += workers;
        await Promise.all(s.workers.map((_, i) => s.startWorker(i)));
        for (let r = 0; publishing; r++) {
          await sleep(500);
          const i = r % workers;
          s.fault(`SIGKILL worker ${i}`);
          await s.killWorker(i);
          kills++;
          await s.startWorker(i);
        }
      });
      return { faultNote: `${kills} SIGKILLs (all ${workers} workers at once, then one at a time), each restarted`, faultsInjected: kills };
    });
  },
};

export const natsRestart: Scenario = {
  name: "nats-restart",
  title: "the single nats-server (file storage) SIGKILLed mid-batch and restarted on the same store",
  run: (size) => {
    const n = size === "full" ? 4000 : 600;
    const rate = size === "full" ? 200 : 150;
    return inStack("nats-restart", { workers: 2 }, async (s) => {
      const node = s.nats.nodes[0]!;
      const kills = size === "full" ? 3 : 1;
      const publishing = s.publish(ids("ns", n).map((id) => moderationJob(id)), rate);
      await during(publishing, async () => {
        for (let k = 0; k < kills; k++) {
          await sleep(size === "full" ? 3_000 : 1_500);
          s.fault("SIGKILL nats-server");
          await s.nats.kill(node);
          await sleep(1_500);
          await s.nats.restart(node);
          await s.nats.ready();
        }
      });
      return { faultNote: `${kills} server kill(s), 1.5 s down each; ${s.tally.retries} publishes retried` };
    });
  },
};

export const clusterLeaderKills: Scenario = {
  name: "cluster-leaders",
  title: "3-node JetStream cluster, streams R3: the JOBS leader's server killed mid-batch, then the new leader's",
  run: (size) => {
    const n = size === "full" ? 3000 : 500;
    const rate = size === "full" ? 100 : 80;
    const kills = size === "full" ? 3 : 2;
    return inStack("cluster-leaders", { workers: 2, nodes: 3 }, async (s) => {
      const elections: number[] = [];
      const publishing = s.publish(ids("cl", n).map((id) => moderationJob(id)), rate);
      await during(publishing, async () => {
        let previous: string | undefined;
        for (let k = 0; k < kills; k++) {
          await sleep(3_000);
          await replicasCurrent(s.jsm, s.nats, STREAMS.jobs);
          const leader = await streamLeader(s.jsm, s.nats, STREAMS.jobs, 30_000);
          if (leader.name === previous) throw new Error("the killed leader was elected again before the next kill");
          s.fault(`SIGKILL JOBS leader ${leader.name}`);
          const t = Date.now();
          await s.nats.kill(leader);
          await streamLeader(s.jsm, s.nats, STREAMS.jobs, 30_000, leader.name);
          elections.push(Date.now() - t);
          previous = leader.name;
          // Back before the next kill: one node down of three keeps a quorum, two would not.
          await s.nats.restart(leader);
          await s.nats.ready();
        }
      });
      return {
        faultNote: `${kills} kills of the JOBS leader's server, each time the newly elected one; elections took ${elections.map((e) => `${(e / 1000).toFixed(1)} s`).join(", ")}; ${s.tally.retries} publishes retried`,
        checks: async () => {
          const info = await s.jsm.streams.info(STREAMS.jobs);
          return [{ name: "JOBS is R3 with every replica current", ok: (info.cluster?.replicas ?? []).every((r) => r.current) && info.config.num_replicas === 3, detail: JSON.stringify(info.cluster?.replicas?.map((r) => [r.name, r.current])) }];
        },
      };
    });
  },
};

/** Dead letters so far whose id starts with `prefix`. */
async function deadLettered(s: ChaosStack, prefix: string): Promise<number> {
  const info = await s.jsm.streams.info(STREAMS.dlq);
  if (info.state.messages === 0) return 0;
  let n = 0;
  for await (const m of scan(s.js, STREAMS.dlq, { lastSeq: info.state.last_seq, headersOnly: true })) if (m.msgId?.startsWith(prefix)) n++;
  return n;
}

const MODELS = [
  ["budget", "budget-lite"],
  ["swift", "swift-mini"],
  ["premium", "premium-large"],
] as const;

export const providerStorms: Scenario = {
  name: "provider-storms",
  title: "sim-provider storms: 503 bursts, 429 + Retry-After, hangs past the timeout, resets, truncated and non-JSON bodies, slow bodies, all down",
  run: (size) => {
    const n = size === "full" ? 4000 : 700;
    const rate = size === "full" ? 150 : 120;
    const phaseMs = size === "full" ? 2_500 : 700;
    return inStack("provider-storms", { workers: 2 }, async (s) => {
      const sim = s.sim;
      const phases: [string, () => void][] = [
        ["503 burst on budget and swift", () => {
          sim.control("budget", "budget-lite", { outage: "503" });
          sim.control("swift", "swift-mini", { outage: "503" });
        }],
        ["429 with Retry-After 1 s", () => {
          sim.control("budget", "budget-lite", { outage: "429", errors: { retry_after_s: 1 } });
          sim.control("swift", "swift-mini", { errors: { rate_429: 0.5, retry_after_s: 1 } });
        }],
        ["hangs past the 1 s timeout", () => {
          sim.control("budget", "budget-lite", { errors: { rate_hang: 0.5 }, hang_ms: 5_000 });
          sim.control("swift", "swift-mini", { errors: { rate_hang: 0.2 }, hang_ms: 5_000 });
        }],
        ["connection resets", () => {
          sim.control("budget", "budget-lite", { errors: { rate_reset: 0.5 } });
          sim.control("swift", "swift-mini", { errors: { rate_reset: 0.3 } });
        }],
        ["truncated and non-JSON bodies", () => {
          sim.control("budget", "budget-lite", { errors: { rate_truncated: 0.3, rate_malformed: 0.3 } });
          sim.control("swift", "swift-mini", { errors: { rate_malformed: 0.3 } });
        }],
        ["slow bodies (3 s, dripped)", () => {
          sim.control("budget", "budget-lite", { errors: { rate_slow_body: 0.5 }, slow_body_ms: 3_000 });
        }],
      ];
      // Every provider down costs a local cooldown (5 s) to recover from: only at full size.
      if (size === "full") phases.push(["every provider down (503)", () => {
        for (const [p, m] of MODELS) sim.control(p, m, { outage: "503" });
      }]);
      let providerFaults = 0;
      const count = () => {
        for (const c of Object.values(sim.stats().models)) {
          providerFaults += c.hangs + c.resets + c.malformed + c.truncated + c.slow;
          for (const [status, k] of Object.entries(c.responses)) if (status !== "200") providerFaults += k;
        }
        sim.reset();
      };
      const publishing = s.publish(ids("st", n).map((id) => moderationJob(id)), rate);
      await during(publishing, async () => {
        for (const [what, apply] of phases) {
          count();
          s.fault(what);
          apply();
          await sleep(phaseMs);
        }
        count();
      });
      return { faultNote: `${phases.length} phases of ${phaseMs / 1000} s; ${providerFaults} faulty provider answers`, faultsInjected: providerFaults };
    });
  },
};

export const pricingRestarts: Scenario = {
  name: "pricing-restarts",
  title: "the pricing service (`switchyard pricing`) SIGKILLed mid-batch and restarted, twice",
  run: (size) => {
    const n = size === "full" ? 2000 : 400;
    const rate = size === "full" ? 150 : 130;
    return inStack("pricing-restarts", { workers: 2 }, async (s) => {
      const startPricing = async () => {
        const p = s.spawn(["pricing"]);
        const deadline = Date.now() + 30_000;
        while (!p.output().includes("pricing service started")) {
          if (p.child.exitCode !== null || Date.now() > deadline) throw new Error(`pricing did not start:\n${p.output().slice(-2000)}`);
          await sleep(50);
        }
        return p;
      };
      let pricing = await startPricing();
      const publishing = s.publish(ids("pr", n).map((id) => moderationJob(id)), rate);
      await during(publishing, async () => {
        for (let k = 0; k < 2; k++) {
          await sleep(size === "full" ? 2_000 : 800);
          s.fault("SIGKILL pricing");
          pricing.child.kill("SIGKILL");
          await pricing.exited;
          await sleep(size === "full" ? 1_500 : 500);
          pricing = await startPricing();
        }
      });
      return { faultNote: "2 kills, restarted after 1.5 s (its lease lapses, the new one takes over)" };
    });
  },
};

/** A job whose JSON is exactly `bytes` long (for the router.max_job_bytes edge). */
function jobOfSize(id: string, bytes: number): string {
  const base = JSON.stringify({ id, request: { messages: [{ role: "user", content: "" }] } });
  return JSON.stringify({ id, request: { messages: [{ role: "user", content: "a".repeat(bytes - Buffer.byteLength(base)) }] } });
}

function deep(depth: number): string {
  return `${"[".repeat(depth)}${"]".repeat(depth)}`;
}

/** router.max_job_bytes of the chaos config (the default). */
const MAX_JOB_BYTES = 256 * 1024;

/**
 * Hostile producers. Every payload carries a Nats-Msg-Id except the id-less ones, which go
 * through core NATS as `nats pub` would; each must still end as exactly one outcome.
 */
export function hostileJobs(size: Size): OutgoingJob[] {
  const scale = size === "full" ? 1 : 0.2;
  const k = (n: number) => Math.max(1, Math.round(n * scale));
  const mod = jobSubject("moderation");
  const jobs: OutgoingJob[] = [];
  const raw = (id: string, data: string | Uint8Array, subject = mod, expectId: string | null = id) => jobs.push({ subject, data, msgId: id, expectId: expectId ?? undefined });
  for (const id of ids("ok", k(500))) jobs.push(moderationJob(id));
  for (const id of ids("bytes", k(200))) raw(id, randomBytes(1 + (id.length * 37) % 2000));
  for (const id of ids("text", k(50))) raw(id, `{"id": "${id}", "request": {`);
  const wrong: (Record<string, unknown> | unknown[] | null)[] = [
    { id: 42, request: { messages: [{ role: "user", content: "x" }] } },
    { request: "say hi" },
    { request: { messages: "hi" } },
    { request: { messages: [] } },
    { request: { messages: [{ role: "robot", content: "x" }] } },
    { request: { messages: [{ role: "user", content: 42 }] } },
    { request: { messages: [{ role: "user", content: "x" }], temperature: "hot" } },
    { request: { messages: [{ role: "user", content: "x" }], max_tokens: -1 } },
    { request: { messages: [{ role: "user", content: "x" }], stream: true } },
    { request: { messages: [{ role: "user", content: "x" }] }, metadata: ["not", "an", "object"] },
    { request: { messages: [{ role: "user", content: "x" }] }, deadline: "tomorrow" },
    { request: { messages: [{ role: "user", content: "x" }] }, task: "classification" },
    { request: { messages: [{ role: "user", content: "x" }] }, routing: { strategy: "cheapest", surprise: true } },
    [1, 2, 3],
    null,
  ];
  for (const id of ids("wrong", k(300))) {
    const i = Number(id.slice(6));
    const body = wrong[i % wrong.length]!;
    // Where the body's id is unusable (42) the dead letter takes the header's, which is the same.
    raw(id, JSON.stringify(Array.isArray(body) || body === null ? body : { ...body, id: body.id ?? id }));
  }
  for (const id of ids("unknown", k(200))) {
    raw(id, JSON.stringify({ id, request: { messages: [{ role: "user", content: "hello", x_note: "kept" }], x_vendor: { a: 1 } }, x_top: [1, 2], metadata: { nested: { a: { b: { c: [1, { d: 2 }] } } } } }));
  }
  // Nesting: 32 levels in metadata is served; 10,000 (where serialising overflows the stack) is a dead letter, in metadata or as the payload.
  for (const id of ids("nested", k(20))) raw(id, JSON.stringify({ id, request: { messages: [{ role: "user", content: "x" }] }, metadata: { deep: JSON.parse(deep(32)) } }));
  for (const id of ids("deepmeta", k(10))) raw(id, JSON.stringify({ id, request: { messages: [{ role: "user", content: "x" }] } }).replace(/}$/, `,"metadata":{"deep":${deep(10_000)}}}`));
  for (const id of ids("deeparray", k(10))) raw(id, deep(10_000));
  // Ids at the edges of the contract.
  raw("x".repeat(128), JSON.stringify({ id: "x".repeat(128), request: { messages: [{ role: "user", content: "x" }] } }));
  raw("unicode-ü-✓-🚀", JSON.stringify({ id: "unicode-ü-✓-🚀", request: { messages: [{ role: "user", content: "x" }] } }));
  raw("too-long-id", JSON.stringify({ id: "y".repeat(129), request: { messages: [{ role: "user", content: "x" }] } }));
  // A line break cannot be a Nats-Msg-Id: the job is invalid, and its dead letter takes the header's id.
  raw("newline-id", JSON.stringify({ id: "line\nbreak", request: { messages: [{ role: "user", content: "x" }] } }));
  // Sizes: exactly at router.max_job_bytes (served), one byte over (dead letter), over the stream's max_msg_size (refused at publish).
  for (const id of ids("atlimit", k(10))) raw(id, jobOfSize(id, MAX_JOB_BYTES));
  for (const id of ids("overlimit", k(10))) raw(id, jobOfSize(id, MAX_JOB_BYTES + 1));
  for (const id of ids("oversize", k(3))) raw(id, jobOfSize(id, 1024 * 1024 + 10), mod, null);
  // Unknown task, and a subject deeper than jobs.<task>.
  for (const id of ids("notask", k(20))) raw(id, JSON.stringify({ id, request: { messages: [{ role: "user", content: "x" }] } }), jobSubject("no-such-task"));
  for (const id of ids("deepsubj", k(10))) raw(id, JSON.stringify({ id, request: { messages: [{ role: "user", content: "x" }] } }), "jobs.a.b");
  // The same id thousands of times: with its Nats-Msg-Id (JOBS keeps one), and under fresh message ids (RESULTS keeps one).
  const same = JSON.stringify({ id: "same-header", request: { messages: [{ role: "user", content: "x" }] } });
  for (let i = 0; i < k(2000); i++) raw("same-header", same);
  const sameBody = JSON.stringify({ id: "same-body", request: { messages: [{ role: "user", content: "x" }] } });
  for (let i = 0; i < k(2000); i++) jobs.push({ subject: mod, data: sameBody, msgId: `same-body#${i}`, expectId: "same-body" });
  // No id anywhere: core NATS, no header.
  for (let i = 0; i < k(10); i++) jobs.push({ subject: mod, data: JSON.stringify({ request: { messages: [{ role: "user", content: "anonymous" }] } }), expectId: undefined, core: true });
  for (let i = 0; i < k(5); i++) jobs.push({ subject: mod, data: randomBytes(64), expectId: undefined, core: true });
  // Interleave, so hostile payloads arrive between good jobs rather than as one block.
  return shuffle(jobs, 5);
}

function shuffle<T>(xs: T[], seed: number): T[] {
  let a = seed;
  const rnd = () => {
    a = (a * 1103515245 + 12345) & 0x7fffffff;
    return a / 0x7fffffff;
  };
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [xs[i], xs[j]] = [xs[j]!, xs[i]!];
  }
  return xs;
}

export const hostile: Scenario = {
  name: "hostile-jobs",
  title: "hostile producers: random bytes, deep nesting, wrong types, unknown fields, sizes at and over the limits, thousands of one id, no id at all",
  run: (size) =>
    inStack("hostile-jobs", { workers: 2 }, async (s) => {
      const jobs = hostileJobs(size);
      await s.publish(jobs, size === "full" ? 600 : 400);
      const refused = s.tally.refused.length;
      return {
        faultNote: `${jobs.length} payloads, ${jobs.filter((j) => !j.msgId?.startsWith("ok-")).length} of them hostile; ${refused} refused by JOBS at publish (over max_msg_size)`,
        faultsInjected: jobs.length,
        checks: (outcomes) => {
          const by = new Map(outcomes.map((o) => [o.id, o]));
          const reasonOf = (id: string) => (by.get(id)?.kind === "dlq" ? String(by.get(id)!.body.reason) : by.get(id)?.kind);
          const expectIds = (prefix: string, want: string) => {
            const bad = [...s.expected].filter((id) => id.startsWith(prefix) && reasonOf(id) !== want);
            return { name: `${prefix}* → ${want}`, ok: bad.length === 0, detail: bad.length ? `${bad.length} not: ${bad.slice(0, 3).map((id) => `${id}=${reasonOf(id)}`).join(", ")}` : "" };
          };
          return [
            expectIds("bytes-", "invalid_job"),
            expectIds("wrong-", "invalid_job"),
            expectIds("unknown-", "result"),
            expectIds("nested-", "result"),
            expectIds("deepmeta-", "invalid_job"),
            expectIds("newline-id", "invalid_job"),
            expectIds("deeparray-", "invalid_job"),
            expectIds("atlimit-", "result"),
            expectIds("overlimit-", "invalid_job"),
            expectIds("notask-", "no_route"),
            expectIds("deepsubj-", "invalid_job"),
            expectIds("too-long-id", "invalid_job"),
            expectIds("x".repeat(128), "result"),
            expectIds("unicode-", "result"),
            { name: "over max_msg_size refused at publish", ok: s.tally.refused.length === jobs.filter((j) => j.msgId?.startsWith("oversize-")).length, detail: `${s.tally.refused.length} refused` },
            { name: "2,000 × one Nats-Msg-Id stored once", ok: s.tally.duplicates >= jobs.filter((j) => j.msgId === "same-header").length - 1, detail: `${s.tally.duplicates} duplicate acks` },
          ];
        },
      };
    }),
};

export const deadlines: Scenario = {
  name: "deadlines",
  title: "deadlines and the delivery budget under faults: slow and failing providers, a worker SIGKILLed",
  run: (size) => {
    const n = size === "full" ? 1000 : 200;
    const rate = size === "full" ? 100 : 80;
    const budgetJobs = size === "full" ? 30 : 10;
    return inStack("deadlines", { workers: 2 }, async (s) => {
      const sim = s.sim;
      sim.control("budget", "budget-lite", { latency_ms: { min: 200, max: 900 } });
      sim.control("premium", "premium-large", { outage: "503" });
      // Only premium may serve these, and it is down: every delivery fails until the budget is spent.
      const publishedAt = Date.now();
      await s.publish(ids("budget", budgetJobs).map((id) => moderationJob(id, { routing: { allow_providers: ["premium"] } })), 0);
      const due = new Map<string, number>();
      const publishing = (async () => {
        const t0 = Date.now();
        for (let i = 0; i < n; i++) {
          // Deadlines from 0.3 s to 3 s after publishing: some can be served in time, some cannot.
          const deadline = Date.now() + 300 + ((i * 7919) % 2700);
          due.set(`dl-${i}`, deadline);
          await s.publish([moderationJob(`dl-${i}`, { deadline: new Date(deadline).toISOString() })], 0);
          const ahead = ((i + 1) / rate) * 1000 - (Date.now() - t0);
          if (ahead > 1) await sleep(ahead);
        }
      })();
      await during(publishing, async () => {
        for (let k = 0; k < (size === "full" ? 5 : 2); k++) {
          await sleep(700);
          const down = k % 2 === 0;
          s.fault(down ? "swift 503 outage" : "swift back");
          sim.control("swift", "swift-mini", { outage: down ? "503" : null });
          if (k === 1) {
            s.fault("SIGKILL worker 0");
            await s.killWorker(0);
            await s.startWorker(0);
          }
        }
      });
      // Premium stays down until the all-down jobs have spent their budget, or they would be served.
      const budgetDone = Date.now() + 30_000;
      while ((await deadLettered(s, "budget-")) < budgetJobs && Date.now() < budgetDone) await sleep(250);
      sim.control("swift", "swift-mini", { outage: null });
      sim.control("premium", "premium-large", { outage: null });
      sim.control("budget", "budget-lite", { latency_ms: { min: 5, max: 30 } });
      return {
        faultNote: "budget slow (200–900 ms), swift 503 on and off, premium down, 1 worker SIGKILL",
        checks: (outcomes) => {
          const late: string[] = [];
          const wrongReason: string[] = [];
          const budgetWrong: string[] = [];
          let served = 0;
          let expired = 0;
          const minSpanMs = 0.8 * (250 + 500 + 1000 + 1000);
          for (const o of outcomes) {
            const deadline = due.get(o.id);
            if (deadline !== undefined && o.kind === "result") {
              served++;
              const over = Date.parse(String(o.body.completed_at)) - deadline;
              if (over > 0) late.push(`${o.id} by ${over} ms`);
            } else if (deadline !== undefined) {
              expired++;
              if (o.body.reason !== "deadline_exceeded" && o.body.reason !== "exhausted") wrongReason.push(`${o.id}=${String(o.body.reason)}`);
            } else if (o.id.startsWith("budget-")) {
              const took = o.time - publishedAt;
              if (o.kind !== "dlq" || o.body.reason !== "exhausted" || !String(o.body.error).includes("All 5 deliveries failed") || took < minSpanMs) {
                budgetWrong.push(`${o.id}: ${o.kind} ${String(o.body.reason ?? "")} after ${took} ms`);
              }
            }
          }
          return [
            { name: "no result completed after its deadline", ok: late.length === 0, detail: late.length ? late.slice(0, 3).join(", ") : `${served} served in time, ${expired} dead-lettered` },
            { name: "jobs not served in time are dead-lettered deadline_exceeded (or exhausted)", ok: wrongReason.length === 0, detail: wrongReason.slice(0, 3).join(", ") },
            { name: "all-down jobs: 5 deliveries, backoff ≥ 0.8 × (250+500+1000+1000) ms, then exhausted", ok: budgetWrong.length === 0, detail: budgetWrong.slice(0, 3).join("; ") },
          ];
        },
      };
    });
  },
};

/**
 * The exactly-once invariant, checked from the streams themselves after a scenario:
 *   every published id appears exactly once in RESULTS ∪ DLQ (lost = 0, duplicated = 0),
 *   no id appears twice in either stream, none in both,
 *   no job is left unacknowledged,
 *   and the workers still serve (a canary batch after the faults).
 */
import { setTimeout as sleep } from "node:timers/promises";
import { ROUTER_DURABLE, STREAMS } from "../../shared/contract/subjects.ts";
import { scan } from "../../shared/nats/read.ts";
import { drained, moderationJob, type ChaosStack, type Fault } from "./stack.ts";

export interface Outcome {
  readonly id: string;
  readonly kind: "result" | "dlq";
  /** When the stream stored it (ms since the epoch). */
  readonly time: number;
  readonly body: Record<string, unknown>;
}

export async function readOutcomes(stack: ChaosStack): Promise<Outcome[]> {
  const out: Outcome[] = [];
  for (const [stream, kind] of [[STREAMS.results, "result"], [STREAMS.dlq, "dlq"]] as const) {
    const info = await stack.jsm.streams.info(stream);
    if (info.state.messages === 0) continue;
    for await (const m of scan(stack.js, stream, { lastSeq: info.state.last_seq })) {
      const body = JSON.parse(Buffer.from(m.data).toString("utf8")) as Record<string, unknown>;
      out.push({ id: String(body.id), kind, time: m.time, body });
    }
  }
  return out.sort((a, b) => a.time - b.time);
}

export interface Verdict {
  /** Messages JOBS stored during the scenario, replays included, the canary batch not (a retried publish is one). */
  readonly published: number;
  readonly results: number;
  readonly deadLetters: number;
  /** Dead letters by reason. */
  readonly reasons: Readonly<Record<string, number>>;
  /** Expected ids with no outcome. */
  readonly lost: number;
  /** Outcomes beyond the first per id: twice in RESULTS, twice in DLQ, or in both. */
  readonly duplicated: number;
  /** Outcomes whose id nobody published, beyond one per id-less job (a redelivered id-less job would show here). */
  readonly unexpected: number;
  /** Jobs still unacknowledged when the scenario gave up waiting. */
  readonly unacked: number;
  /** The canary batch was served after the faults. */
  readonly serving: boolean;
  /** Longest stretch without any outcome after a fault, while jobs were waiting (ms); undefined when no fault was timed. */
  readonly worstRecoveryMs: number | undefined;
  readonly outcomes: readonly Outcome[];
  readonly problems: readonly string[];
}

export interface CheckOptions {
  /** How long the backlog may take to drain after the faults. */
  readonly drainMs?: number;
  /** Send the canary batch (off when the scenario has stopped its workers on purpose). */
  readonly canary?: boolean;
}

/** Drains, sends a canary batch, reads both streams and judges. */
export async function checkInvariant(stack: ChaosStack, opts: CheckOptions = {}): Promise<Verdict> {
  const problems: string[] = [];
  let unacked = await drained(stack.jsm, opts.drainMs ?? 60_000);
  let serving = true;
  const published = (await stack.jsm.streams.info(STREAMS.jobs)).state.messages;
  if (opts.canary !== false) {
    const canary = Array.from({ length: 20 }, (_, i) => moderationJob(`canary-${i}`));
    const before = (await stack.jsm.streams.info(STREAMS.results)).state.messages;
    await stack.publish(canary, 0);
    const deadline = Date.now() + 20_000;
    while ((await stack.jsm.streams.info(STREAMS.results)).state.messages < before + canary.length && Date.now() < deadline) await sleep(100);
    unacked = await drained(stack.jsm, 20_000);
    const alive = stack.workers.filter((w) => w && w.child.exitCode === null && w.child.signalCode === null).length;
    if (alive === 0) problems.push("no worker process is running");
    serving = alive > 0;
  }
  // A duplicate published after the backlog drained (a worker that held a job past ack_wait and
  // publishes late) must still be caught: once every worker has stopped, none can publish.
  const hung = await stopWorkers(stack);
  if (hung.length > 0) problems.push(`worker(s) ${hung.join(", ")} did not exit within ${STOP_WAIT_MS / 1000} s of SIGTERM`);
  const outcomes = await readOutcomes(stack);
  const results = new Map<string, number>();
  const dlq = new Map<string, number>();
  for (const o of outcomes) {
    const m = o.kind === "result" ? results : dlq;
    m.set(o.id, (m.get(o.id) ?? 0) + 1);
  }
  let duplicated = 0;
  for (const n of results.values()) duplicated += n - 1;
  for (const n of dlq.values()) duplicated += n - 1;
  const both = [...results.keys()].filter((id) => dlq.has(id));
  duplicated += both.length;
  const lostIds = [...stack.expected].filter((id) => !results.has(id) && !dlq.has(id));
  const seen = new Set([...results.keys(), ...dlq.keys()]);
  const strangers = [...seen].filter((id) => !stack.expected.has(id));
  const unexpected = Math.max(0, strangers.length - stack.anonymous);
  if (strangers.length < stack.anonymous) problems.push(`${stack.anonymous - strangers.length} job(s) published without an id have no outcome`);
  if (lostIds.length > 0) problems.push(`lost: ${await whereInJobs(stack, lostIds.slice(0, 5))}${lostIds.length > 5 ? ", …" : ""}`);
  if (duplicated > 0) {
    const twice = [...results].filter(([, n]) => n > 1).map(([id]) => id);
    problems.push(`duplicated: ${[...twice, ...both].slice(0, 5).join(", ")}`);
  }
  if (unexpected > 0) problems.push(`outcomes for ids nobody published: ${strangers.slice(0, 5).join(", ")}`);
  if (unacked !== 0) problems.push(`${unacked} job(s) left unacknowledged`);
  if (!serving) problems.push("workers stopped serving");
  const canaryOk = opts.canary === false || Array.from({ length: 20 }, (_, i) => `canary-${i}`).every((id) => results.has(id));
  if (!canaryOk) problems.push("the canary batch after the faults was not fully served");
  return {
    published,
    results: outcomes.filter((o) => o.kind === "result").length,
    deadLetters: outcomes.filter((o) => o.kind === "dlq").length,
    reasons: countBy(outcomes.filter((o) => o.kind === "dlq").map((o) => String(o.body.reason))),
    lost: lostIds.length + Math.max(0, stack.anonymous - strangers.length),
    duplicated,
    unexpected,
    unacked,
    serving: serving && canaryOk,
    worstRecoveryMs: stack.faults.length > 0 ? worstRecovery(stack.faults, outcomes) : undefined,
    outcomes,
    problems,
  };
}

/** Longer than the chaos config's shutdown_grace (2 s) plus the stop's own bounded waits. */
const STOP_WAIT_MS = 10_000;

/** SIGTERMs every running worker and waits for it to exit (SIGKILL past STOP_WAIT_MS); returns the ones that had to be killed. */
async function stopWorkers(stack: ChaosStack): Promise<number[]> {
  const hung: number[] = [];
  await Promise.all(
    stack.workers.map(async (w, i) => {
      if (!w || w.child.exitCode !== null || w.child.signalCode !== null) return;
      w.child.kill("SIGTERM");
      let timer: NodeJS.Timeout | undefined;
      const exited = await Promise.race([w.exited.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), STOP_WAIT_MS)))]);
      clearTimeout(timer);
      if (!exited) {
        hung.push(i);
        w.child.kill("SIGKILL");
        await w.exited;
      }
    }),
  );
  return hung;
}

/**
 * For each fault, the longest gap between consecutive outcomes from the fault until the next
 * fault (or the last outcome before the canary): how long the system produced nothing
 * because of it. Gaps after the backlog drained are idle time, not recovery, so the window
 * ends at the last outcome of the scenario's own jobs.
 */
export function worstRecovery(faults: readonly Fault[], outcomes: readonly Outcome[]): number {
  const times = outcomes.filter((o) => !o.id.startsWith("canary-")).map((o) => o.time);
  if (times.length === 0 || faults.length === 0) return 0;
  const lastOutcome = times[times.length - 1]!;
  let worst = 0;
  faults.forEach((f, i) => {
    const end = Math.min(faults[i + 1]?.at ?? Infinity, lastOutcome);
    if (f.at >= end) return;
    let prev = f.at;
    for (const t of times) {
      if (t <= f.at) continue;
      if (t > end) break;
      worst = Math.max(worst, t - prev);
      prev = t;
    }
  });
  return Math.round(worst);
}

/** For a lost job, whether JOBS holds it (and where the consumer stands), to tell a lost message from one never delivered. */
async function whereInJobs(stack: ChaosStack, lost: readonly string[]): Promise<string> {
  const seqs = new Map<string, number[]>();
  const info = await stack.jsm.streams.info(STREAMS.jobs);
  for await (const m of scan(stack.js, STREAMS.jobs, { lastSeq: info.state.last_seq, headersOnly: true })) {
    if (m.msgId !== undefined && lost.includes(m.msgId)) seqs.set(m.msgId, [...(seqs.get(m.msgId) ?? []), m.seq]);
  }
  const c = await stack.jsm.consumers.info(STREAMS.jobs, ROUTER_DURABLE).catch(() => undefined);
  const consumer = c ? `; consumer delivered to seq ${c.delivered.stream_seq}, ack floor ${c.ack_floor.stream_seq}, redelivered ${c.num_redelivered}` : "";
  return `${lost.map((id) => `${JSON.stringify(id)} (${seqs.has(id) ? `in JOBS at seq ${seqs.get(id)!.join("/")}` : "not in JOBS"})`).join(", ")}${consumer}`;
}

function countBy(xs: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of xs) out[x] = (out[x] ?? 0) + 1;
  return out;
}

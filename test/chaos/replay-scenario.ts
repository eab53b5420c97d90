/**
 * Replays under interruption: `switchyard dlq replay` SIGKILLed mid-run, then run twice at
 * once, then again; `switchyard replay` (batch, from JOBS) interrupted with SIGINT, then run
 * again. Between the runs the JOBS duplicate window (3 s here) has passed, so only the replay
 * ledger stands between a re-run and a second copy. JOBS must then hold every replay id
 * exactly once, and each replay must end as exactly one outcome like any job.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { STREAMS } from "../../shared/contract/subjects.ts";
import { scan } from "../../shared/nats/read.ts";
import type { CliProcess } from "../harness/processes.ts";
import { checkInvariant } from "./invariant.ts";
import { drained, moderationJob, type ChaosStack } from "./stack.ts";
import type { Check, Scenario } from "./scenarios.ts";
import { startChaosStack } from "./stack.ts";

const WINDOW_MS = 3_000;

export const replays: Scenario = {
  name: "replays",
  title: "dlq replay SIGKILLed mid-run then run twice at once; batch replay interrupted (SIGINT) and re-run; reruns after the duplicate window",
  async run(size) {
    const t0 = Date.now();
    const dead = size === "full" ? 2500 : 300;
    const served = size === "full" ? 1500 : 200;
    // A window this short must still outlast a job's retry span (config load refuses it otherwise):
    // 2 deliveries × (ack_wait 1s + backoff 250ms × 1.2) = 2.6 s.
    const s = await startChaosStack({ workers: 2, config: { duplicateWindow: `${WINDOW_MS / 1000}s`, ackWait: "1s", maxDeliveries: 2, backoff: "[250ms]" } });
    try {
      const checks: Check[] = [];
      const since = new Date();
      await s.publish(Array.from({ length: served }, (_, i) => moderationJob(`orig-${i}`)), 0);
      const until = new Date();
      // An unknown model: each of these is dead-lettered no_route at once, and a replay naming a real model serves it.
      await s.publish(Array.from({ length: dead }, (_, i) => unroutable(`lost-${i}`)), 0);
      if ((await drained(s.jsm, 60_000)) !== 0) throw new Error("the first batches did not drain");
      for (let i = 0; i < dead; i++) s.expected.add(`lost-${i}~r1`);
      for (let i = 0; i < served; i++) s.expected.add(`orig-${i}~swift/mini`);

      const dlqArgs = ["dlq", "replay", "--reason", "no_route", "--model", "budget/lite"];
      const killedAt = await interruptOnceItPublishes(s, s.spawn(dlqArgs), "SIGKILL");
      await sleep(WINDOW_MS + 500);
      const [a, b] = [s.spawn(dlqArgs), s.spawn(dlqArgs)];
      const codes = [await a.exited, await b.exited];
      checks.push({ name: "two dlq replays at once both finish", ok: codes.every((c) => c === 0), detail: `exit codes ${codes.join(", ")}: ${a.output().slice(-300)}` });
      const again = s.spawn(dlqArgs);
      checks.push({ name: "a third dlq replay publishes nothing", ok: (await again.exited) === 0 && again.output().includes("published 0 new job(s)"), detail: again.output().slice(-300) });

      const batchArgs = ["replay", "--task", "moderation", "--since", since.toISOString(), "--until", until.toISOString(), "--model", "swift/mini"];
      const first = s.spawn(batchArgs);
      const stoppedAt = await interruptOnceItPublishes(s, first, "SIGINT");
      const firstCode = await first.exited;
      // 0: it had finished before the signal came, which leaves nothing to prove but breaks nothing.
      checks.push({ name: "SIGINT stops a batch replay (exit 130) after recording what it published", ok: firstCode === 130 || firstCode === 0, detail: `exit ${firstCode}` });
      await sleep(WINDOW_MS + 500);
      const rest = s.spawn(batchArgs);
      checks.push({ name: "the batch replay re-run finishes", ok: (await rest.exited) === 0, detail: rest.output().slice(-300) });

      const { outcomes, ...verdict } = await checkInvariant(s);
      // Every replay id must be in JOBS exactly once: the ledger, not the window, prevented the second copies.
      const copies = new Map<string, number>();
      const info = await s.jsm.streams.info(STREAMS.jobs);
      for await (const m of scan(s.js, STREAMS.jobs, { lastSeq: info.state.last_seq, headersOnly: true })) {
        if (m.msgId?.includes("~")) copies.set(m.msgId, (copies.get(m.msgId) ?? 0) + 1);
      }
      const twice = [...copies].filter(([, n]) => n > 1).map(([id]) => id);
      const missing = [...s.expected].filter((id) => id.includes("~") && !copies.has(id));
      checks.push({ name: "every replay id is in JOBS exactly once", ok: twice.length === 0 && missing.length === 0, detail: `${twice.length} twice (${twice.slice(0, 3).join(", ")}), ${missing.length} missing (${missing.slice(0, 3).join(", ")})` });
      const byId = new Map(outcomes.map((o) => [o.id, o]));
      const badLineage = [...s.expected].filter((id) => id.includes("~")).filter((id) => {
        const o = byId.get(id);
        const meta = (o?.body.metadata ?? {}) as Record<string, unknown>;
        const want = id.endsWith("~r1") ? "budget" : "swift";
        return o?.kind !== "result" || meta.replay_of !== id.slice(0, id.indexOf("~")) || o.body.provider !== want;
      });
      checks.push({ name: "replays are served on the --model given and carry replay_of", ok: badLineage.length === 0, detail: badLineage.slice(0, 3).join(", ") });
      return {
        name: "replays",
        ...verdict,
        faultsInjected: 2,
        faultNote: `dlq replay SIGKILLed after ${killedAt} of ${dead} published, batch replay SIGINT after ${stoppedAt} of ${served}; ${dead + served} replays`,
        checks,
        wallMs: Date.now() - t0,
      };
    } finally {
      await s.close();
    }
  },
};

/**
 * Sends `signal` as soon as the replay has published its first jobs; returns how many JOBS
 * had gained by then. Not logged as a timed fault: the pause that follows is deliberate
 * idle time, not a recovery to measure.
 */
async function interruptOnceItPublishes(s: ChaosStack, p: CliProcess, signal: NodeJS.Signals): Promise<number> {
  const base = (await s.jsm.streams.info(STREAMS.jobs)).state.messages;
  for (;;) {
    const now = (await s.jsm.streams.info(STREAMS.jobs)).state.messages;
    if (now > base || p.child.exitCode !== null) {
      p.child.kill(signal);
      await p.exited;
      return (await s.jsm.streams.info(STREAMS.jobs)).state.messages - base;
    }
    await sleep(5);
  }
}

function unroutable(id: string) {
  const job = moderationJob(id);
  const body = JSON.parse(job.data as string) as { request: Record<string, unknown> };
  body.request.model = "nowhere/model";
  return { ...job, data: JSON.stringify(body) };
}

import { createReadStream } from "node:fs";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { jetstream } from "@nats-io/jetstream";
import { nuid } from "@nats-io/transport-node";
import { boundedWindow } from "../../../shared/concurrency.ts";
import { TASK_PATTERN } from "../../../shared/contract/subjects.ts";
import { cliNames } from "../names.ts";
import { UsageError } from "../../../shared/errors.ts";
import { isRecord, parseJsonOrUndefined } from "../../../shared/json.ts";
import { connectNats, natsFromEnvironment } from "../../../shared/nats/connect.ts";
import { intFlag, parse } from "../args.ts";
import { progress } from "../progress.ts";
import type { Command } from "./types.ts";
import { summaryOf } from "./catalog.ts";

/** Publishes awaiting their PubAck at once: enough to fill the pipe, bounded so memory is too. */
const WINDOW = 512;

export const publishCommand: Command = {
  name: "publish",
  summary: summaryOf("publish"),
  usage: `switchyard publish [file.jsonl] [--task <task>] [--rate <jobs/s>] [--total <n>]

One job per line, in wire contract v1. The subject is jobs.<task> (<namespace>.jobs.<task>
with SWITCHYARD_NAMESPACE or the config's namespace), from the line's "task" or
--task; the Nats-Msg-Id header is the line's "id" (one is generated and written into the job
when absent), so publishing the same file twice serves each job once within the duplicate
window. A line that is not JSON is still published (with --task) and becomes a dead letter:
nothing is dropped on the producer side either. --total sizes the progress bar.`,
  async run(argv) {
    const { values, positionals } = parse("publish", argv, { task: { type: "string" }, rate: { type: "string" }, total: { type: "string" } });
    if (values.task !== undefined && !TASK_PATTERN.test(values.task)) throw new UsageError(`publish: --task "${values.task}" must match [a-z0-9_-]{1,64}`);
    const rate = intFlag("publish", "rate", values.rate, 0);
    const { jobSubject } = cliNames();
    const input = positionals[0] && positionals[0] !== "-" ? createReadStream(positionals[0]) : process.stdin;
    const nc = await connectNats(natsFromEnvironment(), "switchyard-publish");
    const js = jetstream(nc);
    const bar = progress("publish", intFlag("publish", "total", values.total, 0));
    let sent = 0;
    let lineNo = 0;
    let failed = 0;
    const pending = boundedWindow(WINDOW);
    const started = Date.now();
    try {
      for await (const line of createInterface({ input, crlfDelay: Infinity })) {
        lineNo++;
        if (line.trim() === "") continue;
        // Not a JSON object: published raw below; the router turns it into an invalid_job dead letter.
        const parsed = parseJsonOrUndefined(line);
        const job = isRecord(parsed) ? parsed : undefined;
        const task = typeof job?.task === "string" ? job.task : values.task;
        if (task === undefined) throw new UsageError(`publish: line ${lineNo} names no "task"; pass --task`);
        let payload = line;
        let id = typeof job?.id === "string" ? job.id : undefined;
        if (job && id === undefined) {
          id = nuid.next();
          payload = JSON.stringify({ ...job, id });
        }
        const p = js.publish(jobSubject(task), payload, { msgID: id ?? nuid.next() }).catch((err: unknown) => {
          failed++;
          process.stderr.write(`line ${lineNo}: not published (${(err as Error).message})\n`);
        });
        await pending.add(p);
        sent++;
        if (rate > 0) {
          const ahead = (sent / rate) * 1000 - (Date.now() - started);
          if (ahead > 1) await sleep(ahead);
        }
        bar.update(sent);
      }
      await pending.drain();
      bar.finish(failed > 0 ? `${failed} failed` : "all acknowledged");
    } finally {
      await nc.drain();
    }
    return failed > 0 ? 1 : 0;
  },
};

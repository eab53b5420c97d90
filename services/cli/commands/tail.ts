import { DeliverPolicy, jetstream } from "@nats-io/jetstream";
import { TASK_PATTERN } from "../../../shared/contract/subjects.ts";
import { cliNames } from "../names.ts";
import { UsageError } from "../../../shared/errors.ts";
import { connectNats, natsFromEnvironment } from "../../../shared/nats/connect.ts";
import { parse, untilSignal } from "../args.ts";
import type { Command } from "./types.ts";
import { summaryOf } from "./catalog.ts";

export const tailCommand: Command = {
  name: "tail",
  summary: summaryOf("tail"),
  usage: `switchyard tail [--results] [--dlq] [--task <task>] [--meta key=value ...] [--all] [--brief]

Prints each result or dead letter as one JSON line as it is published (both kinds unless one
is chosen). --all starts from the beginning of the streams; --brief prints a short summary
line instead of the JSON. Runs until Ctrl-C.`,
  async run(argv) {
    const { values } = parse("tail", argv, {
      results: { type: "boolean" },
      dlq: { type: "boolean" },
      task: { type: "string" },
      meta: { type: "string", multiple: true },
      all: { type: "boolean" },
      brief: { type: "boolean" },
    });
    if (values.task !== undefined && !TASK_PATTERN.test(values.task)) throw new UsageError(`tail: --task "${values.task}" must match [a-z0-9_-]{1,64}`);
    const meta = (values.meta ?? []).map((kv) => {
      const i = kv.indexOf("=");
      if (i <= 0) throw new UsageError(`tail: --meta "${kv}" must be key=value`);
      return [kv.slice(0, i), kv.slice(i + 1)] as const;
    });
    const both = !values.results && !values.dlq;
    const { streams: STREAMS, subjects: SUBJECTS } = cliNames();
    const which = [
      ...(values.results || both ? [[STREAMS.results, SUBJECTS.results] as const] : []),
      ...(values.dlq || both ? [[STREAMS.dlq, SUBJECTS.dlq] as const] : []),
    ];
    const nc = await connectNats(natsFromEnvironment(), "switchyard-tail");
    const js = jetstream(nc);
    const loops = which.map(async ([stream, prefix]) => {
      const consumer = await js.consumers.get(stream, {
        filter_subjects: `${prefix}.${values.task ?? ">"}`,
        deliver_policy: values.all ? DeliverPolicy.All : DeliverPolicy.New,
      });
      const messages = await consumer.consume();
      for await (const m of messages) {
        const v = m.json<Record<string, unknown> & { metadata?: Record<string, unknown> }>();
        if (!meta.every(([k, val]) => String(v.metadata?.[k]) === val)) continue;
        process.stdout.write(values.brief ? `${brief(v)}\n` : `${m.string()}\n`);
      }
    });
    await Promise.race([untilSignal(), ...loops]);
    await nc.drain();
    return 0;
  },
};

function brief(v: Record<string, unknown>): string {
  const attempts = Array.isArray(v.attempts) ? v.attempts.length : 0;
  if (v.status === "succeeded") {
    return `ok     ${v.task} ${v.id} ${v.provider}/${v.model} attempts=${attempts} cost=$${Number(v.cost_usd).toFixed(6)} ${v.latency_ms}ms`;
  }
  return `failed ${v.task} ${v.id} ${v.reason} attempts=${attempts}: ${v.error}`;
}

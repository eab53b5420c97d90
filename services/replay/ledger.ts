/**
 * The replay ledger: a KV bucket recording which replay ids were published, so a replay run
 * can be interrupted (Ctrl-C, SIGKILL, a lost connection) and started again without
 * publishing any job twice — also after the JOBS duplicate window has passed, which on its
 * own would only protect a re-run within `streams.duplicate_window`.
 *
 * Two keys per replay id, written in this order around the publish:
 *   `claim.<id>`  before publishing: "a run is publishing this one";
 *   `done.<id>`   after the PubAck (then the claim is purged).
 * A claim without its `done` is what a killed run leaves behind; `resolveClaims` settles
 * each by looking for the id in the JOBS stream itself (see engine.ts).
 */
import { namesOf } from "../../shared/contract/subjects.ts";
import { Kvm, type KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Config } from "../../shared/config/schema.ts";

/** One bucket for both kinds of replay (dead letters and JOBS): a replay id is a replay id. */
export { REPLAY_BUCKET } from "../../shared/contract/subjects.ts";

export interface LedgerEntry {
  /** The replay's job id. */
  readonly id: string;
  /** The job it re-runs. */
  readonly of: string;
  readonly task: string;
  /** ISO time of the claim or of the publish. */
  readonly at: string;
  /** The new job's JOBS sequence (done entries). */
  readonly seq?: number;
}

export interface ReplayLedger {
  /** The `done` entry of a replay id, or undefined when it was never confirmed published. */
  done(id: string): Promise<LedgerEntry | undefined>;
  claim(entry: LedgerEntry): Promise<void>;
  /** Records the publish and drops the claim. */
  confirm(entry: LedgerEntry): Promise<void>;
  /** Claims left without a `done` (an interrupted run, or one running right now). */
  claims(): Promise<LedgerEntry[]>;
  dropClaim(id: string): Promise<void>;
}

/**
 * Opens (creating when missing) the ledger. Its entries live as long as the longer of the
 * JOBS and DLQ retentions: past that, the original is gone and cannot be replayed again anyway.
 */
export async function openLedger(nc: NatsConnection, config: Config): Promise<ReplayLedger> {
  const kv: KV = await new Kvm(nc).create(namesOf(config).replayBucket, {
    history: 1,
    replicas: config.streams.replicas,
    ttl: Math.max(config.streams.jobs_max_age, config.streams.dlq_max_age),
  });
  const read = async (key: string): Promise<LedgerEntry | undefined> => {
    const e = await kv.get(key);
    return e && e.operation === "PUT" ? e.json<LedgerEntry>() : undefined;
  };
  return {
    done: (id) => read(`done.${keyOf(id)}`),
    async claim(entry) {
      await kv.put(`claim.${keyOf(entry.id)}`, JSON.stringify(entry));
    },
    async confirm(entry) {
      await kv.put(`done.${keyOf(entry.id)}`, JSON.stringify(entry));
      await kv.purge(`claim.${keyOf(entry.id)}`);
    },
    async claims() {
      const keys: string[] = [];
      for await (const k of await kv.keys("claim.>")) keys.push(k);
      const out: LedgerEntry[] = [];
      for (const k of keys) {
        const e = await read(k);
        if (e) out.push(e);
      }
      return out;
    },
    async dropClaim(id) {
      await kv.purge(`claim.${keyOf(id)}`);
    },
  };
}

/** Job ids may hold any character; KV keys only `[-/_=.a-zA-Z0-9]`, so ids are base64url-encoded. */
function keyOf(id: string): string {
  return Buffer.from(id, "utf8").toString("base64url");
}

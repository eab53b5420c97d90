/**
 * Quality of one model for one task, from the attempts every worker reports: the share of
 * its answers, over a sliding window, that met the task's output contract. A model under the
 * task's floor (`output.min_pass_rate`) is demoted for that task alone — never for other
 * tasks, and never as an outage: health (`health.ts`) ignores answers, this module ignores
 * everything else (`OUTCOMES[outcome].quality`). A demoted model is re-tested after a backoff
 * (the pricing service sends it the task's samples) and readmitted on trial. Pure: time
 * comes in as `now`, re-tests are carried out by the caller.
 */
import type { AttemptOutcome } from "../../shared/contract/job.ts";
import type { QualityStatus } from "../../shared/contract/live.ts";
import { OUTCOMES } from "../../shared/routing/outcomes.ts";

export interface QualityPolicy {
  /**
   * How far back answers count. Long next to health's window: a pass rate needs many
   * answers, and a task may see few per minute.
   * @defaultValue 600_000 (10 min)
   */
  readonly windowMs: number;
  /** Oldest answers are dropped beyond this many per (task, model), bounding memory. @defaultValue 500 */
  readonly maxEvents: number;
  /**
   * Below this many answers in the window, the pass rate does not demote. 20 because a floor
   * like 0.95 means nothing on fewer: one unlucky answer in 10 would demote a model that passes
   * 97 % of the time about a quarter of the time. @defaultValue 20
   */
  readonly minSamples: number;
  /** The first wait before a demoted model is re-tested. @defaultValue 30_000 */
  readonly requalifyAfterMs: number;
  /** The wait doubles while re-tests (or trials) keep failing, up to this. @defaultValue 600_000 (10 min) */
  readonly maxRequalifyAfterMs: number;
  /** Samples sent per re-test (the first ones of `config/samples/<task>.jsonl`). @defaultValue 10 */
  readonly probeSamples: number;
}

export const DEFAULT_QUALITY_POLICY: QualityPolicy = {
  windowMs: 600_000,
  maxEvents: 500,
  minSamples: 20,
  requalifyAfterMs: 30_000,
  maxRequalifyAfterMs: 600_000,
  probeSamples: 10,
};

export interface QualitySnapshot {
  /** Passed / answers in the window; with none left while demoted, the rate that demoted it; 1 with none at all. */
  readonly passRate: number;
  readonly samples: number;
  readonly status: QualityStatus;
  /** While demoted: when the re-test is due; else 0. */
  readonly demotedUntil: number;
  /** True on the one snapshot that demoted the model, for the caller's log line. */
  readonly demotedNow: boolean;
}

/** One (task, model): a ring of recent answers and the demotion state machine. */
export class TaskModelQuality {
  readonly #policy: QualityPolicy;
  #at: Float64Array | undefined;
  #pass: Uint8Array | undefined;
  #head = 0;
  #size = 0;
  #passes = 0;
  #status: QualityStatus = "qualified";
  #demotedUntil = 0;
  #backoffMs: number;
  /** Readmitted after a demotion and not yet confirmed by live answers: a relapse waits longer. */
  #onTrial = false;
  /** Answers from attempts begun before this (in flight at a readmission) are ignored. */
  #since = -Infinity;
  #rateAtDemotion = 0;

  constructor(policy: QualityPolicy = DEFAULT_QUALITY_POLICY) {
    this.#policy = policy;
    this.#backoffMs = policy.requalifyAfterMs;
  }

  get status(): QualityStatus {
    return this.#status;
  }

  /** While demoted: when the re-test is due; else 0. */
  get demotedUntil(): number {
    return this.#status === "demoted" ? this.#demotedUntil : 0;
  }

  /** True while demoted with the backoff run out: time for the caller to re-test. */
  requalifyDue(now: number): boolean {
    return this.#status === "demoted" && now >= this.#demotedUntil;
  }

  record(passed: boolean, at: number): void {
    if (at < this.#since) return;
    const cap = this.#policy.maxEvents;
    if (this.#at === undefined) {
      this.#at = new Float64Array(cap);
      this.#pass = new Uint8Array(cap);
    }
    if (this.#size === cap) this.#dropOldest();
    const i = (this.#head + this.#size) % cap;
    this.#at[i] = at;
    this.#pass![i] = passed ? 1 : 0;
    this.#size++;
    if (passed) this.#passes++;
  }

  /**
   * The window as of `now`, and the verdict: demoted when it holds at least `minSamples`
   * answers at a pass rate under `floor`. `floor` undefined: the task has no output
   * contract and never demotes (a demotion from before a config change is lifted).
   */
  snapshot(now: number, floor: number | undefined): QualitySnapshot {
    const p = this.#policy;
    const from = now - p.windowMs;
    while (this.#size > 0 && this.#at![this.#head]! < from) this.#dropOldest();
    const samples = this.#size;
    const rate = samples > 0 ? this.#passes / samples : undefined;
    let demotedNow = false;
    if (floor === undefined) {
      if (this.#status === "demoted") this.#lift();
    } else if (this.#status === "qualified" && rate !== undefined && samples >= p.minSamples) {
      if (rate < floor) {
        // A relapse on trial means the last readmission was premature: wait longer this time.
        this.#backoffMs = this.#onTrial ? Math.min(p.maxRequalifyAfterMs, this.#backoffMs * 2) : p.requalifyAfterMs;
        this.#status = "demoted";
        this.#demotedUntil = now + this.#backoffMs;
        this.#onTrial = false;
        this.#rateAtDemotion = rate;
        demotedNow = true;
      } else if (this.#onTrial) {
        // Live answers confirm the readmission: the next demotion starts from the first backoff.
        this.#onTrial = false;
        this.#backoffMs = p.requalifyAfterMs;
      }
    }
    const demoted = this.#status === "demoted";
    return {
      passRate: rate ?? (demoted ? this.#rateAtDemotion : 1),
      samples,
      status: this.#status,
      demotedUntil: demoted ? this.#demotedUntil : 0,
      demotedNow,
    };
  }

  /**
   * Back in (a re-test passed, or the task has no samples to re-test with): the window starts
   * afresh, so the old failures cannot demote it again at once, and live answers decide.
   */
  readmit(now: number): void {
    this.#status = "qualified";
    this.#demotedUntil = 0;
    this.#onTrial = true;
    this.#since = now;
    this.#clear();
  }

  /** A re-test under the floor: demoted for twice as long (up to the cap). */
  retestFailed(now: number): void {
    if (this.#status !== "demoted") return;
    this.#backoffMs = Math.min(this.#policy.maxRequalifyAfterMs, this.#backoffMs * 2);
    this.#demotedUntil = now + this.#backoffMs;
  }

  /** A re-test that got no answer at all (the provider was down): it says nothing of quality, so no longer wait. */
  retestInconclusive(now: number): void {
    if (this.#status !== "demoted") return;
    this.#demotedUntil = now + this.#backoffMs;
  }

  #lift(): void {
    this.#status = "qualified";
    this.#demotedUntil = 0;
    this.#onTrial = false;
    this.#backoffMs = this.#policy.requalifyAfterMs;
  }

  #dropOldest(): void {
    if (this.#pass![this.#head] === 1) this.#passes--;
    this.#head = (this.#head + 1) % this.#policy.maxEvents;
    this.#size--;
  }

  #clear(): void {
    this.#head = 0;
    this.#size = 0;
    this.#passes = 0;
  }
}

/**
 * Every (task, model) of the config. Only configured tasks and models are tracked, so
 * telemetry naming anything else costs no memory.
 */
export class QualityBook {
  readonly #policy: QualityPolicy;
  /** Task → floor; undefined for a task without an output contract. */
  #floors: ReadonlyMap<string, number | undefined> = new Map();
  /** Model → task → state. */
  readonly #models = new Map<string, Map<string, TaskModelQuality>>();

  constructor(policy: QualityPolicy = DEFAULT_QUALITY_POLICY) {
    this.#policy = policy;
  }

  get policy(): QualityPolicy {
    return this.#policy;
  }

  /** Takes the config's tasks (with their floors) and models; state of anything removed is dropped. */
  configure(floors: ReadonlyMap<string, number | undefined>, models: Iterable<string>): void {
    this.#floors = floors;
    const keep = new Set(models);
    for (const id of keep) if (!this.#models.has(id)) this.#models.set(id, new Map());
    for (const [id, tasks] of this.#models) {
      if (!keep.has(id)) this.#models.delete(id);
      else for (const task of tasks.keys()) if (!floors.has(task)) tasks.delete(task);
    }
  }

  floor(task: string): number | undefined {
    return this.#floors.get(task);
  }

  /** One attempt's outcome; only answers (`OUTCOMES[outcome].quality` pass or fail) count. */
  record(task: string, model: string, outcome: AttemptOutcome, at: number): void {
    const verdict = OUTCOMES[outcome].quality;
    if (verdict === "none") return;
    const tasks = this.#models.get(model);
    if (tasks === undefined || !this.#floors.has(task)) return;
    let q = tasks.get(task);
    if (q === undefined) tasks.set(task, (q = new TaskModelQuality(this.#policy)));
    q.record(verdict === "pass", at);
  }

  get(task: string, model: string): TaskModelQuality | undefined {
    return this.#models.get(model)?.get(task);
  }

  /** The model's tasks with answers in the window or a demotion, evaluated as of `now`. */
  snapshot(model: string, now: number): Map<string, QualitySnapshot> {
    const out = new Map<string, QualitySnapshot>();
    const tasks = this.#models.get(model);
    if (tasks === undefined) return out;
    for (const [task, q] of tasks) {
      const s = q.snapshot(now, this.#floors.get(task));
      if (s.samples > 0 || s.status === "demoted") out.set(task, s);
    }
    return out;
  }
}

/** Each task's floor from the config: `output.min_pass_rate`, or undefined for a task without `output:`. */
export function qualityFloors(tasks: Readonly<Record<string, { readonly output?: { readonly min_pass_rate: number } | undefined }>>): Map<string, number | undefined> {
  return new Map(Object.entries(tasks).map(([task, t]) => [task, t.output?.min_pass_rate]));
}

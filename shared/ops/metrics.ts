/**
 * Metric families in the Prometheus text format (0.0.4): counters, histograms, and gauges read
 * at scrape time.
 *
 * Why not prom-client: its labelled children hash the label set on every `inc()`/`observe()`
 * (a string built per call, plus validation), and its default process metrics hook the GC and
 * the event loop (see `process-metrics.ts`). The
 * router records about ten figures per job, so a child here is a plain object whose
 * `inc`/`observe` only adds numbers; callers cache the children they use (per task, per
 * model) and nothing is allocated per job. Label sets are created once and live as long as
 * the process: every label value must come from a bounded set (config names, outcomes,
 * reasons, a capped tenant list — see `BoundedLabel`), never from a job id or a free string.
 */

export type LabelValues = readonly string[];

interface Family {
  render(out: string[]): void;
}

/** Escapes a label value for the text format. */
function escapeLabel(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

function labelText(names: readonly string[], values: LabelValues, extra?: string): string {
  const parts: string[] = [];
  for (let i = 0; i < names.length; i++) parts.push(`${names[i]}="${escapeLabel(values[i]!)}"`);
  if (extra) parts.push(extra);
  return parts.length === 0 ? "" : `{${parts.join(",")}}`;
}

function num(v: number): string {
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return Number.isNaN(v) ? "NaN" : String(v);
}

abstract class LabelledFamily<C> implements Family {
  readonly #children = new Map<string, { values: LabelValues; child: C }>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
  ) {}

  /** The child for these label values (in `labelNames` order), created on first use. Cache it on hot paths. */
  labels(...values: string[]): C {
    if (values.length !== this.labelNames.length) throw new Error(`${this.name}: expected labels ${this.labelNames.join(", ")}`);
    const key = values.join("\u0000");
    let e = this.#children.get(key);
    if (!e) {
      e = { values, child: this.create() };
      this.#children.set(key, e);
    }
    return e.child;
  }

  protected abstract create(): C;
  protected abstract readonly type: string;
  protected abstract renderChild(out: string[], values: LabelValues, child: C): void;

  render(out: string[]): void {
    out.push(`# HELP ${this.name} ${this.help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")}`, `# TYPE ${this.name} ${this.type}`);
    for (const { values, child } of this.#children.values()) this.renderChild(out, values, child);
  }
}

export class CounterChild {
  value = 0;
  inc(n = 1): void {
    this.value += n;
  }
}

/** A monotonic counter (`_total` is part of the name given). */
export class Counter extends LabelledFamily<CounterChild> {
  protected readonly type = "counter";
  protected create(): CounterChild {
    return new CounterChild();
  }
  protected renderChild(out: string[], values: LabelValues, c: CounterChild): void {
    out.push(`${this.name}${labelText(this.labelNames, values)} ${num(c.value)}`);
  }
}

export class HistogramChild {
  /** Per bucket (not cumulative); the last slot is +Inf. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(readonly bounds: Float64Array) {
    this.counts = new Float64Array(bounds.length + 1);
  }
  observe(v: number): void {
    const b = this.bounds;
    let i = 0;
    // A dozen bounds: a linear scan beats a binary search, and most values land in the first few.
    while (i < b.length && v > b[i]!) i++;
    this.counts[i]!++;
    this.sum += v;
    this.count++;
  }
}

export class Histogram extends LabelledFamily<HistogramChild> {
  protected readonly type = "histogram";
  readonly #bounds: Float64Array;
  readonly #le: string[];
  constructor(name: string, help: string, labelNames: readonly string[], buckets: readonly number[]) {
    super(name, help, labelNames);
    this.#bounds = Float64Array.from([...buckets].sort((a, b) => a - b));
    this.#le = [...this.#bounds].map((b) => `le="${num(b)}"`).concat('le="+Inf"');
  }
  protected create(): HistogramChild {
    return new HistogramChild(this.#bounds);
  }
  protected renderChild(out: string[], values: LabelValues, h: HistogramChild): void {
    let cumulative = 0;
    for (let i = 0; i < h.counts.length; i++) {
      cumulative += h.counts[i]!;
      out.push(`${this.name}_bucket${labelText(this.labelNames, values, this.#le[i])} ${cumulative}`);
    }
    const l = labelText(this.labelNames, values);
    out.push(`${this.name}_sum${l} ${num(h.sum)}`, `${this.name}_count${l} ${h.count}`);
  }
}

/** A gauge read at scrape time from the service's own state: `collect` calls `set` once per label set. */
export class Gauge implements Family {
  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
    readonly collect: (set: (value: number, ...labels: string[]) => void) => void,
  ) {}
  render(out: string[]): void {
    out.push(`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} gauge`);
    this.collect((value, ...labels) => out.push(`${this.name}${labelText(this.labelNames, labels)} ${num(value)}`));
  }
}

/** Families in registration order; `render` is the text format of all of them. */
export class MetricSet {
  readonly #families = new Map<string, Family>();
  add<F extends Family & { readonly name: string }>(f: F): F {
    if (this.#families.has(f.name)) throw new Error(`metric ${f.name} registered twice`);
    this.#families.set(f.name, f);
    return f;
  }
  has(name: string): boolean {
    return this.#families.has(name);
  }
  render(): string {
    const out: string[] = [];
    for (const f of this.#families.values()) f.render(out);
    return out.length === 0 ? "" : `${out.join("\n")}\n`;
  }
}

/**
 * Keeps a label's value set bounded: the first `limit` distinct values pass, later ones become
 * `other`. For values that come from jobs (tenants, unknown task names), never from config.
 */
export class BoundedLabel {
  readonly #seen = new Set<string>();
  constructor(
    readonly limit: number,
    readonly maxLength = 64,
  ) {}
  of(value: string): string {
    if (this.#seen.has(value)) return value;
    if (this.#seen.size >= this.limit || value.length === 0 || value.length > this.maxLength) return "other";
    this.#seen.add(value);
    return value;
  }
}

/** Seconds: from 0.5 ms (the router's own overhead) to a minute (a slow provider). */
export const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

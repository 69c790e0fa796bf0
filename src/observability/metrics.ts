// A small Prometheus registry: counters, gauges and histograms with labels, rendered in the
// text exposition format at /metrics. Hand-rolled so the hot path pays one Map lookup per
// observation and no dependency sits in the gate.

type Labels = Record<string, string>;

const NEEDS_ESCAPE = /[\\"\n]/;

function labelValue(v: unknown): string {
  const s = String(v);
  return NEEDS_ESCAPE.test(s) ? s.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n") : s;
}

/** The series key of a label set: names sorted, values escaped as the exposition format wants. */
function labelKey(labels: Labels): string {
  const keys = Object.keys(labels);
  if (keys.length === 0) return "";
  if (keys.length > 1) keys.sort();
  let out = "";
  for (const k of keys) out += `${out ? "," : ""}${k}="${labelValue(labels[k])}"`;
  return out;
}

/** Keys of label sets that callers pass again and again: frozen objects they keep (see labels()). */
const keyCache = new WeakMap<Labels, string>();

function keyOf(labels: Labels): string {
  if (!Object.isFrozen(labels)) return labelKey(labels);
  let k = keyCache.get(labels);
  if (k === undefined) {
    k = labelKey(labels);
    keyCache.set(labels, k);
  }
  return k;
}

/**
 * A label set for hot paths: frozen, so its series key is computed once, not on every
 * observation. Keep it (per connection, rule, …) and pass the same object each time.
 */
export function labels<L extends Labels>(l: L): Readonly<L> {
  return Object.freeze(l);
}

abstract class Metric {
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: string,
  ) {}
  abstract render(): string[];
  header(): string[] {
    return [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} ${this.type}`];
  }
}

export class Counter extends Metric {
  #values = new Map<string, number>();
  constructor(name: string, help: string) {
    super(name, help, "counter");
  }
  inc(labels: Labels = {}, by = 1): void {
    const k = keyOf(labels);
    this.#values.set(k, (this.#values.get(k) ?? 0) + by);
  }
  get(labels: Labels = {}): number {
    return this.#values.get(labelKey(labels)) ?? 0;
  }
  render(): string[] {
    return [...this.#values].map(([k, v]) => `${this.name}${k ? `{${k}}` : ""} ${v}`);
  }
}

export class Gauge extends Metric {
  #values = new Map<string, number>();
  #collect: (() => void) | undefined;
  constructor(name: string, help: string, collect?: (g: Gauge) => void) {
    super(name, help, "gauge");
    this.#collect = collect ? () => collect(this) : undefined;
  }
  set(labels: Labels, v: number): void {
    this.#values.set(labelKey(labels), v);
  }
  inc(labels: Labels = {}, by = 1): void {
    const k = labelKey(labels);
    this.#values.set(k, (this.#values.get(k) ?? 0) + by);
  }
  dec(labels: Labels = {}, by = 1): void {
    this.inc(labels, -by);
  }
  get(labels: Labels = {}): number {
    return this.#values.get(labelKey(labels)) ?? 0;
  }
  render(): string[] {
    this.#collect?.();
    return [...this.#values].map(([k, v]) => `${this.name}${k ? `{${k}}` : ""} ${v}`);
  }
}

export class Histogram extends Metric {
  #series = new Map<string, { counts: number[]; sum: number; count: number }>();
  constructor(
    name: string,
    help: string,
    readonly buckets: number[],
  ) {
    super(name, help, "histogram");
  }
  observe(labels: Labels, value: number): void {
    const k = keyOf(labels);
    let s = this.#series.get(k);
    if (!s) {
      s = { counts: new Array(this.buckets.length).fill(0), sum: 0, count: 0 };
      this.#series.set(k, s);
    }
    for (let i = 0; i < this.buckets.length; i++) if (value <= this.buckets[i]!) s.counts[i]!++;
    s.sum += value;
    s.count++;
  }
  count(labels: Labels = {}): number {
    return this.#series.get(labelKey(labels))?.count ?? 0;
  }
  render(): string[] {
    const out: string[] = [];
    for (const [k, s] of this.#series) {
      const sep = k ? `${k},` : "";
      for (const [i, b] of this.buckets.entries()) out.push(`${this.name}_bucket{${sep}le="${b}"} ${s.counts[i]}`);
      out.push(`${this.name}_bucket{${sep}le="+Inf"} ${s.count}`);
      out.push(`${this.name}_sum${k ? `{${k}}` : ""} ${s.sum}`);
      out.push(`${this.name}_count${k ? `{${k}}` : ""} ${s.count}`);
    }
    return out;
  }
}

export class Registry {
  #metrics: Metric[] = [];
  register<M extends Metric>(m: M): M {
    this.#metrics.push(m);
    return m;
  }
  render(): string {
    return `${this.#metrics.flatMap((m) => [...m.header(), ...m.render()]).join("\n")}\n`;
  }
}

/** The gateway's metrics, one instance per gateway process. */
export function createGatewayMetrics() {
  const registry = new Registry();
  return {
    registry,
    authFailures: registry.register(new Counter("gatehouse_auth_failures_total", "Rejected tokens by reason code and surface.")),
    apiRequests: registry.register(new Counter("gatehouse_api_requests_total", "API requests by route and status.")),
    storeUp: registry.register(new Gauge("gatehouse_store_up", "1 when the store answered the last readiness probe.")),
    auditEvents: registry.register(new Counter("gatehouse_audit_events_total", "Audit events written, by type.")),
    auditFailures: registry.register(new Counter("gatehouse_audit_write_failures_total", "Audit writes that failed (operations refused).")),
    sessions: registry.register(new Counter("gatehouse_sessions_total", "Sessions opened, by connection and protocol.")),
    sessionsActive: registry.register(new Gauge("gatehouse_sessions_active", "Sessions open now, by connection.")),
    decisions: registry.register(new Counter("gatehouse_decisions_total", "Operations judged, by connection, decision and rule.")),
    recordingBytes: registry.register(new Counter("gatehouse_recording_bytes_total", "Bytes written to session recordings (frames incl. headers).")),
    recordingFailures: registry.register(new Counter("gatehouse_recording_write_failures_total", "Recording flushes that failed, by storage.")),
    recordingsTruncated: registry.register(new Counter("gatehouse_recordings_truncated_total", "Recordings that reached recording.maxSessionBytes.")),
    storeWritable: registry.register(new Gauge("gatehouse_store_writable", "1 when the last audit and recording writes succeeded, 0 after a failed write until one succeeds.")),
    agentsConnected: registry.register(new Gauge("gatehouse_agents_connected", "Open tunnels per network-resident agent.")),
    gateSeconds: registry.register(new Histogram("gatehouse_gate_seconds", "Time the gate adds per operation (classify + decide + audit), by connection.", [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1])),
  };
}
export type GatewayMetrics = ReturnType<typeof createGatewayMetrics>;

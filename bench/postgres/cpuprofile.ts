// Summarise a V8 .cpuprofile (from `node --cpu-prof`): self time per function and per area of the
// gateway (decoder, classifier, policy, audit/SQLite, socket I/O, logging…), plus inclusive time
// of a few entry points. Used by the benchmark's profile mode; also a CLI:
//   node --import tsx bench/postgres/cpuprofile.ts FILE.cpuprofile [top]

import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface Row {
  name: string;
  ms: number;
  pct: number;
}

export interface ProfileSummary {
  totalMs: number;
  /** Non-idle time: what the process spent on the CPU (incl. GC and native "program"). */
  busyMs: number;
  areas: Row[];
  functions: Row[];
  inclusive: Row[];
}

/** Area of the code a frame belongs to; first match wins. */
const AREAS: Array<[string, (f: CallFrame) => boolean]> = [
  ["(idle)", (f) => f.functionName === "(idle)"],
  ["(garbage collector)", (f) => f.functionName === "(garbage collector)"],
  ["libpg-query parse (WASM)", (f) => f.url.includes("libpg-query") || f.url.startsWith("wasm://")],
  ["classifier (tree walk, cache, freeze)", (f) => f.url.includes("/classify/")],
  ["PG decoder / codec", (f) => f.url.includes("/postgres/codec/")],
  ["engine relay + server stream", (f) => f.url.includes("/postgres/engine.ts") || f.url.includes("/postgres/server-stream.ts")],
  ["policy", (f) => f.url.includes("/src/policy/")],
  ["gate", (f) => f.url.includes("/src/gate/")],
  ["audit log (hash chain, canonical JSON)", (f) => f.url.includes("/src/audit/")],
  ["store: Kysely", (f) => f.url.includes("/kysely/")],
  ["store: better-sqlite3", (f) => f.url.includes("better-sqlite3") || /^(run|all|get|prepare|exec|iterate)$/.test(f.functionName) && f.url === ""],
  ["metrics / logging", (f) => f.url.includes("/observability/") || f.url.includes("/pino") || f.url.includes("/sonic-boom/")],
  ["crypto (sha256, uuid, random)", (f) => f.url.includes("node:crypto") || f.url.includes("internal/crypto") || /^(digest|update|randomUUID|randomBytes)$/.test(f.functionName)],
  ["TLS", (f) => f.url.includes("_tls") || f.url.includes("internal/tls") || /^(encOut|ssl|SSL|clearIn|receive)/.test(f.functionName)],
  ["socket I/O + streams (node core)", (f) => /node:(net|stream|internal\/stream|internal\/net|internal\/streams|buffer|internal\/buffer|events)/.test(f.url) || /^(writev|writeBuffer|writeUtf8String|writeLatin1String|onStreamRead|readStart|readStop)$/.test(f.functionName)],
  ["timers / microtasks / promises (node core)", (f) => /node:internal\/(timers|process\/task_queues|process\/promises|async_hooks)/.test(f.url) || f.functionName === "processTicksAndRejections"],
  ["(program: native / VM)", (f) => f.functionName === "(program)"],
  ["other node core", (f) => f.url.startsWith("node:")],
  ["other JS", () => true],
];

/** Entry points whose inclusive time (self + callees) is reported. */
const INCLUSIVE: Array<[string, (f: CallFrame) => boolean]> = [
  ["FrontendDecoder.push (decode client bytes)", (f) => f.functionName.endsWith("push") && f.url.includes("/codec/frontend.ts")],
  ["describeInSession (classify incl. cache + parse)", (f) => f.functionName === "describeInSession"],
  ["parseSync (libpg-query)", (f) => f.functionName === "parseSync"],
  ["PolicyEngine.decide", (f) => f.functionName.endsWith("decide") && f.url.includes("/policy/engine.ts")],
  ["Gate.judge (sync part: policy, metrics, log, enqueue)", (f) => f.functionName.endsWith("judge") && f.url.includes("/gate/gate.ts")],
  ["auditOperation (audit payload)", (f) => f.functionName === "auditOperation"],
  ["AuditLog flush (SQLite group commit)", (f) => f.url.includes("/audit/log.ts") && f.functionName.includes("flush")],
  ["canonicalJson", (f) => f.functionName === "canonicalJson"],
  ["ServerStream.push (server → client scan)", (f) => f.functionName.endsWith("push") && f.url.includes("server-stream.ts")],
  ["pino log call", (f) => f.url.includes("/pino/")],
  ["Socket write (writeGeneric/writev)", (f) => /^(writeGeneric|writevGeneric|_writeGeneric|_writev)$/.test(f.functionName)],
  ["onStreamRead (socket read callbacks)", (f) => f.functionName === "onStreamRead"],
  ["garbage collector", (f) => f.functionName === "(garbage collector)"],
];

function shortUrl(url: string): string {
  if (!url) return "";
  const u = url.replace(/^file:\/\//, "");
  const i = u.lastIndexOf("/node_modules/");
  if (i >= 0) return u.slice(i + "/node_modules/".length);
  const s = u.indexOf("/src/");
  if (s >= 0) return u.slice(s + 1);
  return u;
}

export interface SummaryOptions {
  /** Functions listed. */
  top?: number;
  /** Only samples taken in this window, in ms from the profile's start (e.g. the load phase). */
  fromMs?: number;
  toMs?: number;
}

export function summarize(profile: CpuProfile, opts: SummaryOptions = {}): ProfileSummary {
  const top = opts.top ?? 25;
  const from = (opts.fromMs ?? 0) * 1000;
  const to = (opts.toMs ?? Number.POSITIVE_INFINITY) * 1000;
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of profile.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const selfUs = new Map<number, number>();
  let t = 0; // µs since the profile started
  for (let i = 0; i < profile.samples.length; i++) {
    const d = profile.timeDeltas[i] ?? 0;
    t += d;
    if (t < from || t > to) continue;
    const id = profile.samples[i]!;
    selfUs.set(id, (selfUs.get(id) ?? 0) + d);
  }
  let total = 0;
  let idle = 0;
  const areas = new Map<string, number>();
  const funcs = new Map<string, number>();
  const incl = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const n = byId.get(id)!;
    const f = n.callFrame;
    total += us;
    if (f.functionName === "(idle)") idle += us;
    const area = AREAS.find(([, m]) => m(f))![0];
    areas.set(area, (areas.get(area) ?? 0) + us);
    const fname = `${f.functionName || "(anonymous)"}  ${shortUrl(f.url)}${f.url ? `:${f.lineNumber + 1}` : ""}`;
    funcs.set(fname, (funcs.get(fname) ?? 0) + us);
    // inclusive: walk up the stack once, counting each entry point at most once per sample
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const cf = byId.get(cur)!.callFrame;
      for (const [label, m] of INCLUSIVE) if (!seen.has(label) && m(cf)) seen.add(label);
    }
    for (const label of seen) incl.set(label, (incl.get(label) ?? 0) + us);
  }
  const busy = total - idle;
  const rows = (m: Map<string, number>, base: number): Row[] =>
    [...m].sort((a, b) => b[1] - a[1]).map(([name, us]) => ({ name, ms: us / 1000, pct: base > 0 ? (100 * us) / base : 0 }));
  return {
    totalMs: total / 1000,
    busyMs: busy / 1000,
    areas: rows(new Map([...areas].filter(([k]) => k !== "(idle)")), busy),
    functions: rows(new Map([...funcs].filter(([k]) => !k.startsWith("(idle)"))), busy).slice(0, top),
    inclusive: rows(incl, busy),
  };
}

/** `transactions`: when given, each row also shows its cost in µs of CPU per transaction. */
export function formatSummary(s: ProfileSummary, transactions?: number): string {
  const per = (ms: number) => (transactions ? `  ${((ms * 1000) / transactions).toFixed(1).padStart(6)} µs/tx` : "");
  const line = (r: Row) => `  ${r.pct.toFixed(1).padStart(5)}%  ${r.ms.toFixed(0).padStart(7)} ms${per(r.ms)}  ${r.name}`;
  return [
    `wall ${(s.totalMs / 1000).toFixed(1)} s, main thread on CPU ${(s.busyMs / 1000).toFixed(1)} s (${((100 * s.busyMs) / s.totalMs).toFixed(0)}% of one core)${transactions ? `, ${((s.busyMs * 1000) / transactions).toFixed(1)} µs per transaction` : ""}; shares are of on-CPU time`,
    "by area (self time):",
    ...s.areas.map(line),
    "entry points (inclusive time):",
    ...s.inclusive.map(line),
    "top functions (self time):",
    ...s.functions.map(line),
  ].join("\n");
}

export function summarizeFile(path: string, opts: SummaryOptions = {}): ProfileSummary {
  return summarize(JSON.parse(readFileSync(path, "utf8")) as CpuProfile, opts);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const file = process.argv[2];
  if (!file) {
    process.stderr.write("usage: cpuprofile.ts FILE.cpuprofile [top]\n");
    process.exit(2);
  }
  process.stdout.write(`${formatSummary(summarizeFile(file, { top: Number(process.argv[3] ?? 25) }))}\n`);
}

// One pgbench cell: `pgbench -S -n` for a fixed time, with per-transaction latency logs (-l) in a
// directory of its own; TPS comes from pgbench's summary, p50/p99 from the logs. Percentiles are
// computed here (nearest-rank) from every logged transaction, not from pgbench's averages.

import { mkdirSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { run } from "./procs.ts";

export type ProtocolMode = "simple" | "prepared";

export interface Endpoint {
  host: string;
  port: number;
  database: string;
  user: string;
  password?: string;
  sslmode: "disable" | "require";
}

export interface CellResult {
  tps: number;
  transactions: number;
  p50Ms: number;
  p99Ms: number;
  failed?: string;
}

export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

/** Latencies in microseconds from pgbench -l files: `client txno latency_us script epoch_s epoch_us`. */
export function readLatencies(dir: string): Float64Array {
  const values: number[] = [];
  for (const f of readdirSync(dir)) {
    const text = readFileSync(join(dir, f), "utf8");
    let start = 0;
    while (start < text.length) {
      let end = text.indexOf("\n", start);
      if (end < 0) end = text.length;
      // third field
      const a = text.indexOf(" ", start);
      const b = a < 0 ? -1 : text.indexOf(" ", a + 1);
      const c = b < 0 ? -1 : text.indexOf(" ", b + 1);
      if (c > 0 && c < end) {
        const us = Number(text.slice(b + 1, c));
        if (Number.isFinite(us)) values.push(us);
      }
      start = end + 1;
    }
  }
  return Float64Array.from(values).sort();
}

export async function runPgbench(opts: { endpoint: Endpoint; clients: number; threads: number; mode: ProtocolMode; seconds: number; logDir: string }): Promise<CellResult> {
  const e = opts.endpoint;
  mkdirSync(opts.logDir, { recursive: true });
  const env: NodeJS.ProcessEnv = { ...process.env, PGHOST: e.host, PGPORT: String(e.port), PGUSER: e.user, PGDATABASE: e.database, PGSSLMODE: e.sslmode, PGAPPNAME: "gatehouse-bench" };
  if (e.password !== undefined) env.PGPASSWORD = e.password;
  else delete env.PGPASSWORD;
  // -n: no vacuum/truncate before the run (the gateway would send TRUNCATE to review); the bench
  // vacuums the tables once, directly, after initialising them.
  const args = ["-S", "-n", "-M", opts.mode, "-c", String(opts.clients), "-j", String(opts.threads), "-T", String(opts.seconds), "-l", `--log-prefix=${join(opts.logDir, "tx")}`];
  try {
    const { stdout } = await run("pgbench", args, { env, timeoutMs: (opts.seconds + 60) * 1000 });
    const tps = /tps = ([0-9.]+) \(without initial connection time\)/.exec(stdout)?.[1];
    const txs = /number of transactions actually processed: (\d+)/.exec(stdout)?.[1];
    if (!tps) throw new Error(`cannot read tps from pgbench output:\n${stdout}`);
    const lat = readLatencies(opts.logDir);
    return { tps: Number(tps), transactions: Number(txs ?? lat.length), p50Ms: percentile(lat, 50) / 1000, p99Ms: percentile(lat, 99) / 1000 };
  } catch (err) {
    return { tps: Number.NaN, transactions: 0, p50Ms: Number.NaN, p99Ms: Number.NaN, failed: (err as Error).message.split("\n").slice(0, 6).join(" | ") };
  }
}

// Micro-benchmark for FrontendDecoder on a pgbench-like stream (TPC-B statements sent with the
// extended protocol: Parse/Bind/Describe/Execute/Sync per statement). It exists to keep the
// decoder cheap enough to sit in the relay path. Not a test; it must never be imported by code.
// Run: node --import tsx src/protocols/postgres/codec/bench.ts
// Prints messages/s for whole-buffer reads and per-statement reads, against a framing-only
// baseline (just walking the length fields) measured in the same run.

import { serialize } from "pg-protocol";
import { FrontendDecoder } from "./frontend.ts";

const STATEMENTS: Array<[string, (i: number) => string[]]> = [
  ["BEGIN", () => []],
  ["UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2", (i) => [String((i % 9999) - 5000), String(i % 100000)]],
  ["SELECT abalance FROM pgbench_accounts WHERE aid = $1", (i) => [String(i % 100000)]],
  ["UPDATE pgbench_tellers SET tbalance = tbalance + $1 WHERE tid = $2", (i) => [String((i % 9999) - 5000), String(i % 10)]],
  ["UPDATE pgbench_branches SET bbalance = bbalance + $1 WHERE bid = $2", (i) => [String((i % 9999) - 5000), "1"]],
  [
    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)",
    (i) => [String(i % 10), "1", String(i % 100000), String((i % 9999) - 5000)],
  ],
  ["END", () => []],
];

/** One group of P/B/D/E/S per statement, as libpq's PQexecParams sends it. */
function buildStatements(transactions: number): Buffer[] {
  const groups: Buffer[] = [];
  for (let t = 0; t < transactions; t++) {
    for (const [sql, params] of STATEMENTS) {
      groups.push(
        Buffer.concat([
          serialize.parse({ text: sql }),
          serialize.bind({ values: params(t) }),
          serialize.describe({ type: "P" }),
          serialize.execute(),
          serialize.sync(),
        ]),
      );
    }
  }
  return groups;
}

function chunk(buf: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) out.push(buf.subarray(i, i + size));
  return out;
}

/** Baseline: only walk the frames (type byte + length), no decoding, no partial handling. */
function frameOnly(chunks: Buffer[]): number {
  let n = 0;
  let carry: Buffer | null = null;
  for (let c of chunks) {
    if (carry) c = Buffer.concat([carry, c]);
    let off = 0;
    while (c.length - off >= 5) {
      const total = 1 + c.readInt32BE(off + 1);
      if (c.length - off < total) break;
      off += total;
      n++;
    }
    carry = off < c.length ? c.subarray(off) : null;
  }
  return n;
}

function decodeAll(chunks: Buffer[]): number {
  const d = new FrontendDecoder();
  d.startupDone();
  let n = 0;
  for (const c of chunks) n += d.push(c).length;
  return n;
}

function measure(name: string, chunks: Buffer[], fn: (c: Buffer[]) => number): number {
  const totalBytes = chunks.reduce((s, c) => s + c.length, 0);
  for (let i = 0; i < 3; i++) fn(chunks); // warm up
  let msgs = 0;
  let rounds = 0;
  const start = process.hrtime.bigint();
  let elapsed = 0;
  while (elapsed < 1.5) {
    msgs += fn(chunks);
    rounds++;
    elapsed = Number(process.hrtime.bigint() - start) / 1e9;
  }
  const rate = msgs / elapsed;
  const mb = (totalBytes * rounds) / elapsed / 1e6;
  console.log(`${name.padEnd(44)} ${(rate / 1e6).toFixed(2).padStart(7)} M msg/s  ${mb.toFixed(0).padStart(5)} MB/s`);
  return rate;
}

const groups = buildStatements(2000);
const stream = Buffer.concat(groups);
console.log(`stream: ${groups.length} statements, ${groups.length * 5} messages, ${(stream.length / 1024).toFixed(0)} KiB`);

const whole64k = chunk(stream, 64 * 1024);
const base = measure("baseline: framing only, 64 KiB reads", whole64k, frameOnly);
const full = measure("FrontendDecoder, 64 KiB reads", whole64k, decodeAll);
const perStmt = measure("FrontendDecoder, one read per statement", groups, decodeAll);
const odd = measure("FrontendDecoder, 1000-byte reads (spanning)", chunk(stream, 1000), decodeAll);
console.log(`ratio decoder/baseline (64 KiB reads): ${(full / base).toFixed(2)}`);
console.log(`ratio per-statement/64 KiB: ${(perStmt / full).toFixed(2)}, spanning/64 KiB: ${(odd / full).toFixed(2)}`);

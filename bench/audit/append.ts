// Main-thread cost of AuditLog.append on the SQLite store — what the gate pays before it forwards
// each operation — with, as the in-run baseline, the same rows inserted into an identical table
// (the migrated schema, same store settings) by one cached better-sqlite3 statement and no chain:
// no head read, no canonical JSON, no hash. The ratio shows what the chain and the promise
// plumbing add on top of SQLite's own work.
//   npm run bench:audit
//   env: BENCH_EVENTS (per round, 20000), BENCH_BATCHES (1,4,8,16,32,64), BENCH_ROUNDS (5),
//        BENCH_DIR (a tmpfs such as /dev/shm keeps the disk's writeback out), BENCH_VERBOSE=1
//
// One batch = B appends issued in one turn of the event loop by B sessions and awaited together,
// which is how B busy sessions hit the log (they are group-committed in one transaction). Every
// round gets a fresh store on a WAL file (the gateway's settings: checkpoints on a worker
// thread); the two measurements alternate round by round, and the numbers shown are medians.
// Most of what remains is SQLite's: each commit writes every b-tree page it dirtied to the WAL, and
// B sessions dirty B pages of the session_id index.

import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AuditLog, type AuditEventInput, newEventId } from "../../src/audit/log.ts";
import { openStore, type Store } from "../../src/store/store.ts";

const EVENTS = Number(process.env.BENCH_EVENTS ?? 20_000);
const BATCHES = (process.env.BENCH_BATCHES ?? "1,4,8,16,32,64").split(",").map(Number);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);

// A decision event as the PostgreSQL gate writes it (see auditOperation in src/gate/gate.ts).
const principal = { subject: "urn:gatehouse:dev#bench-agent", issuer: "urn:gatehouse:dev", displayName: "bench-agent", kind: "service", groups: ["ai-agents"], roles: [], scopes: [], expiresAt: 0 };
const data = (i: number) => ({
  protocol: "postgres",
  text: `SELECT abalance FROM pgbench_accounts WHERE aid = ${i};`,
  statements: [{ kind: "read", kinds: ["read"], tables: ["pgbench_accounts"], flags: [], nodeType: "SelectStmt" }],
});
// Batch size B stands for B busy sessions: event i belongs to session i mod B (random v4 ids, as
// src/gate/sessions.ts makes them), so each commit touches B places of the session_id index.
const SESSIONS = Array.from({ length: Math.max(...BATCHES) }, () => randomUUID());
const event = (i: number, batch: number): AuditEventInput => ({ type: "operation.decided", principal, connection: "bench", sessionId: SESSIONS[i % batch], decision: "allow", rule: "agents-read", data: data(i) });

const dir = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), "gh-bench-audit-"));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const turn = () => new Promise<void>((r) => setImmediate(r));

/** µs per event through AuditLog: `events` appends, `batch` per turn, each batch awaited. */
async function viaAuditLog(store: Store, batch: number, events: number): Promise<number> {
  const log = new AuditLog(store);
  let i = 0;
  const run = async (n: number) => {
    for (let done = 0; done < n; done += batch) {
      const ps: Promise<unknown>[] = [];
      for (let k = 0; k < batch; k++) ps.push(log.append(event(i++, batch)));
      await Promise.all(ps);
    }
  };
  await run(Math.min(events, 2000)); // warm-up: JIT, page cache
  const t = performance.now();
  await run(events);
  return ((performance.now() - t) * 1000) / events;
}

/** µs per event for the bare insert: same row, same table, a transaction per batch, no chain. */
async function bareInsert(store: Store, batch: number, events: number): Promise<number> {
  const db = store.sqlite!;
  const insert = db.prepare(
    "INSERT INTO audit_events (seq, id, at, type, principal_subject, principal_name, connection, session_id, decision, rule, data, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
  );
  const hash = "f".repeat(64);
  let seq = 0;
  const commit = db.transaction((n: number) => {
    for (let k = 0; k < n; k++) {
      const e = event(seq, batch);
      seq += 1;
      insert.run(seq, newEventId(), Date.now(), e.type, principal.subject, principal.displayName, e.connection, e.sessionId, e.decision, e.rule, JSON.stringify(e.data), hash, hash);
    }
  });
  const run = async (n: number) => {
    for (let done = 0; done < n; done += batch) {
      commit.immediate(batch); // as the log begins its transactions
      await turn(); // the log commits once per turn of the event loop: pay the same turn here
    }
  };
  await run(Math.min(events, 2000));
  const t = performance.now();
  await run(events);
  return ((performance.now() - t) * 1000) / events;
}

/** Median µs per event of each measurement, alternating them round by round on fresh stores. */
async function measure(batch: number, fs: Array<(store: Store, batch: number, events: number) => Promise<number>>): Promise<number[]> {
  const results: number[][] = fs.map(() => []);
  for (let r = 0; r < ROUNDS; r++) {
    for (const [k, f] of fs.entries()) {
      const file = join(dir, `${f.name}-${batch}-${r}.db`);
      rmSync(file, { force: true });
      const store = await openStore(`sqlite:${file}`);
      try {
        results[k]!.push(await f(store, batch, Math.ceil(EVENTS / batch) * batch));
        if (process.env.BENCH_VERBOSE) process.stderr.write(`  ${f.name} batch ${batch} round ${r}: ${results[k]!.at(-1)!.toFixed(2)} µs/event\n`);
      } finally {
        await store.close();
        for (const suffix of ["", "-wal", "-shm"]) rmSync(`${file}${suffix}`, { force: true });
      }
    }
  }
  return results.map(median);
}

try {
  const rows: string[] = [];
  for (const batch of BATCHES) {
    const [log, bare] = (await measure(batch, [viaAuditLog, bareInsert])) as [number, number];
    const row = `| ${batch} | ${log.toFixed(2)} | ${Math.round(1e6 / log).toLocaleString("en")} | ${bare.toFixed(2)} | ${(log / bare).toFixed(2)}× |`;
    process.stderr.write(`${row}\n`);
    rows.push(row);
  }
  process.stdout.write(`\nAuditLog.append on SQLite (WAL file), ${EVENTS} events per round, median of ${ROUNDS} rounds, Node ${process.version}:\n\n`);
  process.stdout.write("| events per commit | µs/event | events/s | bare insert µs/event | ratio |\n|---:|---:|---:|---:|---:|\n");
  for (const r of rows) process.stdout.write(`${r}\n`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}

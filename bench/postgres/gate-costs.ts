// In-process cost of each stage the PostgreSQL gate adds to one simple-protocol statement, on the
// exact text pgbench -S sends, with lower bounds measured in the same run. It explains the
// end-to-end numbers of run.ts; it does not replace them.
//   node --import tsx bench/postgres/gate-costs.ts        (BENCH_ITER=N to change the loop size)
//
// Stages: decode (FrontendDecoder), classify (cache miss: a new literal each time, as pgbench
// sends; cache hit: the same text), policy, audit payload + canonical JSON + hash, and the audit
// append (AuditLog, i.e. Kysely + better-sqlite3, group commit) one at a time (1 client) and eight
// per turn (8 clients), on a WAL file and on :memory:, and the decision log line at info. Lower
// bounds for the append: the same row inserted with a cached better-sqlite3 statement and the
// chain head kept in memory, with SQLite's checkpoints inline or on a worker thread, and with
// fewer indexes on the table.

import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import BetterSqlite3 from "better-sqlite3";
import { pino } from "pino";
import { AuditLog, canonicalJson, GENESIS_HASH, hashEvent } from "../../src/audit/log.ts";
import { connectionsOf } from "../../src/config/connections.ts";
import { parseConfig } from "../../src/config/load.ts";
import type { Principal } from "../../src/domain/principal.ts";
import { auditOperation } from "../../src/gate/gate.ts";
import { createLogger } from "../../src/observability/logger.ts";
import { PolicyEngine } from "../../src/policy/engine.ts";
import { describeInSession, initClassifier, PreparedStatementRegistry } from "../../src/protocols/postgres/classify/index.ts";
import { FrontendDecoder, frontendWriter } from "../../src/protocols/postgres/codec/index.ts";
import { openStore } from "../../src/store/store.ts";

const ITER = Number(process.env.BENCH_ITER ?? 5000);
const text = (aid: number) => `SELECT abalance FROM pgbench_accounts WHERE aid = ${aid};`;

const rows: Array<[string, number]> = [];
function record(name: string, totalMs: number, n: number): void {
  rows.push([name, (totalMs * 1000) / n]);
  process.stderr.write(`${name.padEnd(64)} ${((totalMs * 1000) / n).toFixed(2).padStart(9)} µs\n`);
}
function timeSync(name: string, n: number, f: (i: number) => void): void {
  for (let i = 0; i < Math.min(n, 500); i++) f(i + 1_000_000); // warm-up
  const t = performance.now();
  for (let i = 0; i < n; i++) f(i);
  record(name, performance.now() - t, n);
}
async function timeAsync(name: string, n: number, f: (i: number) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < Math.min(n, 200); i++) await f(i + 1_000_000);
  const t = performance.now();
  for (let i = 0; i < n; i++) await f(i);
  record(name, performance.now() - t, n);
}

await initClassifier();
const cfg = parseConfig({
  connections: [{ name: "bench", protocol: "postgres", postgres: { host: "127.0.0.1", database: "bench", user: "postgres", tls: "disable" } }],
  policies: [{ name: "agents-read", principals: { groups: ["ai-agents"] }, operations: { kinds: ["read", "transaction", "session"] }, decision: "allow" }],
});
const connection = connectionsOf(cfg).get("bench")!;
const policy = new PolicyEngine(cfg.policies);
const principal: Principal = { subject: "urn:gatehouse:dev#bench-agent", issuer: "urn:gatehouse:dev", displayName: "bench-agent", kind: "service", groups: ["ai-agents"], roles: [], scopes: [], expiresAt: 0 };
const registry = new PreparedStatementRegistry();

// decode
const decoder = new FrontendDecoder();
decoder.push(frontendWriter.startupMessage([["user", "x"]]));
const frames = Array.from({ length: 1000 }, (_, i) => frontendWriter.query(text(i + 1)));
timeSync("decode: FrontendDecoder.push(Query)", ITER, (i) => decoder.push(frames[i % 1000]!));

// classify
let miss = 10_000_000;
timeSync("classify: describeInSession, cache miss (new literal)", ITER, () => describeInSession(text(miss++), registry));
timeSync("classify: describeInSession, cache hit", ITER, () => describeInSession(text(42), registry));

// policy
const op = { protocol: "postgres" as const, text: text(42), sql: describeInSession(text(42), registry) };
timeSync("policy: PolicyEngine.decide", ITER, () => policy.decide({ principal, connection, operation: op }));

// the decision log line the gate writes at level info (the benchmark runs the gateway at warn)
const infoLogger = createLogger("info", pino.destination({ dest: "/dev/null", sync: true }) as unknown as NodeJS.WritableStream);
const warnLogger = createLogger("warn", pino.destination({ dest: "/dev/null", sync: true }) as unknown as NodeJS.WritableStream);
for (const [label, logger] of [
  ["info (one JSON line per decision, sync write)", infoLogger],
  ["warn (the line is filtered out)", warnLogger],
] as const) {
  timeSync(`logging: decision log call at ${label}`, ITER, () =>
    logger.info({ event: "decision", session: "5f0c0b7e-0000-4000-8000-000000000000", principal: principal.subject, connection: "bench", decision: "allow", rule: "agents-read", kinds: ["read"], statementIndex: undefined }, "decision"),
  );
}

// audit payload, canonical JSON, chain hash
timeSync("audit: auditOperation + canonicalJson + hashEvent", ITER, (i) => {
  const data = canonicalJson(auditOperation(op));
  hashEvent({ seq: i, id: randomUUID(), at: Date.now(), type: "operation.decided", principal_subject: principal.subject, principal_name: principal.displayName, connection: "bench", session_id: "s", decision: "allow", rule: "agents-read", data, prev_hash: GENESIS_HASH });
});

// audit append through AuditLog (what the gate awaits)
const dir = mkdtempSync(join(tmpdir(), "gh-gate-costs-"));
try {
  const event = () => ({ type: "operation.decided", principal, connection: "bench", sessionId: "5f0c0b7e-0000-4000-8000-000000000000", decision: "allow", rule: "agents-read", data: auditOperation(op) });
  for (const [label, url] of [
    ["WAL file", `sqlite:${join(dir, "audit.db")}`],
    [":memory:", "sqlite::memory:"],
  ] as const) {
    const store = await openStore(url);
    const audit = new AuditLog(store);
    await timeAsync(`append: AuditLog, 1 at a time (1 client), ${label}`, ITER, () => audit.append(event()));
    await timeAsync(`append: AuditLog, 8 per turn (8 clients), ${label}, per event`, ITER / 8, () => Promise.all(Array.from({ length: 8 }, () => audit.append(event()))));
    rows[rows.length - 1]![1] /= 8;
    process.stderr.write(`${"".padEnd(64)} (${rows[rows.length - 1]![1].toFixed(2)} µs per event)\n`);
    await store.close();
  }

  // Lower bound for the append: cached statement, chain head in memory, one transaction per
  // commit. Rows: the schema of migration 001 on a WAL file with SQLite's automatic checkpoints
  // (run inside the commit that crosses 1000 WAL pages, with an fsync) and with checkpoints on a
  // worker thread; then schemas with fewer b-trees (each b-tree a commit touches is one more WAL
  // frame written per commit); then :memory:.
  const SCHEMA_001 =
    "CREATE TABLE audit_events (seq bigint primary key, id text not null unique, at bigint not null, type text not null, principal_subject text, principal_name text, connection text, session_id text, decision text, rule text, data text not null, prev_hash text not null, hash text not null); CREATE INDEX audit_events_at_idx ON audit_events(at); CREATE INDEX audit_events_session_idx ON audit_events(session_id);";
  const intPk = SCHEMA_001.replace("seq bigint primary key", "seq integer primary key");
  const noUniqueId = intPk.replace("id text not null unique", "id text not null");
  const bare = noUniqueId.replace(/ CREATE INDEX.*$/, "");
  const variants: Array<[label: string, file: string, ddl: string, bgCheckpoint: boolean, perCommit: number[]]> = [
    ["WAL file, schema 001", join(dir, "a.db"), SCHEMA_001, false, [1, 8]],
    ["WAL file, schema 001, checkpoints on a worker thread", join(dir, "b.db"), SCHEMA_001, true, [1, 8]],
    ["WAL file, seq INTEGER PRIMARY KEY, checkpoints on a worker", join(dir, "c.db"), intPk, true, [1]],
    ["WAL file, + id not UNIQUE, checkpoints on a worker", join(dir, "d.db"), noUniqueId, true, [1]],
    ["WAL file, + no secondary index, checkpoints on a worker", join(dir, "e.db"), bare, true, [1]],
    [":memory:, schema 001", ":memory:", SCHEMA_001, false, [1, 8]],
  ];
  for (const [label, file, ddl, bgCheckpoint, perCommit] of variants) {
    const db = new BetterSqlite3(file);
    let worker: Worker | undefined;
    if (file !== ":memory:") {
      db.pragma("journal_mode = WAL");
      db.pragma("synchronous = NORMAL");
    }
    if (bgCheckpoint) {
      db.pragma("wal_autocheckpoint = 0");
      const sqlitePath = createRequire(import.meta.url).resolve("better-sqlite3");
      worker = new Worker(
        `const D = require(${JSON.stringify(sqlitePath)}); const db = new D(${JSON.stringify(file)}); db.pragma("busy_timeout = 5000"); setInterval(() => db.pragma("wal_checkpoint(PASSIVE)"), 100);`,
        { eval: true },
      );
    }
    db.exec(ddl);
    const ins = db.prepare("INSERT INTO audit_events (seq,id,at,type,principal_subject,principal_name,connection,session_id,decision,rule,data,prev_hash,hash) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)");
    let seq = 0;
    let prev = GENESIS_HASH;
    const commit = db.transaction((n: number) => {
      for (let k = 0; k < n; k++) {
        seq++;
        const data = canonicalJson(auditOperation(op));
        const row = { seq, id: randomUUID(), at: Date.now(), type: "operation.decided", principal_subject: principal.subject, principal_name: principal.displayName, connection: "bench", session_id: "s", decision: "allow", rule: "agents-read", data, prev_hash: prev };
        const hash = hashEvent(row);
        ins.run(row.seq, row.id, row.at, row.type, row.principal_subject, row.principal_name, row.connection, row.session_id, row.decision, row.rule, row.data, row.prev_hash, hash);
        prev = hash;
      }
    });
    for (const n of perCommit) {
      // Yield to the event loop now and then, as the gateway does (lets the worker's timer run).
      await timeAsync(`lower bound: cached insert, ${n} per commit, ${label}${n > 1 ? ", per event" : ""}`, ITER / n, async (i) => {
        commit(n);
        if (i % 50 === 0) await new Promise((r) => setImmediate(r));
      });
      if (n > 1) {
        rows[rows.length - 1]![1] /= n;
        process.stderr.write(`${"".padEnd(64)} (${rows[rows.length - 1]![1].toFixed(2)} µs per event)\n`);
      }
    }
    await worker?.terminate();
    db.close();
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}

process.stdout.write(`\nper-statement cost on the gateway's main thread (${ITER} iterations, Node ${process.version}):\n\n`);
process.stdout.write("| stage | µs per statement |\n|---|---:|\n");
for (const [name, us] of rows) process.stdout.write(`| ${name} | ${us.toFixed(1)} |\n`);

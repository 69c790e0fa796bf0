// Issue 3, "Done when": a table of statements judged end to end through the real gateway with
// DEFAULT_POLICIES, each sent by node-postgres with the simple protocol (Query) and again with
// the extended protocol (Parse/Bind/Execute). The connection's reviews run in async mode so a
// statement that needs review fails at once with GH-POLICY-002 and a review id. Whatever the
// gateway says, the database itself is the witness: a direct connection takes a snapshot before
// and after each refused statement (rows, tables, indexes, ACLs, roles, extensions, large objects,
// ALTER SYSTEM settings, databases, a file COPY TO PROGRAM would create) and it must not change;
// allowed reads must return exactly what a direct connection returns.
// Also here (async mode): the approved identical retry runs once, an approval covers only its
// parameter values, EXECUTE of a prepared DELETE (SQL PREPARE or a named extended-protocol
// statement) is gated like the DELETE itself, and such a statement cannot be redefined under its
// name to slip past the gate.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, rmSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import type pg from "pg";
import { adminClient } from "./helpers/pg.ts";
import { serialize } from "pg-protocol";
import { approveReview, connectDirect, connectGateway, errorFields, getReview, metricSum, metricsText, RawClient, reviewIdIn } from "./helpers/clients.ts";
import { startTestGateway, type TestGateway } from "./helpers/gateway.ts";

const suffix = randomBytes(4).toString("hex");
const OTHER_ROLE = `gh_other_${suffix}`;
const NEW_ROLE = `gh_x_${suffix}`;
const VICTIM_DB = `gh_victim_${suffix}`;
const MARKER_FILE = `/tmp/gh-copy-program-${suffix}`;

let t: TestGateway;
let token: string;
let dbaToken: string;
let direct: pg.Client;

type Mode = "simple" | "extended";

interface Ctx {
  gw: pg.Client;
  result: pg.QueryResult | pg.QueryResult[] | undefined;
}

interface Case {
  sql: string;
  expect: "allow" | "deny" | "review";
  /** Rule named in the refusal (deny/review), or that allowed it (checked in the decision metrics). */
  rule: string;
  /** Allowed reads: rows must equal what a direct connection returns for the same text. */
  same?: boolean;
  /** Statements sent through the gateway on the same session first (their outcome is ignored). */
  setup?: string[];
  /** Extra assertions after the statement (for allowed ones: its effect). */
  check?: (c: Ctx) => Promise<void>;
}

const rowsOf = async (sql: string) => (await direct.query(sql)).rows;
const tRows = () => rowsOf("SELECT id, name FROM t ORDER BY id");
const INITIAL = [
  { id: 1, name: "one" },
  { id: 2, name: "two" },
  { id: 3, name: "DROP TABLE t" },
];

const currentUserIs = (user: string) => async ({ gw }: Ctx) => {
  const r = await gw.query("SELECT current_user AS u, session_user AS s");
  assert.deepEqual(r.rows[0], { u: user, s: user }, "the session's role did not change");
};

const CASES: Case[] = [
  // ------------------------------------------------------------------ allowed (agents-read/write)
  { sql: "SELECT * FROM t ORDER BY id", expect: "allow", rule: "agents-read", same: true },
  { sql: "SELECT count(*) FROM t", expect: "allow", rule: "agents-read", same: true },
  { sql: "SELECT * FROM t WHERE name = 'DROP TABLE t'", expect: "allow", rule: "agents-read", same: true },
  { sql: "SELECT 'DELETE FROM t' AS s -- ; DROP TABLE t", expect: "allow", rule: "agents-read", same: true },
  { sql: "SELECT $$TRUNCATE t$$ AS s, id FROM t ORDER BY id", expect: "allow", rule: "agents-read", same: true },
  { sql: "WITH c AS (SELECT * FROM t WHERE id > 1) SELECT id, name FROM c ORDER BY id", expect: "allow", rule: "agents-read", same: true },
  { sql: "SELECT * FROM t FOR UPDATE", expect: "allow", rule: "agents-read", same: true },
  { sql: "EXPLAIN SELECT * FROM t", expect: "allow", rule: "agents-read", same: true },
  { sql: "SHOW work_mem", expect: "allow", rule: "agents-read", same: true },
  { sql: "SELECT g, md5(g::text) FROM generate_series(1, 500) g", expect: "allow", rule: "agents-read", same: true },
  {
    sql: "INSERT INTO t (id, name) VALUES (100, 'x')",
    expect: "allow",
    rule: "agents-write",
    check: async () => assert.deepEqual(await tRows(), [...INITIAL, { id: 100, name: "x" }]),
  },
  {
    sql: "UPDATE t SET name = 'y' WHERE id = 1",
    expect: "allow",
    rule: "agents-write",
    check: async () => assert.deepEqual(await tRows(), [{ id: 1, name: "y" }, ...INITIAL.slice(1)]),
  },
  {
    sql: "DELETE FROM t WHERE id = 1",
    expect: "allow",
    rule: "agents-write",
    check: async () => assert.deepEqual(await tRows(), INITIAL.slice(1)),
  },
  {
    sql: "SET work_mem = '8MB'",
    expect: "allow",
    rule: "agents-read",
    check: async ({ gw }) => {
      assert.equal((await gw.query("SHOW work_mem")).rows[0].work_mem, "8MB", "the gateway session has the setting");
      assert.notEqual((await rowsOf("SHOW work_mem"))[0].work_mem, "8MB", "only that session");
    },
  },
  { sql: "LISTEN ch", expect: "allow", rule: "agents-read" },
  { sql: "NOTIFY ch", expect: "allow", rule: "agents-write" },
  {
    sql: "PREPARE q AS SELECT id, name FROM t WHERE id = $1",
    expect: "allow",
    rule: "agents-read",
    check: async ({ gw }) => assert.deepEqual((await gw.query("EXECUTE q(2)")).rows, [INITIAL[1]], "EXECUTE of an allowed PREPARE runs"),
  },
  {
    sql: "BEGIN",
    expect: "allow",
    rule: "agents-read",
    check: async ({ gw }) => {
      await gw.query("INSERT INTO t VALUES (50, 'in tx')");
      assert.equal((await gw.query("SELECT count(*)::int AS n FROM t")).rows[0].n, 4, "the transaction sees its own insert");
      await gw.query("ROLLBACK");
      assert.deepEqual(await tRows(), INITIAL, "rolled back");
    },
  },
  // ------------------------------------------------------------------------------------- denied
  { sql: `DROP DATABASE ${VICTIM_DB}`, expect: "deny", rule: "no-drop-database" },
  { sql: `COPY t TO PROGRAM 'touch ${MARKER_FILE}'`, expect: "deny", rule: "no-admin" },
  { sql: "COPY t TO PROGRAM 'true'", expect: "deny", rule: "no-admin" },
  { sql: "COPY t FROM '/etc/passwd'", expect: "deny", rule: "no-admin" },
  { sql: "SET ROLE postgres", expect: "deny", rule: "no-role-switch", check: currentUserIs("postgres") },
  { sql: `SET ROLE ${OTHER_ROLE}`, expect: "deny", rule: "no-role-switch", check: currentUserIs("postgres") },
  { sql: "SET SESSION AUTHORIZATION postgres", expect: "deny", rule: "no-role-switch", check: currentUserIs("postgres") },
  { sql: `SET SESSION AUTHORIZATION ${OTHER_ROLE}`, expect: "deny", rule: "no-role-switch", check: currentUserIs("postgres") },
  { sql: "SELECT set_config('role','postgres',false)", expect: "deny", rule: "no-role-switch", check: currentUserIs("postgres") },
  { sql: `SELECT set_config('role','${OTHER_ROLE}',false)`, expect: "deny", rule: "no-role-switch", check: currentUserIs("postgres") },
  { sql: "DISCARD ALL", expect: "deny", rule: "no-role-switch" },
  { sql: "ALTER SYSTEM SET work_mem = '1MB'", expect: "deny", rule: "no-admin" },
  {
    sql: "SELECT pg_terminate_backend(pg_backend_pid())",
    expect: "deny",
    rule: "no-admin",
    check: async ({ gw }) => assert.equal((await gw.query("SELECT 'alive' AS s")).rows[0].s, "alive"),
  },
  { sql: "SELECT lo_import('/etc/passwd')", expect: "deny", rule: "no-admin" },
  { sql: "SELECT pg_read_file('/etc/passwd')", expect: "deny", rule: "no-admin" },
  { sql: "CHECKPOINT", expect: "deny", rule: "no-admin" },
  { sql: "CREATE EXTENSION IF NOT EXISTS pgcrypto", expect: "deny", rule: "no-admin" },
  { sql: `ALTER ROLE ${OTHER_ROLE} SUPERUSER`, expect: "deny", rule: "no-admin" },
  { sql: "VACUUM t", expect: "deny", rule: "default" },
  // A PREPARE that was refused leaves nothing to EXECUTE; the EXECUTE is not a way around it.
  { sql: "EXECUTE p", expect: "deny", rule: "default", setup: ["PREPARE p AS DELETE FROM t"] },
  // ---------------------------------------------------------------------------- needs a review
  { sql: "DELETE FROM t", expect: "review", rule: "destructive" },
  { sql: "UPDATE t SET name = 'z'", expect: "review", rule: "destructive" },
  { sql: "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", expect: "review", rule: "destructive" },
  { sql: "/* x */ DeLeTe /* y */ FROM t", expect: "review", rule: "destructive" },
  { sql: "TRUNCATE t", expect: "review", rule: "destructive" },
  { sql: "EXPLAIN ANALYZE DELETE FROM t", expect: "review", rule: "destructive" },
  { sql: "PREPARE p AS DELETE FROM t", expect: "review", rule: "destructive" },
  { sql: "SELECT 1; DELETE FROM t", expect: "review", rule: "destructive" },
  { sql: "DROP TABLE t", expect: "review", rule: "schema-changes" },
  { sql: "BEGIN; DROP TABLE t; COMMIT", expect: "review", rule: "schema-changes" },
  { sql: "DO $$ BEGIN EXECUTE 'DROP TABLE t'; END $$", expect: "review", rule: "schema-changes" },
  { sql: "CALL p()", expect: "review", rule: "procedural" },
  { sql: "GRANT SELECT ON t TO PUBLIC", expect: "review", rule: "schema-changes" },
  { sql: "REVOKE SELECT ON t FROM PUBLIC", expect: "review", rule: "schema-changes" },
  { sql: `CREATE ROLE ${NEW_ROLE}`, expect: "review", rule: "schema-changes" },
  { sql: `DROP ROLE ${OTHER_ROLE}`, expect: "review", rule: "schema-changes" },
  { sql: "CREATE TABLE x AS SELECT 1", expect: "review", rule: "schema-changes" },
  { sql: "SELECT * INTO y FROM t", expect: "review", rule: "schema-changes" },
  { sql: "CREATE TABLE z (id int)", expect: "review", rule: "schema-changes" },
  { sql: "ALTER TABLE t ADD COLUMN c int", expect: "review", rule: "schema-changes" },
  { sql: "CREATE INDEX ON t (name)", expect: "review", rule: "schema-changes" },
  { sql: "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'select 1'", expect: "review", rule: "schema-changes" },
  { sql: "SELEC * FROM t", expect: "review", rule: "unparseable" },
];

/** Everything a refused statement could have changed, seen from a direct connection. */
async function snapshot(): Promise<Record<string, unknown>> {
  const r = await direct.query(
    `SELECT
       (SELECT json_agg(json_build_array(id, name) ORDER BY id) FROM t) AS rows,
       (SELECT array_agg(attname::text ORDER BY attnum) FROM pg_attribute WHERE attrelid = 't'::regclass AND attnum > 0 AND NOT attisdropped) AS columns,
       (SELECT array_agg(relname::text || ':' || relkind::text ORDER BY relname) FROM pg_class WHERE relnamespace = 'public'::regnamespace) AS relations,
       (SELECT relacl::text FROM pg_class WHERE oid = 't'::regclass) AS acl,
       (SELECT array_agg(proname::text ORDER BY proname) FROM pg_proc WHERE pronamespace = 'public'::regnamespace) AS routines,
       (SELECT array_agg(rolname::text || ':' || rolsuper::text ORDER BY rolname) FROM pg_roles WHERE rolname LIKE $1) AS roles,
       (SELECT array_agg(extname::text ORDER BY extname) FROM pg_extension) AS extensions,
       (SELECT count(*)::int FROM pg_largeobject_metadata) AS large_objects,
       (SELECT count(*)::int FROM pg_file_settings WHERE sourcefile LIKE '%postgresql.auto.conf') AS auto_conf_settings,
       (SELECT count(*)::int FROM pg_database WHERE datname = $2) AS victim_db`,
    [`gh\\_%\\_${suffix}`, VICTIM_DB],
  );
  return { ...r.rows[0], markerFile: existsSync(MARKER_FILE) };
}

async function reset(): Promise<void> {
  await direct.query(`DROP TABLE IF EXISTS x, y, z;
    CREATE TABLE IF NOT EXISTS t (id int PRIMARY KEY, name text);
    DELETE FROM t;
    INSERT INTO t VALUES (1, 'one'), (2, 'two'), (3, 'DROP TABLE t');`);
}

function send(gw: pg.Client, sql: string, mode: Mode) {
  // node-postgres: a bare string goes out as one simple Query; queryMode "extended" forces
  // Parse/Bind/Describe/Execute/Sync on the unnamed statement.
  const q = mode === "simple" ? { text: sql } : { text: sql, queryMode: "extended" };
  return gw.query(q as pg.QueryConfig);
}

const comparable = (r: pg.QueryResult | pg.QueryResult[] | undefined) => (Array.isArray(r) ? r.map((x) => x.rows) : r?.rows);

async function runCase(c: Case, mode: Mode): Promise<void> {
  await reset();
  const gw = await connectGateway(t, token, { application_name: `stmt-${mode}` });
  try {
    for (const s of c.setup ?? []) await gw.query(s).catch(() => {});
    const before = await snapshot();
    const allowedBy = async () => metricSum(await metricsText(t), "gatehouse_decisions_total", { connection: t.connection, decision: "allow", rule: c.rule });
    const allowedBefore = c.expect === "allow" ? await allowedBy() : 0;
    let result: pg.QueryResult | pg.QueryResult[] | undefined;
    let error: (Error & { code?: string }) | undefined;
    try {
      result = await send(gw, c.sql, mode);
    } catch (e) {
      error = e as Error & { code?: string };
    }
    if (c.expect === "allow") {
      assert.equal(error, undefined, `expected ${c.sql} to run, got ${error?.code}: ${error?.message}`);
      assert.equal((await allowedBy()) - allowedBefore, 1, `judged once and allowed by rule ${c.rule}`);
      if (c.same) assert.deepEqual(comparable(result), comparable(await direct.query(c.sql)), "same rows as a direct connection");
    } else {
      assert.ok(error, `expected ${c.sql} to be refused (${c.expect}), but it ran`);
      assert.equal(error.code, "42501", `SQLSTATE of ${error.message}`);
      if (c.expect === "deny") {
        assert.match(error.message, new RegExp(`^GH-POLICY-001: .*rule ${c.rule}\\b`));
      } else {
        assert.match(error.message, new RegExp(`^GH-POLICY-002: .*\\(rule ${c.rule}\\b`));
        const review = await getReview(t, reviewIdIn(error.message), dbaToken);
        assert.equal(review.status, 200);
        assert.equal(review.body.status, "pending");
        assert.equal(review.body.rule, c.rule);
        assert.equal(review.body.operation.text, c.sql, "the review shows the exact statement");
      }
      assert.deepEqual(await snapshot(), before, "the refused statement changed nothing in the database");
    }
    await c.check?.({ gw, result });
    // The session is still usable after any outcome.
    assert.equal((await gw.query("SELECT 41 + 1 AS n")).rows[0].n, 42);
  } finally {
    await gw.end();
  }
}

before(async () => {
  t = await startTestGateway({ connectionPolicy: { reviewMode: "async" } });
  [token, dbaToken] = await Promise.all([t.agentToken(), t.humanToken(["dba"], "dana")]);
  direct = await connectDirect(t);
  await reset();
  await direct.query(`CREATE PROCEDURE p() LANGUAGE sql AS $$ INSERT INTO t VALUES (99, 'from p') $$`);
  await direct.query(`CREATE ROLE ${OTHER_ROLE} NOLOGIN`);
  await direct.query(`CREATE DATABASE ${VICTIM_DB}`);
});

after(async () => {
  await direct?.end().catch(() => {});
  await t?.close();
  const a = adminClient();
  await a.connect();
  try {
    await a.query(`DROP DATABASE IF EXISTS ${VICTIM_DB} WITH (FORCE)`);
    await a.query(`DROP ROLE IF EXISTS ${OTHER_ROLE}`);
    await a.query(`DROP ROLE IF EXISTS ${NEW_ROLE}`);
    // Only if a test failed because ALTER SYSTEM got through: undo it on the shared server.
    if ((await a.query("SELECT 1 FROM pg_file_settings WHERE name = 'work_mem' AND setting = '1MB' AND sourcefile LIKE '%postgresql.auto.conf'")).rowCount) {
      await a.query("ALTER SYSTEM RESET work_mem");
    }
  } finally {
    await a.end();
  }
  rmSync(MARKER_FILE, { force: true });
});

test("the table covers at least 40 statements of every decision", () => {
  assert.ok(CASES.length >= 40, `${CASES.length} cases`);
  for (const d of ["allow", "deny", "review"]) assert.ok(CASES.filter((c) => c.expect === d).length >= 8, `enough ${d} cases`);
  assert.equal(new Set(CASES.map((c) => c.sql)).size, CASES.length, "no duplicates");
});

for (const mode of ["simple", "extended"] as const) {
  describe(`${mode} protocol`, () => {
    for (const c of CASES) test(`${c.expect.padEnd(6)} ${c.sql}`, { timeout: 10_000 }, () => runCase(c, mode));
  });
}

test("the decisions are counted in the gateway's metrics, by rule", async () => {
  const m = await metricsText(t);
  const conn = { connection: t.connection };
  for (const d of ["allow", "deny", "review"] as const) {
    const expected = CASES.filter((c) => c.expect === d).length * 2;
    assert.ok(metricSum(m, "gatehouse_decisions_total", { ...conn, decision: d }) >= expected, `at least ${expected} ${d} decisions`);
  }
  assert.ok(metricSum(m, "gatehouse_decisions_total", { ...conn, decision: "deny", rule: "no-drop-database" }) >= 2);
  assert.ok(metricSum(m, "gatehouse_audit_events_total", { type: "operation.decided" }) >= CASES.length * 2);
});

describe("async review mode", () => {
  test("the approved identical retry runs once; the next retry needs a new review", { timeout: 10_000 }, async () => {
    await reset();
    const gw = await connectGateway(t, token);
    const sql = "UPDATE t SET name = name || '+'";
    try {
      const first = await gw.query(sql).then(
        () => assert.fail("ran without review"),
        (e: Error) => e,
      );
      assert.match(first.message, /^GH-POLICY-002/);
      const id = reviewIdIn(first.message);
      assert.deepEqual(await tRows(), INITIAL, "nothing ran before approval");
      const ok = await approveReview(t, id, dbaToken, "one update, once");
      assert.equal(ok.status, 200);
      assert.equal(ok.body.status, "approved");

      const r = await gw.query(sql);
      assert.equal(r.rowCount, 3);
      assert.deepEqual(await tRows(), INITIAL.map((x) => ({ ...x, name: `${x.name}+` })), "ran exactly once");
      assert.ok((await getReview(t, id, dbaToken)).body.usedAt, "the approval is spent");

      const again = await gw.query(sql).then(
        () => assert.fail("an approval was spent twice"),
        (e: Error) => e,
      );
      assert.match(again.message, /^GH-POLICY-002/);
      assert.notEqual(reviewIdIn(again.message), id, "a new review");
      assert.deepEqual(await tRows(), INITIAL.map((x) => ({ ...x, name: `${x.name}+` })), "still only once");
    } finally {
      await gw.end();
    }
  });

  test("an approval covers the parameter values it was given, not others", { timeout: 10_000 }, async () => {
    await reset();
    const gw = await connectGateway(t, token);
    const sql = "UPDATE t SET name = $1";
    try {
      const first = await gw.query(sql, ["approved value"]).catch((e: Error) => e);
      assert.ok(first instanceof Error);
      const id = reviewIdIn(first.message);
      const review = await getReview(t, id, dbaToken);
      assert.deepEqual(review.body.operation.parameters, ["approved value"], "the reviewer sees the values");
      assert.equal((await approveReview(t, id, dbaToken)).status, 200);

      const other = await gw.query(sql, ["something else"]).catch((e: Error) => e);
      assert.ok(other instanceof Error, "other values are not covered");
      assert.match(other.message, /^GH-POLICY-002/);
      assert.notEqual(reviewIdIn(other.message), id);
      assert.deepEqual(await tRows(), INITIAL);

      await gw.query(sql, ["approved value"]);
      assert.deepEqual((await tRows()).map((r) => r.name), ["approved value", "approved value", "approved value"]);
    } finally {
      await gw.end();
    }
  });

  test("EXECUTE of an extended-protocol named statement is judged by that statement's body", { timeout: 10_000 }, async () => {
    await reset();
    const gw = await connectGateway(t, token);
    try {
      // node-postgres sends Parse(name) + Bind + Execute + Sync: the Parse creates "pd" on the
      // server, the Bind needs a review and is refused (async mode).
      const bound = await gw.query({ name: "pd", text: "DELETE FROM t", values: [] }).catch((e: Error) => e);
      assert.ok(bound instanceof Error);
      assert.match(bound.message, /^GH-POLICY-002: .*\(rule destructive/);
      assert.equal((await gw.query("SELECT count(*)::int AS n FROM pg_prepared_statements WHERE name = 'pd'")).rows[0].n, 1, "pd exists on the server");
      // SQL EXECUTE reaches the same statement: it must need the same review, not pass as "unknown".
      const exec = await gw.query("EXECUTE pd").catch((e: Error) => e);
      assert.ok(exec instanceof Error, "EXECUTE pd ran the DELETE without review");
      assert.match(exec.message, /^GH-POLICY-002: .*\(rule destructive/);
      assert.deepEqual(await tRows(), INITIAL);
      // And an allowed named statement can be EXECUTEd like it is read.
      await gw.query({ name: "ps", text: "SELECT id, name FROM t WHERE id = $1", values: [2] });
      assert.deepEqual((await gw.query("EXECUTE ps(3)")).rows, [INITIAL[2]]);
    } finally {
      await gw.end();
    }
  });

  test("a named statement that needs review cannot be redefined under its name until it is closed", { timeout: 10_000 }, async () => {
    // PostgreSQL refuses a Parse or PREPARE of an existing name and keeps the old statement: if
    // the gateway took the new text as the name's meaning, the DELETE would run as a "SELECT 1".
    await reset();
    const raw = await RawClient.login(t, token);
    /** One cycle: send, then collect CommandComplete tags and error codes up to ReadyForQuery. */
    const cycle = async (...messages: Buffer[]) => {
      raw.write(Buffer.concat(messages));
      const out: string[] = [];
      for (;;) {
        const m = await raw.next(["C", "E", "Z"]);
        assert.ok(m, "the gateway closed the connection");
        if (m.type === "Z") return out;
        out.push(m.type === "C" ? m.body.toString("utf8", 0, m.body.length - 1) : errorFields(m.body).M!.split(":")[0]!);
      }
    };
    const bindAndRun = (statement: string) => [serialize.bind({ statement }), serialize.execute({}), serialize.sync()];
    try {
      assert.deepEqual(await cycle(serialize.parse({ name: "pd", text: "DELETE FROM t" }), serialize.sync()), [], "parsed; each Bind will need a review");
      assert.deepEqual(await cycle(serialize.parse({ name: "pd", text: "SELECT 1" }), serialize.sync()), ["GH-PG-004"]);
      assert.deepEqual(await cycle(...bindAndRun("pd")), ["GH-POLICY-002"], "still the DELETE, still reviewed");
      assert.deepEqual(await cycle(serialize.query("PREPARE pd AS SELECT 1")), ["GH-PG-004"]);
      assert.deepEqual(await cycle(serialize.query("EXECUTE pd")), ["GH-POLICY-002"]);
      assert.deepEqual(await tRows(), INITIAL, "nothing deleted");
      // Closing (or DEALLOCATE) frees the name.
      assert.deepEqual(await cycle(serialize.close({ type: "S", name: "pd" }), serialize.parse({ name: "pd", text: "SELECT 1" }), ...bindAndRun("pd")), ["SELECT 1"]);
      assert.deepEqual(await cycle(serialize.parse({ name: "qd", text: "DELETE FROM t" }), serialize.sync()), []);
      assert.deepEqual(await cycle(serialize.query("DEALLOCATE qd")), ["DEALLOCATE"]);
      assert.deepEqual(await cycle(serialize.parse({ name: "qd", text: "SELECT 2" }), ...bindAndRun("qd")), ["SELECT 1"]);
      assert.deepEqual(await tRows(), INITIAL);
    } finally {
      raw.destroy();
    }
  });

  for (const mode of ["simple", "extended"] as const) {
    test(`${mode}: once PREPARE p AS DELETE is approved, EXECUTE p is gated like the DELETE`, { timeout: 10_000 }, async () => {
      await reset();
      const gw = await connectGateway(t, token);
      try {
        const prep = "PREPARE p AS DELETE FROM t";
        const refused = await gw.query(prep).catch((e: Error) => e);
        assert.ok(refused instanceof Error);
        assert.equal((await approveReview(t, reviewIdIn(refused.message), dbaToken)).status, 200);
        await gw.query(prep);
        assert.equal((await gw.query("SELECT count(*)::int AS n FROM pg_prepared_statements WHERE name = 'p'")).rows[0].n, 1, "p is prepared on the server");

        const exec = await send(gw, "EXECUTE p", mode).catch((e: Error) => e);
        assert.ok(exec instanceof Error, "EXECUTE p ran without review");
        assert.match(exec.message, /^GH-POLICY-002: .*\(rule destructive/);
        assert.deepEqual(await tRows(), INITIAL, "nothing was deleted");
        assert.equal((await approveReview(t, reviewIdIn(exec.message), dbaToken)).status, 200);
        await send(gw, "EXECUTE p", mode);
        assert.deepEqual(await tRows(), [], "the approved EXECUTE ran");
      } finally {
        await gw.end();
      }
    });
  }
});

/** One or more query cycles on a raw session: CommandComplete tags and error codes (or messages), up to `cycles` ReadyForQuery. */
async function rawCycle(raw: RawClient, messages: Buffer[], cycles = 1): Promise<string[]> {
  raw.write(Buffer.concat(messages));
  const out: string[] = [];
  for (let seen = 0; seen < cycles; ) {
    const m = await raw.next(["C", "E", "Z"]);
    assert.ok(m, "the gateway closed the connection");
    if (m.type === "Z") seen++;
    else out.push(m.type === "C" ? m.body.toString("utf8", 0, m.body.length - 1) : errorFields(m.body).M!.split(":")[0]!);
  }
  return out;
}

/** `fn` on a fresh raw session through the gateway, table t reset first. */
async function onRawSession(fn: (raw: RawClient) => Promise<void>): Promise<void> {
  await reset();
  const raw = await RawClient.login(t, token);
  try {
    await fn(raw);
  } finally {
    raw.destroy();
  }
}

/** A Query message with exactly these bytes as its text (serialize.query writes UTF-8). */
function rawQuery(text: Buffer): Buffer {
  const b = Buffer.alloc(1 + 4 + text.length + 1);
  b[0] = 0x51;
  b.writeInt32BE(4 + text.length + 1, 1);
  text.copy(b, 5);
  return b;
}

const columnsOfT = async () => (await direct.query("SELECT column_name FROM information_schema.columns WHERE table_name = 't' ORDER BY column_name")).rows.map((r) => r.column_name as string);

describe("statement text the server could read differently from the gate", () => {
  test("with standard_conforming_strings off, a backslash cannot hide a statement inside a literal", { timeout: 10_000 }, async () => {
    await reset();
    const raw = await RawClient.login(t, token);
    const hidden = String.raw`SELECT 'a\' || ' ; DELETE FROM t WHERE id = 1; -- '`;
    try {
      assert.deepEqual(await rawCycle(raw, [serialize.query("SET standard_conforming_strings = off")]), ["SET"]);
      assert.deepEqual(await rawCycle(raw, [serialize.query(hidden)]), ["GH-PG-009"]);
      assert.deepEqual(await rawCycle(raw, [serialize.parse({ text: hidden }), serialize.bind({}), serialize.execute({}), serialize.sync()]), ["GH-PG-009"]);
      assert.deepEqual(await rawCycle(raw, [serialize.query("SELECT 1")]), ["SELECT 1"], "text without backslashes reads the same either way");
      assert.deepEqual(await tRows(), INITIAL, "nothing deleted");
      // Back on: the same kind of text is judged again.
      assert.deepEqual(await rawCycle(raw, [serialize.query("SET standard_conforming_strings = on")]), ["SET"]);
      assert.deepEqual(await rawCycle(raw, [serialize.query(String.raw`SELECT 'a\b' AS x`)]), ["SELECT 1"]);
      // Turned off and used in one pipeline: the second statement arrives before the server has
      // said anything about the first, so it is refused.
      const both = await rawCycle(raw, [serialize.query("SELECT set_config('standard_conforming_strings', 'off', false)"), serialize.query(hidden.replace("id = 1", "id = 2"))], 2);
      assert.deepEqual(both, ["SELECT 1", "GH-PG-009"]);
      assert.deepEqual(await tRows(), INITIAL, "nothing deleted");
    } finally {
      raw.destroy();
    }
  });

  test("a client_encoding whose characters can contain a backslash byte (SJIS): non-ASCII text is refused", { timeout: 10_000 }, async () => {
    await onRawSession(async (raw) => {
      assert.deepEqual(await rawCycle(raw, [serialize.query("SET client_encoding = 'SJIS'")]), ["SET"]);
      // In SJIS 0x81 0x5C is one character; as UTF-8 the 0x5C is a backslash that ends nothing.
      const text = Buffer.concat([Buffer.from("SELECT E'"), Buffer.from([0x81, 0x5c]), Buffer.from("' ; DELETE FROM t WHERE id = 3; -- '")]);
      assert.deepEqual(await rawCycle(raw, [rawQuery(text)]), ["GH-PG-009"]);
      assert.deepEqual(await rawCycle(raw, [serialize.query("SELECT id FROM t WHERE id = 3")]), ["SELECT 1"], "ASCII text reads the same in SJIS");
      assert.deepEqual(await tRows(), INITIAL);
    });
  });
});

describe("statement names after an error", () => {
  const bindRun = (statement: string) => [serialize.bind({ statement }), serialize.execute({}), serialize.sync()];

  test("a Close skipped after an error does not free a held statement's name", { timeout: 10_000 }, async () => {
    await onRawSession(async (raw) => {
      assert.deepEqual(await rawCycle(raw, [serialize.parse({ name: "x", text: "ALTER TABLE t ADD COLUMN c1 int" }), serialize.sync()]), [], "parsed; each Bind needs a review");
      const failed = await rawCycle(raw, [serialize.parse({ text: "SELECT 1/0" }), serialize.bind({}), serialize.execute({}), serialize.close({ type: "S", name: "x" }), serialize.sync()]);
      assert.equal(failed.length, 1, "the division fails; the server skips the Close");
      assert.deepEqual(await rawCycle(raw, bindRun("x")), ["GH-POLICY-002"], "still the ALTER, still reviewed");
      // A DEALLOCATE refused by the server (an aborted transaction) does not free it either.
      assert.deepEqual(await rawCycle(raw, [serialize.query("BEGIN")]), ["BEGIN"]);
      assert.equal((await rawCycle(raw, [serialize.query("SELECT 1/0")])).length, 1);
      assert.equal((await rawCycle(raw, [serialize.query("DEALLOCATE x")])).length, 1, "25P02: the transaction is aborted");
      assert.deepEqual(await rawCycle(raw, [serialize.query("ROLLBACK")]), ["ROLLBACK"]);
      assert.deepEqual(await rawCycle(raw, bindRun("x")), ["GH-POLICY-002"]);
      // A Close the server did run frees it.
      assert.deepEqual(await rawCycle(raw, [serialize.close({ type: "S", name: "x" }), serialize.sync()]), []);
      assert.deepEqual(await rawCycle(raw, [serialize.parse({ name: "x", text: "SELECT 2" }), ...bindRun("x")]), ["SELECT 1"]);
      assert.deepEqual(await columnsOfT(), ["id", "name"], "no column added");
    });
  });

  test("an unnamed statement replaced in a pipeline the server abandoned still means the held one", { timeout: 10_000 }, async () => {
    await onRawSession(async (raw) => {
      assert.deepEqual(await rawCycle(raw, [serialize.parse({ text: "ALTER TABLE t ADD COLUMN c3 int" }), serialize.sync()]), []);
      const failed = await rawCycle(raw, [serialize.parse({ name: "q", text: "SELECT 1/0" }), serialize.bind({ statement: "q" }), serialize.execute({}), serialize.parse({ text: "SELECT 1" }), serialize.sync()]);
      assert.equal(failed.length, 1);
      assert.deepEqual(await rawCycle(raw, bindRun("")), ["GH-PG-004"], "it may be either: refused");
      // In one segment a Parse then a Bind is always that Parse (or nothing).
      assert.deepEqual(await rawCycle(raw, [serialize.parse({ text: "SELECT 3" }), ...bindRun("")]), ["SELECT 1"]);
      assert.deepEqual(await rawCycle(raw, bindRun("nope")), ["GH-PG-004"], "a name the gate never saw");
      assert.deepEqual(await columnsOfT(), ["id", "name"]);
    });
  });

  test("a DEALLOCATE that is parsed but never executed frees nothing; non-ASCII names are refused", { timeout: 10_000 }, async () => {
    await onRawSession(async (raw) => {
      assert.deepEqual(await rawCycle(raw, [serialize.parse({ name: "g", text: "UPDATE t SET name = $1" }), serialize.sync()]), []);
      assert.deepEqual(await rawCycle(raw, [serialize.parse({ text: "DEALLOCATE g" }), serialize.sync()]), [], "parsed, never executed");
      assert.deepEqual(await rawCycle(raw, [serialize.parse({ name: "g", text: "SELECT $1::text" }), serialize.sync()]), ["GH-PG-004"]);
      assert.deepEqual(await rawCycle(raw, [serialize.bind({ statement: "g", values: ["PWNED"] }), serialize.execute({}), serialize.sync()]), ["GH-POLICY-002"], "still the UPDATE, still reviewed");
      // Names are keys on both sides: one the gate could not read exactly is refused.
      assert.deepEqual(await rawCycle(raw, [serialize.parse({ name: "caf\u00e9", text: "SELECT 1" }), serialize.sync()]), ["GH-PG-004"]);
      assert.deepEqual(await rawCycle(raw, [serialize.bind({ statement: "g", portal: "p\u00e9" }), serialize.execute({ portal: "p\u00e9" }), serialize.sync()]), ["GH-PG-004"]);
      assert.deepEqual(await tRows(), INITIAL);
    });
  });

  test("a name Parsed, Closed and then PREPAREd in one pipeline is not passed on as what was Parsed", { timeout: 10_000 }, async () => {
    await onRawSession(async (raw) => {
      const out = await rawCycle(raw, [
        serialize.parse({ name: "n", text: "SELECT 1" }),
        serialize.close({ type: "S", name: "n" }),
        serialize.parse({ text: "PREPARE n(int) AS DELETE FROM t WHERE id = $1" }),
        serialize.bind({}),
        serialize.execute({}),
        serialize.bind({ statement: "n", values: ["1"] }),
        serialize.execute({}),
        serialize.sync(),
      ]);
      assert.deepEqual(out, ["PREPARE", "GH-PG-004"], "n may mean the SELECT or the DELETE: refused");
      assert.deepEqual(await tRows(), INITIAL);
    });
  });

  test("a DO block whose reading could change is not taken by Parse (it is read only when it runs)", { timeout: 10_000 }, async () => {
    await onRawSession(async (raw) => {
      const out = await rawCycle(raw, [
        serialize.parse({ name: "s", text: "SET standard_conforming_strings = off" }),
        serialize.parse({ name: "d", text: String.raw`DO $$ BEGIN PERFORM 'a\', ' ; DELETE FROM t WHERE id = 3; -- '; END $$` }),
        serialize.sync(),
      ]);
      assert.deepEqual(out, ["GH-PG-009"]);
      assert.deepEqual(await tRows(), INITIAL);
    });
  });

  test("a DO block sent after a statement that changes how text is read, in one text, is refused", { timeout: 10_000 }, async () => {
    await onRawSession(async (raw) => {
      const text = String.raw`SET standard_conforming_strings = off; DO $$ BEGIN PERFORM 'a\', '; DELETE FROM t WHERE id = 3; --'; END $$`;
      assert.deepEqual(await rawCycle(raw, [serialize.query(text)]), ["GH-PG-009"]);
      assert.deepEqual(await tRows(), INITIAL);
    });
  });

  test("a statement made by SQL PREPARE is judged at every protocol Bind, like EXECUTE", { timeout: 10_000 }, async () => {
    await onRawSession(async (raw) => {
      const prepare = "PREPARE p AS UPDATE t SET name = name || '+'";
      const held = await rawCycle(raw, [serialize.query(prepare)]);
      assert.deepEqual(held, ["GH-POLICY-002"]);
      assert.deepEqual(await rawCycle(raw, bindRun("p")), ["GH-PG-004"], "not prepared yet: unknown");
      const review = (await t.gw.reviews.list({ status: "pending", limit: 100 })).find((r) => r.operation.text === prepare)!;
      await approveReview(t, review.id, dbaToken);
      assert.deepEqual(await rawCycle(raw, [serialize.query(prepare)]), ["PREPARE"]);
      assert.deepEqual(await rawCycle(raw, bindRun("p")), ["GH-POLICY-002"], "the UPDATE needs its own review");
      assert.deepEqual(await tRows(), INITIAL, "not run");
    });
  });
});

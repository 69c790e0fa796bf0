// Issue 3, "Done when": standard clients just work through the gateway with a token from the
// test IdP — psql (simple protocol, multi-statement, meta-commands, COPY in both directions,
// transactions with an error inside), pgbench in all three query modes, and node-postgres
// (parameters, named prepared statements, transactions, a pool under concurrency, binary-ish
// types, a large result, LISTEN/NOTIFY). Results are compared with a direct connection to the
// same database.

import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import pg from "pg";
import { connectDirect, connectGateway, DIRECT_APP, gatewayConfig, metricSum, metricsText, psql, runProcess, waitNoTargetSessions } from "./helpers/clients.ts";
import { startTestGateway, type TestGateway } from "./helpers/gateway.ts";

let t: TestGateway;
let token: string;
let direct: pg.Client;

before(async () => {
  t = await startTestGateway();
  token = await t.agentToken();
  direct = await connectDirect(t);
  await direct.query("CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL)");
});

after(async () => {
  await direct?.end().catch(() => {});
  await t?.close();
});

const count = async (sql: string) => (await direct.query(sql)).rows[0].n as number;

describe("psql", () => {
  test("several statements in one simple Query, and -c commands in a row", { timeout: 20_000 }, async () => {
    const r = await psql(t, token, ["-At", "-c", "SELECT 1; SELECT 'two'; SELECT 3 + 0", "-c", "SELECT current_database() <> 'pg-test'"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "1\ntwo\n3\nt\n");
  });

  test("meta-commands: \\dt, \\dn, \\df, \\du, \\l, \\conninfo", { timeout: 20_000 }, async () => {
    const r = await psql(t, token, ["-At", "-c", "\\dt", "-c", "\\dn", "-c", "\\df", "-c", "\\du", "-c", "\\l", "-c", "\\conninfo"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "");
    assert.match(r.stdout, /^public\|items\|table\|postgres$/m);
    assert.match(r.stdout, /You are connected to database "pg-test" as user "agent"/);
  });

  test("\\d TABLE describes the table", { timeout: 20_000 }, async () => {
    const r = await psql(t, token, ["-c", "\\d items"]);
    assert.equal(r.stderr, "");
    assert.equal(r.code, 0);
    assert.match(r.stdout, /Table "public\.items"/);
  });

  test("COPY FROM STDIN and \\copy carry data in; COPY TO STDOUT is byte-identical to a direct psql", { timeout: 20_000 }, async () => {
    await direct.query("TRUNCATE items");
    const bulk = Array.from({ length: 20_000 }, (_, i) => `${i + 10}\trow ${i + 10} ${"x".repeat(i % 50)}`).join("\n");
    const script = ["\\set ON_ERROR_STOP 1", "COPY items (id, name) FROM STDIN;", "1\tone", "2\ttwo", "\\.", "\\copy items (id, name) from stdin", "3\tthree", "\\.", "COPY items (id, name) FROM STDIN;", bulk, "\\.", "SELECT count(*) FROM items;", ""].join("\n");
    const r = await psql(t, token, ["-At", "-f", "-"], { input: script });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "20003\n");
    assert.equal(await count("SELECT count(*)::int AS n FROM items"), 20_003);
    assert.equal((await direct.query("SELECT name FROM items WHERE id = 3")).rows[0].name, "three");

    const out = "COPY (SELECT id, name FROM items ORDER BY id) TO STDOUT WITH (FORMAT csv)";
    const via = await psql(t, token, ["-At", "-c", out]);
    const straight = await runProcess("psql", [`${t.directUrl}?application_name=${DIRECT_APP}`, "-X", "-At", "-c", out], { timeoutMs: 20_000 });
    assert.equal(via.code, 0, via.stderr);
    assert.equal(straight.code, 0, straight.stderr);
    assert.ok(via.stdout.length > 500_000);
    assert.equal(via.stdout, straight.stdout);
  });

  test("transactions with an error inside behave as PostgreSQL does", { timeout: 20_000 }, async () => {
    await direct.query("TRUNCATE items");
    const script = [
      // a server error aborts the transaction; COMMIT rolls back
      "BEGIN;",
      "INSERT INTO items VALUES (100, 'before the error');",
      "SELECT 1/0;",
      "INSERT INTO items VALUES (101, 'after the error');",
      "COMMIT;",
      // a statement refused by the gateway does the same
      "BEGIN;",
      "INSERT INTO items VALUES (200, 'before the refusal');",
      "COPY items TO PROGRAM 'true';",
      "INSERT INTO items VALUES (201, 'after the refusal');",
      "COMMIT;",
      // and a clean transaction commits
      "BEGIN;",
      "INSERT INTO items VALUES (300, 'committed');",
      "COMMIT;",
      "SELECT string_agg(id::text, ',' ORDER BY id) FROM items;",
      "",
    ].join("\n");
    const r = await psql(t, token, ["-At", "-f", "-"], { input: script });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /division by zero/);
    assert.match(r.stderr, /GH-POLICY-001: .*rule no-admin/);
    assert.equal(r.stderr.match(/current transaction is aborted, commands ignored until end of transaction block/g)?.length, 2, r.stderr);
    assert.equal(r.stdout.trim().split("\n").at(-1), "300");
    assert.deepEqual((await direct.query("SELECT id FROM items ORDER BY id")).rows, [{ id: 300 }]);
  });
});

describe("pgbench", () => {
  before(async () => {
    // Initialised directly: creating tables is DDL, which the gateway would send for review.
    const init = await runProcess("pgbench", ["-i", "-s", "1", "-q", t.directUrl], { timeoutMs: 30_000 });
    assert.equal(init.code, 0, init.stderr);
  });

  for (const mode of ["simple", "extended", "prepared"] as const) {
    test(`-M ${mode}: 4 clients × 50 transactions, none failed, every one judged`, { timeout: 30_000 }, async () => {
      const history = await count("SELECT count(*)::int AS n FROM pgbench_history");
      const m0 = await metricsText(t);
      const r = await runProcess("pgbench", ["-n", "-M", mode, "-c", "4", "-j", "2", "-t", "50", t.conninfo()], { env: { ...process.env, PGPASSWORD: token }, timeoutMs: 25_000 });
      assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
      assert.match(r.stdout, /number of transactions actually processed: 200\/200/);
      assert.match(r.stdout, /number of failed transactions: 0 \(0\.000%\)/);
      assert.equal(await count("SELECT count(*)::int AS n FROM pgbench_history"), history + 200, "200 transactions reached the database");
      const m1 = await metricsText(t);
      const allowed = (m: string) => metricSum(m, "gatehouse_decisions_total", { connection: t.connection, decision: "allow" });
      const refused = (m: string) => metricSum(m, "gatehouse_decisions_total", { connection: t.connection, decision: "deny" }) + metricSum(m, "gatehouse_decisions_total", { connection: t.connection, decision: "review" });
      // tpcb-like: BEGIN, 3 UPDATEs, SELECT, INSERT, END per transaction. Prepared mode judges
      // each statement once per connection, at Parse; the other modes judge every execution.
      const minimum = mode === "prepared" ? 4 * 7 : 200 * 7;
      assert.ok(allowed(m1) - allowed(m0) >= minimum, `at least ${minimum} allow decisions, got ${allowed(m1) - allowed(m0)}`);
      assert.equal(refused(m1), refused(m0), "nothing refused");
      assert.ok(metricSum(m1, "gatehouse_audit_events_total", { type: "operation.decided" }) - metricSum(m0, "gatehouse_audit_events_total", { type: "operation.decided" }) >= minimum, "every decision is in the audit trail");
    });
  }
});

describe("node-postgres", () => {
  let c: pg.Client;
  let ended = false;
  before(async () => {
    c = await connectGateway(t, token, { application_name: "node-pg-e2e" });
    await direct.query("TRUNCATE items; INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 20) g");
  });
  after(async () => {
    if (!ended) await c?.end();
  });

  test("parameterized queries: text, numbers, NULL, unicode, injection-shaped strings", async () => {
    const r = await c.query("SELECT $1::int + $2::int AS sum, $3::text AS s, $4::text IS NULL AS isnull, length($5::text) AS len", [40, 2, "x'; DROP TABLE items; --", null, "héllo wörld ✓"]);
    assert.deepEqual(r.rows[0], { sum: 42, s: "x'; DROP TABLE items; --", isnull: true, len: 13 });
    const rows = await c.query("SELECT id, name FROM items WHERE id = ANY($1::int[]) ORDER BY id", [[3, 5, 8]]);
    assert.deepEqual(rows.rows, [
      { id: 3, name: "item 3" },
      { id: 5, name: "item 5" },
      { id: 8, name: "item 8" },
    ]);
    assert.equal(await count("SELECT count(*)::int AS n FROM items"), 20, "the injection-shaped value was only a value");
  });

  test("named prepared statements are reused with different parameters", async () => {
    for (let i = 1; i <= 10; i++) {
      const r = await c.query({ name: "item-by-id", text: "SELECT id, name FROM items WHERE id = $1", values: [i] });
      assert.deepEqual(r.rows, [{ id: i, name: `item ${i}` }]);
    }
    for (let i = 101; i <= 105; i++) await c.query({ name: "item-insert", text: "INSERT INTO items (id, name) VALUES ($1, $2)", values: [i, `new ${i}`] });
    assert.deepEqual((await direct.query("SELECT id, name FROM items WHERE id > 100 ORDER BY id")).rows.map((r) => r.name), ["new 101", "new 102", "new 103", "new 104", "new 105"]);
    const server = await c.query("SELECT name FROM pg_prepared_statements ORDER BY name");
    assert.deepEqual(server.rows.map((r) => r.name), ["item-by-id", "item-insert"], "each was parsed once on the target and reused");
    await direct.query("DELETE FROM items WHERE id > 100");
  });

  test("transactions: COMMIT persists, ROLLBACK does not, savepoints work", async () => {
    await c.query("BEGIN");
    await c.query("INSERT INTO items VALUES (201, 'committed')");
    await c.query("COMMIT");
    await c.query("BEGIN");
    await c.query("INSERT INTO items VALUES (202, 'rolled back')");
    assert.equal((await c.query("SELECT count(*)::int AS n FROM items WHERE id = 202")).rows[0].n, 1, "visible inside");
    assert.equal(await count("SELECT count(*)::int AS n FROM items WHERE id = 202"), 0, "invisible outside before commit");
    await c.query("ROLLBACK");
    await c.query("BEGIN");
    await c.query("INSERT INTO items VALUES (203, 'kept')");
    await c.query("SAVEPOINT s1");
    await c.query("INSERT INTO items VALUES (204, 'undone')");
    await c.query("ROLLBACK TO SAVEPOINT s1");
    await c.query("COMMIT");
    assert.deepEqual((await direct.query("SELECT id FROM items WHERE id > 200 ORDER BY id")).rows, [{ id: 201 }, { id: 203 }]);
    await direct.query("DELETE FROM items WHERE id > 200");
  });

  test("a pool of 10 runs 200 concurrent queries, each gets its own answer", { timeout: 30_000 }, async () => {
    const pool = new pg.Pool({ ...gatewayConfig(t, token), max: 10, application_name: "pool-e2e" });
    pool.on("error", () => {});
    try {
      const pids = new Set<number>();
      await Promise.all(
        Array.from({ length: 200 }, async (_, i) => {
          const named = i % 2 === 0;
          const r = named
            ? await pool.query({ name: "double", text: "SELECT $1::int * 2 AS d, $2::text AS tag, pg_backend_pid() AS pid", values: [i, `q${i}`] })
            : await pool.query("SELECT $1::int * 2 AS d, $2::text AS tag, pg_backend_pid() AS pid", [i, `q${i}`]);
          assert.equal(r.rows[0].d, i * 2);
          assert.equal(r.rows[0].tag, `q${i}`);
          pids.add(r.rows[0].pid);
        }),
      );
      assert.ok(pids.size >= 2 && pids.size <= 10, `${pids.size} target sessions served the pool`);
    } finally {
      await pool.end();
    }
  });

  test("bytea, timestamptz, numeric, json/jsonb, arrays, uuid round-trip exactly as with a direct connection", async () => {
    const blob = randomBytes(256 * 1024);
    const values = [blob, "2024-02-29T23:59:59.123456+05:30", "12345678901234567890.123456789012345678", { a: [1, 2, { b: "ü" }], n: null }, { k: "v", arr: [true, false] }, [1, null, 3], "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"];
    const sql = "SELECT $1::bytea AS b, $2::timestamptz AS ts, $3::numeric AS num, $4::json AS j, $5::jsonb AS jb, $6::int[] AS arr, $7::uuid AS u, md5($1::bytea) AS md5, $2::timestamptz::text AS ts_text";
    const via = await c.query(sql, values);
    const straight = await direct.query(sql, values);
    assert.deepEqual(via.rows, straight.rows);
    assert.ok(Buffer.compare(via.rows[0].b, blob) === 0, "bytea intact");
    assert.equal(via.rows[0].num, "12345678901234567890.123456789012345678");
    assert.deepEqual(via.rows[0].jb, { k: "v", arr: [true, false] });
    // Binary result format (and the Buffer parameter travels in binary format too).
    const bin = { text: "SELECT $1::bytea AS b, md5($1::bytea) AS h, 42::int4 AS i, now() - now() AS zero", values: [blob], binary: true };
    const vb = await c.query(bin);
    const sb = await direct.query(bin);
    assert.deepEqual(vb.rows, sb.rows);
    assert.equal(vb.rows[0].i, 42);
    assert.equal(createHash("md5").update(blob).digest("hex"), (await c.query("SELECT md5($1::bytea) AS h", [blob])).rows[0].h, "the binary-format parameter arrived intact");
  });

  test("100 000 rows stream back identical to a direct connection", { timeout: 30_000 }, async () => {
    const sql = "SELECT g, md5(g::text) AS h, now() = now() AS same FROM generate_series(1, 100000) g";
    const via = await c.query(sql);
    const straight = await direct.query(sql);
    assert.equal(via.rowCount, 100_000);
    assert.deepEqual(via.rows, straight.rows);
  });

  test("LISTEN/NOTIFY: a notification from one gateway session reaches another", { timeout: 10_000 }, async () => {
    const other = await connectGateway(t, token);
    try {
      await c.query("LISTEN e2e_channel");
      const got = new Promise<pg.Notification>((resolve) => c.once("notification", resolve));
      await other.query("NOTIFY e2e_channel, 'payload ✓'");
      const n = await got;
      assert.equal(n.channel, "e2e_channel");
      assert.equal(n.payload, "payload ✓");
      await c.query("UNLISTEN *");
    } finally {
      await other.end();
    }
  });

  test("every client above ended cleanly: no target session left behind", async () => {
    await c.end();
    ended = true;
    await waitNoTargetSessions(t.db.name);
  });
});

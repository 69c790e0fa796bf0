// Issue 3, "Done when": failures end cleanly. Bad logins get an ErrorResponse with an
// authentication SQLSTATE and the Gatehouse code (never a hang, never the token echoed), and the
// gateway keeps serving; misbehaving clients (garbage after login, a message cut off, a client
// killed mid-query) leave no session behind on the real server (pg_stat_activity is the witness);
// a refused statement aborts its transaction exactly as a server error would; CancelRequest — raw
// and from psql's Ctrl-C — stops a running statement; shutting the gateway down ends connected
// sessions instead of waiting for them.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import pg from "pg";
import { serialize } from "pg-protocol";
import { connectDirect, connectGateway, errorFields, gatewayConfig, metricSum, metricsText, pendingReviewFor, psql, RawClient, sendCancelRequest, targetSessions, waitFor, waitNoTargetSessions } from "./helpers/clients.ts";
import { startTestGateway, type TestGateway } from "./helpers/gateway.ts";

let t: TestGateway;
let token: string;
let direct: pg.Client;

/** Long enough to be cancelled, pure CPU (no temp files), and an ordinary read for the policy. */
const SLOW = "SELECT count(*) FROM pg_class a, pg_class b, pg_class c, pg_class d";

before(async () => {
  t = await startTestGateway();
  token = await t.agentToken();
  direct = await connectDirect(t);
  await direct.query("CREATE TABLE ledger (id int PRIMARY KEY, note text)");
});

after(async () => {
  await direct?.end().catch(() => {});
  await t?.close();
});

/** The gateway still serves a well-behaved client. */
async function stillServes(): Promise<void> {
  const c = await connectGateway(t, token);
  try {
    assert.equal((await c.query("SELECT 'served' AS s")).rows[0].s, "served");
  } finally {
    await c.end();
  }
}

const nowS = () => Math.floor(Date.now() / 1000);
function claims(over: Record<string, unknown> = {}) {
  const oid = t.idp.objectIdFor("crafted-agent");
  return { iss: t.idp.issuer, aud: t.idp.audience, iat: nowS(), nbf: nowS(), exp: nowS() + 600, oid, sub: oid, tid: t.idp.tenantId, idtyp: "app", azp: "crafted-agent", ver: "2.0", ...over };
}

describe("logins that fail get a clean ErrorResponse, and the gateway keeps serving", () => {
  const cases: Array<{ name: string; sqlstate: string; code: string; password: () => Promise<string>; database?: string; ssl?: false }> = [
    { name: "a password that is not a token", sqlstate: "28P01", code: "GH-AUTH-002", password: async () => "hunter2" },
    {
      name: "a token with a forged signature",
      sqlstate: "28P01",
      code: "GH-AUTH-003",
      password: async () => {
        const [h, p, s] = (await t.agentToken()).split(".");
        return `${h}.${p}.${s!.startsWith("A") ? "B" : "A"}${s!.slice(1)}`;
      },
    },
    { name: "a token for another audience", sqlstate: "28P01", code: "GH-AUTH-007", password: () => t.idp.sign(claims({ aud: "api://another-app" })) },
    { name: "an expired token", sqlstate: "28P01", code: "GH-AUTH-004", password: () => t.idp.sign(claims({ iat: nowS() - 7200, nbf: nowS() - 7200, exp: nowS() - 3600 })) },
    { name: "an unknown connection (dbname)", sqlstate: "28000", code: "GH-POLICY-004", database: "no-such-connection", password: () => t.agentToken() },
    { name: "cleartext without TLS", sqlstate: "28000", code: "GH-PG-001", ssl: false, password: () => t.agentToken() },
  ];
  for (const c of cases) {
    test(`node-postgres: ${c.name} → ${c.sqlstate} ${c.code}`, { timeout: 10_000 }, async () => {
      const password = await c.password();
      const client = new pg.Client({ ...gatewayConfig(t, password), ...(c.database ? { database: c.database } : {}), ...(c.ssl === false ? { ssl: false } : {}) });
      client.on("error", () => {});
      const started = Date.now();
      const err = await client.connect().then(
        () => assert.fail("login succeeded"),
        (e: Error & { code?: string; severity?: string }) => e,
      );
      assert.ok(Date.now() - started < 5000, "answered promptly");
      assert.equal(err.code, c.sqlstate, err.message);
      assert.equal(err.severity, "FATAL");
      assert.ok(err.message.startsWith(`${c.code}: `), err.message);
      assert.ok(!err.message.includes(password), "the token is never echoed");
      await client.end().catch(() => {});
      await stillServes();
    });
  }

  test("psql: sslmode=disable is refused before the token is asked for; a bad token is named", { timeout: 15_000 }, async () => {
    const plain = await psql(t, token, ["-c", "SELECT 1"], { conninfo: t.conninfo().replace("sslmode=require", "sslmode=disable") });
    assert.equal(plain.code, 2);
    assert.match(plain.stderr, /GH-PG-001: TLS is required/);
    const bad = await psql(t, "not.a.token", ["-c", "SELECT 1"]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /FATAL: {2}GH-AUTH-00\d/);
    const m = await metricsText(t);
    assert.ok(metricSum(m, "gatehouse_auth_failures_total", { surface: "postgres" }) >= 5, "failures are counted");
    const ok = await psql(t, token, ["-At", "-c", "SELECT 'served'"]);
    assert.equal(ok.stdout, "served\n", ok.stderr);
  });
});

describe("misbehaving clients leave no target session behind", () => {
  test("garbage bytes after login: FATAL 08P01 GH-PG-002, socket closed, target session gone", { timeout: 10_000 }, async () => {
    await waitNoTargetSessions(t.db.name);
    const raw = await RawClient.login(t, token);
    assert.equal((await targetSessions(t.db.name)).length, 1, "one target session while logged in");
    raw.write(Buffer.from([0xde, 0xad, 0xbe, 0xef, 0xff, 0xff, 0xff, 0xff, 0x00, 0x01, 0x02]));
    const e = await raw.next(["E"]);
    assert.ok(e, "an ErrorResponse before the close");
    const f = errorFields(e.body);
    assert.equal(f.S, "FATAL");
    assert.equal(f.C, "08P01");
    assert.match(f.M!, /^GH-PG-002: /);
    await raw.waitClosed();
    await waitNoTargetSessions(t.db.name);
    await stillServes();
  });

  test("a message cut off mid-way, then the client vanishes: target session gone", { timeout: 10_000 }, async () => {
    const raw = await RawClient.login(t, token);
    const q = serialize.query("SELECT 'this message never finishes'");
    raw.write(q.subarray(0, 9));
    await new Promise((r) => setTimeout(r, 50));
    raw.destroy();
    await waitNoTargetSessions(t.db.name);
    await stillServes();
  });

  test("a startup message cut off mid-way: nothing opened, gateway unharmed", { timeout: 10_000 }, async () => {
    const raw = await RawClient.connect(t.host, t.port);
    await raw.startTls();
    raw.write(serialize.startup({ user: "agent", database: t.connection }).subarray(0, 12));
    raw.destroy();
    await stillServes();
    await waitNoTargetSessions(t.db.name);
  });

  test("a client killed while its statement runs: the statement is cancelled, no backend keeps running", { timeout: 10_000 }, async () => {
    const c = await connectGateway(t, token, { application_name: "killed-mid-query" });
    const running = c.query(SLOW).catch((e: Error) => e);
    await waitFor(async () => (await targetSessions(t.db.name)).some((s) => s.application_name === "killed-mid-query" && s.state === "active"), "the slow statement to run");
    (c as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
    assert.ok((await running) instanceof Error);
    await waitNoTargetSessions(t.db.name, 3000);
  });
});

describe("a refused statement inside a transaction aborts it like PostgreSQL would", () => {
  for (const mode of ["simple", "extended"] as const) {
    test(`${mode} protocol`, { timeout: 10_000 }, async () => {
      await direct.query("TRUNCATE ledger");
      const c = await connectGateway(t, token);
      const q = (text: string) => c.query(mode === "simple" ? text : ({ text, queryMode: "extended" } as pg.QueryConfig));
      try {
        await q("BEGIN");
        await q("INSERT INTO ledger VALUES (1, 'before')");
        const refused = await q("SELECT pg_read_file('/etc/hostname')").catch((e: Error & { code?: string }) => e);
        assert.ok(refused instanceof Error);
        assert.equal((refused as Error & { code?: string }).code, "42501");
        assert.match(refused.message, /^GH-POLICY-001: .*rule no-admin/);
        for (const next of ["INSERT INTO ledger VALUES (2, 'after')", "SELECT 1"]) {
          const e = await q(next).catch((x: Error & { code?: string }) => x);
          assert.ok(e instanceof Error, `${next} must fail in an aborted transaction`);
          assert.equal((e as Error & { code?: string }).code, "25P02");
        }
        const commit = await q("COMMIT");
        assert.equal(commit.command, "ROLLBACK", "COMMIT of an aborted transaction rolls back");
        assert.equal((await direct.query("SELECT count(*)::int AS n FROM ledger")).rows[0].n, 0, "the earlier INSERT did not persist");
        // After the rollback the session is normal again.
        await q("BEGIN");
        await q("INSERT INTO ledger VALUES (3, 'kept')");
        await q("COMMIT");
        assert.deepEqual((await direct.query("SELECT id FROM ledger")).rows, [{ id: 3 }]);
      } finally {
        await c.end();
      }
    });
  }
});

test("a refused statement in a pipeline is answered in order and leaves its neighbours alone", { timeout: 10_000 }, async () => {
  const raw = await RawClient.login(t, token);
  try {
    const extended = (text: string) => [serialize.parse({ text }), serialize.bind({}), serialize.execute({}), serialize.sync()];
    // One write: simple Queries and extended-protocol cycles, two of them refused by policy.
    raw.write(Buffer.concat([serialize.query("SELECT 'q1'"), serialize.query("DROP DATABASE postgres"), serialize.query("SELECT 'q3'"), ...extended("SELECT 'e1'"), ...extended("SELECT pg_read_file('/etc/passwd')"), ...extended("SELECT 'e3'"), serialize.query("SELECT 'q4'")]));
    const answers: string[] = [];
    for (let cycle = 0; cycle < 7; cycle++) {
      const parts: string[] = [];
      for (;;) {
        const m = await raw.next(["D", "E", "Z"]);
        assert.ok(m, "the gateway closed the connection");
        if (m.type === "D") parts.push(m.body.toString("utf8", 6));
        else if (m.type === "E") parts.push(errorFields(m.body).M!.split(":")[0]!);
        else break;
      }
      answers.push(parts.join(","));
    }
    assert.deepEqual(answers, ["q1", "GH-POLICY-001", "q3", "e1", "GH-POLICY-001", "e3", "q4"]);
  } finally {
    raw.destroy();
  }
});

describe("CancelRequest", () => {
  test("a raw CancelRequest to the gateway port cancels the running statement (57014); a wrong key does not", { timeout: 15_000 }, async () => {
    const c = await connectGateway(t, token, { application_name: "to-cancel" });
    try {
      const key = c as unknown as { processID: number; secretKey: number };
      assert.ok(key.processID > 0, "the client got BackendKeyData");
      let settled = 0;
      const running = c.query(SLOW).then(
        () => assert.fail("the statement finished instead of being cancelled"),
        (e: Error & { code?: string }) => {
          settled = Date.now();
          return e;
        },
      );
      await waitFor(async () => (await targetSessions(t.db.name)).some((s) => s.application_name === "to-cancel" && s.state === "active"), "the slow statement to run");
      await sendCancelRequest(t.host, t.port, key.processID, key.secretKey ^ 0x5a5a5a5a);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(settled, 0, "a CancelRequest with the wrong key is ignored");
      const sent = Date.now();
      await sendCancelRequest(t.host, t.port, key.processID, key.secretKey);
      const err = await running;
      assert.equal(err.code, "57014", err.message);
      assert.match(err.message, /canceling statement due to user request/);
      assert.ok(settled - sent < 2000, `cancelled ${settled - sent} ms after the request`);
      assert.equal((await c.query("SELECT 'after cancel' AS s")).rows[0].s, "after cancel", "the session survives");
    } finally {
      await c.end();
    }
  });

  test("psql's Ctrl-C (SIGINT) cancels through the gateway", { timeout: 15_000 }, async () => {
    let pid = 0;
    const run = psql(t, token, ["-c", SLOW], { onSpawn: (p) => (pid = p) });
    await waitFor(async () => (await targetSessions(t.db.name)).some((s) => s.application_name === "psql-e2e" && s.state === "active"), "psql's statement to run");
    process.kill(pid, "SIGINT");
    const r = await run;
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /canceling statement due to user request/);
    assert.ok(r.ms < 10_000);
    await waitNoTargetSessions(t.db.name);
  });
});

describe("gateway shutdown", () => {
  test("ends connected sessions (idle, running, held for review) with FATAL GH-PG-005, promptly, leaving nothing on the server", { timeout: 20_000 }, async () => {
    // Its own gateway: this one is shut down.
    const t2 = await startTestGateway();
    try {
      const tok = await t2.agentToken();
      const fatal = (c: pg.Client) => new Promise<Error & { code?: string }>((resolve) => c.on("error", resolve));
      const idle = await connectGateway(t2, tok, { application_name: "idle" });
      const idleError = fatal(idle);
      const busy = await connectGateway(t2, tok, { application_name: "busy" });
      const busyResult = busy.query(SLOW).catch((e: Error) => e);
      const held = await connectGateway(t2, tok, { application_name: "held" });
      const heldResult = held.query("DROP TABLE IF EXISTS nothing_here").catch((e: Error) => e);
      await pendingReviewFor(t2, "DROP TABLE IF EXISTS nothing_here");
      await waitFor(async () => (await targetSessions(t2.db.name)).some((s) => s.application_name === "busy" && s.state === "active"), "the slow statement to run");

      const started = Date.now();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        t2.gw.close(),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error("gateway close() did not return within 8 s with clients connected")), 8000);
        }),
      ]).finally(() => clearTimeout(timer));
      assert.ok(Date.now() - started < 8000);

      const idleErr = await idleError;
      assert.equal(idleErr.code, "08006");
      assert.match(idleErr.message, /^GH-PG-005: .*the gateway is shutting down/);
      const busyErr = await busyResult;
      assert.ok(busyErr instanceof Error);
      assert.match(busyErr.message, /GH-PG-005|terminated/);
      assert.ok((await heldResult) instanceof Error, "the held statement never ran");
      await waitNoTargetSessions(t2.db.name);
      for (const c of [idle, busy, held]) await c.end().catch(() => {});
    } finally {
      await t2.close();
    }
  });
});

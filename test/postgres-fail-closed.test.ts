// Fail closed: when the decision cannot be written to the audit trail, the statement does not
// reach the target, the client gets GH-STORE-001 in its own protocol, and /readyz reports it.
// (SQLite: once the writer thread reports it; PostgreSQL: at once, each decision is a commit.)

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { sql } from "kysely";
import { connectDirect, connectGateway } from "./helpers/clients.ts";
import { startTestGateway, type TestGateway } from "./helpers/gateway.ts";
import { adminClient, createTempDatabase, type TempDatabase } from "./helpers/pg.ts";

let t: TestGateway;
before(async () => {
  t = await startTestGateway();
  const d = await connectDirect(t);
  await d.query("CREATE TABLE ledger (id int)");
  await d.end();
});
after(async () => {
  await t?.close();
});

test("SQLite store: once decisions cannot reach the audit trail, statements are refused; every one that ran is audited", async () => {
  // The gateway's SQLite store takes decisions through the audit journal: a decision is durable
  // once journaled, and the writer thread links it into the store. When the store stops taking
  // them, the writer reports it within its next pass (≤ 20 ms) and from then on statements are refused —
  // and each statement that did run has its decision in the trail once the store is back.
  const c = await connectGateway(t, await t.agentToken());
  assert.equal((await c.query("INSERT INTO ledger VALUES (1)")).rowCount, 1);
  await t.gw.audit.drain();
  await sql`ALTER TABLE audit_events RENAME TO audit_events_gone`.execute(t.gw.store.db);
  let refused: (Error & { code?: string }) | undefined;
  try {
    for (let i = 2; i < 200 && !refused; i++) {
      refused = (await c.query(`INSERT INTO ledger VALUES (${i})`).then(
        () => undefined,
        (e) => e,
      )) as typeof refused;
      if (!refused) await new Promise((r) => setTimeout(r, 10));
    }
    assert.ok(refused, "statements are refused once the store cannot take decisions");
    assert.equal(refused.code, "08006");
    assert.match(refused.message, /GH-STORE-001/);
    const ready = await fetch(`${t.gw.apiUrl}/readyz`);
    assert.equal(ready.status, 503);
    const metrics = await (await fetch(`${t.gw.apiUrl}/metrics`)).text();
    assert.match(metrics, /gatehouse_audit_write_failures_total\{connection="pg-test"\} [1-9]/);
  } finally {
    await sql`ALTER TABLE audit_events_gone RENAME TO audit_events`.execute(t.gw.store.db);
  }
  // Once the store is back the journal's backlog is linked in and statements run again.
  let resumed = false;
  for (let i = 0; i < 100 && !resumed; i++) {
    resumed = await c.query("INSERT INTO ledger VALUES (1000)").then(
      () => true,
      () => false,
    );
    if (!resumed) await new Promise((r) => setTimeout(r, 20));
  }
  assert.ok(resumed, "serves again once the store is back");
  await c.end();
  await t.gw.audit.drain();
  const d = await connectDirect(t);
  const ran = (await d.query("select count(*)::int n from ledger")).rows[0].n as number;
  await d.end();
  const decided = await t.gw.store.db.selectFrom("audit_events").select((eb) => eb.fn.countAll<number>().as("n")).where("type", "=", "operation.decided").where("decision", "=", "allow").where("data", "like", "%INSERT INTO ledger%").executeTakeFirstOrThrow();
  assert.equal(Number(decided.n), ran, "every INSERT that reached the database has its decision in the trail");
});

describe("a PostgreSQL store turned read-only", () => {
  let g: TestGateway;
  let storeDb: TempDatabase;
  before(async () => {
    storeDb = await createTempDatabase("gh_store_ro");
    g = await startTestGateway({
      extraConfig: (c) => {
        c.store = { url: storeDb.url, poolSize: 2 };
        // best-effort recording keeps the session alive through the outage, so each statement's
        // own audit failure is what refuses it (strict recording would end the session first).
        c.connections![0]!.recording = { onFailure: "best-effort" };
      },
    });
    const d = await connectDirect(g);
    await d.query("CREATE TABLE ledger (id int)");
    await d.end();
  });
  after(async () => {
    await g?.close();
    await storeDb?.drop();
  });

  async function setReadOnly(on: boolean): Promise<void> {
    const admin = adminClient();
    await admin.connect();
    try {
      await admin.query(`ALTER DATABASE ${storeDb.name} SET default_transaction_read_only = ${on ? "on" : "off"}`);
      // Sessions pick the setting up when they start: end the store's open ones.
      await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", [storeDb.name]);
    } finally {
      await admin.end();
    }
  }

  test("allowed and gated statements fail closed with GH-STORE-001; /readyz and metrics show it; service resumes", async () => {
    const c = await connectGateway(g, await g.agentToken(), { connectionTimeoutMillis: 5000 });
    assert.equal((await c.query("INSERT INTO ledger VALUES (1)")).rowCount, 1);
    await setReadOnly(true);
    try {
      let insert: Error & { code?: string } = new Error("not run");
      // The first statement may meet a connection the store just terminated; either way it fails closed.
      for (let i = 0; i < 2; i++) insert = (await c.query("INSERT INTO ledger VALUES (2)").catch((e) => e)) as Error & { code?: string };
      assert.match(insert.message, /GH-STORE-001/);
      const c2 = await connectGateway(g, await g.agentToken()).catch((e) => e as Error);
      if (c2 instanceof Error) assert.match(c2.message, /GH-STORE-001|read-only/);
      else await c2.end();
      const gated = (await c.query("ALTER TABLE ledger ADD COLUMN note text").catch((e) => e)) as Error & { code?: string };
      assert.ok(gated instanceof Error, "a statement that needs review cannot open one without the store");
      assert.match(gated.message, /GH-STORE-001/);
      const d = await connectDirect(g);
      assert.deepEqual((await d.query("select id from ledger order by id")).rows, [{ id: 1 }], "nothing reached the database");
      assert.equal((await d.query("select count(*)::int n from information_schema.columns where table_name = 'ledger'")).rows[0].n, 1);
      await d.end();
      const ready = await fetch(`${g.gw.apiUrl}/readyz`);
      assert.equal(ready.status, 503);
      assert.equal(((await ready.json()) as { code: string }).code, "GH-STORE-001");
      const metrics = await (await fetch(`${g.gw.apiUrl}/metrics`)).text();
      assert.match(metrics, /gatehouse_store_writable 0/);
      assert.match(metrics, /gatehouse_audit_write_failures_total\{connection="pg-test"\} [1-9]/);
    } finally {
      await setReadOnly(false);
    }
    await c.end().catch(() => {});
    const again = await connectGateway(g, await g.agentToken());
    let ok = false;
    for (let i = 0; i < 3 && !ok; i++) ok = !((await again.query("INSERT INTO ledger VALUES (3)").catch((e) => e)) instanceof Error);
    assert.ok(ok, "serves again once the store is writable");
    await again.end();
    assert.equal((await fetch(`${g.gw.apiUrl}/readyz`)).status, 200);
  });
});

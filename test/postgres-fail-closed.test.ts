// Fail closed: when the decision cannot be written to the audit trail, the statement does not
// reach the target, the client gets GH-STORE-001 in its own protocol, and /readyz reports it.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { sql } from "kysely";
import { connectDirect, connectGateway } from "./helpers/clients.ts";
import { startTestGateway, type TestGateway } from "./helpers/gateway.ts";

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

test("an allowed INSERT whose decision cannot be audited never reaches the database", async () => {
  const c = await connectGateway(t, await t.agentToken());
  assert.equal((await c.query("INSERT INTO ledger VALUES (1)")).rowCount, 1);
  await t.gw.audit.drain();
  await sql`ALTER TABLE audit_events RENAME TO audit_events_gone`.execute(t.gw.store.db);
  try {
    const err = (await c.query("INSERT INTO ledger VALUES (2)").catch((e) => e)) as Error & { code?: string };
    assert.equal(err.code, "08006");
    assert.match(err.message, /GH-STORE-001/);
    const d = await connectDirect(t);
    assert.deepEqual((await d.query("select id from ledger order by id")).rows, [{ id: 1 }]);
    await d.end();
    const metrics = await (await fetch(`${t.gw.apiUrl}/metrics`)).text();
    assert.match(metrics, /gatehouse_audit_write_failures_total\{connection="pg-test"\} [1-9]/);
  } finally {
    await sql`ALTER TABLE audit_events_gone RENAME TO audit_events`.execute(t.gw.store.db);
  }
  assert.equal((await c.query("INSERT INTO ledger VALUES (3)")).rowCount, 1, "serves again once the store is back");
  await c.end();
});

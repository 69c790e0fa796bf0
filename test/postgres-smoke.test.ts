// First light: psql through the gateway — a read passes, a denied statement errors and the
// session keeps working, a schema change waits for a reviewer's approval.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import pg from "pg";
import { startTestGateway, type TestGateway } from "./helpers/gateway.ts";

const run = promisify(execFile);
let t: TestGateway;
before(async () => {
  t = await startTestGateway();
});
after(async () => {
  await t?.close();
});

test("psql: read allowed, drop database denied, session continues", async () => {
  const token = await t.agentToken();
  const { stdout, stderr } = await run("psql", [t.conninfo(), "-X", "-At", "-c", "select 40 + 2", "-c", "drop database postgres", "-c", "select 'still here'"], { env: { ...process.env, PGPASSWORD: token } });
  assert.equal(stdout, "42\nstill here\n");
  assert.match(stderr, /GH-POLICY-001: .*rule no-drop-database: never drop a database/);
});

test("a held CREATE TABLE runs only after a DBA approves it", async () => {
  const token = await t.agentToken();
  const client = new pg.Client({ host: t.host, port: t.port, database: t.connection, user: "agent", password: token, ssl: { rejectUnauthorized: false } });
  const notices: string[] = [];
  client.on("notice", (n) => notices.push(n.message ?? ""));
  await client.connect();
  const pending = client.query("create table approved_table (id int)");
  let id: string | undefined;
  for (let i = 0; i < 100 && !id; i++) {
    await new Promise((r) => setTimeout(r, 20));
    id = (await t.gw.reviews.list({ status: "pending" }))[0]?.id;
  }
  assert.ok(id, "a pending review appears");
  const direct = new pg.Client({ connectionString: t.directUrl });
  await direct.connect();
  const before = await direct.query("select to_regclass('approved_table') as t");
  assert.equal(before.rows[0].t, null, "nothing reached the database while held");
  const dba = await t.humanToken(["dba"], "alice");
  const res = await fetch(`${t.gw.apiUrl}/api/v1/reviews/${id}/approve`, { method: "POST", headers: { authorization: `Bearer ${dba}`, "content-type": "application/json" }, body: "{}" });
  assert.equal(res.status, 200);
  await pending;
  assert.match(notices.join("\n"), /waiting for review/);
  const afterRes = await direct.query("select to_regclass('approved_table')::text as t");
  assert.equal(afterRes.rows[0].t, "approved_table");
  await direct.end();
  await client.end();
});

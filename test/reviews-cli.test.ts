// A reviewer's loop with the real binary: a held ALTER TABLE from an ai-agents token, then
// `gatehouse reviews list | show | approve | deny` against the running gateway's API.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import pg from "pg";
import { startTestGateway, type TestGateway } from "./helpers/gateway.ts";

const exec = promisify(execFile);
let t: TestGateway;

before(async () => {
  t = await startTestGateway();
});
after(async () => {
  await t?.close();
});

async function gh(args: string[], token: string): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await exec(process.execPath, ["bin/gatehouse.js", ...args], { env: { ...process.env, GATEHOUSE_API: t.gw.apiUrl, GATEHOUSE_TOKEN: token } });
    return { code: 0, ...r };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
}

async function agentClient(): Promise<pg.Client> {
  const c = new pg.Client({ host: t.host, port: t.port, database: t.connection, user: "agent", password: await t.agentToken(), ssl: { rejectUnauthorized: false } });
  await c.connect();
  return c;
}

async function pendingId(): Promise<string> {
  for (let i = 0; i < 200; i++) {
    const id = (await t.gw.reviews.list({ status: "pending" }))[0]?.id;
    if (id) return id;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error("no pending review appeared");
}

describe("gatehouse reviews", () => {
  test("list and show a held statement, approve it with the CLI, and the client gets its result", async () => {
    const client = await agentClient();
    const held = client.query("ALTER TABLE IF EXISTS nothing_here ADD COLUMN c int");
    const id = await pendingId();
    const dba = await t.humanToken(["dba"], "dana");
    const list = await gh(["reviews", "list"], dba);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /^ID\s+STATUS\s+CONNECTION/);
    assert.ok(list.stdout.includes(id) && list.stdout.includes("schema-changes"));
    const show = await gh(["reviews", "show", id], dba);
    assert.match(show.stdout, /Operation:\n {2}ALTER TABLE IF EXISTS nothing_here ADD COLUMN c int/);
    assert.match(show.stdout, /Classification:\n {2}\[0\] ddl/);
    const json = JSON.parse((await gh(["reviews", "show", id, "--json"], dba)).stdout);
    assert.equal(json.status, "pending");
    const approve = await gh(["reviews", "approve", id, "--comment", "fine"], dba);
    assert.equal(approve.code, 0, approve.stderr);
    assert.match(approve.stdout, /approved; the operation is released/);
    await held;
    await client.end();
  });

  test("deny with a reason: the client sees GH-REVIEW-005 and 42501 with the reason", async () => {
    const client = await agentClient();
    const held = client.query("CREATE TABLE denied_table (id int)").then(
      () => assert.fail("should be denied"),
      (e: Error & { code?: string }) => e,
    );
    const id = await pendingId();
    const dba = await t.humanToken(["dba"], "dana");
    const r = await gh(["reviews", "deny", id, "--reason", "use a migration"], dba);
    assert.equal(r.code, 0, r.stderr);
    const err = await held;
    assert.equal(err.code, "42501");
    assert.match(err.message, /GH-REVIEW-005.*denied by .*use a migration/);
    const again = await client.query("select 1 as ok");
    assert.equal(again.rows[0].ok, 1, "the session stays usable");
    await client.end();
  });

  test("errors come back with the server's code: no token, an agent approving, unknown id, API down", async () => {
    const agent = await t.agentToken();
    const r1 = await gh(["reviews", "approve", "00000000-0000-0000-0000-000000000000"], agent);
    assert.equal(r1.code, 2);
    assert.match(r1.stderr, /GH-REVIEW-001/);
    const noToken = await exec(process.execPath, ["bin/gatehouse.js", "reviews", "list"], { env: { ...process.env, GATEHOUSE_TOKEN: "", GATEHOUSE_API: t.gw.apiUrl } }).catch((e) => e);
    assert.match(noToken.stderr, /GH-AUTH-001/);
    const down = await exec(process.execPath, ["bin/gatehouse.js", "reviews", "list", "--api", "http://127.0.0.1:1"], { env: { ...process.env, GATEHOUSE_TOKEN: agent } }).catch((e) => e);
    assert.match(down.stderr, /GH-API-004/);
  });
});

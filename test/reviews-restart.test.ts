// Restart safety: pending async reviews survive a gateway restart and their approval still lets
// the identical retry run once; hold-mode reviews whose session died with a crashed gateway are
// cancelled (not left pending forever), and the session is marked interrupted.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import pg from "pg";
import { parseConfig } from "../src/config/load.ts";
import type { ConfigInput } from "../src/config/schema.ts";
import { startGateway, type Gateway } from "../src/main.ts";
import { createLogger } from "../src/observability/logger.ts";
import { api, connectDirect, reviewIdIn } from "./helpers/clients.ts";
import { startTestGateway, type TestGateway } from "./helpers/gateway.ts";

const dir = mkdtempSync(join(tmpdir(), "gh-restart-"));
let t: TestGateway;
let input: ConfigInput;
let second: Gateway | undefined;

before(async () => {
  t = await startTestGateway({
    connectionPolicy: { reviewMode: "async", approvers: ["dba"] },
    extraConfig: (c) => {
      c.store = { url: `sqlite:${join(dir, "gh.db")}` };
      input = c;
    },
  });
  const d = await connectDirect(t);
  await d.query("CREATE TABLE kept (id int); INSERT INTO kept VALUES (1), (2)");
  await d.end();
});
after(async () => {
  await second?.close();
  await t?.close();
  rmSync(dir, { recursive: true, force: true });
});

const client = async (port: number, token: string) => {
  const c = new pg.Client({ host: "127.0.0.1", port, database: t.connection, user: "agent", password: token, ssl: { rejectUnauthorized: false } });
  await c.connect();
  return c;
};

test("an async review opened before a restart is approved after it, and the retry runs exactly once", async () => {
  const token = await t.agentToken();
  const c1 = await client(t.port, token);
  const err = (await c1.query("TRUNCATE kept").catch((e) => e)) as Error;
  assert.match(err.message, /GH-POLICY-002/);
  const id = reviewIdIn(err.message);
  await c1.end();
  await t.gw.close();

  // A "crashed" gateway left an active session and a hold-mode review behind.
  second = await startGateway(parseConfig(input), { logger: createLogger("silent") });
  const db = second.store.db;
  await db.insertInto("sessions").values({ id: "dead-session", principal_subject: "t/x", principal_name: "x", principal_json: "{}", connection: t.connection, protocol: "postgres", client_addr: null, gateway_id: "crashed-gateway", started_at: Date.now() - 60_000, ended_at: null, status: "active", end_reason: null }).execute();
  const orphan = (await db.selectFrom("reviews").selectAll().where("id", "=", id).executeTakeFirstOrThrow());
  await db.insertInto("reviews").values({ ...orphan, id: "orphan-review", session_id: "dead-session", mode: "hold", binding_hash: "x", version: 0 }).execute();
  await second.close();
  second = await startGateway(parseConfig(input), { logger: createLogger("silent") });

  assert.equal((await second.reviews.get("orphan-review"))?.status, "cancelled");
  const s = await second.store.db.selectFrom("sessions").select(["status"]).where("id", "=", "dead-session").executeTakeFirstOrThrow();
  assert.equal(s.status, "interrupted");
  assert.equal((await second.reviews.get(id))?.status, "pending", "the async review survived");

  const dba = await t.humanToken(["dba"], "dana");
  const approved = await api({ ...t, gw: second }, "POST", `/api/v1/reviews/${id}/approve`, dba, {});
  assert.equal(approved.status, 200);
  const c2 = await client(second.postgres!.port, token);
  await c2.query("TRUNCATE kept");
  const again = (await c2.query("TRUNCATE kept").catch((e) => e)) as Error;
  assert.match(again.message, /GH-POLICY-002/, "a second retry needs a new review");
  assert.notEqual(reviewIdIn(again.message), id);
  await c2.end();
});

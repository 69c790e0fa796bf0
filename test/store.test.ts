// The store suite runs against both engines: embedded SQLite and the real PostgreSQL server.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { sql } from "kysely";
import { AuditLog, verifyChain } from "../src/audit/log.ts";
import { openStore, redactUrl, type Store } from "../src/store/store.ts";
import { createTempDatabase, type TempDatabase } from "./helpers/pg.ts";

const dir = mkdtempSync(join(tmpdir(), "gh-store-"));
let pgdb: TempDatabase;

before(async () => {
  pgdb = await createTempDatabase();
});
after(async () => {
  await pgdb?.drop();
  rmSync(dir, { recursive: true, force: true });
});

const engines: Array<[string, () => Promise<Store>]> = [
  ["sqlite", () => openStore(`sqlite:${join(dir, `s-${Math.random()}.db`)}`)],
  ["postgres", () => openStore(pgdb.url, { poolSize: 4 })],
];

for (const [engine, open] of engines) {
  describe(`store on ${engine}`, () => {
    let store: Store;
    before(async () => {
      store = await open();
    });
    after(async () => {
      await store?.close();
    });

    test("migrations ran, are recorded, and rerunning them is a no-op", async () => {
      assert.equal(store.kind, engine);
      assert.equal(await store.ping(), true);
      assert.deepEqual(await store.migrate(), []);
      const tables = ["sessions", "audit_events", "reviews", "gatehouse_meta"];
      for (const t of tables) {
        const r = await sql<{ n: number }>`select count(*) as n from ${sql.table(t)}`.execute(store.db);
        assert.equal(Number(r.rows[0]?.n), 0);
      }
    });

    test("sessions round-trip with bigint times as numbers", async () => {
      const now = Date.now();
      await store.db.insertInto("sessions").values({ id: "s1", principal_subject: "t/o", principal_name: "agent", principal_json: "{}", connection: "pg", protocol: "postgres", client_addr: "127.0.0.1", gateway_id: "g1", started_at: now, ended_at: null, status: "active", end_reason: null }).execute();
      const row = await store.db.selectFrom("sessions").selectAll().where("id", "=", "s1").executeTakeFirstOrThrow();
      assert.equal(row.started_at, now);
      assert.equal(typeof row.started_at, "number");
      assert.equal(row.ended_at, null);
    });

    test("audit log: concurrent appends form one unbroken chain", async () => {
      const log = new AuditLog(store);
      const many = await Promise.all(Array.from({ length: 120 }, (_, i) => log.append({ type: "test.event", connection: "pg", data: { i } })));
      const seqs = many.map((r) => r.seq).sort((a, b) => a - b);
      assert.deepEqual(seqs, Array.from({ length: 120 }, (_, i) => i + 1));
      await log.append({ type: "test.after", principal: { subject: "t/o", displayName: "agent" }, decision: "allow", rule: "r" });
      const v = await verifyChain(store, 50);
      assert.equal(v.ok, true);
      assert.equal(v.checked, 121);
      assert.equal(v.head?.seq, 121);
    });

    test("audit verify names the first broken link: edit, delete, reorder", async () => {
      await store.db.updateTable("audit_events").set({ data: '{"i":999}' }).where("seq", "=", 7).execute();
      let v = await verifyChain(store);
      assert.equal(v.ok, false);
      assert.equal(v.brokenAt?.seq, 7);
      assert.match(v.brokenAt?.reason ?? "", /edited/);
      await store.db.updateTable("audit_events").set({ data: '{"i":6}' }).where("seq", "=", 7).execute();
      assert.equal((await verifyChain(store)).ok, true);

      await store.db.deleteFrom("audit_events").where("seq", "=", 20).execute();
      v = await verifyChain(store);
      assert.equal(v.brokenAt?.seq, 20);
      assert.match(v.brokenAt?.reason ?? "", /missing/);
    });

    test("a failed write rejects every append in the batch", async () => {
      const log = new AuditLog(store);
      await sql`drop table audit_events`.execute(store.db);
      await assert.rejects(log.append({ type: "x" }), (e: Error & { code?: string }) => e.code === "GH-STORE-001");
    });
  });
}

test("store URLs: unknown scheme is a config error; passwords are redacted", async () => {
  await assert.rejects(openStore("mysql://x"), (e: Error & { code?: string }) => e.code === "GH-CONFIG-001");
  assert.equal(redactUrl("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
});

test("an unreachable PostgreSQL store fails with GH-STORE-001", async () => {
  await assert.rejects(openStore("postgres://nobody@127.0.0.1:1/none", { poolSize: 1 }), (e: Error & { code?: string }) => e.code === "GH-STORE-001");
});

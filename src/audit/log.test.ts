// The audit log's writer on both stores: event ids are time-ordered UUIDs, the chain relinks onto
// events another writer appended (a second connection, a second process on the same SQLite file,
// a second replica on PostgreSQL) without failing an append, a failed batch rejects every append
// in it and writes none of them (fail closed), data that cannot be serialized fails only its own
// append, and an append made while the SQLite handle is inside someone else's transaction waits
// for it instead of joining it.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import { openStore, type Store } from "../store/store.ts";
import { createTempDatabase, type TempDatabase } from "../../test/helpers/pg.ts";
import { AuditLog, newEventId, verifyChain } from "./log.ts";

const dir = mkdtempSync(join(tmpdir(), "gh-audit-log-"));
after(() => rmSync(dir, { recursive: true, force: true }));
const sqliteUrl = () => `sqlite:${join(dir, `${Math.random().toString(36).slice(2)}.db`)}`;
const turn = () => new Promise<void>((r) => setImmediate(r));
const storeError = (e: Error & { code?: string }) => e.code === "GH-STORE-001";
const V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

async function seqs(store: Store): Promise<number[]> {
  return (await store.db.selectFrom("audit_events").select("seq").orderBy("seq").execute()).map((r) => Number(r.seq));
}

describe("event ids", () => {
  test("UUIDv7 layout: the millisecond up front, version 7, RFC variant, random rest", () => {
    const at = Date.UTC(2026, 0, 1);
    const id = newEventId(at);
    assert.match(id, V7);
    assert.equal(Number.parseInt(id.slice(0, 8) + id.slice(9, 13), 16), at);
    const many = Array.from({ length: 10_000 }, () => newEventId(at));
    assert.equal(new Set(many).size, many.length, "same millisecond, still distinct (across refills of the random pool)");
    assert.ok(many.every((x) => V7.test(x)));
    assert.deepEqual([...new Set(many.map((x) => x[19]))].sort(), ["8", "9", "a", "b"], "the variant's two bits are random too");
    assert.ok(newEventId(at + 1) > newEventId(at), "a later millisecond sorts later");
    assert.match(newEventId(0), /^00000000-0000-7/);
  });

  test("appended events get them, ordered across commits", async () => {
    const store = await openStore(sqliteUrl());
    try {
      const log = new AuditLog(store);
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) {
        const rs = await Promise.all([log.append({ type: "a" }), log.append({ type: "b" })]);
        ids.push(...rs.map((r) => r.id));
        await new Promise((r) => setTimeout(r, 2));
      }
      for (const id of ids) assert.match(id, V7);
      const prefixes = ids.map((id) => id.slice(0, 13));
      assert.deepEqual(prefixes, [...prefixes].sort(), "the time part never goes back");
    } finally {
      await store.close();
    }
  });
});

describe("SQLite writer", () => {
  test("relinks onto events another connection appended between its commits", async () => {
    const url = sqliteUrl();
    const a = await openStore(url);
    const b = await openStore(url, { migrate: false });
    try {
      const la = new AuditLog(a);
      const lb = new AuditLog(b);
      for (let i = 0; i < 10; i++) {
        await Promise.all([la.append({ type: "a", data: { i } }), la.append({ type: "a", data: { i, k: 2 } })]);
        await lb.append({ type: "b", data: { i } });
      }
      assert.deepEqual(await seqs(a), Array.from({ length: 30 }, (_, i) => i + 1));
      const v = await verifyChain(a);
      assert.equal(v.ok, true, v.brokenAt?.reason);
      assert.equal(v.checked, 30);
    } finally {
      await b.close();
      await a.close();
    }
  });

  test("another process writing the same file (the CLI) makes no append fail", { timeout: 60_000 }, async () => {
    const url = sqliteUrl();
    const store = await openStore(url);
    const root = fileURLToPath(new URL("../../", import.meta.url));
    const logModule = new URL("./log.ts", import.meta.url).href;
    const storeModule = new URL("../store/store.ts", import.meta.url).href;
    // The other writer appends as fast as it can until its stdin closes, then reports. (A script
    // file, not -e: --input-type=module would also apply to the store's checkpoint worker.)
    const script = join(dir, "other-writer.mts");
    writeFileSync(
      script,
      `import { AuditLog } from ${JSON.stringify(logModule)}; import { openStore } from ${JSON.stringify(storeModule)};
       const store = await openStore(${JSON.stringify(url)}, { migrate: false }); const log = new AuditLog(store);
       let stop = false, ok = 0, failed = 0; process.stdin.on("end", () => { stop = true; }); process.stdin.resume();
       console.log("ready");
       while (!stop) { await log.append({ type: "cli.event" }).then(() => ok++, (e) => { failed++; console.error(e.message); }); await new Promise((r) => setTimeout(r, 0)); }
       console.log(JSON.stringify({ ok, failed })); await store.close();`,
    );
    const child = spawn(process.execPath, ["--import", "tsx", script], { cwd: root, stdio: ["pipe", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d;
    });
    const exited = new Promise<number | null>((r) => child.once("exit", r));
    try {
      while (!out.includes("ready")) await new Promise((r) => setTimeout(r, 20));
      const log = new AuditLog(store);
      let failed = 0;
      for (let i = 0; i < 400; i++) {
        const batch = Array.from({ length: 4 }, (_, k) => log.append({ type: "gateway.event", data: { i, k } }).catch(() => failed++));
        await Promise.all(batch);
        if (i % 20 === 0) await new Promise((r) => setTimeout(r, 2)); // give the other writer room
      }
      child.stdin.end();
      assert.equal(await exited, 0);
      const other = JSON.parse(out.trim().split("\n").at(-1)!) as { ok: number; failed: number };
      assert.equal(failed, 0, "no gateway append failed");
      assert.equal(other.failed, 0, "no append of the other process failed");
      assert.ok(other.ok > 0, "the other process did write");
      const v = await verifyChain(store);
      assert.equal(v.ok, true, v.brokenAt?.reason);
      assert.equal(v.checked, 1600 + other.ok);
    } finally {
      child.kill();
      await store.close();
    }
  });

  test("a failed batch rejects every append in it, writes none of them, and sets writeError", async () => {
    const store = await openStore(sqliteUrl());
    try {
      const log = new AuditLog(store);
      await log.append({ type: "before" });
      store.sqlite!.exec("CREATE TRIGGER poison BEFORE INSERT ON audit_events WHEN NEW.type = 'poison' BEGIN SELECT RAISE(ABORT, 'poisoned'); END");
      const results = await Promise.allSettled([log.append({ type: "ok.1" }), log.append({ type: "poison" }), log.append({ type: "ok.2" })]);
      for (const r of results) {
        assert.equal(r.status, "rejected");
        assert.ok(storeError((r as PromiseRejectedResult).reason));
      }
      assert.match(log.writeError ?? "", /poisoned/);
      assert.deepEqual(await seqs(store), [1], "nothing of the failed batch was written");

      store.sqlite!.exec("ALTER TABLE audit_events RENAME TO audit_events_gone");
      await assert.rejects(log.append({ type: "no.table" }), storeError);
      store.sqlite!.exec("ALTER TABLE audit_events_gone RENAME TO audit_events");

      const after = await log.append({ type: "after" });
      assert.equal(after.seq, 2);
      assert.equal(log.writeError, undefined, "the next success clears it");
      assert.equal((await verifyChain(store)).ok, true);
    } finally {
      await store.close();
    }
  });

  test("data that cannot be serialized fails its own append only, and is no store failure", async () => {
    const store = await openStore(sqliteUrl());
    try {
      const log = new AuditLog(store);
      const [a, bad, c] = await Promise.allSettled([log.append({ type: "a" }), log.append({ type: "bad", data: { n: 1n } }), log.append({ type: "c" })]);
      assert.equal(a.status, "fulfilled");
      assert.equal(c.status, "fulfilled");
      assert.equal(bad.status, "rejected");
      assert.equal(log.writeError, undefined);
      assert.deepEqual(await seqs(store), [1, 2]);
    } finally {
      await store.close();
    }
  });

  test("an append made inside someone else's transaction waits for it and survives its rollback", async () => {
    const store = await openStore(sqliteUrl());
    try {
      const log = new AuditLog(store);
      let appended: Promise<unknown> | undefined;
      let settled = false;
      await assert.rejects(
        store.db.transaction().execute(async (trx) => {
          await trx.insertInto("gatehouse_meta").values({ key: "k", value: "v" }).execute();
          appended = log.append({ type: "inside" }).finally(() => {
            settled = true;
          });
          for (let i = 0; i < 5; i++) await turn();
          assert.equal(settled, false, "held until the transaction ends");
          throw new Error("roll back");
        }),
        /roll back/,
      );
      const r = (await appended) as { seq: number };
      assert.equal(r.seq, 1);
      await log.append({ type: "next" });
      assert.deepEqual(await seqs(store), [1, 2], "committed on its own, not as part of the rolled-back transaction");
      assert.equal(await store.db.selectFrom("gatehouse_meta").selectAll().where("key", "=", "k").executeTakeFirst(), undefined);
    } finally {
      await store.close();
    }
  });

  test("an observer that throws does not turn a commit into a failure", async () => {
    const store = await openStore(sqliteUrl());
    try {
      const log = new AuditLog(store);
      log.onCommitted = () => {
        throw new Error("metrics bug");
      };
      const r = await log.append({ type: "x" });
      assert.equal(r.seq, 1);
      assert.equal(log.writeError, undefined);
    } finally {
      await store.close();
    }
  });
});

describe("PostgreSQL writer", () => {
  let pgdb: TempDatabase;
  before(async () => {
    pgdb = await createTempDatabase("gh_audit_log");
  });
  after(async () => {
    await pgdb?.drop();
  });

  test("two replicas appending at once form one unbroken chain (advisory lock, head read in the transaction)", async () => {
    const a = await openStore(pgdb.url, { poolSize: 4 });
    const b = await openStore(pgdb.url, { poolSize: 4, migrate: false });
    try {
      const la = new AuditLog(a);
      const lb = new AuditLog(b);
      const all = [];
      for (let i = 0; i < 20; i++) {
        all.push(la.append({ type: "a", data: { i } }), lb.append({ type: "b", data: { i } }), la.append({ type: "a2", data: { i } }));
        if (i % 5 === 0) await turn();
      }
      const records = await Promise.all(all);
      for (const r of records) assert.match(r.id, V7);
      assert.deepEqual(await seqs(a), Array.from({ length: 60 }, (_, i) => i + 1));
      const v = await verifyChain(a);
      assert.equal(v.ok, true, v.brokenAt?.reason);
      assert.equal(v.checked, 60);
    } finally {
      await b.close();
      await a.close();
    }
  });
});

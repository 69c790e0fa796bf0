// The audit trail against both stores (embedded SQLite and the real PostgreSQL server): every kind
// of tampering with stored rows is named by verification (update, delete, reorder, a truncated
// tail, a consistently rewritten chain, forged checkpoints, deleted checkpoints caught by an
// exported one), pruning keeps the kept chain verifiable from its anchor, search filters and pages,
// config change events, and the checkpointer.

import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, beforeEach, describe, test } from "node:test";
import { hashEvent } from "../src/audit/chain.ts";
import { Checkpointer, CheckpointSigner, checkpointFile, writeCheckpoint } from "../src/audit/checkpoints.ts";
import { recordConfigLoaded } from "../src/audit/config-events.ts";
import { AuditLog, verifyChain } from "../src/audit/log.ts";
import { pruneAuditEvents } from "../src/audit/prune.ts";
import { auditPages, searchAudit } from "../src/audit/query.ts";
import { parseConfig } from "../src/config/load.ts";
import { openStore, type Store } from "../src/store/store.ts";
import { createTempDatabase, type TempDatabase } from "./helpers/pg.ts";

const dir = mkdtempSync(join(tmpdir(), "gh-audit-"));
let pgdb: TempDatabase;
before(async () => {
  pgdb = await createTempDatabase("gh_audit");
});
after(async () => {
  await pgdb?.drop();
  rmSync(dir, { recursive: true, force: true });
});

const newSigner = () => new CheckpointSigner(String(generateKeyPairSync("ed25519").privateKey.export({ format: "pem", type: "pkcs8" })));
const signer = newSigner();
const trustedKeys = [signer.publicKey];
const HOUR = 3_600_000;

const engines: Array<[string, () => Promise<Store>]> = [
  ["sqlite", () => openStore(`sqlite:${join(dir, `a-${Math.random()}.db`)}`)],
  ["postgres", () => openStore(pgdb.url, { poolSize: 4 })],
];

for (const [engine, open] of engines) {
  describe(`audit trail on ${engine}`, () => {
    let store: Store;
    before(async () => {
      store = await open();
    });
    after(async () => {
      await store?.close();
    });
    beforeEach(async () => {
      for (const t of ["audit_events", "audit_checkpoints", "audit_anchor", "gatehouse_meta"] as const) await store.db.deleteFrom(t).execute();
    });

    /** n events, at one per minute from `start`. */
    async function seed(n: number, start = Date.now() - n * 60_000): Promise<AuditLog> {
      let t = start;
      const log = new AuditLog(store, { now: () => (t += 60_000) });
      for (let i = 1; i <= n; i++) {
        await log.append({ type: i % 3 ? "operation.decided" : "review.created", principal: { subject: `tid/oid-${i % 2}`, displayName: i % 2 ? "Ada Agent" : "Bob Builder" }, connection: i % 2 ? "pg-a" : "pg-b", sessionId: `s-${i % 4}`, decision: i % 5 ? "allow" : "deny", rule: `rule-${i % 3}`, data: { text: `select ${i} from t_${i}`, i } });
      }
      return log;
    }
    const verify = (o: Parameters<typeof verifyChain>[1] = {}) => verifyChain(store, { trustedKeys, ...(typeof o === "object" ? o : {}) });
    /** What an attacker with the database but without the key would do: re-link every hash from `from` on. */
    async function rewriteFrom(from: number): Promise<void> {
      const rows = await store.db.selectFrom("audit_events").selectAll().where("seq", ">=", from - 1).orderBy("seq").execute();
      let prev = rows[0]!.hash;
      for (const r of rows.slice(1)) {
        const hash = hashEvent({ ...r, seq: Number(r.seq), at: Number(r.at), prev_hash: prev });
        await store.db.updateTable("audit_events").set({ prev_hash: prev, hash }).where("seq", "=", r.seq).execute();
        prev = hash;
      }
    }

    test("an intact chain with signed checkpoints verifies, and says what it checked", async () => {
      await seed(10);
      await writeCheckpoint(store, { signer });
      await seed(5);
      await writeCheckpoint(store, { signer });
      const v = await verify();
      assert.equal(v.ok, true, v.brokenAt?.reason);
      assert.equal(v.checked, 15);
      assert.equal(v.head?.seq, 15);
      assert.deepEqual(v.checkpoints, { stored: 2, external: 0, signed: 2, verified: 2 });
      assert.deepEqual(v.warnings, []);
    });

    test("UPDATE of one field of one row is named", async () => {
      await seed(10);
      await store.db.updateTable("audit_events").set({ decision: "allow" }).where("seq", "=", 5).execute();
      const v = await verify();
      assert.deepEqual([v.ok, v.brokenAt?.seq, v.checked], [false, 5, 4]);
      assert.match(v.brokenAt!.reason, /content does not match its hash/);
    });

    test("DELETE of one middle row is named", async () => {
      await seed(10);
      await store.db.deleteFrom("audit_events").where("seq", "=", 6).execute();
      const v = await verify();
      assert.deepEqual([v.ok, v.brokenAt?.seq], [false, 6]);
      assert.match(v.brokenAt!.reason, /event 6 is missing/);
    });

    test("reordering (two rows swap their seq) is named", async () => {
      await seed(10);
      await store.db.updateTable("audit_events").set({ seq: -1 }).where("seq", "=", 4).execute();
      await store.db.updateTable("audit_events").set({ seq: 4 }).where("seq", "=", 5).execute();
      await store.db.updateTable("audit_events").set({ seq: 5 }).where("seq", "=", -1).execute();
      const v = await verify();
      assert.deepEqual([v.ok, v.brokenAt?.seq], [false, 4]);
      assert.match(v.brokenAt!.reason, /prev_hash does not match.*reordered/);
    });

    test("truncating the tail before a checkpoint is named; without any checkpoint it is only a warning", async () => {
      await seed(20);
      await store.db.deleteFrom("audit_events").where("seq", ">", 15).execute();
      let v = await verify();
      assert.equal(v.ok, true, "no checkpoint: a shorter chain is still a valid chain");
      assert.match(v.warnings.join("\n"), /no checkpoints: deleting the newest events/);

      await store.db.deleteFrom("audit_events").execute();
      await seed(20);
      await writeCheckpoint(store, { signer });
      await store.db.deleteFrom("audit_events").where("seq", ">", 15).execute();
      v = await verify();
      assert.deepEqual([v.ok, v.brokenAt?.seq, v.checked], [false, 16, 15]);
      assert.match(v.brokenAt!.reason, /chain ends at #15 but checkpoint #20 \(stored\) attests event #20.*truncated tail/);
      // Everything deleted: still caught.
      await store.db.deleteFrom("audit_events").execute();
      assert.equal((await verify()).brokenAt?.seq, 1);
    });

    test("checkpoint rows deleted too: an exported checkpoint kept outside the store still catches it", async () => {
      await seed(20);
      const exported = checkpointFile((await writeCheckpoint(store, { signer }))!, signer);
      await store.db.deleteFrom("audit_events").where("seq", ">", 12).execute();
      await store.db.deleteFrom("audit_checkpoints").execute();
      assert.equal((await verify()).ok, true, "the store alone cannot tell");
      const v = await verify({ checkpoints: [exported] });
      assert.deepEqual([v.ok, v.brokenAt?.seq], [false, 13]);
      assert.match(v.brokenAt!.reason, /checkpoint #20 \(given\).*truncated tail/);
      assert.equal(v.checkpoints.verified, 1);
    });

    test("a consistently rewritten chain breaks at the checkpoint; forging the checkpoint breaks its signature", async () => {
      await seed(10);
      const exported = checkpointFile((await writeCheckpoint(store, { signer }))!, signer);
      await seed(5);
      await store.db.updateTable("audit_events").set({ decision: "allow", data: '{"i":3,"text":"harmless"}' }).where("seq", "=", 3).execute();
      await rewriteFrom(3);
      let v = await verify();
      assert.deepEqual([v.ok, v.brokenAt?.seq], [false, 10]);
      assert.match(v.brokenAt!.reason, /hash differs from checkpoint #10 \(stored\).*rewritten/);

      // The attacker updates the stored checkpoint's hash too: its signature no longer verifies.
      const newHash = (await store.db.selectFrom("audit_events").select("hash").where("seq", "=", 10).executeTakeFirstOrThrow()).hash;
      await store.db.updateTable("audit_checkpoints").set({ hash: newHash }).where("seq", "=", 10).execute();
      v = await verify();
      assert.deepEqual([v.ok, v.brokenAt?.seq], [false, 10]);
      assert.match(v.brokenAt!.reason, /checkpoint #10 \(stored\): its signature does not verify/);

      // …or re-signs it with a key of their own: not a trusted key.
      const mallory = newSigner();
      const cp = await store.db.selectFrom("audit_checkpoints").selectAll().where("seq", "=", 10).executeTakeFirstOrThrow();
      await store.db.updateTable("audit_checkpoints").set({ key_id: mallory.keyId, signature: mallory.sign({ seq: 10, hash: newHash, at: Number(cp.at) }) }).where("seq", "=", 10).execute();
      v = await verify();
      assert.match(v.brokenAt?.reason ?? "", /signed by key [0-9a-f]{16}, which is not a trusted key/);
      // …or strips the signature: only --require-signed (or the exported checkpoint) tells.
      await store.db.updateTable("audit_checkpoints").set({ key_id: null, signature: null }).where("seq", "=", 10).execute();
      assert.equal((await verify()).ok, true);
      assert.match((await verify({ requireSigned: true })).brokenAt?.reason ?? "", /not signed/);
      v = await verify({ checkpoints: [exported] });
      assert.match(v.brokenAt?.reason ?? "", /hash differs from checkpoint #10 \(given\)/);
      // A forged signature on a given file is caught as well.
      v = await verify({ checkpoints: [{ ...exported, signature: Buffer.alloc(64, 1).toString("base64") }] });
      assert.match(v.brokenAt?.reason ?? "", /checkpoint #10 \(given\): its signature does not verify/);
    });

    test("signatures without a trusted key are reported as unchecked, not as verified", async () => {
      await seed(3);
      const cp = checkpointFile((await writeCheckpoint(store, { signer }))!, signer);
      const v = await verifyChain(store, { checkpoints: [cp] });
      assert.equal(v.ok, true);
      assert.equal(v.checkpoints.verified, 0);
      assert.match(v.warnings.join("\n"), /not checked: no trusted public key/);
      assert.match(v.warnings.join("\n"), /only against the key embedded in the file/);
      assert.equal((await verifyChain(store, { checkpoints: [cp], requireSigned: true })).ok, false);
    });

    test("pruning: only up to a checkpoint older than the cutoff; the kept chain verifies from its anchor", async () => {
      const now = Date.now();
      const start = now - 10 * 24 * HOUR;
      await seed(30, start); // events at start+1min … start+30min
      await writeCheckpoint(store, { signer, now: start + 20 * 60_000 }); // #30, taken long ago
      await seed(10); // #31–#40, recent
      await writeCheckpoint(store, { signer }); // #40, now

      assert.deepEqual((await pruneAuditEvents(store, { olderThanMs: 0, now })).deleted, 0, "retention 0 keeps everything");
      assert.equal((await pruneAuditEvents(store, { olderThanMs: 30 * 24 * HOUR, now })).deleted, 0, "no checkpoint is old enough");
      const r = await pruneAuditEvents(store, { olderThanMs: 7 * 24 * HOUR, now });
      assert.deepEqual([r.deleted, r.checkpointsDeleted, r.anchor?.seq], [30, 0, 30]);
      assert.equal(Number((await store.db.selectFrom("audit_events").select((eb) => eb.fn.min("seq").as("m")).executeTakeFirstOrThrow()).m), 31);

      let v = await verify();
      assert.equal(v.ok, true, v.brokenAt?.reason);
      assert.deepEqual([v.checked, v.anchor?.seq, v.head?.seq], [10, 30, 40]);
      assert.equal((await pruneAuditEvents(store, { olderThanMs: 7 * 24 * HOUR, now })).deleted, 0, "idempotent");

      // Appends continue on the pruned chain.
      await new AuditLog(store).append({ type: "after.prune" });
      assert.equal((await verify()).head?.seq, 41);

      // Pruning past the anchor's checkpoint deletes older checkpoints with the events.
      const later = await pruneAuditEvents(store, { olderThanMs: 1, now: Date.now() + 10 });
      assert.deepEqual([later.deleted, later.checkpointsDeleted, later.anchor?.seq], [10, 1, 40]);
      v = await verify();
      assert.deepEqual([v.ok, v.checked, v.anchor?.seq], [true, 1, 40]);

      // An anchor no checkpoint vouches for: someone deleted events and wrote an anchor.
      await store.db.deleteFrom("audit_checkpoints").execute();
      v = await verify();
      assert.deepEqual([v.ok, v.brokenAt?.seq], [false, 40]);
      assert.match(v.brokenAt!.reason, /anchor at #40 that no checkpoint attests/);
    });

    test("an edited anchor, and a prune over a broken chain, are refused", async () => {
      const now = Date.now();
      await seed(10, now - 48 * HOUR);
      await writeCheckpoint(store, { signer, now: now - 47 * HOUR });
      await seed(3);
      await store.db.updateTable("audit_events").set({ rule: "other" }).where("seq", "=", 4).execute();
      await assert.rejects(pruneAuditEvents(store, { olderThanMs: HOUR, now }), (e: Error & { code?: string }) => e.code === "GH-AUDIT-004" && /event #4/.test(e.message));
      assert.equal(Number((await store.db.selectFrom("audit_events").select((eb) => eb.fn.countAll().as("n")).executeTakeFirstOrThrow()).n), 13, "nothing was deleted");

      await store.db.updateTable("audit_events").set({ rule: "rule-1" }).where("seq", "=", 4).execute();
      assert.equal((await pruneAuditEvents(store, { olderThanMs: HOUR, now })).deleted, 10);
      await store.db.updateTable("audit_anchor").set({ hash: "e".repeat(64) }).execute();
      const v = await verify();
      assert.equal(v.brokenAt?.seq, 10);
      assert.match(v.brokenAt!.reason, /anchor's hash differs from checkpoint #10/);
    });

    test("search: every filter, case-insensitive name and text, escaped wildcards, keyset pages", async () => {
      const t0 = Date.now() - 100 * 60_000;
      await seed(30, t0);
      await new AuditLog(store).append({ type: "auth.failed", data: { code: "GH-AUTH-004", note: "100%_sure" } });
      const count = async (f: Parameters<typeof searchAudit>[1]) => (await searchAudit(store, f, { limit: 1000 })).rows.length;
      assert.equal(await count({}), 31);
      assert.equal(await count({ principal: "tid/oid-1" }), 15);
      assert.equal(await count({ principal: "ada" }), 15, "display name substring, any case");
      assert.equal(await count({ principal: "%" }), 0, "LIKE wildcards are literal");
      assert.equal(await count({ type: "review." }), 10);
      assert.equal(await count({ type: "review.*" }), 10);
      assert.equal(await count({ type: "review" }), 0, "without . or * the type is exact");
      assert.equal(await count({ connection: "pg-b", decision: "deny" }), 3);
      assert.equal(await count({ rule: "rule-0", sessionId: "s-0" }), 2);
      assert.equal(await count({ from: t0 + 10 * 60_000, to: t0 + 20 * 60_000 }), 10, "from inclusive, to exclusive");
      assert.equal(await count({ text: "FROM T_7" }), 1);
      assert.equal(await count({ text: "100%_sure" }), 1);
      assert.equal(await count({ text: "100%%" }), 0);

      const seen: number[] = [];
      let cursor: string | undefined;
      do {
        const page = await searchAudit(store, {}, { cursor, limit: 7 });
        seen.push(...page.rows.map((r) => Number(r.seq)));
        cursor = page.next ?? undefined;
      } while (cursor);
      assert.deepEqual(seen, Array.from({ length: 31 }, (_, i) => 31 - i), "newest first, no gaps or repeats");
      const asc: number[] = [];
      for await (const rows of auditPages(store, { untilSeq: 20 }, 6)) asc.push(...rows.map((r) => Number(r.seq)));
      assert.deepEqual(asc, Array.from({ length: 20 }, (_, i) => i + 1));
      await assert.rejects(searchAudit(store, {}, { cursor: "x" }), (e: Error & { code?: string }) => e.code === "GH-API-002");
    });

    test("config.loaded on every start; config.changed names what changed", async () => {
      const log = new AuditLog(store);
      const cfg = (policies: Array<Record<string, unknown>>) => parseConfig({ policies: policies as never, connections: [{ name: "pg-a", protocol: "postgres", postgres: { host: "h", database: "d", user: "u", password: "literal-pw" } }] });
      const r1 = { name: "r1", operations: { kinds: ["read"] }, decision: "allow" };
      assert.equal(await recordConfigLoaded(store, log, cfg([r1]), "g1"), undefined);
      assert.equal(await recordConfigLoaded(store, log, cfg([r1]), "g2"), undefined, "same config: no change");
      const diff = await recordConfigLoaded(store, log, cfg([{ ...r1, decision: "deny" }, { name: "r2", decision: "allow" }]), "g3");
      assert.deepEqual(diff?.rules, { added: ["r2"], removed: [], changed: ["r1"] });
      const types = (await store.db.selectFrom("audit_events").select(["type", "data"]).orderBy("seq").execute()).map((r) => r.type);
      assert.deepEqual(types, ["config.loaded", "config.loaded", "config.changed", "config.loaded"]);
      const all = JSON.stringify(await store.db.selectFrom("audit_events").selectAll().execute());
      assert.ok(!all.includes("literal-pw"), "no secret value in the trail");
      const changed = await store.db.selectFrom("audit_events").select("data").where("type", "=", "config.changed").executeTakeFirstOrThrow();
      assert.deepEqual(JSON.parse(changed.data).sections, ["policies"]);
      // Without the remembered seq (an older store), the previous load is found by scanning.
      await store.db.deleteFrom("gatehouse_meta").execute();
      assert.equal(await recordConfigLoaded(store, log, cfg([{ ...r1, decision: "deny" }, { name: "r2", decision: "allow" }]), "g4"), undefined);
      assert.equal((await verify()).ok, true);
    });

    test("checkpointer: on an interval, once per head, and a final one at stop", async () => {
      const log = await seed(3);
      const cp = new Checkpointer(store, { intervalSeconds: 0.05, signer, gatewayId: "gw-test" });
      cp.start();
      await new Promise((r) => setTimeout(r, 120));
      const rows = await store.db.selectFrom("audit_checkpoints").selectAll().execute();
      assert.equal(rows.length, 1, "the head did not move: one checkpoint");
      assert.deepEqual([Number(rows[0]!.seq), rows[0]!.gateway_id, rows[0]!.key_id], [3, "gw-test", signer.keyId]);
      await log.append({ type: "gateway.stopped" });
      await cp.stop();
      assert.deepEqual((await store.db.selectFrom("audit_checkpoints").select("seq").orderBy("seq").execute()).map((r) => Number(r.seq)), [3, 4]);
      const again = await Promise.all([cp.checkpoint(), cp.checkpoint()]);
      assert.equal(again[0]?.seq, 4);
      assert.equal((await verify({ requireSigned: true })).ok, true);
    });
  });
}

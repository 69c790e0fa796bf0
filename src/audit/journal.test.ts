import assert from "node:assert/strict";
import { appendFileSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { sql } from "kysely";
import { openStore, type Store } from "../store/store.ts";
import { newEventId } from "./append.ts";
import { claimJournal, encodeEvent, JournalIngester, journalDir, JournalWriter } from "./journal.ts";
import { AuditLog, verifyChain } from "./log.ts";

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function fileStore(): Promise<{ store: Store; file: string }> {
  const dir = mkdtempSync(join(tmpdir(), "gh-journal-"));
  dirs.push(dir);
  const file = join(dir, "g.db");
  return { store: await openStore(`sqlite:${file}`), file };
}

const line = (type: string, i: number) => encodeEvent({ id: newEventId(), at: 1_700_000_000_000 + i, type, principal_subject: "s", principal_name: "S", connection: "c", session_id: null, decision: null, rule: null, data: `{"i":${i}}` });

describe("the audit journal", () => {
  test("events are durable when appended, linked into the store by the writer thread, in order, and the chain verifies", async () => {
    const { store } = await fileStore();
    const log = new AuditLog(store, { journal: true, journalSegmentBytes: 4096 });
    try {
      assert.ok(log.journaled);
      const recs = [];
      for (let round = 0; round < 20; round++) recs.push(...(await Promise.all(Array.from({ length: 10 }, (_, i) => log.append({ type: "t", data: { n: round * 10 + i } })))));
      assert.equal(recs[0]!.seq, 0, "not linked yet when the append resolves");
      await log.drain();
      const rows = await store.db.selectFrom("audit_events").selectAll().orderBy("seq").execute();
      assert.equal(rows.length, 200);
      assert.deepEqual(
        rows.map((r) => JSON.parse(r.data).n),
        Array.from({ length: 200 }, (_, i) => i),
        "appended order is chain order",
      );
      assert.deepEqual(
        rows.map((r) => r.id),
        recs.map((r) => r.id),
        "ids are the ones handed out at append",
      );
      assert.equal((await verifyChain(store)).ok, true);
      const linked = await log.appendLinked({ type: "linked" });
      assert.equal(linked.seq, 201);
      assert.match(linked.hash, /^[0-9a-f]{64}$/);
      // Segments rotated (4 KiB each) and the ingested ones were deleted.
      await log.drain();
      assert.ok(readdirSync(journalDir((store as { file: string }).file)).length <= 2);
    } finally {
      await log.close();
      await store.close();
    }
  });

  test("after a crash the journal's lines are ingested first, once; a torn last line is skipped", async () => {
    const { store, file } = await fileStore();
    // A previous gateway on this database wrote these and died before they were ingested: two
    // segments, the first ending in a line torn by a power loss.
    assert.equal(claimJournal(store.sqlite!, file), undefined);
    const w = new JournalWriter(file, { segment: 0, offset: 0 });
    w.write(line("before.1", 1) + line("before.2", 2));
    w.close();
    appendFileSync(join(journalDir(file), "00000001.jsonl"), '["torn"');
    const w2 = new JournalWriter(file, { segment: 0, offset: 0 });
    w2.write(line("before.3", 3));
    w2.close();
    const log = new AuditLog(store, { journal: true });
    try {
      await log.append({ type: "after" });
      await log.drain();
      const types = (await store.db.selectFrom("audit_events").select("type").orderBy("seq").execute()).map((r) => r.type);
      assert.deepEqual(types, ["before.1", "before.2", "before.3", "after"]);
      assert.equal((await verifyChain(store)).ok, true);
    } finally {
      await log.close();
    }
    // A restart ingests nothing twice.
    const again = new AuditLog(store, { journal: true });
    try {
      await again.append({ type: "after.restart" });
      await again.drain();
      const types = (await store.db.selectFrom("audit_events").select("type").orderBy("seq").execute()).map((r) => r.type);
      assert.deepEqual(types, ["before.1", "before.2", "before.3", "after", "after.restart"]);
    } finally {
      await again.close();
      await store.close();
    }
  });

  test("a backlog is read a bounded piece per pass: every line ingested once, in order, lines longer than a read too", async () => {
    const { store, file } = await fileStore();
    assert.equal(claimJournal(store.sqlite!, file), undefined);
    // Segment 1: 60 lines, every 7th ~1.5 KB (longer than a 256-byte read), then a torn tail;
    // segment 2: one more line. Nothing ingested yet: a gateway that fell behind, or crashed.
    const w = new JournalWriter(file, { segment: 0, offset: 0 });
    const want: string[] = [];
    let text = "";
    for (let i = 0; i < 60; i++) {
      const data = i % 7 === 0 ? `{"pad":"${"x".repeat(1500)}","i":${i}}` : `{"i":${i}}`;
      text += encodeEvent({ id: newEventId(), at: 1_700_000_000_000 + i, type: `t${i}`, principal_subject: "s", principal_name: "S", connection: "c", session_id: null, decision: null, rule: null, data });
      want.push(`t${i}`);
    }
    w.write(text);
    w.close();
    appendFileSync(join(journalDir(file), "00000001.jsonl"), '["torn"');
    const w2 = new JournalWriter(file, { segment: 0, offset: 0 });
    w2.write(line("last", 99));
    w2.close();
    try {
      const ingester = new JournalIngester(store.sqlite!, file, 256);
      let passes = 0;
      for (let r = ingester.step(undefined); ; r = ingester.step(undefined)) {
        passes++;
        assert.ok(passes < 1000, "ingestion ends");
        if (!r.more) break;
      }
      assert.ok(passes > 10, `bounded reads took ${passes} passes`);
      const rows = await store.db.selectFrom("audit_events").select(["type", "data"]).orderBy("seq").execute();
      assert.deepEqual(rows.map((r) => r.type), [...want, "last"]);
      assert.equal(JSON.parse(rows[7]!.data).pad.length, 1500);
      assert.equal((await verifyChain(store)).ok, true);
      assert.deepEqual(readdirSync(journalDir(file)).filter((n) => n.endsWith(".jsonl")), ["00000002.jsonl"], "the finished segment was deleted");
    } finally {
      await store.close();
    }
  });

  test("a line longer than 64 MiB (an approved statement that size) is ingested, and so is what follows it", async () => {
    const { store, file } = await fileStore();
    assert.equal(claimJournal(store.sqlite!, file), undefined);
    const w = new JournalWriter(file, { segment: 0, offset: 0 });
    const huge = `{"ran":"${"s".repeat(65 * 1024 * 1024)}"}`;
    w.write(line("before", 1) + encodeEvent({ id: newEventId(), at: 1_700_000_000_002, type: "review.used", principal_subject: "s", principal_name: "S", connection: "c", session_id: null, decision: "allow", rule: "r", data: huge }) + line("after", 3));
    w.close();
    const w2 = new JournalWriter(file, { segment: 0, offset: 0 });
    w2.write(line("next", 4));
    w2.close();
    try {
      const ingester = new JournalIngester(store.sqlite!, file);
      for (let i = 0; ingester.step(undefined).more; i++) assert.ok(i < 100, "ingestion ends");
      const rows = await store.db.selectFrom("audit_events").select(["type", sql<number>`length(data)`.as("n")]).orderBy("seq").execute();
      assert.deepEqual(rows.map((r) => r.type), ["before", "review.used", "after", "next"]);
      assert.equal(Number(rows[1]!.n), huge.length);
    } finally {
      await store.close();
    }
  });

  test("a journal left by another database is moved aside, never ingested into this chain", async () => {
    const { store, file } = await fileStore();
    const first = new AuditLog(store, { journal: true });
    await first.append({ type: "mine" });
    await first.close();
    // The database is replaced (say, restored from elsewhere) while the old journal stays, with
    // a line the old database never ingested.
    await store.close();
    for (const f of [file, `${file}-wal`, `${file}-shm`]) rmSync(f, { force: true });
    appendFileSync(join(journalDir(file), "00000009.jsonl"), line("foreign", 1));
    const fresh = await openStore(`sqlite:${file}`);
    const warnings: string[] = [];
    const log = new AuditLog(fresh, { journal: true, onWarning: (m) => warnings.push(m) });
    try {
      await log.append({ type: "new" });
      await log.drain();
      const types = (await fresh.db.selectFrom("audit_events").select("type").orderBy("seq").execute()).map((r) => r.type);
      assert.deepEqual(types, ["new"]);
      assert.equal(warnings.length, 1);
      assert.match(warnings[0]!, /belongs to another database.*moved it to .*orphaned/);
      assert.ok(readdirSync(join(file, "..")).some((n) => n.includes("-audit-journal.orphaned-")));
    } finally {
      await log.close();
      await fresh.close();
    }
  });

  test("a journal that cannot be written fails the append (fail closed)", async () => {
    const { store, file } = await fileStore();
    const log = new AuditLog(store, { journal: true, journalSegmentBytes: 64 });
    try {
      await log.append({ type: "ok", data: { pad: "x".repeat(100) } }); // fills the first segment
      // The next segment cannot be created: its directory is now a file.
      rmSync(journalDir(file), { recursive: true, force: true });
      writeFileSync(journalDir(file), "not a directory");
      await assert.rejects(log.append({ type: "lost" }), (e: unknown) => (e as { code?: string }).code === "GH-STORE-001");
      assert.match(log.writeError ?? "", /ENOTDIR/);
    } finally {
      await log.close().catch(() => {});
      await store.close();
    }
  });

  test("the CLI's logs (no journal option) and in-memory stores write to the store directly", async () => {
    const { store } = await fileStore();
    const log = new AuditLog(store);
    assert.equal(log.journaled, false);
    const r = await log.append({ type: "direct" });
    assert.equal(r.seq, 1);
    await store.close();
    const mem = await openStore("sqlite::memory:");
    const m = new AuditLog(mem, { journal: true });
    assert.equal(m.journaled, false);
    assert.equal((await m.append({ type: "mem" })).seq, 1);
    await mem.close();
  });
});

describe("recording chunks on the writer thread", () => {
  test("are inserted as given; owned ones move to the thread (not copied), others are left as they were", async () => {
    const { store } = await fileStore();
    const log = new AuditLog(store, { journal: true });
    try {
      const owned = Buffer.allocUnsafeSlow(5000).fill(7);
      const shared = Buffer.alloc(300, 9);
      const done = log.writeChunksOffThread([
        { sessionId: "s-1", seq: 0, at: 1, data: owned, owned: true },
        { sessionId: "s-1", seq: 1, at: 2, data: shared },
      ]);
      assert.ok(done, "a file store has a writer thread");
      assert.equal(owned.length, 0, "moved: the event loop no longer holds its bytes");
      assert.equal(shared.length, 300);
      await done;
      const rows = await store.db.selectFrom("recording_chunks").selectAll().where("session_id", "=", "s-1").orderBy("seq").execute();
      assert.deepEqual(rows.map((r) => [r.seq, r.bytes, Buffer.from(r.data).equals(Buffer.alloc(r.bytes, r.seq === 0 ? 7 : 9))]), [
        [0, 5000, true],
        [1, 300, true],
      ]);
    } finally {
      await log.close();
      await store.close();
    }
  });

  test("are compressed there when asked: stored as one compressed frame, decoding to the frames given", async () => {
    const { store } = await fileStore();
    const log = new AuditLog(store, { journal: true });
    try {
      const { decodeChunk, FrameKind, frameHeader } = await import("../recording/format.ts");
      const text = Buffer.from("SELECT * FROM pgbench_accounts WHERE aid = 1;\n".repeat(200));
      const chunk = Buffer.concat([frameHeader(FrameKind.client, 1234.5, text.length), text]);
      const done = log.writeChunksOffThread([{ sessionId: "s-2", seq: 0, at: 1234.5, data: Buffer.from(chunk) }], true);
      assert.ok(done);
      await done;
      const row = await store.db.selectFrom("recording_chunks").selectAll().where("session_id", "=", "s-2").executeTakeFirstOrThrow();
      const data = Buffer.from(row.data);
      assert.equal(data[0], FrameKind.compressed);
      assert.equal(row.bytes, data.length, "bytes counts what is stored");
      assert.ok(row.bytes < chunk.length / 10);
      assert.deepEqual(decodeChunk(data), decodeChunk(chunk));
    } finally {
      await log.close();
      await store.close();
    }
  });
});

describe("journal lines", () => {
  test("any event survives a round trip through a line, its data byte for byte (property)", async () => {
    const fc = (await import("fast-check")).default;
    const { canonicalJson } = await import("./chain.ts");
    const { decodeEventForTest } = await import("./journal.ts");
    const text = fc.oneof(fc.string(), fc.string({ unit: "binary" }), fc.constantFrom("\t", "\n", '"', "\\", "\u2028", "\ud800"));
    fc.assert(
      fc.property(text, fc.option(text), fc.option(text), fc.jsonValue(), fc.integer({ min: 0, max: 2 ** 47 }), (type, subject, rule, data, at) => {
        const f = { id: newEventId(), at, type, principal_subject: subject, principal_name: null, connection: "c", session_id: null, decision: "allow", rule, data: canonicalJson(data) };
        const l = encodeEvent(f);
        assert.equal(l.indexOf("\n"), l.length - 1, "one line");
        assert.deepEqual(decodeEventForTest(l.slice(0, -1)), f);
      }),
      { numRuns: 500 },
    );
  });
});

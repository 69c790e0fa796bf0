// Appending to the chain on SQLite, shared by the two writers: AuditLog's in-thread writer and
// the audit writer thread (writer-worker.ts). One IMMEDIATE transaction per batch reads the head,
// links the batch onto it (ids, sequence numbers, hashes) and inserts it with cached, positional
// prepared statements.
//
// Never: link onto a head not read in the same transaction.

import { randomFillSync } from "node:crypto";
import type BetterSqlite3 from "better-sqlite3";
import { type AuditRecord, GENESIS_HASH, hashEvent } from "./chain.ts";

/**
 * An event as appended: every column but those the chain assigns (seq, prev_hash, hash); its id
 * is assigned when it is journaled, else when it is linked. `data` is canonical JSON.
 */
export type EventFields = Omit<AuditRecord, "seq" | "id" | "prev_hash" | "hash"> & { id?: string };

/** The id prefix of the last millisecond asked for: a batch's events share it. */
let idMs = Number.NaN;
let idPrefix = "";

/** Random bytes for ids, from the CSPRNG in blocks: 10 per id (74 of their bits are used). */
const ID_RANDOM_BYTES = 10;
const idPool = Buffer.allocUnsafeSlow(512 * ID_RANDOM_BYTES);
let idPoolAt = idPool.length;
const VARIANT = "89ab";

/**
 * A new event id: the UUIDv7 layout (RFC 9562) — 48 bits of Unix milliseconds, the version, 12
 * random bits, the RFC variant, and 62 more random bits, all 74 from the CSPRNG. Ids made later
 * sort later, so the unique index on id grows at its right edge. Uniqueness rests on the random
 * bits, as it did with v4 ids, and the store's unique index still enforces it.
 */
export function newEventId(now: number = Date.now()): string {
  if (now !== idMs) {
    const hex = (Math.max(0, Math.floor(now)) % 2 ** 48).toString(16).padStart(12, "0");
    idMs = now;
    idPrefix = `${hex.slice(0, 8)}-${hex.slice(8)}-7`;
  }
  if (idPoolAt === idPool.length) {
    randomFillSync(idPool);
    idPoolAt = 0;
  }
  // 20 hex digits: 18 of them are rand_a (3) and rand_b (15); the variant's 2 random bits come
  // from the last byte, whose digits are not used.
  const h = idPool.toString("hex", idPoolAt, idPoolAt + ID_RANDOM_BYTES);
  const variant = VARIANT[idPool[idPoolAt + ID_RANDOM_BYTES - 1]! & 3]!;
  idPoolAt += ID_RANDOM_BYTES;
  return `${idPrefix}${h.slice(0, 3)}-${variant}${h.slice(3, 6)}-${h.slice(6, 18)}`;
}

/** Chain a batch onto a head: one record per event, inserted as it is and handed back. */
export function linkEvents(batch: readonly EventFields[], headSeq: number, headHash: string): AuditRecord[] {
  let seq = headSeq;
  let prev = headHash;
  const now = Date.now();
  const rows = new Array<AuditRecord>(batch.length);
  for (let i = 0; i < batch.length; i++) {
    const f = batch[i]!;
    const r: AuditRecord = {
      seq: ++seq,
      id: f.id ?? newEventId(now),
      at: f.at,
      type: f.type,
      principal_subject: f.principal_subject,
      principal_name: f.principal_name,
      connection: f.connection,
      session_id: f.session_id,
      decision: f.decision,
      rule: f.rule,
      data: f.data,
      prev_hash: prev,
      hash: "",
    };
    r.hash = hashEvent(r); // covers prev_hash and every other field but itself
    prev = r.hash;
    rows[i] = r;
  }
  return rows;
}

const HEAD_SQL = "SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1";
const INSERT_SQL =
  "INSERT INTO audit_events (seq, id, at, type, principal_subject, principal_name, connection, session_id, decision, rule, data, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

/**
 * A synchronous appender on a better-sqlite3 connection: one IMMEDIATE transaction per batch, or
 * (`transaction: false`) the statements alone, for a caller's own transaction. Preparing fails
 * (and is retried by the caller later) while the table does not exist yet.
 */
export function sqliteAppender(db: BetterSqlite3.Database, opts: { transaction?: boolean } = {}): (batch: readonly EventFields[]) => AuditRecord[] {
  const head = db.prepare(HEAD_SQL).raw();
  const insert = db.prepare(INSERT_SQL);
  const link = (batch: readonly EventFields[]) => {
    const h = head.get() as [number, string] | undefined;
    const rows = linkEvents(batch, h ? Number(h[0]) : 0, h ? h[1] : GENESIS_HASH);
    for (const r of rows) insert.run(r.seq, r.id, r.at, r.type, r.principal_subject, r.principal_name, r.connection, r.session_id, r.decision, r.rule, r.data, r.prev_hash, r.hash);
    return rows;
  };
  if (opts.transaction === false) return link;
  const write = db.transaction(link);
  return (batch) => write.immediate(batch);
}

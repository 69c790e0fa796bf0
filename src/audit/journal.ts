// The audit journal: how a gateway on a SQLite file store makes audit events durable without a
// database transaction in the forwarding event loop.
//
//   append   the event loop writes each batch of events (one turn of the loop) to the current
//            journal segment with one write(2): once it returns the events survive the process
//            (kill -9, a crash) — the durability SQLite's WAL gives with synchronous=NORMAL, which
//            is the store's setting — and the gate may forward.
//   ingest   the audit writer thread (writer-worker.ts) reads new lines and appends them to the
//            chain in the store — links them onto the head read in the same transaction, inserts
//            them — recording how far it got in `gatehouse_meta` in that same transaction, so
//            every line is ingested exactly once, after a crash too (the next start ingests what
//            is left before new lines).
//
// Segments are `<db file>-audit-journal/<n>.jsonl`, one event per line (encodeEvent); a new one starts at
// 16 MiB and at each start, and a segment is deleted once fully ingested and no longer written.
// A last line without its newline (a write torn by power loss) is never acknowledged, so it is
// skipped.
//
// Never: acknowledge an event before its line is written; ingest a line twice or out of order.

import { randomUUID } from "node:crypto";
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, renameSync, rmSync, statSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import type BetterSqlite3 from "better-sqlite3";
import { type EventFields, sqliteAppender } from "./append.ts";

/** A new segment is started past this size. */
export const SEGMENT_BYTES = 16 * 1024 * 1024;
/** Lines ingested per transaction, at most (bounds how long the writer holds the lock). */
const INGEST_BATCH = 2000;
/**
 * Bytes of a segment read per pass. A pass takes at most INGEST_BATCH lines, so reading all the
 * rest of a segment each time made catching up a backlog quadratic in the segment's size; a line
 * longer than this (an approved statement of many megabytes, say) is read by growing the read.
 */
const READ_BYTES = 4 * 1024 * 1024;
const PROGRESS_KEY = "audit.journal";

export interface JournalPosition {
  segment: number;
  offset: number;
}

export function journalDir(dbFile: string): string {
  return `${dbFile}-audit-journal`;
}

const segmentName = (n: number) => `${String(n).padStart(8, "0")}.jsonl`;

function segments(dir: string): number[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names
    .map((n) => /^(\d{8})\.jsonl$/.exec(n)?.[1])
    .filter((n): n is string => n !== undefined)
    .map(Number)
    .sort((a, b) => a - b);
}

export function comparePositions(a: JournalPosition, b: JournalPosition): number {
  return a.segment - b.segment || a.offset - b.offset;
}

/**
 * A journal line: the event's columns but data as a JSON array, a tab, then data — canonical JSON
 * as it is (it is hashed as is, and re-escaping it inside a string is the line's largest cost).
 * Neither JSON text can hold a raw tab or newline (both are escaped in strings), so the first tab
 * splits the line and the newline ends it.
 */
export function encodeEvent(f: EventFields & { id: string }): string {
  return `${JSON.stringify([f.id, f.at, f.type, f.principal_subject, f.principal_name, f.connection, f.session_id, f.decision, f.rule])}\t${f.data}\n`;
}

export { decodeEvent as decodeEventForTest };

function decodeEvent(line: string): EventFields & { id: string } {
  const tab = line.indexOf("\t");
  if (tab < 0) throw new Error("not a journal line");
  const a = JSON.parse(line.slice(0, tab)) as unknown[];
  if (!Array.isArray(a) || a.length !== 9 || typeof a[0] !== "string" || typeof a[1] !== "number" || typeof a[2] !== "string") throw new Error("not a journal line");
  const s = (v: unknown) => (v === null ? null : String(v));
  return { id: a[0], at: a[1], type: a[2], principal_subject: s(a[3]), principal_name: s(a[4]), connection: s(a[5]), session_id: s(a[6]), decision: s(a[7]), rule: s(a[8]), data: line.slice(tab + 1) };
}

/** The event loop's side: appends batches to the current segment. */
export class JournalWriter {
  readonly dir: string;
  #fd: number;
  #segment: number;
  #offset = 0;

  /**
   * Starts a new segment after any that exist (those are ingested first) and after the segment
   * ingestion last recorded (`ingested`: a number it will not skip as already done).
   */
  constructor(
    dbFile: string,
    ingested: JournalPosition,
    readonly segmentBytes: number = SEGMENT_BYTES,
  ) {
    this.dir = journalDir(dbFile);
    mkdirSync(this.dir, { recursive: true });
    this.#segment = Math.max(segments(this.dir).at(-1) ?? 0, ingested.segment) + 1;
    this.#fd = openSync(join(this.dir, segmentName(this.#segment)), "a");
  }

  get position(): JournalPosition {
    return { segment: this.#segment, offset: this.#offset };
  }

  /**
   * Write lines (whole, each ending in a newline); returns the position after them. Throws when
   * they cannot be written — a full segment is rotated first, so a failure never follows a write.
   */
  write(lines: string): JournalPosition {
    if (this.#offset >= this.segmentBytes) {
      const fd = openSync(join(this.dir, segmentName(this.#segment + 1)), "a");
      closeSync(this.#fd);
      this.#fd = fd;
      this.#segment += 1;
      this.#offset = 0;
    }
    const buf = Buffer.from(lines, "utf8");
    let done = 0;
    while (done < buf.length) done += writeSync(this.#fd, buf, done, buf.length - done);
    this.#offset += buf.length;
    return this.position;
  }

  close(): void {
    closeSync(this.#fd);
  }
}

const ID_FILE = "journal-id";
const ID_KEY = "audit.journal_id";

/**
 * Make sure the journal directory belongs to this database: both carry the same id (the store in
 * `gatehouse_meta`, the directory in a `journal-id` file). A directory with another id — the
 * database was replaced or restored while an old journal stayed — is moved aside, never
 * ingested into a chain it does not belong to. Returns a warning when it moved one.
 */
export function claimJournal(db: BetterSqlite3.Database, dbFile: string): string | undefined {
  const dir = journalDir(dbFile);
  const row = db.prepare("SELECT value FROM gatehouse_meta WHERE key = ?").get(ID_KEY) as { value: string } | undefined;
  let id = row?.value;
  if (!id) {
    id = randomUUID();
    db.prepare("INSERT INTO gatehouse_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value").run(ID_KEY, id);
  }
  let warning: string | undefined;
  const idFile = join(dir, ID_FILE);
  if (existsSync(dir)) {
    const dirId = existsSync(idFile) ? readFileSync(idFile, "utf8").trim() : undefined;
    if (dirId !== id && (dirId !== undefined || segments(dir).length > 0)) {
      const aside = `${dir}.orphaned-${new Date().toISOString().replace(/[:.]/g, "-")}`;
      renameSync(dir, aside);
      warning = `the audit journal in ${dir} belongs to another database (journal id ${dirId ?? "none"}, database ${id}); moved it to ${aside} without ingesting it`;
    }
  }
  mkdirSync(dir, { recursive: true });
  if (!existsSync(idFile)) writeFileSync(idFile, `${id}\n`);
  return warning;
}

/** Where ingestion got to (in the store). */
export function ingestedPosition(db: BetterSqlite3.Database): JournalPosition {
  const row = db.prepare("SELECT value FROM gatehouse_meta WHERE key = ?").get(PROGRESS_KEY) as { value: string } | undefined;
  const m = row ? /^(\d+):(\d+)$/.exec(row.value) : null;
  return m ? { segment: Number(m[1]), offset: Number(m[2]) } : { segment: 0, offset: 0 };
}

/**
 * Ingest what the journal holds past the recorded position: every complete line, in order, in
 * transactions of at most INGEST_BATCH lines, each recording its end position. Fully ingested
 * segments other than the one being written (`writing`) are deleted. Returns the position reached
 * and whether lines remain (a full batch was taken).
 */
export class JournalIngester {
  readonly #db: BetterSqlite3.Database;
  readonly #dir: string;
  #append: ((batch: readonly EventFields[]) => unknown) | undefined;
  #save: BetterSqlite3.Statement | undefined;
  #txn: ((rows: (EventFields & { id: string })[], to: JournalPosition) => void) | undefined;

  readonly #readBytes: number;

  /** `readBytes`: bytes read per pass (tests make it small). */
  constructor(db: BetterSqlite3.Database, dbFile: string, readBytes = READ_BYTES) {
    this.#db = db;
    this.#dir = journalDir(dbFile);
    this.#readBytes = readBytes;
  }

  #prepare(): (rows: (EventFields & { id: string })[], to: JournalPosition) => void {
    if (this.#txn) return this.#txn;
    this.#append = sqliteAppender(this.#db, { transaction: false });
    this.#save = this.#db.prepare("INSERT INTO gatehouse_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value");
    const tx = this.#db.transaction((rows: (EventFields & { id: string })[], to: JournalPosition) => {
      if (rows.length) this.#append!(rows);
      this.#save!.run(PROGRESS_KEY, `${to.segment}:${to.offset}`);
    });
    this.#txn = (rows, to) => tx.immediate(rows, to);
    return this.#txn;
  }

  /** One pass: ingest up to INGEST_BATCH lines (`rows`: how many it did). */
  step(writing: number | undefined): { at: JournalPosition; more: boolean; rows: number } {
    const txn = this.#prepare();
    let at = ingestedPosition(this.#db);
    const segs = segments(this.#dir);
    let ingested = 0;
    for (const seg of segs) {
      if (seg < at.segment) {
        // Ingested before (a crash between the commit and the delete): not needed any more.
        if (seg !== writing) rmSync(join(this.#dir, segmentName(seg)), { force: true });
        continue;
      }
      const from = seg === at.segment ? at.offset : 0;
      const path = join(this.#dir, segmentName(seg));
      const size = statSync(path).size;
      const rows: (EventFields & { id: string })[] = [];
      let end = from;
      // Whether this pass saw all of the segment there was.
      let complete = true;
      if (size > from) {
        let want = Math.min(size - from, this.#readBytes);
        const fd = openSync(path, "r");
        try {
          for (;;) {
            // Not zero-filled: only the n bytes read are looked at.
            const buf = Buffer.allocUnsafe(want);
            const n = readSync(fd, buf, 0, want, from);
            complete = n < want || from + n >= size;
            let start = 0;
            while (rows.length < INGEST_BATCH) {
              const nl = buf.indexOf(0x0a, start);
              if (nl < 0 || nl >= n) break; // no complete line left (a torn last line stays unread)
              rows.push(decodeEvent(buf.toString("utf8", start, nl)));
              start = nl + 1;
            }
            end = from + start;
            // A line longer than the read: read more at once.
            if (rows.length || complete) break;
            want = Math.min(size - from, want * 4);
          }
        } finally {
          closeSync(fd);
        }
      }
      // A segment no longer written (a later one exists) is done once no complete line is left;
      // bytes after its last newline are a write torn by a power loss, never acknowledged.
      const exhausted = rows.length < INGEST_BATCH && complete;
      const finished = seg !== writing && exhausted && segs.some((s) => s > seg);
      if (rows.length || seg !== at.segment) {
        // Moving on to a later segment is recorded too, so a deleted one is never looked for.
        const to = finished ? { segment: seg + 1, offset: 0 } : { segment: seg, offset: end };
        txn(rows, to);
        at = to;
        ingested += rows.length;
      }
      if (finished) rmSync(path, { force: true });
      if (!exhausted) return { at, more: true, rows: ingested };
      if (!finished) return { at, more: false, rows: ingested };
    }
    return { at, more: false, rows: ingested };
  }
}

// The append-only, hash-chained audit trail. Each event carries a sequence number and the
// SHA-256 of the previous event, so an edited, deleted or reordered row breaks the chain.
//
// Appends are group-committed: everything appended in one turn of the event loop is written in
// one transaction, and each caller's promise settles only once its event is durable in the
// store. The gate awaits that promise before forwarding an operation (fail closed).
//
// This is the hot path of every judged operation, so the SQLite writer is lean: cached
// better-sqlite3 statements with positional parameters, one record object per event (it is both
// the inserted row and what the caller gets back), and time-ordered event ids (UUIDv7 layout), so
// the unique index on id grows at its right edge instead of touching a random page per event.
// bench/audit/append.ts measures it against a bare insert of the same rows.
//
// Other writers may append to the same chain: another replica (PostgreSQL, under the advisory
// lock) or the CLI (retention, checkpoints, agents) on the same SQLite file. So the head is read
// inside the write transaction, never cached, and SQLite transactions begin IMMEDIATE: a deferred
// one that read the head and then tried to write would fail at once with SQLITE_BUSY (no busy
// wait is possible for a read lock turning into a write lock) whenever another connection wrote.
//
// Measured and not done:
// - A timed group-commit window. Node's timers tick in whole milliseconds, so a window adds at
//   least 1 ms to every operation (one client over TCP: p50 0.09 → 1.2 ms), and closed-loop clients
//   then send less, so throughput fell at every concurrency tried (8, 32 clients). setImmediate
//   already gathers every append of one event-loop turn, and batches grow with load by themselves
//   (about 5 events per commit at 8 busy clients, 21 at 32).
// - A writer on a worker thread. The main thread's own SQLite writes (sessions, recordings,
//   reviews) would then meet a write lock held by the worker, and SQLite's busy handler sleeps in
//   the calling thread (1 ms, then 2, 5, 10… ms): with audit commits on a worker, small
//   main-thread writes went from p99 0.05 ms to p99 8 ms, worst 129 ms — event-loop stalls.
//
// The hash itself is in chain.ts; verification (verifyChain, re-exported here) in verify.ts.
//
// Never: resolve an append that was not written, link onto a head not read in the same transaction,
// or log token material.

import { randomUUID } from "node:crypto";
import { sql } from "kysely";
import { GatehouseError } from "../domain/errors.ts";
import type { Store } from "../store/store.ts";
import { type AuditRecord, canonicalJson, GENESIS_HASH, hashEvent } from "./chain.ts";

export { type AuditRecord, canonicalJson, GENESIS_HASH, hashEvent } from "./chain.ts";
export { type ChainVerification, type VerifyOptions, verifyChain } from "./verify.ts";

export interface AuditEventInput {
  type: string;
  principal?: { subject: string; displayName: string } | undefined;
  connection?: string | undefined;
  sessionId?: string | undefined;
  decision?: string | undefined;
  rule?: string | undefined;
  data?: Record<string, unknown>;
}

interface Pending {
  input: AuditEventInput;
  /** The event's data as canonical JSON, made when it was appended. */
  data: string;
  at: number;
  resolve: (r: AuditRecord) => void;
  reject: (e: unknown) => void;
}

// Arbitrary constant for pg_advisory_xact_lock: serializes chain appends across replicas.
const CHAIN_LOCK_KEY = 4_712_001;

/** At most this many events per transaction; the rest go in the next one. */
const MAX_BATCH = 500;

const HEAD_SQL = "SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1";
const INSERT_SQL =
  "INSERT INTO audit_events (seq, id, at, type, principal_subject, principal_name, connection, session_id, decision, rule, data, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

/** The id prefix of the last millisecond asked for: a batch's events share it. */
let idMs = Number.NaN;
let idPrefix = "";

/**
 * A new event id: the UUIDv7 layout (RFC 9562) — 48 bits of Unix milliseconds, the version, and
 * 74 random bits taken from randomUUID (the CSPRNG). Ids made later sort later. Uniqueness rests
 * on the random bits, as it did with v4 ids, and the store's unique index still enforces it.
 */
export function newEventId(now: number = Date.now()): string {
  if (now !== idMs) {
    const hex = (Math.max(0, Math.floor(now)) % 2 ** 48).toString(16).padStart(12, "0");
    idMs = now;
    idPrefix = `${hex.slice(0, 8)}-${hex.slice(8)}-7`;
  }
  // randomUUID is xxxxxxxx-xxxx-4xxx-Vxxx-xxxxxxxxxxxx: keep what follows its version digit.
  return idPrefix + randomUUID().slice(15);
}

export class AuditLog {
  #store: Store;
  #queue: Pending[] = [];
  #flushing: Promise<void> | undefined;
  #scheduled = false;
  #now: () => number;
  /** The SQLite store's cached statements, once prepared. */
  #sqliteWrite: ((batch: Pending[]) => AuditRecord[]) | undefined;
  /** Set while the last write failed (readiness reports it), cleared by the next success. */
  writeError: string | undefined;
  /** Observers (metrics, logs) of committed events. */
  onCommitted: ((records: AuditRecord[]) => void) | undefined;

  constructor(store: Store, opts: { now?: () => number } = {}) {
    this.#store = store;
    this.#now = opts.now ?? Date.now;
  }

  append(input: AuditEventInput): Promise<AuditRecord> {
    return new Promise<AuditRecord>((resolve, reject) => {
      // Serialized now, outside the transaction: data that cannot be (a BigInt) rejects only
      // this append, not the whole batch, and is no store failure.
      const data = canonicalJson(input.data ?? {});
      this.#queue.push({ input, data, at: this.#now(), resolve, reject });
      if (!this.#scheduled && !this.#flushing) this.#schedule();
    });
  }

  /** Wait until everything appended so far is written (or failed). */
  async drain(): Promise<void> {
    while (this.#queue.length || this.#flushing || this.#scheduled) {
      if (this.#flushing) await this.#flushing;
      else await new Promise((r) => setImmediate(r));
    }
  }

  /**
   * Flush once the current turn of the event loop has run, so everything appended in it — every
   * session's I/O callback of that turn — shares one transaction.
   */
  #schedule(): void {
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      // SQLite writes synchronously: no promise to chain, nothing else can run meanwhile.
      if (this.#writeSqliteNow()) {
        if (this.#queue.length) this.#schedule();
        return;
      }
      this.#flushing = this.#flushAsync().finally(() => {
        this.#flushing = undefined;
        if (this.#queue.length) this.#schedule();
      });
    });
  }

  /**
   * Chain a batch onto the current head: one record per event, which is inserted as it is and
   * handed to its caller.
   */
  #link(batch: Pending[], headSeq: number, headHash: string): AuditRecord[] {
    let seq = headSeq;
    let prev = headHash;
    const now = Date.now();
    const rows = new Array<AuditRecord>(batch.length);
    for (let i = 0; i < batch.length; i++) {
      const p = batch[i]!;
      const e = p.input;
      const r: AuditRecord = {
        seq: ++seq,
        id: newEventId(now),
        at: p.at,
        type: e.type,
        principal_subject: e.principal?.subject ?? null,
        principal_name: e.principal?.displayName ?? null,
        connection: e.connection ?? null,
        session_id: e.sessionId ?? null,
        decision: e.decision ?? null,
        rule: e.rule ?? null,
        data: p.data,
        prev_hash: prev,
        hash: "",
      };
      r.hash = hashEvent(r); // covers prev_hash and every other field but itself
      prev = r.hash;
      rows[i] = r;
    }
    return rows;
  }

  /**
   * SQLite: one synchronous IMMEDIATE transaction with prepared statements (better-sqlite3),
   * skipping Kysely's per-query compile and async hops. The statements are prepared on first use
   * and kept; a failed prepare (no table yet) is retried on the next batch.
   */
  #sqliteWriter(db: NonNullable<Store["sqlite"]>): (batch: Pending[]) => AuditRecord[] {
    const head = db.prepare(HEAD_SQL).raw();
    const insert = db.prepare(INSERT_SQL);
    const write = db.transaction((batch: Pending[]) => {
      const h = head.get() as [number, string] | undefined;
      const rows = this.#link(batch, h ? Number(h[0]) : 0, h ? h[1] : GENESIS_HASH);
      for (const r of rows) insert.run(r.seq, r.id, r.at, r.type, r.principal_subject, r.principal_name, r.connection, r.session_id, r.decision, r.rule, r.data, r.prev_hash, r.hash);
      return rows;
    });
    return (batch) => write.immediate(batch);
  }

  /**
   * Write the next batch on the SQLite fast path, if it applies; false when the batch must take
   * Kysely's path instead. Inside a transaction someone else opened on the shared handle,
   * better-sqlite3 would nest ours as a savepoint that could roll back with theirs: Kysely's
   * path waits for it.
   */
  #writeSqliteNow(): boolean {
    const sqlite = this.#store.sqlite;
    if (!sqlite || sqlite.inTransaction) return false;
    const batch = this.#queue.splice(0, MAX_BATCH);
    if (!batch.length) return true;
    let records: AuditRecord[];
    try {
      this.#sqliteWrite ??= this.#sqliteWriter(sqlite);
      records = this.#sqliteWrite(batch);
    } catch (e) {
      this.#failed(batch, e);
      return true;
    }
    this.#committed(batch, records);
    return true;
  }

  /** Kysely's path: PostgreSQL, or SQLite while its handle is inside another transaction. */
  async #flushAsync(): Promise<void> {
    const batch = this.#queue.splice(0, MAX_BATCH);
    if (!batch.length) return;
    let records: AuditRecord[];
    try {
      records = await this.#store.db.transaction().execute(async (trx) => {
        if (this.#store.kind === "postgres") await sql`select pg_advisory_xact_lock(${CHAIN_LOCK_KEY})`.execute(trx);
        const head = await trx.selectFrom("audit_events").select(["seq", "hash"]).orderBy("seq", "desc").limit(1).executeTakeFirst();
        const rows = this.#link(batch, head ? Number(head.seq) : 0, head?.hash ?? GENESIS_HASH);
        await trx.insertInto("audit_events").values(rows).execute();
        return rows;
      });
    } catch (e) {
      this.#failed(batch, e);
      return;
    }
    this.#committed(batch, records);
  }

  #committed(batch: Pending[], records: AuditRecord[]): void {
    for (let i = 0; i < batch.length; i++) batch[i]!.resolve(records[i]!);
    this.writeError = undefined;
    try {
      this.onCommitted?.(records);
    } catch {
      // An observer's bug (metrics) is not a write failure: the events are committed.
    }
  }

  #failed(batch: Pending[], e: unknown): void {
    this.writeError = (e as Error).message;
    const err = new GatehouseError("STORE_UNAVAILABLE", `audit write failed: ${(e as Error).message}`);
    for (const p of batch) p.reject(err);
  }
}

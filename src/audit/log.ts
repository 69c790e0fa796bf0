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

import { Worker } from "node:worker_threads";
import { sql } from "kysely";
import { GatehouseError } from "../domain/errors.ts";
import { isBusy, type Store } from "../store/store.ts";
import { type EventFields, linkEvents, newEventId, sqliteAppender } from "./append.ts";
import { claimJournal, comparePositions, encodeEvent, ingestedPosition, JournalIngester, type JournalPosition, JournalWriter } from "./journal.ts";
import type { IngesterReply, IngesterRequest } from "./writer-worker.ts";
import { type AuditRecord, canonicalJson, GENESIS_HASH } from "./chain.ts";

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
  /** `data` already as canonical JSON (exactly what canonicalJson makes of it), instead of `data`. */
  dataJson?: string;
}

interface Pending {
  /** The event's columns, its data already canonical JSON (made when it was appended). */
  fields: EventFields;
  resolve: (r: AuditRecord) => void;
  reject: (e: unknown) => void;
}

// Arbitrary constant for pg_advisory_xact_lock: serializes chain appends across replicas.
const CHAIN_LOCK_KEY = 4_712_001;

/** At most this many events per transaction; the rest go in the next one. */
const MAX_BATCH = 500;

export { newEventId } from "./append.ts";

/** The audit writer thread's entry (loaded through tsx's loader, as the gateway itself is). */
const WRITER_URL = new URL("./writer-worker.ts", import.meta.url).href;

function startWriterThread(file: string): Worker {
  const tsx = import.meta.resolve("tsx/esm/api");
  const boot = `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(WRITER_URL)}); }).catch((e) => { setImmediate(() => { throw e; }); });`;
  return new Worker(boot, { eval: true, workerData: { file } });
}

/** Journal mode refuses new events while the writer is this far behind. */
const MAX_BACKLOG_BYTES = 256 * 1024 * 1024;

/** How often the event loop ingests the journal itself when the writer thread is gone. */
const FALLBACK_INGEST_MS = 50;

export interface AuditLogOptions {
  now?: () => number;
  /**
   * On a SQLite file store, make events durable in the audit journal (journal.ts) and let the
   * writer thread link them into the store: no database transaction in the event loop. The
   * gateway does; the CLI's short-lived commands write to the store directly.
   */
  journal?: boolean;
  /** Journal segment size (tests). */
  journalSegmentBytes?: number;
  /** Told when the writer thread fails (the event loop then ingests the journal itself). */
  onThreadError?: (e: Error) => void;
  /** Told when a journal that belongs to another database was moved aside. */
  onWarning?: (message: string) => void;
}

export class AuditLog {
  #store: Store;
  #queue: Pending[] = [];
  #flushing: Promise<void> | undefined;
  #scheduled = false;
  #now: () => number;
  /** The SQLite store's cached statements, once prepared. */
  #sqliteWrite: ((batch: readonly EventFields[]) => AuditRecord[]) | undefined;
  #onThreadError: ((e: Error) => void) | undefined;
  // journal mode
  #journal: JournalWriter | undefined;
  #thread: Worker | undefined;
  #fallback: { ingester: JournalIngester; timer: NodeJS.Timeout } | undefined;
  #written: JournalPosition | undefined;
  #ingested: JournalPosition = { segment: 0, offset: 0 };
  /** Why the last ingestion failed, until one succeeds. */
  #ingestFailing: string | undefined;
  #waiters: { at: JournalPosition; resolve: () => void }[] = [];
  #chunkBatch = 0;
  #chunkWaiters = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
  /** Set while the last write failed (readiness reports it), cleared by the next success. */
  writeError: string | undefined;
  /** Observers (metrics, logs) of events once durable. */
  onCommitted: ((records: AuditRecord[]) => void) | undefined;

  constructor(store: Store, opts: AuditLogOptions = {}) {
    this.#store = store;
    this.#now = opts.now ?? Date.now;
    this.#onThreadError = opts.onThreadError;
    if (opts.journal && store.kind === "sqlite" && store.file !== undefined && store.sqlite) {
      const warning = claimJournal(store.sqlite, store.file);
      if (warning) opts.onWarning?.(warning);
      this.#ingested = ingestedPosition(store.sqlite);
      this.#journal = new JournalWriter(store.file, this.#ingested, opts.journalSegmentBytes);
      this.#written = this.#journal.position;
      this.#startThread();
    }
  }

  /** Whether events go through the journal (then `append` resolves once journaled, before they are linked). */
  get journaled(): boolean {
    return this.#journal !== undefined;
  }

  /**
   * Append an event; resolves once it is durable. In journal mode that is when its journal line
   * is written: the record's id, time and fields are final, its seq and hashes are not assigned
   * yet (0 and ""); `appendLinked` waits for them.
   */
  append(input: AuditEventInput): Promise<AuditRecord> {
    return new Promise<AuditRecord>((resolve, reject) => {
      // Serialized now, outside the transaction: data that cannot be (a BigInt) rejects only
      // this append, not the whole batch, and is no store failure.
      const fields: EventFields = {
        at: this.#now(),
        type: input.type,
        principal_subject: input.principal?.subject ?? null,
        principal_name: input.principal?.displayName ?? null,
        connection: input.connection ?? null,
        session_id: input.sessionId ?? null,
        decision: input.decision ?? null,
        rule: input.rule ?? null,
        data: input.dataJson ?? canonicalJson(input.data ?? {}),
      };
      if (this.#journal) {
        const refused = this.#journalRefusal();
        if (refused) {
          reject(refused);
          return;
        }
        fields.id = newEventId(fields.at);
      }
      this.#queue.push({ fields, resolve, reject });
      if (!this.#scheduled && !this.#flushing) this.#schedule();
    });
  }

  /** Append and wait until the event is linked into the chain in the store: the stored record. */
  async appendLinked(input: AuditEventInput): Promise<AuditRecord> {
    const r = await this.append(input);
    if (!this.#journal) return r;
    await this.drain();
    const row = await this.#store.db.selectFrom("audit_events").selectAll().where("id", "=", r.id).executeTakeFirst();
    if (!row) throw new GatehouseError("STORE_UNAVAILABLE", `audit event ${r.id} was journaled but is not in the store: ${this.writeError ?? "ingestion did not finish"}`);
    return row;
  }

  /** Wait until everything appended so far is in the store (journal mode: ingested) or failed. */
  async drain(): Promise<void> {
    while (this.#queue.length || this.#flushing || this.#scheduled) {
      if (this.#flushing) await this.#flushing;
      else await new Promise((r) => setImmediate(r));
    }
    const w = this.#written;
    if (!w || comparePositions(this.#ingested, w) >= 0) return;
    await new Promise<void>((resolve) => {
      this.#waiters.push({ at: w, resolve });
      this.#nudge();
    });
  }

  /** Drain, then stop the writer thread and close the journal. */
  async close(): Promise<void> {
    const deadline = new Promise<void>((r) => setTimeout(r, 10_000).unref());
    await Promise.race([this.drain(), deadline]);
    const t = this.#thread;
    this.#thread = undefined;
    if (t) {
      // Ask it to finish (a last pass, then it closes its database and exits): terminating a
      // thread inside a SQLite call can take the process down with it.
      const exited = new Promise<void>((r) => t.once("exit", () => r()));
      t.postMessage({ close: true } satisfies IngesterRequest);
      const timer = setTimeout(() => void t.terminate(), 5_000);
      await exited;
      clearTimeout(timer);
    }
    if (this.#fallback) clearInterval(this.#fallback.timer);
    this.#fallback = undefined;
    this.#journal?.close();
    this.#journal = undefined;
  }

  /**
   * Flush once the current turn of the event loop has run, so everything appended in it — every
   * session's I/O callback of that turn — shares one journal write (or one transaction).
   */
  #schedule(): void {
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      if (this.#journal) {
        this.#writeJournal();
        return;
      }
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

  /** Journal mode: one write for the batch; the events are durable when it returns. */
  #writeJournal(): void {
    const batch = this.#queue.splice(0);
    if (!batch.length) return;
    let lines = "";
    for (const p of batch) lines += encodeEvent(p.fields as EventFields & { id: string });
    const before = this.#written!.segment;
    try {
      this.#written = this.#journal!.write(lines);
    } catch (e) {
      // The journal cannot be written (disk full, …): these events are not durable. Fail closed.
      this.#failed(batch, e);
      return;
    }
    const after = this.#journal!.position.segment;
    if (after !== before) this.#thread?.postMessage({ writing: after } satisfies IngesterRequest);
    const records = new Array<AuditRecord>(batch.length);
    for (let i = 0; i < batch.length; i++) {
      const f = batch[i]!.fields;
      records[i] = { seq: 0, id: f.id!, at: f.at, type: f.type, principal_subject: f.principal_subject, principal_name: f.principal_name, connection: f.connection, session_id: f.session_id, decision: f.decision, rule: f.rule, data: f.data, prev_hash: "", hash: "" };
    }
    this.#committed(batch, records);
  }

  /**
   * Journal mode fails closed on the store too: while the writer cannot link events into the
   * store, or is far behind, new events are refused (the gate refuses their operations) rather
   * than piling up where no one can search or verify them.
   */
  #journalRefusal(): GatehouseError | undefined {
    if (this.#ingestFailing) return new GatehouseError("STORE_UNAVAILABLE", `the audit trail cannot be written to the store (${this.#ingestFailing}); operations are refused until it can`);
    const w = this.#written!;
    const behind = (w.segment - this.#ingested.segment) * this.#journal!.segmentBytes + (w.offset - this.#ingested.offset);
    if (behind > MAX_BACKLOG_BYTES) return new GatehouseError("STORE_UNAVAILABLE", `the audit writer is ${Math.round(behind / 1048576)} MiB behind; operations are refused until it catches up`);
    return undefined;
  }

  #nudge(): void {
    if (this.#thread) this.#thread.postMessage({ nudge: true } satisfies IngesterRequest);
    else this.#ingestHere();
  }

  #ingestFailure(message: string): void {
    this.#ingestFailing = message;
    this.writeError = `audit journal ingestion: ${message}`;
  }

  #ingestedTo(at: JournalPosition): void {
    if (this.#ingestFailing !== undefined) {
      this.#ingestFailing = undefined;
      if (this.writeError?.startsWith("audit journal ingestion")) this.writeError = undefined;
    }
    this.#ingested = at;
    if (!this.#waiters.length) return;
    const still: { at: JournalPosition; resolve: () => void }[] = [];
    for (const w of this.#waiters) {
      if (comparePositions(at, w.at) >= 0) w.resolve();
      else still.push(w);
    }
    this.#waiters = still;
  }

  #startThread(): void {
    let t: Worker;
    try {
      t = startWriterThread(this.#store.file!);
    } catch (e) {
      this.#threadFailed(e as Error);
      return;
    }
    this.#thread = t;
    t.unref();
    t.postMessage({ writing: this.#written!.segment } satisfies IngesterRequest);
    t.on("message", (m: IngesterReply) => {
      if ("chunksDone" in m) {
        const w = this.#chunkWaiters.get(m.chunksDone);
        this.#chunkWaiters.delete(m.chunksDone);
        if (m.error === undefined) w?.resolve();
        else w?.reject(new Error(m.error));
        return;
      }
      if ("error" in m) {
        // Retried by the thread; the journal keeps what was written. Readiness reports it.
        this.#ingestFailure(m.error);
        return;
      }
      this.#ingestedTo(m.at);
    });
    const gone = (e: Error) => {
      if (this.#thread !== t) return;
      this.#thread = undefined;
      this.#threadFailed(e);
    };
    t.on("error", gone);
    t.on("exit", (code) => gone(new Error(`the audit writer thread exited (code ${code})`)));
  }

  /**
   * Insert recording chunks on the writer thread (another use of it: the blobs' inserts stay off
   * the event loop), compressed there first if asked (recording/format.ts compressChunk).
   * Undefined when there is no writer thread: the caller writes them itself.
   */
  writeChunksOffThread(rows: { sessionId: string; seq: number; at: number; data: Buffer; owned?: boolean }[], compress = false): Promise<void> | undefined {
    const t = this.#thread;
    if (!t) return undefined;
    const n = ++this.#chunkBatch;
    // Owned chunks (the whole of their memory, read by no one after this) move to the thread
    // instead of being copied into the message.
    const transfer: ArrayBuffer[] = [];
    for (const r of rows) {
      const b = r.data.buffer;
      if (r.owned && b instanceof ArrayBuffer && r.data.byteOffset === 0 && r.data.byteLength === b.byteLength) transfer.push(b);
    }
    return new Promise<void>((resolve, reject) => {
      this.#chunkWaiters.set(n, { resolve, reject });
      t.postMessage({ chunks: n, compress, rows: rows.map((r) => [r.sessionId, r.seq, r.at, r.data] as [string, number, number, Uint8Array]) } satisfies IngesterRequest, transfer);
    });
  }

  /** The writer thread is gone: the event loop ingests the journal itself, on a timer. */
  #threadFailed(e: Error): void {
    for (const w of this.#chunkWaiters.values()) w.reject(e);
    this.#chunkWaiters.clear();
    this.#onThreadError?.(e);
    if (!this.#journal || this.#fallback) return;
    const ingester = new JournalIngester(this.#store.sqlite!, this.#store.file!);
    const timer = setInterval(() => this.#ingestHere(), FALLBACK_INGEST_MS);
    timer.unref();
    this.#fallback = { ingester, timer };
    this.#ingestHere();
  }

  #ingestHere(): void {
    const f = this.#fallback;
    if (!f || !this.#journal) return;
    try {
      for (;;) {
        const r = f.ingester.step(this.#journal.position.segment);
        this.#ingestedTo(r.at);
        if (!r.more) break;
      }
    } catch (e) {
      // busy (another connection writes): the next tick tries again
      if (!isBusy(e)) this.#ingestFailure((e as Error).message);
    }
  }

  /**
   * Write the next batch on the SQLite fast path, if it applies; false when the batch must take
   * Kysely's path instead: inside a transaction someone else opened on the shared handle
   * (better-sqlite3 would nest ours as a savepoint that could roll back with theirs), or while
   * another connection holds the write lock (Kysely's path waits for it without blocking).
   */
  #writeSqliteNow(): boolean {
    const sqlite = this.#store.sqlite;
    if (!sqlite || sqlite.inTransaction) return false;
    const batch = this.#queue.splice(0, MAX_BATCH);
    if (!batch.length) return true;
    let records: AuditRecord[];
    try {
      this.#sqliteWrite ??= sqliteAppender(sqlite);
      records = this.#sqliteWrite(batch.map((p) => p.fields));
    } catch (e) {
      if (isBusy(e)) {
        this.#queue.unshift(...batch);
        return false;
      }
      this.#failed(batch, e);
      return true;
    }
    this.#committed(batch, records);
    return true;
  }

  /** Kysely's path: PostgreSQL, or SQLite while its handle is busy or inside another transaction. */
  async #flushAsync(): Promise<void> {
    const batch = this.#queue.splice(0, MAX_BATCH);
    if (!batch.length) return;
    let records: AuditRecord[];
    try {
      records = await this.#store.db.transaction().execute(async (trx) => {
        if (this.#store.kind === "postgres") await sql`select pg_advisory_xact_lock(${CHAIN_LOCK_KEY})`.execute(trx);
        const head = await trx.selectFrom("audit_events").select(["seq", "hash"]).orderBy("seq", "desc").limit(1).executeTakeFirst();
        const rows = linkEvents(
          batch.map((p) => p.fields),
          head ? Number(head.seq) : 0,
          head?.hash ?? GENESIS_HASH,
        );
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

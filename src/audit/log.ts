// The append-only, hash-chained audit trail. Each event carries a sequence number and the
// SHA-256 of the previous event, so an edited, deleted or reordered row breaks the chain.
//
// Appends are group-committed: everything appended in one turn of the event loop is written in
// one transaction, and each caller's promise settles only once its event is durable in the
// store. The gate awaits that promise before forwarding an operation (fail closed).
//
// The hash itself is in chain.ts; verification (verifyChain, re-exported here) in verify.ts.
//
// Never: resolve an append that was not written, or log token material.

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
  at: number;
  resolve: (r: AuditRecord) => void;
  reject: (e: unknown) => void;
}

// Arbitrary constant for pg_advisory_xact_lock: serializes chain appends across replicas.
const CHAIN_LOCK_KEY = 4_712_001;

export class AuditLog {
  #store: Store;
  #queue: Pending[] = [];
  #flushing: Promise<void> | undefined;
  #scheduled = false;
  #now: () => number;
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
      this.#queue.push({ input, at: this.#now(), resolve, reject });
      this.#schedule();
    });
  }

  /** Wait until everything appended so far is written (or failed). */
  async drain(): Promise<void> {
    while (this.#queue.length || this.#flushing || this.#scheduled) {
      if (this.#flushing) await this.#flushing;
      else await new Promise((r) => setImmediate(r));
    }
  }

  #schedule(): void {
    if (this.#scheduled || this.#flushing) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      this.#flushing = this.#flush().finally(() => {
        this.#flushing = undefined;
        if (this.#queue.length) this.#schedule();
      });
    });
  }

  /** Chain a batch onto the current head. */
  #link(batch: Pending[], head: { seq: number; hash: string } | undefined): AuditRecord[] {
    let seq = head ? Number(head.seq) : 0;
    let prev = head?.hash ?? GENESIS_HASH;
    return batch.map((p) => {
      seq += 1;
      const e = p.input;
      const row: Omit<AuditRecord, "hash"> = {
        seq,
        id: randomUUID(),
        at: p.at,
        type: e.type,
        principal_subject: e.principal?.subject ?? null,
        principal_name: e.principal?.displayName ?? null,
        connection: e.connection ?? null,
        session_id: e.sessionId ?? null,
        decision: e.decision ?? null,
        rule: e.rule ?? null,
        data: canonicalJson(e.data ?? {}),
        prev_hash: prev,
      };
      const full = { ...row, hash: hashEvent(row) };
      prev = full.hash;
      return full;
    });
  }

  /**
   * SQLite: one synchronous transaction with prepared statements (better-sqlite3), skipping
   * Kysely's per-query compile and async hops — this is the per-statement hot path.
   */
  #sqliteWriter(db: NonNullable<Store["sqlite"]>): (batch: Pending[]) => AuditRecord[] {
    const head = db.prepare("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1");
    const insert = db.prepare(
      "INSERT INTO audit_events (seq, id, at, type, principal_subject, principal_name, connection, session_id, decision, rule, data, prev_hash, hash) VALUES (@seq, @id, @at, @type, @principal_subject, @principal_name, @connection, @session_id, @decision, @rule, @data, @prev_hash, @hash)",
    );
    return db.transaction((batch: Pending[]) => {
      const rows = this.#link(batch, head.get() as { seq: number; hash: string } | undefined);
      for (const r of rows) insert.run(r);
      return rows;
    });
  }

  #sqliteWrite: ((batch: Pending[]) => AuditRecord[]) | undefined;

  async #flush(): Promise<void> {
    const batch = this.#queue.splice(0, 500);
    if (!batch.length) return;
    try {
      const sqlite = this.#store.sqlite;
      if (sqlite && !this.#sqliteWrite) this.#sqliteWrite = this.#sqliteWriter(sqlite);
      // Inside a transaction someone else opened on the shared handle, better-sqlite3 would nest
      // ours as a savepoint that could roll back with theirs: then take Kysely's path, which waits.
      const records =
        this.#sqliteWrite && !sqlite?.inTransaction
          ? this.#sqliteWrite(batch)
          : await this.#store.db.transaction().execute(async (trx) => {
              if (this.#store.kind === "postgres") await sql`select pg_advisory_xact_lock(${CHAIN_LOCK_KEY})`.execute(trx);
              const head = await trx.selectFrom("audit_events").select(["seq", "hash"]).orderBy("seq", "desc").limit(1).executeTakeFirst();
              const rows = this.#link(batch, head);
              await trx.insertInto("audit_events").values(rows).execute();
              return rows;
            });
      for (const [i, p] of batch.entries()) p.resolve(records[i]!);
      this.writeError = undefined;
      this.onCommitted?.(records);
    } catch (e) {
      this.writeError = (e as Error).message;
      const err = new GatehouseError("STORE_UNAVAILABLE", `audit write failed: ${(e as Error).message}`);
      for (const p of batch) p.reject(err);
    }
  }
}

// The one persistence interface. Embedded SQLite (better-sqlite3) is the zero-setup default;
// PostgreSQL is the production store that several gateway replicas share. Both run the same
// Kysely migrations on open, so a query written once works on either.
//
// Never: swallow a write error. Callers on the data path must see failures to fail closed.

import { mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, resolve } from "node:path";
import { Worker } from "node:worker_threads";
import BetterSqlite3 from "better-sqlite3";
import { CompiledQuery, type DatabaseConnection, type Driver, Kysely, type Migration, type MigrationProvider, Migrator, PostgresDialect, type QueryResult, SqliteDialect, SqliteDriver, sql } from "kysely";
import pg from "pg";
import { GatehouseError } from "../domain/errors.ts";
import * as m001 from "./migrations/001-initial.ts";
import * as m002 from "./migrations/002-reviews-notify-modify-gateways.ts";
import * as m003 from "./migrations/003-recordings-checkpoints.ts";
import * as m004 from "./migrations/004-agents.ts";
import type { Database } from "./schema.ts";

export type StoreKind = "sqlite" | "postgres";

const MIGRATIONS: Record<string, Migration> = { "001-initial": m001, "002-reviews-notify-modify-gateways": m002, "003-recordings-checkpoints": m003, "004-agents": m004 };

class StaticMigrations implements MigrationProvider {
  async getMigrations(): Promise<Record<string, Migration>> {
    return MIGRATIONS;
  }
}

export interface Store {
  readonly kind: StoreKind;
  readonly db: Kysely<Database>;
  /** A description safe to log (no password). */
  readonly description: string;
  /**
   * The better-sqlite3 handle of a SQLite store, for hot paths that bypass Kysely. It never waits
   * for a lock (busy_timeout 0: a wait would sleep in the event loop): a caller that meets
   * SQLITE_BUSY takes Kysely's path, which waits asynchronously (see isBusy).
   */
  readonly sqlite?: BetterSqlite3.Database;
  /** The SQLite database file (absent for `:memory:` and PostgreSQL): other threads open their own connection. */
  readonly file?: string;
  migrate(): Promise<string[]>;
  /** True when the store answers a trivial query. */
  ping(): Promise<boolean>;
  close(): Promise<void>;
}

/** Remove the password from a postgres URL for logs and errors. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return url.replace(/:\/\/([^:@/]+):[^@/]*@/, "://$1:***@");
  }
}

/**
 * Checkpoint the WAL on a worker thread's own connection every CHECKPOINT_MS instead of inside
 * whichever commit crosses SQLite's auto-checkpoint threshold — that checkpoint ends in an fsync on
 * the event loop and stalls every session for tens of milliseconds. PASSIVE never blocks the
 * writer. If the worker dies, SQLite's own checkpoints are switched back on.
 */
/**
 * A page the audit writer rewrites in many commits (an index's right edge) is copied to the
 * database once per checkpoint, and each checkpoint ends in an fsync: 100 → 500 ms took this
 * thread from ~3.5 to under 1 µs per audited request under load. The WAL holds what the last
 * interval wrote (a few MB under load).
 */
const CHECKPOINT_MS = 500;

function checkpointInBackground(database: BetterSqlite3.Database, file: string): void {
  database.pragma("wal_autocheckpoint = 0");
  const driver = createRequire(import.meta.url).resolve("better-sqlite3");
  const worker = new Worker(
    `const D = require(${JSON.stringify(driver)}); const db = new D(${JSON.stringify(file)}); db.pragma("busy_timeout = 5000");
     setInterval(() => { try { db.pragma("wal_checkpoint(PASSIVE)"); } catch {} }, ${CHECKPOINT_MS});`,
    { eval: true },
  );
  worker.unref();
  worker.once("exit", () => {
    if (database.open) database.pragma("wal_autocheckpoint = 1000");
  });
  const close = database.close.bind(database);
  database.close = () => {
    void worker.terminate();
    return close();
  };
}

/** SQLITE_BUSY and its extended codes: another connection holds the lock; try again later. */
export function isBusy(e: unknown): boolean {
  return typeof (e as { code?: unknown })?.code === "string" && (e as { code: string }).code.startsWith("SQLITE_BUSY");
}

/** How long a statement keeps retrying a busy database before it fails. */
const BUSY_GIVE_UP_MS = 5_000;

/**
 * Retry `run` while the database is busy, waiting between tries with timers (the event loop keeps
 * serving) instead of SQLite's busy handler (which would sleep in the calling thread).
 */
async function retryBusy<T>(run: () => Promise<T>): Promise<T> {
  const started = Date.now();
  for (let attempt = 0; ; attempt++) {
    try {
      return await run();
    } catch (e) {
      if (!isBusy(e) || Date.now() - started > BUSY_GIVE_UP_MS) throw e;
      await new Promise((r) => (attempt === 0 ? setImmediate(r) : setTimeout(r, Math.min(2 ** (attempt - 1), 50))));
    }
  }
}

/**
 * Kysely's SQLite driver, with every statement retried asynchronously while the database is busy
 * and transactions begun IMMEDIATE (the write lock is taken — or waited for — at BEGIN, so no
 * statement inside a transaction meets SQLITE_BUSY). The writer on another thread (the audit
 * writer) and other processes (the CLI) can hold the lock; this connection never sleeps for it.
 */
class NonBlockingSqliteDriver extends SqliteDriver {
  override async acquireConnection(): Promise<DatabaseConnection> {
    const c = await super.acquireConnection();
    return {
      executeQuery: <R>(q: CompiledQuery): Promise<QueryResult<R>> => retryBusy(() => c.executeQuery<R>(q)),
      streamQuery: <R>(q: CompiledQuery, chunkSize?: number) => c.streamQuery<R>(q, chunkSize),
    };
  }
  override async beginTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw("begin immediate"));
  }
}

class NonBlockingSqliteDialect extends SqliteDialect {
  readonly #database: BetterSqlite3.Database;
  constructor(database: BetterSqlite3.Database) {
    super({ database });
    this.#database = database;
  }
  override createDriver(): Driver {
    return new NonBlockingSqliteDriver({ database: this.#database });
  }
}

function sqliteDialect(path: string): { dialect: SqliteDialect; description: string; database: BetterSqlite3.Database; file?: string } {
  let file = path;
  if (file !== ":memory:") {
    file = resolve(file);
    mkdirSync(dirname(file), { recursive: true });
  }
  const database = new BetterSqlite3(file);
  // WAL lets readers run beside the writer; NORMAL syncs at checkpoints rather than at every
  // commit (a power loss can drop the last commits, never corrupt the file). Documented in
  // docs/operations.md; PostgreSQL is the store for strict durability.
  database.pragma("journal_mode = WAL");
  database.pragma("synchronous = NORMAL");
  // Never sleep in the event loop for a lock: NonBlockingSqliteDriver waits asynchronously.
  database.pragma("busy_timeout = 0");
  database.pragma("foreign_keys = ON");
  if (file !== ":memory:") checkpointInBackground(database, file);
  return { dialect: new NonBlockingSqliteDialect(database), description: `sqlite:${file}`, database, ...(file !== ":memory:" ? { file } : {}) };
}

function postgresDialect(url: string, poolSize: number): { dialect: PostgresDialect; description: string } {
  const pool = new pg.Pool({
    connectionString: url,
    max: poolSize,
    // int8 (OID 20) and numeric counts as numbers: our bigints are millisecond times and
    // sequence numbers, far below 2^53.
    types: { getTypeParser: (oid: number, format?: "text" | "binary") => (oid === 20 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format as "text")) } as pg.CustomTypesConfig,
  });
  // A client losing its server must not crash the process, idle in the pool or checked out
  // between two queries of a transaction: the query in flight or the next one reports it.
  pool.on("error", () => {});
  pool.on("connect", (client) => client.on("error", () => {}));
  return { dialect: new PostgresDialect({ pool }), description: redactUrl(url) };
}

export async function openStore(url: string, opts: { poolSize?: number; migrate?: boolean } = {}): Promise<Store> {
  let kind: StoreKind;
  let made: { dialect: SqliteDialect | PostgresDialect; description: string; database?: BetterSqlite3.Database; file?: string };
  if (url.startsWith("sqlite:")) {
    kind = "sqlite";
    made = sqliteDialect(url.slice("sqlite:".length) || ":memory:");
  } else if (url.startsWith("postgres://") || url.startsWith("postgresql://")) {
    kind = "postgres";
    made = postgresDialect(url, opts.poolSize ?? 10);
  } else {
    throw new GatehouseError("CONFIG_INVALID", `store.url must start with sqlite: or postgres:// (got "${redactUrl(url)}")`);
  }
  const db = new Kysely<Database>({ dialect: made.dialect });
  const store: Store = {
    kind,
    db,
    ...(made.database ? { sqlite: made.database } : {}),
    ...(made.file ? { file: made.file } : {}),
    description: made.description,
    async migrate() {
      const migrator = new Migrator({ db, provider: new StaticMigrations(), migrationTableName: "gatehouse_migrations", migrationLockTableName: "gatehouse_migrations_lock" });
      const { error, results } = await migrator.migrateToLatest();
      if (error) throw new GatehouseError("STORE_UNAVAILABLE", `migration failed on ${made.description}: ${(error as Error).message}`);
      return (results ?? []).filter((r) => r.status === "Success").map((r) => r.migrationName);
    },
    async ping() {
      try {
        await sql`select 1`.execute(db);
        return true;
      } catch {
        return false;
      }
    },
    async close() {
      await db.destroy();
    },
  };
  if (opts.migrate !== false) {
    try {
      await store.migrate();
    } catch (e) {
      await db.destroy().catch(() => {});
      if (e instanceof GatehouseError) throw e;
      throw new GatehouseError("STORE_UNAVAILABLE", `${made.description}: ${(e as Error).message}`);
    }
  }
  return store;
}

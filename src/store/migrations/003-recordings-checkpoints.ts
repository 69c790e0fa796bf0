// Session recordings (chunks of the byte-exact record, and per-session recording state) and audit
// checkpoints (the chain head, optionally signed, kept so verification survives pruning).

import { type Kysely, SqliteAdapter } from "kysely";

function isSqlite(db: Kysely<unknown>): boolean {
  return db.getExecutor().adapter instanceof SqliteAdapter;
}

export async function up(db: Kysely<unknown>): Promise<void> {
  // none | recording | complete | truncated | failed | pruned
  await db.schema.alterTable("sessions").addColumn("rec_status", "text", (c) => c.notNull().defaultTo("none")).execute();
  await db.schema.alterTable("sessions").addColumn("rec_bytes", "bigint", (c) => c.notNull().defaultTo(0)).execute();
  await db.schema.alterTable("sessions").addColumn("rec_storage", "text").execute();
  await db.schema.createIndex("sessions_principal_idx").on("sessions").columns(["principal_subject", "started_at"]).execute();
  await db.schema.createIndex("sessions_connection_idx").on("sessions").columns(["connection", "started_at"]).execute();

  await db.schema
    .createTable("recording_chunks")
    .addColumn("session_id", "text", (c) => c.notNull())
    .addColumn("seq", "integer", (c) => c.notNull())
    .addColumn("at", "bigint", (c) => c.notNull())
    .addColumn("bytes", "integer", (c) => c.notNull())
    .addColumn("data", isSqlite(db) ? "blob" : "bytea", (c) => c.notNull())
    .addPrimaryKeyConstraint("recording_chunks_pk", ["session_id", "seq"])
    .execute();
  await db.schema.createIndex("recording_chunks_at_idx").on("recording_chunks").column("at").execute();

  await db.schema
    .createTable("audit_checkpoints")
    .addColumn("seq", isSqlite(db) ? "integer" : "bigint", (c) => c.primaryKey())
    .addColumn("hash", "text", (c) => c.notNull())
    .addColumn("at", "bigint", (c) => c.notNull())
    .addColumn("gateway_id", "text")
    .addColumn("key_id", "text")
    .addColumn("signature", "text")
    .execute();
  // The oldest kept event's predecessor: after pruning, verification starts from this anchor.
  await db.schema
    .createTable("audit_anchor")
    .addColumn("id", "integer", (c) => c.primaryKey())
    .addColumn("seq", "bigint", (c) => c.notNull())
    .addColumn("hash", "text", (c) => c.notNull())
    .addColumn("pruned_at", "bigint", (c) => c.notNull())
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable("audit_anchor").ifExists().execute();
  await db.schema.dropTable("audit_checkpoints").ifExists().execute();
  await db.schema.dropTable("recording_chunks").ifExists().execute();
  await db.schema.dropIndex("sessions_connection_idx").ifExists().execute();
  await db.schema.dropIndex("sessions_principal_idx").ifExists().execute();
  for (const c of ["rec_storage", "rec_bytes", "rec_status"]) await db.schema.alterTable("sessions").dropColumn(c).execute();
}

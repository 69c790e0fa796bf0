// First schema. Migrations are append-only: never edit a released one, add the next file.

import { type Kysely, SqliteAdapter, sql } from "kysely";

/** SQLite makes an `INTEGER PRIMARY KEY` the rowid itself (one b-tree less per audit insert). */
function isSqlite(db: Kysely<unknown>): boolean {
  return db.getExecutor().adapter instanceof SqliteAdapter;
}

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable("gatehouse_meta")
    .addColumn("key", "text", (c) => c.primaryKey())
    .addColumn("value", "text", (c) => c.notNull())
    .execute();

  await db.schema
    .createTable("sessions")
    .addColumn("id", "text", (c) => c.primaryKey())
    .addColumn("principal_subject", "text", (c) => c.notNull())
    .addColumn("principal_name", "text", (c) => c.notNull())
    .addColumn("principal_json", "text", (c) => c.notNull())
    .addColumn("connection", "text", (c) => c.notNull())
    .addColumn("protocol", "text", (c) => c.notNull())
    .addColumn("client_addr", "text")
    .addColumn("gateway_id", "text", (c) => c.notNull())
    .addColumn("started_at", "bigint", (c) => c.notNull())
    .addColumn("ended_at", "bigint")
    .addColumn("status", "text", (c) => c.notNull())
    .addColumn("end_reason", "text")
    .execute();
  await db.schema.createIndex("sessions_started_idx").on("sessions").column("started_at").execute();
  await db.schema.createIndex("sessions_status_idx").on("sessions").columns(["status", "gateway_id"]).execute();

  await db.schema
    .createTable("audit_events")
    .addColumn("seq", isSqlite(db) ? "integer" : "bigint", (c) => c.primaryKey())
    .addColumn("id", "text", (c) => c.notNull().unique())
    .addColumn("at", "bigint", (c) => c.notNull())
    .addColumn("type", "text", (c) => c.notNull())
    .addColumn("principal_subject", "text")
    .addColumn("principal_name", "text")
    .addColumn("connection", "text")
    .addColumn("session_id", "text")
    .addColumn("decision", "text")
    .addColumn("rule", "text")
    .addColumn("data", "text", (c) => c.notNull())
    .addColumn("prev_hash", "text", (c) => c.notNull())
    .addColumn("hash", "text", (c) => c.notNull())
    .execute();
  await db.schema.createIndex("audit_events_at_idx").on("audit_events").column("at").execute();
  await db.schema.createIndex("audit_events_session_idx").on("audit_events").column("session_id").execute();

  await db.schema
    .createTable("reviews")
    .addColumn("id", "text", (c) => c.primaryKey())
    .addColumn("status", "text", (c) => c.notNull())
    .addColumn("created_at", "bigint", (c) => c.notNull())
    .addColumn("expires_at", "bigint", (c) => c.notNull())
    .addColumn("decided_at", "bigint")
    .addColumn("session_id", "text")
    .addColumn("connection", "text", (c) => c.notNull())
    .addColumn("principal_subject", "text", (c) => c.notNull())
    .addColumn("principal_json", "text", (c) => c.notNull())
    .addColumn("operation_json", "text", (c) => c.notNull())
    .addColumn("binding_hash", "text", (c) => c.notNull())
    .addColumn("rule", "text", (c) => c.notNull())
    .addColumn("message", "text")
    .addColumn("approvers_json", "text", (c) => c.notNull())
    .addColumn("quorum", "integer", (c) => c.notNull())
    .addColumn("mode", "text", (c) => c.notNull())
    .addColumn("decisions_json", "text", (c) => c.notNull().defaultTo(sql`'[]'`))
    .addColumn("used_at", "bigint")
    .addColumn("version", "integer", (c) => c.notNull().defaultTo(0))
    .execute();
  await db.schema.createIndex("reviews_status_idx").on("reviews").columns(["status", "created_at"]).execute();
  await db.schema.createIndex("reviews_binding_idx").on("reviews").column("binding_hash").execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const t of ["reviews", "audit_events", "sessions", "gatehouse_meta"]) await db.schema.dropTable(t).ifExists().execute();
}

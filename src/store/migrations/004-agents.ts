// Network-resident agents: each has a name and a secret (stored only as its SHA-256), may be
// revoked, and reports what it is when it connects.

import type { Kysely } from "kysely";

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable("agents")
    .addColumn("name", "text", (c) => c.primaryKey())
    .addColumn("secret_hash", "text", (c) => c.notNull().unique())
    .addColumn("created_at", "bigint", (c) => c.notNull())
    .addColumn("revoked_at", "bigint")
    .addColumn("last_seen_at", "bigint")
    .addColumn("last_address", "text")
    .addColumn("last_version", "text")
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable("agents").ifExists().execute();
}

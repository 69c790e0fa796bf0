// Reviews learn notifications and modifications; gateways heartbeat so a restarted one can tell
// which sessions (and their held reviews) died with a previous process.

import type { Kysely } from "kysely";

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable("reviews").addColumn("notify_json", "text", (c) => c.notNull().defaultTo("[]")).execute();
  await db.schema.alterTable("reviews").addColumn("modified_json", "text").execute();
  await db.schema
    .createTable("gateways")
    .addColumn("id", "text", (c) => c.primaryKey())
    .addColumn("started_at", "bigint", (c) => c.notNull())
    .addColumn("heartbeat_at", "bigint", (c) => c.notNull())
    .addColumn("version", "text", (c) => c.notNull())
    .addColumn("stopped_at", "bigint")
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable("gateways").ifExists().execute();
  await db.schema.alterTable("reviews").dropColumn("modified_json").execute();
  await db.schema.alterTable("reviews").dropColumn("notify_json").execute();
}

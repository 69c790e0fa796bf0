// A throwaway database on the real PostgreSQL server (127.0.0.1:5432, trust auth here and in CI).
// Each test file gets its own database and drops it at the end.

import { randomBytes } from "node:crypto";
import pg from "pg";

export const PG_HOST = process.env.PGHOST_TEST ?? "127.0.0.1";
export const PG_PORT = Number(process.env.PGPORT_TEST ?? 5432);
export const PG_ADMIN_USER = process.env.PGUSER_TEST ?? "postgres";

export function adminClient(database = "postgres"): pg.Client {
  return new pg.Client({ host: PG_HOST, port: PG_PORT, user: PG_ADMIN_USER, database });
}

export interface TempDatabase {
  name: string;
  url: string;
  drop(): Promise<void>;
}

export async function createTempDatabase(prefix = "gh_test"): Promise<TempDatabase> {
  const name = `${prefix}_${randomBytes(5).toString("hex")}`;
  const c = adminClient();
  await c.connect();
  try {
    await c.query(`CREATE DATABASE ${name}`);
  } finally {
    await c.end();
  }
  return {
    name,
    url: `postgres://${PG_ADMIN_USER}@${PG_HOST}:${PG_PORT}/${name}`,
    async drop() {
      const a = adminClient();
      await a.connect();
      try {
        await a.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await a.end();
      }
    },
  };
}

// The quick start's database: an in-process PGlite (PostgreSQL compiled to WASM) behind a
// loopback socket, seeded with a small schema. It exists so `npm start` needs nothing installed;
// it accepts any credentials and cannot do COPY FROM STDIN, so tests use a real PostgreSQL.

import { mkdirSync } from "node:fs";
import { PGlite } from "@electric-sql/pglite";
import { PGLiteSocketServer } from "@electric-sql/pglite-socket";

export interface DemoTarget {
  host: string;
  port: number;
  close(): Promise<void>;
}

const SEED = `
CREATE TABLE IF NOT EXISTS customers (id serial PRIMARY KEY, name text NOT NULL, email text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS orders (id serial PRIMARY KEY, customer_id int NOT NULL REFERENCES customers(id), total numeric(10,2) NOT NULL, status text NOT NULL DEFAULT 'open');
INSERT INTO customers (name, email) SELECT 'Customer ' || i, 'customer' || i || '@example.com' FROM generate_series(1, 20) i WHERE NOT EXISTS (SELECT 1 FROM customers);
INSERT INTO orders (customer_id, total, status) SELECT 1 + (i % 20), (i * 7.5)::numeric(10,2), CASE WHEN i % 3 = 0 THEN 'shipped' ELSE 'open' END FROM generate_series(1, 50) i WHERE NOT EXISTS (SELECT 1 FROM orders);
`;

export async function startDemoTarget(dataDir: string | undefined): Promise<DemoTarget> {
  if (dataDir) mkdirSync(dataDir, { recursive: true });
  const db = dataDir ? new PGlite(dataDir) : new PGlite();
  await db.waitReady;
  await db.exec(SEED);
  // PGlite runs one query at a time; the socket server queues connections' queries.
  const server = new PGLiteSocketServer({ db, host: "127.0.0.1", port: 0, maxConnections: 16 });
  await server.start();
  const conn = server.getServerConn();
  const port = Number(conn.slice(conn.lastIndexOf(":") + 1));
  return {
    host: "127.0.0.1",
    port,
    async close() {
      await server.stop();
      await db.close();
    },
  };
}

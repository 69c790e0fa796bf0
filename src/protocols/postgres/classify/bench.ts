// Throughput of the SQL classifier: uncached (parse + walk), cached (hot statement), and the
// bare libpg-query parse as the baseline measured in the same run. Not a test; it must never
// be imported by production code.
// Run: node --import tsx src/protocols/postgres/classify/bench.ts [seconds-per-case]

import { parseSync } from "libpg-query";
import { classifySql, classifySqlUncached, configureClassifierCache, initClassifier } from "./index.ts";

const CORPUS = [
  "SELECT 1",
  "SELECT id, name, email FROM users WHERE id = $1",
  "SELECT u.id, count(o.id) FROM users u LEFT JOIN orders o ON o.user_id = u.id WHERE u.created_at > now() - interval '7 days' GROUP BY u.id ORDER BY 2 DESC LIMIT 10",
  "INSERT INTO events (kind, payload, at) VALUES ($1, $2, now()) RETURNING id",
  "UPDATE accounts SET balance = balance - $1 WHERE id = $2",
  "DELETE FROM sessions WHERE expires_at < now()",
  "WITH d AS (DELETE FROM queue WHERE id IN (SELECT id FROM queue ORDER BY id LIMIT 10 FOR UPDATE SKIP LOCKED) RETURNING *) SELECT * FROM d",
  "BEGIN",
  "COMMIT",
  "SET statement_timeout = 5000",
  "CREATE INDEX CONCURRENTLY idx_orders_user ON orders (user_id)",
  "EXPLAIN ANALYZE SELECT * FROM orders WHERE user_id = 42",
  "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE state = 'idle'",
  "DO $$ BEGIN EXECUTE 'DROP TABLE t'; END $$",
  "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET v = s.v WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.v)",
  "COPY (SELECT * FROM big) TO STDOUT WITH (FORMAT csv)",
];

function measure(label: string, seconds: number, run: (sql: string) => void): number {
  // Warm up the JIT.
  for (let i = 0; i < 200; i++) for (const sql of CORPUS) run(sql);
  let statements = 0;
  const start = process.hrtime.bigint();
  const limit = BigInt(Math.round(seconds * 1e9));
  let elapsed = 0n;
  while (elapsed < limit) {
    for (const sql of CORPUS) run(sql);
    statements += CORPUS.length;
    elapsed = process.hrtime.bigint() - start;
  }
  const perSecond = statements / (Number(elapsed) / 1e9);
  console.log(`${label.padEnd(36)} ${Math.round(perSecond).toLocaleString("en-US").padStart(12)} statements/s`);
  return perSecond;
}

await initClassifier();
const seconds = Number(process.argv[2] ?? "2");

const baseline = measure("libpg-query parseSync only (baseline)", seconds, (sql) => {
  parseSync(sql);
});
const uncached = measure("classifySql, uncached", seconds, (sql) => {
  classifySqlUncached(sql);
});
configureClassifierCache({ maxEntries: 10_000 });
const cached = measure("classifySql, cached (hot statements)", seconds, (sql) => {
  classifySql(sql);
});

console.log(`uncached / parse-only ratio: ${(uncached / baseline).toFixed(2)}`);
console.log(`cached / uncached ratio:     ${(cached / uncached).toFixed(1)}`);

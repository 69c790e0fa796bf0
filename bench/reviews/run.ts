// bench/reviews: how fast an approval releases a held statement, and what holding costs.
//
//  1. Release latency: a held INSERT that records clock_timestamp() on the server; the time from
//     the start of the approve API call to that timestamp (the statement reaching PostgreSQL),
//     p50/p99 over N rounds. Baseline in the same run: the same INSERT allowed without review,
//     through the same gateway (send → server timestamp).
//  2. Memory: the gateway's resident set (separate process, /proc/PID/status VmRSS) idle, with
//     1,000 open sessions, and with 1,000 sessions each holding a statement for review.
//
// Runs against a private PostgreSQL (max_connections 1100) so 1,000 target sessions fit.
// `npm run bench:reviews`; BENCH_ROUNDS and BENCH_SESSIONS make it quicker.

import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { parseConfig } from "../../src/config/load.ts";
import { mintDevToken } from "../../src/identity/index.ts";
import { startPrivatePostgres } from "../../test/helpers/private-pg.ts";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 200);
const SESSIONS = Number(process.env.BENCH_SESSIONS ?? 1000);

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? Number.NaN;
};
const rssKb = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0);
const nowMs = () => performance.timeOrigin + performance.now();

async function main() {
  const dir = mkdtempSync(join(tmpdir(), "gh-bench-reviews-"));
  const server = await startPrivatePostgres({ hba: ["host all all 127.0.0.1/32 trust"], conf: { max_connections: String(SESSIONS + 100), shared_buffers: "64MB" } });
  let gw: ReturnType<typeof spawn> | undefined;
  try {
    await server.sql("CREATE TABLE marks (id bigserial PRIMARY KEY, at timestamptz NOT NULL)");
    const apiPort = await freePort();
    const pgPort = await freePort();
    const cfgInput = {
      identity: { devIssuer: { enabled: true, keyFile: join(dir, "dev-key.json") } },
      store: { url: `sqlite:${join(dir, "gh.db")}` },
      api: { host: "127.0.0.1", port: apiPort },
      listeners: { postgres: { host: "127.0.0.1", port: pgPort, allowCleartextLoopback: true, tls: { selfSignedDir: join(dir, "tls") } } },
      connections: [{ name: "bench", protocol: "postgres", postgres: { host: "127.0.0.1", port: server.port, database: "postgres", user: "postgres", tls: "disable" }, policy: { reviewExpires: "10m" } }],
      policies: [
        { name: "reads", principals: { groups: ["ai-agents"] }, operations: { kinds: ["read"] }, decision: "allow" },
        { name: "free-writes", principals: { groups: ["ai-agents"] }, operations: { kinds: ["write"], tables: ["free_marks"] }, decision: "allow" },
        { name: "held-writes", operations: { kinds: ["write"], tables: ["marks"] }, decision: "review", review: { approvers: ["dba"] } },
      ],
      logging: { level: "warn" },
    };
    const cfgFile = join(dir, "gw.json");
    writeFileSync(cfgFile, JSON.stringify(cfgInput));
    const cfg = parseConfig(cfgInput);
    await server.sql("CREATE TABLE free_marks (id bigserial PRIMARY KEY, at timestamptz NOT NULL)");
    gw = spawn(process.execPath, ["--import", "tsx", "src/cli/index.ts", "gateway", "--config", cfgFile], { stdio: ["ignore", "pipe", "inherit"] });
    const api = `http://127.0.0.1:${apiPort}`;
    for (let i = 0; i < 200; i++) {
      if (await fetch(`${api}/readyz`).then((r) => r.ok, () => false)) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const agentToken = await mintDevToken(cfg.identity, { subject: "bench-agent", groups: ["ai-agents"], kind: "service" });
    const dbaToken = await mintDevToken(cfg.identity, { subject: "bench-dba", groups: ["dba"], kind: "human", lifetimeSeconds: 3600 });
    const client = () => new pg.Client({ host: "127.0.0.1", port: pgPort, database: "bench", user: "agent", password: agentToken, ssl: false });

    // 1a. baseline: allowed INSERT, send → server timestamp
    const c = client();
    await c.connect();
    const base: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      const t0 = nowMs();
      const r = await c.query("INSERT INTO free_marks (at) VALUES (clock_timestamp()) RETURNING extract(epoch from at) * 1000 AS ms");
      base.push(Number(r.rows[0].ms) - t0);
    }
    // 1b. held INSERT, approve call start → server timestamp
    const release: number[] = [];
    const roundTrip: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      const q = c.query("INSERT INTO marks (at) VALUES (clock_timestamp()) RETURNING extract(epoch from at) * 1000 AS ms");
      let id: string | undefined;
      while (!id) {
        const list = (await (await fetch(`${api}/api/v1/reviews?status=pending&limit=1`, { headers: { authorization: `Bearer ${dbaToken}` } })).json()) as { items: Array<{ id: string }> };
        id = list.items[0]?.id;
        if (!id) await new Promise((r) => setTimeout(r, 2));
      }
      const t0 = nowMs();
      const res = await fetch(`${api}/api/v1/reviews/${id}/approve`, { method: "POST", headers: { authorization: `Bearer ${dbaToken}`, "content-type": "application/json" }, body: "{}" });
      if (!res.ok) throw new Error(`approve failed: ${res.status} ${await res.text()}`);
      const r = await q;
      roundTrip.push(nowMs() - t0);
      release.push(Number(r.rows[0].ms) - t0);
    }
    await c.end();

    // 2. memory
    await new Promise((r) => setTimeout(r, 500));
    const idleKb = rssKb(gw.pid!);
    const clients: pg.Client[] = [];
    for (let i = 0; i < SESSIONS; i += 50) {
      const batch = Array.from({ length: Math.min(50, SESSIONS - i) }, () => client());
      await Promise.all(batch.map((b) => b.connect()));
      clients.push(...batch);
    }
    await new Promise((r) => setTimeout(r, 500));
    const openKb = rssKb(gw.pid!);
    const held = clients.map((cl) => cl.query("INSERT INTO marks (at) VALUES (clock_timestamp())").catch((e: Error) => e));
    for (let i = 0; i < 600; i++) {
      const list = (await (await fetch(`${api}/api/v1/reviews?status=pending&limit=1000`, { headers: { authorization: `Bearer ${dbaToken}` } })).json()) as { items: unknown[] };
      if (list.items.length >= SESSIONS) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    await new Promise((r) => setTimeout(r, 500));
    const heldKb = rssKb(gw.pid!);
    for (const cl of clients) await cl.end().catch(() => {});
    await Promise.all(held);

    const f = (x: number) => x.toFixed(2);
    const rows = [
      ["allowed INSERT (baseline): send → reaches PostgreSQL", f(pct(base, 50)), f(pct(base, 99)), "1.00"],
      ["held INSERT: approve call → reaches PostgreSQL", f(pct(release, 50)), f(pct(release, 99)), f(pct(release, 50) / pct(base, 50))],
      ["held INSERT: approve call → client has its result", f(pct(roundTrip, 50)), f(pct(roundTrip, 99)), f(pct(roundTrip, 50) / pct(base, 50))],
    ];
    console.log(`\nRelease latency over ${ROUNDS} rounds (ms; ratio = p50 / baseline p50)`);
    console.log("| measurement | p50 | p99 | ratio |\n| --- | --- | --- | --- |");
    for (const r of rows) console.log(`| ${r.join(" | ")} |`);
    console.log(`\nGateway memory (RSS, separate process), ${SESSIONS} sessions`);
    console.log("| state | RSS MiB | per session KiB | ratio to idle |\n| --- | --- | --- | --- |");
    console.log(`| idle (baseline) | ${(idleKb / 1024).toFixed(1)} | - | 1.00 |`);
    console.log(`| ${SESSIONS} open sessions | ${(openKb / 1024).toFixed(1)} | ${((openKb - idleKb) / SESSIONS).toFixed(1)} | ${(openKb / idleKb).toFixed(2)} |`);
    console.log(`| ${SESSIONS} sessions each holding a statement | ${(heldKb / 1024).toFixed(1)} | ${((heldKb - idleKb) / SESSIONS).toFixed(1)} | ${(heldKb / idleKb).toFixed(2)} |`);
  } finally {
    gw?.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, 1500));
    gw?.kill("SIGKILL");
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});

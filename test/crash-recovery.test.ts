// kill -9 of the gateway under a steady load of sessions, then a restart: no acknowledged audit
// event is missing (a statement is forwarded only after its decision is committed), the chain
// verifies, the sessions that were in flight are marked interrupted and their recordings read up
// to the last flush. The gateway runs as a separate OS process, exactly as deployed.

import assert from "node:assert/strict";
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import pg from "pg";
import type { ConfigInput } from "../src/config/schema.ts";
import { openStore, type Store } from "../src/store/store.ts";
import { freePort, waitFor } from "./helpers/clients.ts";
import { DEFAULT_POLICIES, GROUPS } from "./helpers/gateway.ts";
import { startTestIdp, type TestIdp } from "./helpers/idp.ts";
import { createTempDatabase, PG_ADMIN_USER, PG_HOST, PG_PORT, type TempDatabase } from "./helpers/pg.ts";

const exec = promisify(execFile);

let idp: TestIdp;
let db: TempDatabase;
let dir: string;
let configFile: string;
let apiPort: number;
let pgPort: number;
let child: ChildProcess | undefined;
/**
 * Settles when the process exits. Taken at spawn: an "exit" listener added after the fact would
 * never fire if the process is already gone (a kill -9 finishes while the workers wind down).
 */
const exits = new WeakMap<ChildProcess, Promise<unknown>>();
const exited = (p: ChildProcess) => exits.get(p)!;

async function startGatewayProcess(): Promise<ChildProcess> {
  const p = spawn(process.execPath, ["bin/gatehouse.js", "gateway", "--config", configFile], { stdio: ["ignore", "pipe", "pipe"] });
  exits.set(p, new Promise((r) => p.once("exit", r)));
  let out = "";
  p.stdout!.on("data", (b) => (out += b));
  p.stderr!.on("data", (b) => (out += b));
  await waitFor(() => out.includes("gateway started") || p.exitCode !== null, "the gateway to start", 20_000);
  assert.equal(p.exitCode, null, out);
  return p;
}

before(async () => {
  idp = await startTestIdp();
  db = await createTempDatabase("gh_crash");
  dir = mkdtempSync(join(tmpdir(), "gh-crash-"));
  apiPort = await freePort();
  pgPort = await freePort();
  const cfg: ConfigInput = {
    identity: { issuers: [{ issuer: idp.issuer, audiences: [idp.audience] }], groupNames: { [GROUPS.aiAgents]: "ai-agents", [GROUPS.dba]: "dba" } },
    store: { url: `sqlite:${join(dir, "gatehouse.db")}` },
    api: { host: "127.0.0.1", port: apiPort },
    listeners: { postgres: { host: "127.0.0.1", port: pgPort, allowCleartextLoopback: true, tls: { selfSignedDir: join(dir, "tls") } } },
    connections: [{ name: "pg-crash", protocol: "postgres", postgres: { host: PG_HOST, port: PG_PORT, database: db.name, user: PG_ADMIN_USER, tls: "disable" } }],
    policies: DEFAULT_POLICIES,
    recording: { flushInterval: "100ms" },
    audit: { auditorGroups: ["dba"] },
    logging: { level: "info" },
  };
  configFile = join(dir, "gatehouse.yaml");
  writeFileSync(configFile, JSON.stringify(cfg, null, 2)); // JSON is YAML
});

after(async () => {
  child?.kill("SIGKILL");
  await idp?.close();
  await db?.drop();
  rmSync(dir, { recursive: true, force: true });
});

test("kill -9 under load: acknowledged audit events survive, the chain verifies, in-flight sessions are interrupted and readable", { timeout: 240_000 }, async (t) => {
  child = await startGatewayProcess();
  const token = await idp.token({ clientId: "crash-agent", groups: [GROUPS.aiAgents], typ: "JWT" });
  const acknowledged = new Set<string>();
  let stop = false;
  // 8 workers, each opening a new session every 15 statements: a steady load of sessions.
  const workers = Array.from({ length: 8 }, async (_, w) => {
    for (let s = 0; !stop; s++) {
      const c = new pg.Client({ host: "127.0.0.1", port: pgPort, database: "pg-crash", user: "agent", password: token, ssl: false, connectionTimeoutMillis: 10_000, query_timeout: 15_000 });
      c.on("error", () => {});
      try {
        await c.connect();
        for (let q = 0; q < 15 && !stop; q++) {
          const tag = `w${w}-s${s}-q${q}`;
          const r = await c.query(`SELECT '${tag}' AS tag`);
          assert.equal(r.rows[0].tag, tag);
          acknowledged.add(tag);
        }
        await c.end();
      } catch {
        return; // the gateway died under us
      }
    }
  });
  // And one long session, a statement every 20 ms: it spans several recording flushes (100 ms)
  // before the kill, so its recording surely has statements to read back.
  const steady = (async () => {
    const c = new pg.Client({ host: "127.0.0.1", port: pgPort, database: "pg-crash", user: "agent", password: token, ssl: false, connectionTimeoutMillis: 10_000, query_timeout: 15_000 });
    c.on("error", () => {});
    try {
      await c.connect();
      for (let q = 0; !stop; q++) {
        const tag = `w99-s0-q${q}`;
        const r = await c.query(`SELECT '${tag}' AS tag`);
        assert.equal(r.rows[0].tag, tag);
        acknowledged.add(tag);
        await new Promise((res) => setTimeout(res, 20));
      }
    } catch {
      /* the gateway died under us */
    }
  })();
  await waitFor(() => acknowledged.size >= 300 && [...acknowledged].filter((t) => t.startsWith("w99-")).length >= 20, "load to build up", 90_000);
  child.kill("SIGKILL");
  stop = true;
  await Promise.all([...workers, steady]);
  await exited(child);
  assert.ok(acknowledged.size >= 300);

  child = await startGatewayProcess();
  const store: Store = await openStore(`sqlite:${join(dir, "gatehouse.db")}`, { migrate: false });
  try {
    // Every acknowledged statement's decision is in the trail.
    const rows = await store.db.selectFrom("audit_events").select("data").where("type", "=", "operation.decided").execute();
    const audited = new Set(rows.map((r) => /'(w\d+-s\d+-q\d+)'/.exec((JSON.parse(r.data) as { text: string }).text)?.[1]).filter(Boolean));
    const missing = [...acknowledged].filter((t) => !audited.has(t));
    assert.deepEqual(missing, [], `${missing.length} acknowledged statements have no audit event`);

    // Sessions that were open at the kill are interrupted, and their recordings read back.
    const interrupted = await store.db.selectFrom("sessions").select(["id", "rec_status"]).where("status", "=", "interrupted").execute();
    assert.ok(interrupted.length >= 1, "in-flight sessions are marked interrupted");
    assert.ok(interrupted.every((s) => s.rec_status === "interrupted"));
    assert.equal((await store.db.selectFrom("sessions").select("id").where("status", "=", "active").execute()).length, 0);
    const auditor = await idp.token({ clientId: "human-auditor", groups: [GROUPS.dba], claims: { idtyp: "user", scp: "access_as_user", name: "Ada Auditor" } });
    let readable = 0;
    for (const s of interrupted) {
      const res = await fetch(`http://127.0.0.1:${apiPort}/api/v1/sessions/${s.id}/replay`, { headers: { authorization: `Bearer ${auditor}` }, signal: AbortSignal.timeout(30_000) });
      assert.equal(res.status, 200);
      const items = (await res.text()).trim().split("\n").map((l) => JSON.parse(l) as { type?: string; error?: unknown; statements?: Array<{ text?: string }> });
      assert.ok(!items.some((i) => i.error), "no damaged chunk");
      const tags = items.flatMap((i) => (i.type === "cycle" ? (i.statements ?? []).map((st) => /'(w\d+-s\d+-q\d+)'/.exec(st.text ?? "")?.[1]) : [])).filter(Boolean);
      // What was flushed is a prefix of what the client sent: every recorded statement was audited.
      for (const t of tags) assert.ok(audited.has(t!), `${t} was recorded and audited`);
      if (tags.length) readable++;
    }
    assert.ok(readable >= 1, "at least one interrupted session has recorded statements");
    t.diagnostic(`${acknowledged.size} statements acknowledged before the kill; ${interrupted.length} sessions interrupted, ${readable} with recorded statements`);
  } finally {
    await store.close();
  }

  const verify = await exec(process.execPath, ["bin/gatehouse.js", "audit", "verify", "--config", configFile]);
  assert.match(verify.stdout, /intact/);

  // The restarted gateway serves again.
  const c = new pg.Client({ host: "127.0.0.1", port: pgPort, database: "pg-crash", user: "agent", password: token, ssl: false, connectionTimeoutMillis: 10_000 });
  await c.connect();
  assert.equal((await c.query("SELECT 'after' AS x")).rows[0].x, "after");
  await c.end();
  child.kill("SIGTERM");
  await exited(child);
  child = undefined;
});

// The network-resident agent, end to end with the gateway and the agent as separate OS processes:
// psql and pgbench through gateway → tunnel → agent → a PostgreSQL that requires a password only
// the agent knows; the same gating as the embedded path; 200 concurrent sessions with no mix-up;
// killing the agent (clean, prompt error; restart serves again without touching the gateway);
// killing the gateway (the agent reconnects); revocation; and proof that the gateway never holds
// the target credential — not in its configuration, environment, logs or heap.

import assert from "node:assert/strict";
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import pg from "pg";
import type { ConfigInput } from "../src/config/schema.ts";
import { freePort, runProcess, sendCancelRequest, waitFor } from "./helpers/clients.ts";
import { DEFAULT_POLICIES, GROUPS } from "./helpers/gateway.ts";
import { startTestIdp, type TestIdp } from "./helpers/idp.ts";
import { type PrivatePostgres, privatePostgresUnavailable, startPrivatePostgres } from "./helpers/private-pg.ts";

const exec = promisify(execFile);
const BIN = resolve("bin/gatehouse.js");
const PASSWORD = `edge-${randomBytes(12).toString("hex")}`;
const unavailable = privatePostgresUnavailable();

interface Proc {
  child: ChildProcess;
  out: () => string;
  exited: Promise<number | null>;
}

function start(args: string[], env: NodeJS.ProcessEnv, cwd: string, nodeArgs: string[] = []): Proc {
  const child = spawn(process.execPath, [...nodeArgs, BIN, ...args], { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout!.on("data", (b) => (out += b));
  child.stderr!.on("data", (b) => (out += b));
  return { child, out: () => out, exited: new Promise((r) => child.once("exit", (c) => r(c))) };
}

/** The environment a process gets: ours without any secret of the test, plus `extra`. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const k of ["PATH", "HOME", "LANG", "TMPDIR", "NODE_OPTIONS"]) if (process.env[k] !== undefined) env[k] = process.env[k];
  return { ...env, ...extra };
}

describe("network-resident agent", { skip: unavailable }, () => {
  let idp: TestIdp;
  let target: PrivatePostgres;
  let dir: string;
  let configFile: string;
  let apiPort: number;
  let pgPort: number;
  let gateway: Proc | undefined;
  let agent: Proc | undefined;
  let secret: string;
  let token: string;
  let adminToken: string;

  const gatewayUp = async () => {
    gateway = start(["gateway", "--config", configFile], cleanEnv(), dir, ["--heapsnapshot-signal=SIGUSR2"]);
    await waitFor(() => gateway!.out().includes("gateway started") || gateway!.child.exitCode !== null, "the gateway to start", 30_000);
    assert.equal(gateway.child.exitCode, null, gateway.out());
  };
  const agentUp = async () => {
    agent = start(["agent", "--gateway", `http://127.0.0.1:${apiPort}`, "--targets", join(dir, "agent-targets.yaml")], cleanEnv({ GATEHOUSE_AGENT_TOKEN: secret, EDGE_PG_PASSWORD: PASSWORD }), dir);
    await waitFor(() => agent!.out().includes("connected to the gateway") || agent!.child.exitCode !== null, "the agent to connect", 30_000);
    assert.equal(agent.child.exitCode, null, agent.out());
  };
  const client = (extra: pg.ClientConfig = {}) => {
    const c = new pg.Client({ host: "127.0.0.1", port: pgPort, database: "pg-edge", user: "agent", password: token, ssl: false, connectionTimeoutMillis: 10_000, ...extra });
    c.on("error", () => {});
    return c;
  };
  const kill = async (p: Proc | undefined) => {
    if (!p || p.child.exitCode !== null) return;
    p.child.kill("SIGKILL");
    await p.exited;
  };

  before(async () => {
    idp = await startTestIdp();
    target = await startPrivatePostgres({ hba: ["host all all 127.0.0.1/32 scram-sha-256"], conf: { max_connections: "260", password_encryption: "'scram-sha-256'" } });
    await target.sql(`CREATE ROLE edge_app LOGIN PASSWORD '${PASSWORD}'`);
    await target.sql("CREATE DATABASE edgedb OWNER edge_app");
    await target.sql("CREATE TABLE items (id int primary key, name text); INSERT INTO items VALUES (1, 'alpha'), (2, 'beta'); ALTER TABLE items OWNER TO edge_app", "edgedb");
    dir = mkdtempSync(join(tmpdir(), "gh-remote-"));
    [apiPort, pgPort] = [await freePort(), await freePort()];
    const cfg: ConfigInput = {
      identity: { issuers: [{ issuer: idp.issuer, audiences: [idp.audience] }], groupNames: { [GROUPS.aiAgents]: "ai-agents", [GROUPS.dba]: "dba" } },
      store: { url: `sqlite:${join(dir, "gatehouse.db")}` },
      api: { host: "127.0.0.1", port: apiPort, adminGroups: ["dba"] },
      listeners: { postgres: { host: "127.0.0.1", port: pgPort, allowCleartextLoopback: true, tls: { selfSignedDir: join(dir, "tls") } } },
      connections: [
        { name: "pg-edge", protocol: "postgres", agent: "edge", postgres: { host: target.host, port: target.port, database: "edgedb", user: "edge_app", password: "env:EDGE_PG_PASSWORD", tls: "disable" } },
        // Served by the same agent, but not in its targets file: what a tampered gateway
        // configuration would add to send the agent's password somewhere else.
        { name: "pg-stray", protocol: "postgres", agent: "edge", postgres: { host: "127.0.0.1", port: 5432, database: "postgres", user: "postgres", password: "env:EDGE_PG_PASSWORD", tls: "disable" } },
      ],
      policies: DEFAULT_POLICIES,
      logging: { level: "info" },
    };
    configFile = join(dir, "gatehouse.yaml");
    writeFileSync(configFile, JSON.stringify(cfg, null, 2));
    writeFileSync(join(dir, "agent-targets.yaml"), `# what this agent may open\ntargets:\n  - postgres: ${target.host}:${target.port}\n    credentials: [env:EDGE_PG_PASSWORD]\n`);
    const created = await runProcess(process.execPath, [BIN, "agents", "create", "edge", "--config", configFile], { env: cleanEnv() });
    assert.equal(created.code, 0, created.stderr);
    secret = created.stdout.trim().split("\n").at(-1)!;
    assert.match(secret, /^gha_[A-Za-z0-9_-]{43}$/);
    token = await idp.token({ clientId: "edge-agent", groups: [GROUPS.aiAgents], typ: "JWT" });
    adminToken = await idp.token({ clientId: "human-ops", groups: [GROUPS.dba], claims: { idtyp: "user", scp: "access_as_user", name: "Olga Ops" } });
    await gatewayUp();
    await agentUp();
  });

  after(async () => {
    await kill(agent);
    await kill(gateway);
    await target?.stop();
    await idp?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("psql through gateway → agent → PostgreSQL, gated like the embedded path", async () => {
    const env = { ...process.env, PGPASSWORD: token, PGCONNECT_TIMEOUT: "10" };
    const r = await runProcess("psql", [`host=127.0.0.1 port=${pgPort} dbname=pg-edge user=agent sslmode=disable`, "-X", "-A", "-t"], { env, input: "SELECT name FROM items ORDER BY id;\nSELECT current_user;\nDROP DATABASE postgres;\n" });
    assert.match(r.stdout, /alpha\nbeta\nedge_app/);
    assert.match(r.stderr, /GH-POLICY-001.*no-drop-database/);
  });

  test("pgbench (simple and prepared) through the tunnel", async () => {
    const env = { ...process.env, PGPASSWORD: token };
    for (const mode of ["simple", "prepared"]) {
      const r = await runProcess("pgbench", ["-n", "-T", "2", "-c", "4", "-M", mode, "-f", "-", "-h", "127.0.0.1", "-p", String(pgPort), "-U", "agent", "pg-edge"], { env, input: "SELECT name FROM items WHERE id = 1;\n", timeoutMs: 30_000 });
      assert.equal(r.code, 0, r.stderr);
      const tps = Number(/tps = ([\d.]+)/.exec(r.stdout)?.[1]);
      assert.ok(tps > 10, `pgbench ${mode}: ${tps} tps`);
      assert.match(r.stdout, /number of failed transactions: 0/);
    }
  });

  test("200 concurrent sessions through one agent, each seeing only its own results", { timeout: 120_000 }, async () => {
    const clients = Array.from({ length: 200 }, () => client());
    await Promise.all(clients.map((c) => c.connect()));
    const pids = new Set<number>();
    await Promise.all(
      clients.map(async (c, i) => {
        for (let q = 0; q < 5; q++) {
          const tag = `s${i}-q${q}-${randomBytes(4).toString("hex")}`;
          // A payload large enough to span many DATA frames, interleaved with the other sessions.
          const r = await c.query("SELECT $1::text AS tag, repeat($1::text, 2000) AS bulk, pg_backend_pid() AS pid", [tag]);
          assert.equal(r.rows[0].tag, tag);
          assert.equal(r.rows[0].bulk, tag.repeat(2000));
          if (q === 0) pids.add(r.rows[0].pid);
          else assert.ok(pids.has(r.rows[0].pid));
        }
      }),
    );
    assert.equal(pids.size, 200, "each session has its own target backend");
    await Promise.all(clients.map((c) => c.end()));
  });

  test("a CancelRequest reaches the target through the agent", async () => {
    const c = client();
    await c.connect();
    const running = c.query("SELECT pg_sleep(20)").then(
      () => undefined,
      (e: Error & { code?: string }) => e,
    );
    await new Promise((r) => setTimeout(r, 300));
    const started = Date.now();
    const k = c as unknown as { processID: number; secretKey: number };
    await sendCancelRequest("127.0.0.1", pgPort, k.processID, k.secretKey);
    const err = await running;
    assert.equal(err?.code, "57014", "canceling statement due to user request");
    assert.ok(Date.now() - started < 5000);
    assert.equal((await c.query("SELECT 1 AS one")).rows[0].one, 1, "the session goes on");
    await c.end();
  });

  test("agents list shows the agent connected, with version and connections", async () => {
    const r = await exec(process.execPath, [BIN, "agents", "list", "--json"], { env: { ...process.env, GATEHOUSE_API: `http://127.0.0.1:${apiPort}`, GATEHOUSE_TOKEN: adminToken } });
    const [a] = JSON.parse(r.stdout) as Array<{ name: string; status: string; connections: string[]; tunnels: Array<{ version: string }> }>;
    assert.equal(a!.name, "edge");
    assert.equal(a!.status, "connected");
    assert.deepEqual([...a!.connections].sort(), ["pg-edge", "pg-stray"]);
    assert.match(a!.tunnels[0]!.version, /^\d+\.\d+\.\d+/);
    const metrics = await (await fetch(`http://127.0.0.1:${apiPort}/metrics`)).text();
    assert.match(metrics, /gatehouse_agents_connected\{agent="edge"\} 1/);
  });

  test("a target missing from the agent's targets file is refused by the agent, before its credential is resolved", async () => {
    assert.match(agent!.out(), /"targets":1/, "the agent started with its targets file");
    assert.doesNotMatch(agent!.out(), /no --targets file/);
    const c = client({ database: "pg-stray" });
    const err = await c.connect().then(
      () => undefined,
      (e: Error & { code?: string }) => e,
    );
    assert.equal(err?.code, "08004");
    assert.match(err!.message, /GH-AGENT-007.*connection pg-stray: refused by the agent/);
    assert.doesNotMatch(err!.message, /5432|EDGE_PG_PASSWORD/, "the client is not told the internal address or credential");
    await waitFor(() => agent!.out().includes("127.0.0.1:5432 is not in the agent's targets file"), "the agent to log what it refused");
    // The listed target still serves.
    const ok = client();
    await ok.connect();
    assert.equal((await ok.query("SELECT current_user AS u")).rows[0].u, "edge_app");
    await ok.end();
  });

  test("the gateway never holds the target credential: config, environment, logs, heap", async () => {
    // Use the credential (a session through the agent) right before looking.
    const c = client();
    await c.connect();
    assert.equal((await c.query("SELECT current_user AS u")).rows[0].u, "edge_app");
    await c.end();
    assert.ok(!readFileSync(configFile, "utf8").includes(PASSWORD));
    assert.ok(!readFileSync(`/proc/${gateway!.child.pid}/environ`).includes(Buffer.from(PASSWORD)), "not in the gateway's environment");
    assert.ok(!gateway!.out().includes(PASSWORD), "not in the gateway's logs");
    assert.ok(agent!.out().length > 0 && !agent!.out().includes(PASSWORD), "not even in the agent's logs");
    const before = new Set(readdirSync(dir));
    gateway!.child.kill("SIGUSR2");
    const snap = await waitFor(() => readdirSync(dir).find((f) => f.endsWith(".heapsnapshot") && !before.has(f) && readFileSync(join(dir, f)).length > 0), "the heap snapshot", 60_000);
    await waitFor(() => {
      try {
        JSON.parse(readFileSync(join(dir, snap), "utf8"));
        return true;
      } catch {
        return false;
      }
    }, "the heap snapshot to be complete", 60_000, 200);
    const heap = readFileSync(join(dir, snap));
    assert.ok(heap.length > 1_000_000, "a real heap snapshot");
    assert.ok(heap.includes(Buffer.from("env:EDGE_PG_PASSWORD")), "the snapshot holds the gateway's strings (the reference is there)");
    assert.equal(heap.indexOf(Buffer.from(PASSWORD)), -1, "the password is not in the gateway's heap");
    rmSync(join(dir, snap));
  });

  test("agent killed mid-session: the client gets a clean error at once; new sessions name the agent; a restart serves again", { timeout: 90_000 }, async () => {
    const c = client();
    await c.connect();
    const running = c.query("SELECT pg_sleep(30)").then(
      () => undefined,
      (e: Error) => e,
    );
    await new Promise((r) => setTimeout(r, 300));
    const killedAt = Date.now();
    await kill(agent);
    const err = await running;
    assert.ok(err instanceof Error, "the query fails");
    assert.ok(Date.now() - killedAt < 5000, `error after ${Date.now() - killedAt} ms`);
    assert.match(err.message, /GH-AGENT-001/);
    const refused = await client().connect().then(
      () => undefined,
      (e: Error) => e,
    );
    assert.ok(refused instanceof Error);
    assert.match(refused.message, /GH-AGENT-001.*agent "edge"/);
    await agentUp();
    const again = client();
    await again.connect();
    assert.equal((await again.query("SELECT count(*)::int AS n FROM items")).rows[0].n, 2);
    await again.end();
  });

  test("gateway killed: the agent reconnects on its own when it returns", { timeout: 120_000 }, async () => {
    const connects = () => (agent!.out().match(/connected to the gateway/g) ?? []).length;
    const before = connects();
    await kill(gateway);
    await waitFor(() => agent!.out().includes("reconnecting to the gateway"), "the agent to notice", 30_000);
    await gatewayUp();
    await waitFor(() => connects() > before, "the agent to reconnect", 60_000);
    const c = client();
    await c.connect();
    assert.equal((await c.query("SELECT 1 AS one")).rows[0].one, 1);
    await c.end();
  });

  test("revoking the agent drops its tunnel at once, and its secret no longer works", { timeout: 60_000 }, async () => {
    const c = client();
    await c.connect();
    const r = await exec(process.execPath, [BIN, "agents", "revoke", "edge"], { env: { ...process.env, GATEHOUSE_API: `http://127.0.0.1:${apiPort}`, GATEHOUSE_TOKEN: adminToken } });
    assert.match(r.stdout, /revoked; 1 tunnel\(s\) dropped/);
    const err = await c.query("SELECT 1").then(
      () => undefined,
      (e: Error) => e,
    );
    assert.ok(err instanceof Error, "the session through the revoked agent ends");
    await waitFor(() => agent!.out().includes("GH-AGENT-002"), "the agent's reconnect to be refused", 30_000);
    const list = await (await fetch(`http://127.0.0.1:${apiPort}/api/v1/agents`, { headers: { authorization: `Bearer ${adminToken}` } })).json() as { items: Array<{ status: string }> };
    assert.equal(list.items[0]!.status, "revoked");
  });
});

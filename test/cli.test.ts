// The `gatehouse` binary as users run it: exit codes, JSON output, error codes with hints.

import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { promisify } from "node:util";

const exec = promisify(execFile);
const BIN = "bin/gatehouse.js";
const dir = mkdtempSync(join(tmpdir(), "gh-cli-"));

async function gh(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await exec(process.execPath, [BIN, ...args], { env: { ...process.env, ...env } });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
}

const policyCheck = (sql: string, groups = "ai-agents", extra: string[] = []) =>
  gh(["policy", "check", "--config", "examples/policy-sample.yaml", "--connection", "pg-prod", "--groups", groups, "--sql", sql, ...extra]);

describe("gatehouse policy check (the sample policy)", () => {
  test("a schema change by ai-agents is a review with the rule's approvers", async () => {
    const r = await policyCheck("ALTER TABLE users ADD COLUMN age int");
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { action: "review", rule: "schema-changes", message: "schema changes need a DBA's approval", review: { approvers: ["dba"], quorum: 1, expiresSeconds: 3600, mode: "hold", notify: [] } });
  });
  test("DROP DATABASE is denied for everyone, with the rule's message", async () => {
    for (const groups of ["ai-agents", "dba"]) {
      const d = JSON.parse((await policyCheck("DROP DATABASE app", groups)).stdout);
      assert.deepEqual([d.action, d.rule, d.message], ["deny", "no-drop-database", "dropping a database is never allowed through Gatehouse"]);
    }
  });
  test("a read is allowed; a hidden write in a CTE is not a read; garbage is never allowed", async () => {
    assert.equal(JSON.parse((await policyCheck("SELECT * FROM users")).stdout).action, "allow");
    assert.equal(JSON.parse((await policyCheck("WITH d AS (DELETE FROM users RETURNING *) SELECT * FROM d")).stdout).rule, "default");
    assert.deepEqual(JSON.parse((await policyCheck("SELEC * FRM users")).stdout).action, "review");
  });
  test("--expect turns a mismatch into exit 3 (for CI); --explain adds the classification", async () => {
    assert.equal((await policyCheck("DROP DATABASE app", "ai-agents", ["--expect", "deny"])).code, 0);
    assert.equal((await policyCheck("DROP DATABASE app", "ai-agents", ["--expect", "allow"])).code, 3);
    const e = JSON.parse((await policyCheck("DELETE FROM users", "ai-agents", ["--explain"])).stdout);
    assert.deepEqual(e.operation.sql.statements[0].flags, ["delete-without-where"]);
  });
  test("an unknown connection is a user error (exit 2) naming the known ones", async () => {
    const r = await gh(["policy", "check", "--config", "examples/policy-sample.yaml", "--connection", "nope", "--sql", "select 1"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /GH-POLICY-004.*known: pg-prod/);
  });
});

describe("gatehouse config", () => {
  test("check: ok summary, and errors with key paths and exit 2", async () => {
    const ok = await gh(["config", "check", "examples/gatehouse.yaml"], { ENTRA_TENANT_ID: "t", GATEHOUSE_APP_ID: "a" });
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /ok — 1 issuer\(s\), 1 connection\(s\), 4 rule\(s\), store sqlite/);
    const bad = join(dir, "bad.yaml");
    writeFileSync(bad, "policies:\n  - name: x\n    decision: maybe\n");
    const r = await gh(["config", "check", bad]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /GH-CONFIG-001/);
    assert.match(r.stderr, /policies\[0\]\.decision: /);
    const missing = await gh(["config", "check", "examples/gatehouse.yaml"], { ENTRA_TENANT_ID: "", GATEHOUSE_APP_ID: "" });
    assert.match(missing.stderr, /GH-CONFIG-002[\s\S]*ENTRA_TENANT_ID is not set/);
  });
  test("check --json masks literal secrets but keeps references", async () => {
    const f = join(dir, "secret.yaml");
    writeFileSync(f, "connections:\n  - name: a\n    protocol: postgres\n    postgres: { host: h, database: d, user: u, password: hunter2 }\n  - name: b\n    protocol: postgres\n    postgres: { host: h, database: d, user: u, password: env:PW }\n");
    const r = await gh(["config", "check", "--json", f]);
    assert.ok(!r.stdout.includes("hunter2"));
    const cfg = JSON.parse(r.stdout);
    assert.equal(cfg.connections[0].postgres.password, "***");
    assert.equal(cfg.connections[1].postgres.password, "env:PW");
  });
  test("schema prints a JSON Schema that describes the sections", async () => {
    const r = await gh(["config", "schema"]);
    const s = JSON.parse(r.stdout);
    for (const k of ["identity", "connections", "policies", "store", "listeners", "api"]) assert.ok(s.properties[k], k);
    assert.equal(s.additionalProperties, false);
  });
});

describe("gatehouse agent --targets", () => {
  test("a missing or bad targets file stops the agent at start, naming the file and what is wrong", async () => {
    const env = { GATEHOUSE_AGENT_TOKEN: "gha_x" };
    const missing = await gh(["agent", "--gateway", "http://127.0.0.1:9", "--targets", join(dir, "nope.yaml")], env);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /GH-CONFIG-003.*nope\.yaml: file not found/);
    writeFileSync(join(dir, "bad-targets.yaml"), "targets:\n  - http: https://ci.internal/api\n");
    const bad = await gh(["agent", "--gateway", "http://127.0.0.1:9", "--targets", join(dir, "bad-targets.yaml")], env);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /GH-CONFIG-001.*bad-targets\.yaml: targets\[0\]: http is an origin/);
  });
});

describe("gatehouse dev token", () => {
  test("refused unless the config enables the dev issuer", async () => {
    const r = await gh(["dev", "token", "--config", "examples/policy-sample.yaml"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /GH-DEV-001/);
  });
  test("mints an Entra-shaped token with the requested groups", async () => {
    const f = join(dir, "dev.yaml");
    writeFileSync(f, `identity:\n  devIssuer: { enabled: true, keyFile: ${join(dir, "key.json")} }\n`);
    const r = await gh(["dev", "token", "--config", f, "--group", "ai-agents", "--role", "Db.Read"]);
    assert.equal(r.code, 0, r.stderr);
    const claims = JSON.parse(Buffer.from(r.stdout.trim().split(".")[1]!, "base64url").toString());
    assert.deepEqual([claims.groups, claims.roles, claims.idtyp, claims.iss], [["ai-agents"], ["Db.Read"], "app", "urn:gatehouse:dev"]);
  });
});

test("gateway: a port in use stops the start with GH-CONFIG-004 naming the key and address (exit 2), nothing left running", async () => {
  const { createServer } = await import("node:net");
  const taken = createServer();
  await new Promise<void>((r) => taken.listen(0, "127.0.0.1", r));
  const port = (taken.address() as { port: number }).port;
  try {
    for (const [key, yaml] of [
      ["api", `api: { host: 127.0.0.1, port: ${port} }\nlisteners: { postgres: { enabled: false } }`],
      ["listeners.postgres", `api: { host: 127.0.0.1, port: 0 }\nlisteners: { postgres: { host: 127.0.0.1, port: ${port}, tls: { selfSignedDir: ${join(dir, "tls")} } } }`],
    ] as const) {
      const f = join(dir, `inuse-${key}.yaml`);
      writeFileSync(f, `store: { url: "sqlite:${join(dir, `inuse-${key}.db`)}" }\n${yaml}\n`);
      const r = await gh(["gateway", "--config", f]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, new RegExp(`error GH-CONFIG-004: The gateway cannot listen on a configured address: ${key.replace(".", "\\.")}: 127\\.0\\.0\\.1:${port}: the port is in use \\(EADDRINUSE\\)`));
      assert.doesNotMatch(r.stderr, /internal error/);
    }
  } finally {
    taken.close();
  }
});

test("gateway: starts on a config, answers /healthz, and shuts down cleanly on SIGTERM", async () => {
  const f = join(dir, "gw.yaml");
  const port = 20000 + Math.floor(Math.random() * 20000);
  writeFileSync(f, `store: { url: "sqlite:${join(dir, "gw.db")}" }\napi: { port: ${port} }\nlisteners: { postgres: { enabled: false } }\nlogging: { level: info }\n`);
  const child = spawn(process.execPath, [BIN, "gateway", "--config", f], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout.on("data", (b) => (out += b));
  const exited = new Promise<number | null>((r) => child.on("exit", (c) => r(c)));
  try {
    for (let i = 0; i < 100 && !out.includes("gateway started"); i++) await new Promise((r) => setTimeout(r, 100));
    const res = await fetch(`http://127.0.0.1:${port}/healthz`);
    assert.equal(res.status, 200);
    child.kill("SIGTERM");
    assert.equal(await exited, 0);
    const lines = out.trim().split("\n").map((l) => JSON.parse(l));
    assert.ok(lines.some((l) => l.msg === "gateway stopping"));
    assert.ok(lines.every((l) => l.service === "gatehouse" && typeof l.time === "string"), "JSON logs");
  } finally {
    child.kill("SIGKILL");
  }
  assert.ok(readFileSync(join(dir, "gw.db")).length > 0);
});

test("audit verify: intact chain exits 0; an edited event is named and exits 4 (gateway stopped)", async () => {
  const { openStore } = await import("../src/store/store.ts");
  const { AuditLog } = await import("../src/audit/log.ts");
  const dbFile = join(dir, "audit.db");
  const f = join(dir, "audit.yaml");
  writeFileSync(f, `store: { url: "sqlite:${dbFile}" }\n`);
  const store = await openStore(`sqlite:${dbFile}`);
  const log = new AuditLog(store);
  for (let i = 0; i < 5; i++) await log.append({ type: "test.event", data: { i } });
  const ok = await gh(["audit", "verify", "--config", f]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /audit chain intact: 5 events, head #5 [0-9a-f]{64}/);
  await store.db.updateTable("audit_events").set({ data: '{"i":42}' }).where("seq", "=", 3).execute();
  await store.close();
  const broken = await gh(["audit", "verify", "--config", f, "--json"]);
  assert.equal(broken.code, 4);
  assert.deepEqual(JSON.parse(broken.stdout).brokenAt, { seq: 3, reason: "event content does not match its hash (edited)" });
});

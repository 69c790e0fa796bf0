// Issue 3, "Done when": the agent logs in to the target with the connection's own credentials.
// A private PostgreSQL server (initdb'd for this file only) demands SCRAM-SHA-256 from one role
// and md5 from another, and TLS for the SCRAM role; the connections name their passwords by
// reference (`env:NAME`, `file:/path`) and the agent resolves them. The server's own log and
// pg_stat_ssl prove which method and transport were used; a wrong password ends in a clean
// GH-PG-003 for the client — promptly, and without the password in the text.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import pg from "pg";
import { gatewayConfig } from "./helpers/clients.ts";
import { startTestGateway, type TestGateway } from "./helpers/gateway.ts";
import { type PrivatePostgres, privatePostgresUnavailable, startPrivatePostgres } from "./helpers/private-pg.ts";

const unavailable = privatePostgresUnavailable();
const SCRAM_PW = `scram-${randomBytes(12).toString("hex")}`;
const MD5_PW = `md5pw-${randomBytes(12).toString("hex")}`;
const WRONG_PW = `wrong-${randomBytes(12).toString("hex")}`;
const ENV_SCRAM = `GH_E2E_SCRAM_PW_${randomBytes(3).toString("hex").toUpperCase()}`;
const ENV_WRONG = `GH_E2E_WRONG_PW_${randomBytes(3).toString("hex").toUpperCase()}`;

let srv: PrivatePostgres;
let t: TestGateway;
let token: string;

before(async () => {
  if (unavailable) return;
  srv = await startPrivatePostgres({
    hba: [
      // SCRAM only over TLS; md5 with or without; everything else is turned away.
      "hostssl all gh_scram 127.0.0.1/32 scram-sha-256",
      "host    all gh_md5   127.0.0.1/32 md5",
      "host    all all      127.0.0.1/32 reject",
    ],
  });
  await srv.sql(`CREATE ROLE gh_scram LOGIN PASSWORD '${SCRAM_PW}'`);
  await srv.sql(`SET password_encryption = 'md5'; CREATE ROLE gh_md5 LOGIN PASSWORD '${MD5_PW}'`);
  await srv.sql("CREATE DATABASE app OWNER gh_scram");
  await srv.sql("CREATE TABLE notes (id int PRIMARY KEY, body text); INSERT INTO notes VALUES (1, 'private server'); GRANT SELECT ON notes TO gh_md5", "app");
  await srv.sql("ALTER TABLE notes OWNER TO gh_scram", "app");

  process.env[ENV_SCRAM] = SCRAM_PW;
  process.env[ENV_WRONG] = WRONG_PW;
  const md5File = join(srv.dir, "md5-password");
  writeFileSync(md5File, `${MD5_PW}\n`, { mode: 0o600 });
  const wrongFile = join(srv.dir, "wrong-password");
  writeFileSync(wrongFile, `${WRONG_PW}\n`, { mode: 0o600 });
  // A CA that did not sign the server's certificate: verify-full must refuse the server.
  const otherCa = join(srv.dir, "other-ca.crt");
  execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", join(srv.dir, "other-ca.key"), "-out", otherCa], { stdio: "ignore" });

  const target = (name: string, over: Record<string, unknown>) => ({ name, protocol: "postgres" as const, postgres: { host: srv.host, port: srv.port, database: "app", user: "gh_scram", password: `env:${ENV_SCRAM}`, tls: "require" as const, ...over } });
  t = await startTestGateway({
    extraConfig: (c) => {
      c.connections!.push(
        target("scram-tls", {}),
        target("scram-verify-full", { tls: "verify-full", ca: `file:${srv.certFile}` }),
        target("scram-wrong-ca", { tls: "verify-full", ca: `file:${otherCa}` }),
        target("scram-no-tls", { tls: "disable" }),
        target("scram-wrong", { password: `env:${ENV_WRONG}` }),
        target("scram-unset-env", { password: "env:GH_E2E_NOT_SET_ANYWHERE" }),
        target("md5-tls", { user: "gh_md5", password: `file:${md5File}` }),
        target("md5-plain", { user: "gh_md5", password: `file:${md5File}`, tls: "disable" }),
        target("md5-wrong", { user: "gh_md5", password: `file:${wrongFile}`, tls: "disable" }),
      );
    },
  });
  token = await t.agentToken();
});

after(async () => {
  await t?.close();
  await srv?.stop();
  delete process.env[ENV_SCRAM];
  delete process.env[ENV_WRONG];
});

async function through(connection: string): Promise<pg.Client> {
  const c = new pg.Client({ ...gatewayConfig(t, token), database: connection });
  c.on("error", () => {});
  await c.connect();
  return c;
}

const WHO = "SELECT current_user AS u, (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()) AS ssl, (SELECT body FROM notes WHERE id = 1) AS body";

test("the passwords are stored as SCRAM and md5 on the private server", { skip: unavailable }, async () => {
  const rows = await srv.sql("SELECT rolname || ' ' || split_part(rolpassword, '$', 1) FROM pg_authid WHERE rolname IN ('gh_scram', 'gh_md5') ORDER BY rolname");
  const [md5Line, scramLine] = rows.trim().split("\n");
  assert.match(md5Line!, /^gh_md5 md5[0-9a-f]{32}$/);
  assert.equal(scramLine, "gh_scram SCRAM-SHA-256");
});

for (const c of [
  { connection: "scram-tls", user: "gh_scram", ssl: true, method: "scram-sha-256" },
  { connection: "scram-verify-full", user: "gh_scram", ssl: true, method: "scram-sha-256" },
  { connection: "md5-tls", user: "gh_md5", ssl: true, method: "md5" },
  { connection: "md5-plain", user: "gh_md5", ssl: false, method: "md5" },
]) {
  test(`${c.connection}: the agent logs in as ${c.user} with ${c.method}${c.ssl ? " over TLS" : " without TLS"}`, { skip: unavailable, timeout: 10_000 }, async () => {
    const logBefore = srv.log().length;
    const client = await through(c.connection);
    try {
      const r = await client.query(WHO);
      assert.deepEqual(r.rows[0], { u: c.user, ssl: c.ssl, body: "private server" });
    } finally {
      await client.end();
    }
    // PostgreSQL logs the method each login was authenticated with (log_connections).
    const log = srv.log().slice(logBefore);
    assert.match(log, new RegExp(`connection authenticated: identity="${c.user}" method=${c.method}`));
    assert.ok(!log.includes(SCRAM_PW) && !log.includes(MD5_PW));
  });
}

for (const c of [
  { connection: "scram-wrong", expect: /GH-PG-003: .*password authentication failed for user "gh_scram"/ },
  { connection: "md5-wrong", expect: /GH-PG-003: .*password authentication failed for user "gh_md5"/ },
  { connection: "scram-no-tls", expect: /GH-PG-003: .*(pg_hba\.conf rejects connection|no pg_hba\.conf entry)/ },
  { connection: "scram-unset-env", expect: /^GH-PG-003: / },
  { connection: "scram-wrong-ca", expect: /GH-PG-003: .*TLS to the target failed/ },
]) {
  test(`${c.connection}: the client gets a clean GH-PG-003, promptly, with no password in it`, { skip: unavailable, timeout: 10_000 }, async () => {
    const started = Date.now();
    const client = new pg.Client({ ...gatewayConfig(t, token), database: c.connection });
    client.on("error", () => {});
    const err = await client.connect().then(
      () => assert.fail("the login succeeded"),
      (e: Error & { code?: string; severity?: string }) => e,
    );
    await client.end().catch(() => {});
    assert.ok(Date.now() - started < 5000, `answered in ${Date.now() - started} ms`);
    assert.equal(err.code, "08006");
    assert.match(err.message, c.expect);
    for (const secret of [SCRAM_PW, MD5_PW, WRONG_PW, token]) assert.ok(!err.message.includes(secret), "no credential in the error");
    // The gateway keeps serving the good connections.
    const ok = await through("scram-tls");
    assert.equal((await ok.query("SELECT 1 AS one")).rows[0].one, 1);
    await ok.end();
  });
}

// The gateway process as a newcomer meets it: API up, readiness, metrics, OpenAPI, bearer auth
// with tokens from a real OIDC provider, problem+json errors, and the policy dry run.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { parseConfig } from "../src/config/load.ts";
import type { ConfigInput } from "../src/config/schema.ts";
import { startGateway, type Gateway } from "../src/main.ts";
import { Writable } from "node:stream";
import { createLogger } from "../src/observability/logger.ts";
import { startTestIdp, type TestIdp } from "./helpers/idp.ts";

let idp: TestIdp;
let gw: Gateway;
const logLines: string[] = [];
const logSink = new Writable({
  write(chunk, _enc, cb) {
    logLines.push(String(chunk));
    cb();
  },
});

before(async () => {
  idp = await startTestIdp();
  const input: ConfigInput = {
    identity: { issuers: [{ issuer: idp.issuer, audiences: [idp.audience] }], groupNames: { "11111111-1111-1111-1111-111111111111": "ai-agents" } },
    store: { url: "sqlite::memory:" },
    api: { host: "127.0.0.1", port: 0, adminGroups: ["gh-admins"] },
    listeners: { postgres: { enabled: false } },
    connections: [{ name: "pg-prod", protocol: "postgres", postgres: { host: "127.0.0.1", database: "x", user: "u" } }],
    policies: [
      { name: "agents-read", principals: { groups: ["ai-agents"] }, operations: { kinds: ["read"] }, decision: "allow" },
      { name: "schema-changes", principals: { groups: ["ai-agents"] }, operations: { kinds: ["ddl"] }, decision: "review", review: { approvers: ["dba"] } },
      { name: "no-drop-database", operations: { flags: ["drop-database"] }, decision: "deny", message: "never" },
    ],
  };
  gw = await startGateway(parseConfig(input), { logger: createLogger("debug", logSink) });
});
after(async () => {
  await gw?.close();
  await idp?.close();
});

const get = (path: string, token?: string) => fetch(`${gw.apiUrl}${path}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
const post = (path: string, body: unknown, token: string) =>
  fetch(`${gw.apiUrl}${path}`, { method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, body: JSON.stringify(body) });

describe("gateway API", () => {
  test("health, readiness, OpenAPI", async () => {
    assert.equal((await get("/healthz")).status, 200);
    const ready = await get("/readyz");
    assert.equal(ready.status, 200);
    assert.deepEqual(await ready.json(), { status: "ready", store: "sqlite" });
    const doc = (await (await get("/api/v1/openapi.json")).json()) as { openapi: string; paths: Record<string, unknown> };
    assert.equal(doc.openapi, "3.1.0");
    for (const path of ["/healthz", "/readyz", "/metrics", "/api/v1/whoami", "/api/v1/connections", "/api/v1/policy/check"]) assert.ok(doc.paths[path], `${path} is documented`);
  });

  test("whoami: an Entra-shaped app-only token is a service principal with mapped groups and roles", async () => {
    const token = await idp.token({ clientId: "agent-1", groups: ["11111111-1111-1111-1111-111111111111"], roles: ["Db.Read"], typ: "JWT" });
    const res = await get("/api/v1/whoami", token);
    assert.equal(res.status, 200);
    const p = (await res.json()) as Record<string, unknown>;
    assert.equal(p.kind, "service");
    assert.deepEqual(p.groups, ["11111111-1111-1111-1111-111111111111", "ai-agents"]);
    assert.deepEqual(p.roles, ["Db.Read"]);
    assert.equal(p.subject, `${idp.tenantId}/${idp.objectIdFor("agent-1")}`);
    assert.ok(!JSON.stringify(p).includes(token));
  });

  test("no token, garbage token, expired token: 401 problem+json with the code, never echoing the token", async () => {
    const none = await get("/api/v1/whoami");
    assert.equal(none.status, 401);
    assert.equal(none.headers.get("content-type"), "application/problem+json; charset=utf-8");
    assert.equal(((await none.json()) as { code: string }).code, "GH-AUTH-001");
    const garbage = await get("/api/v1/whoami", "not.a.jwt");
    assert.equal(((await garbage.json()) as { code: string }).code, "GH-AUTH-002");
    const expired = await idp.sign({ iss: idp.issuer, aud: idp.audience, sub: "x", oid: "x", tid: idp.tenantId, exp: Math.floor(Date.now() / 1000) - 3600, iat: Math.floor(Date.now() / 1000) - 7200 });
    const r = await get("/api/v1/whoami", expired);
    const body = await r.text();
    assert.equal(r.status, 401);
    assert.match(body, /GH-AUTH-004/);
    assert.ok(!body.includes(expired));
  });

  test("policy dry run over the API, and admin-only simulation", async () => {
    const token = await idp.token({ clientId: "agent-2", groups: ["11111111-1111-1111-1111-111111111111"] });
    const r1 = (await (await post("/api/v1/policy/check", { connection: "pg-prod", sql: "ALTER TABLE t ADD COLUMN c int" }, token)).json()) as { decision: { action: string; rule: string } };
    assert.deepEqual([r1.decision.action, r1.decision.rule], ["review", "schema-changes"]);
    const r2 = (await (await post("/api/v1/policy/check", { connection: "pg-prod", sql: "DROP DATABASE prod" }, token)).json()) as { decision: { action: string; message: string } };
    assert.deepEqual([r2.decision.action, r2.decision.message], ["deny", "never"]);
    const sim = await post("/api/v1/policy/check", { connection: "pg-prod", sql: "select 1", principal: { groups: ["x"] } }, token);
    assert.equal(sim.status, 403);
    assert.equal(((await sim.json()) as { code: string }).code, "GH-API-003");
    const unknown = await post("/api/v1/policy/check", { connection: "nope", sql: "select 1" }, token);
    assert.equal(((await unknown.json()) as { code: string }).code, "GH-POLICY-004");
    const bad = await post("/api/v1/policy/check", { sql: 1 }, token);
    assert.equal(bad.status, 400);
    assert.equal(((await bad.json()) as { code: string }).code, "GH-API-002");
  });

  test("logs are JSON and never contain a token, valid or not", async () => {
    const good = await idp.token({ clientId: "agent-log" });
    await get("/api/v1/whoami", good);
    await get("/api/v1/whoami", `${good}x`);
    await post("/api/v1/policy/check", { connection: "pg-prod", sql: "select 1" }, good);
    assert.ok(logLines.length > 0);
    for (const line of logLines) {
      assert.doesNotThrow(() => JSON.parse(line));
      assert.ok(!line.includes(good.split(".")[2]!), "no token signature in logs");
    }
  });

  test("metrics expose auth failures by code; unknown routes are problem+json 404", async () => {
    const text = await (await get("/metrics")).text();
    assert.match(text, /gatehouse_auth_failures_total\{code="GH-AUTH-001",surface="api"\} \d+/);
    assert.match(text, /gatehouse_audit_events_total\{type="gateway.started"\} 1/);
    const nf = await get("/nope");
    assert.equal(nf.status, 404);
    assert.equal(((await nf.json()) as { code: string }).code, "GH-API-001");
  });
});

// The audit trail as auditors use it: the REST API (auditor groups only; every read audited),
// the `gatehouse audit …` commands through the API and directly on the store, a signed checkpoint
// exported and used to catch a truncated tail after the checkpoint rows were deleted too, and
// config change events across gateway restarts.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { CheckpointSigner } from "../src/audit/checkpoints.ts";
import { SIEM_FIELDS } from "../src/audit/export.ts";
import { parseConfig } from "../src/config/load.ts";
import { startGateway } from "../src/main.ts";
import { createLogger } from "../src/observability/logger.ts";
import { openStore } from "../src/store/store.ts";
import { connectGateway } from "./helpers/clients.ts";
import { startTestGateway, type TestGateway } from "./helpers/gateway.ts";

const exec = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), "gh-audit-api-"));
const dbFile = join(dir, "gw.db");
const keyFile = join(dir, "audit-key.pem");
const keyPem = String(generateKeyPairSync("ed25519").privateKey.export({ format: "pem", type: "pkcs8" }));
writeFileSync(keyFile, keyPem);
const signer = new CheckpointSigner(keyPem);
const pubFile = join(dir, "audit-key.pub.pem");
writeFileSync(pubFile, signer.publicKeyPem);
const configFile = join(dir, "gatehouse.yaml");
writeFileSync(configFile, `store: { url: "sqlite:${dbFile}" }\naudit: { signingKey: "file:${keyFile}" }\n`);

async function gh(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await exec(process.execPath, ["bin/gatehouse.js", ...args], { env: { ...process.env, ...env } });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
}

let t: TestGateway;
let auditor: string;
let agent: string;
before(async () => {
  t = await startTestGateway({
    extraConfig: (c) => {
      c.store = { url: `sqlite:${dbFile}` };
      c.audit = { auditorGroups: ["dba"], signingKey: `file:${keyFile}` };
    },
  });
  auditor = await t.humanToken(["dba"], "Alice Auditor");
  agent = await t.agentToken();
  const client = await connectGateway(t, agent);
  await client.query("select 1 as one");
  await client.query("DROP DATABASE nope").catch(() => {});
  await client.end();
});
after(async () => {
  await t?.close();
  rmSync(dir, { recursive: true, force: true });
});

const api = (path: string, token: string | undefined, init: RequestInit = {}) =>
  fetch(`${t.gw.apiUrl}${path}`, { ...init, headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(init.body ? { "content-type": "application/json" } : {}) } });
const json = async <T = Record<string, unknown>>(r: Response) => (await r.json()) as T;
type Page = { items: Array<Record<string, unknown> & { seq: number; type: string; principal: { subject: string; name: string } | null; data: Record<string, unknown> }>; next: string | null };

async function lastEvent(type: string) {
  await t.gw.audit.drain(); // journal mode: appended events reach the store within milliseconds
  return (await t.gw.store.db.selectFrom("audit_events").selectAll().where("type", "=", type).orderBy("seq", "desc").limit(1).executeTakeFirst()) ?? undefined;
}

describe("audit API (auditor groups; reads are audited)", () => {
  test("only auditors: no token 401, an agent 403 on every route", async () => {
    assert.equal((await api("/api/v1/audit/events", undefined)).status, 401);
    for (const [method, path] of [["GET", "/api/v1/audit/events"], ["GET", "/api/v1/audit/export"], ["POST", "/api/v1/audit/verify"], ["GET", "/api/v1/audit/checkpoints"], ["POST", "/api/v1/audit/checkpoints"]] as const) {
      const r = await api(path, agent, { method, ...(method === "POST" ? { body: "{}" } : {}) });
      assert.equal(r.status, 403, path);
      assert.equal((await json(r)).code, "GH-API-003");
    }
  });

  test("search: who, what, which decision and rule; keyset pages; the search is itself audited", async () => {
    const r = await api("/api/v1/audit/events?type=operation.&decision=deny", auditor);
    assert.equal(r.status, 200);
    const page = await json<Page>(r);
    assert.equal(page.items.length, 1);
    const e = page.items[0]!;
    assert.equal(e.rule, "no-drop-database");
    assert.match(String(e.data.text), /DROP DATABASE nope/);
    assert.ok(e.principal?.subject, "the agent's subject");

    const seqs: number[] = [];
    let next: string | null = null;
    do {
      const p: Page = await json<Page>(await api(`/api/v1/audit/events?type=session.&limit=1${next ? `&cursor=${next}` : ""}`, auditor));
      seqs.push(...p.items.map((i) => i.seq));
      next = p.next;
    } while (next);
    assert.ok(seqs.length >= 2 && seqs.every((s, i) => i === 0 || s < seqs[i - 1]!), `newest first: ${seqs}`);

    const searched = await lastEvent("audit.searched");
    assert.equal(searched?.principal_name, "Alice Auditor");
    assert.deepEqual(JSON.parse(searched!.data).filters, { type: "session." });

    const bad = await api("/api/v1/audit/events?principle=x", auditor);
    assert.equal(bad.status, 400, "a misspelt filter is refused, not ignored");
    assert.equal((await api("/api/v1/audit/events?from=yesterday", auditor)).status, 400);
  });

  test("export: JSON Lines and CSV with SIEM field names, streamed, up to its own audit event", async () => {
    const r = await api("/api/v1/audit/export?format=jsonl&type=operation.", auditor);
    assert.equal(r.status, 200);
    assert.match(r.headers.get("content-type") ?? "", /application\/x-ndjson/);
    assert.match(r.headers.get("content-disposition") ?? "", /attachment; filename="gatehouse-audit-.*\.jsonl"/);
    const lines = (await r.text()).trim().split("\n").map((l) => JSON.parse(l));
    assert.ok(lines.length >= 2);
    assert.deepEqual(Object.keys(lines[0]), [...SIEM_FIELDS]);
    assert.ok(lines.some((l) => l["event.outcome"] === "failure" && l["rule.name"] === "no-drop-database"));

    const all = await (await api("/api/v1/audit/export?format=csv", auditor)).text();
    const rows = all.split("\r\n").filter(Boolean);
    assert.equal(rows[0], SIEM_FIELDS.join(","));
    const exported = await lastEvent("audit.exported");
    assert.equal(exported?.principal_name, "Alice Auditor");
    assert.equal(JSON.parse(exported!.data).format, "csv");
    assert.equal(rows.length - 1, Number(exported!.seq) - 1, "every event before the export's own audit event");
  });

  test("checkpoints: write one now (signed), list them with the public key; verify checks them", async () => {
    const cp = await json<Record<string, unknown>>(await api("/api/v1/audit/checkpoints", auditor, { method: "POST" }));
    assert.equal(cp.keyId, signer.keyId);
    assert.equal(cp.publicKey, signer.publicKeyPem);
    assert.equal(typeof cp.signature, "string");
    const list = await json<{ items: Array<Record<string, unknown>> }>(await api("/api/v1/audit/checkpoints", auditor));
    assert.equal(list.items[0]?.seq, cp.seq);

    const v = await json<{ ok: boolean; checkpoints: { verified: number }; warnings: string[] }>(await api("/api/v1/audit/verify", auditor, { method: "POST", body: JSON.stringify({ checkpoint: cp, requireSigned: true }) }));
    assert.equal(v.ok, true, JSON.stringify(v));
    assert.ok(v.checkpoints.verified >= 2);
    const verified = await lastEvent("audit.verified");
    assert.deepEqual([JSON.parse(verified!.data).ok, verified?.principal_name], [true, "Alice Auditor"]);

    const forged = await json<{ ok: boolean; brokenAt: { reason: string } }>(await api("/api/v1/audit/verify", auditor, { method: "POST", body: JSON.stringify({ checkpoint: { ...cp, hash: "b".repeat(64) } }) }));
    assert.equal(forged.ok, false);
    assert.match(forged.brokenAt.reason, /given.*signature does not verify/);
    const badKey = await api("/api/v1/audit/verify", auditor, { method: "POST", body: JSON.stringify({ publicKeys: ["not a key"] }) });
    assert.equal((await json(badKey)).code, "GH-AUDIT-003");
  });

  test("OpenAPI lists the audit paths; config.loaded was recorded at start", async () => {
    const doc = await json<{ paths: Record<string, unknown> }>(await api("/api/v1/openapi.json", undefined));
    for (const p of ["/api/v1/audit/events", "/api/v1/audit/export", "/api/v1/audit/verify", "/api/v1/audit/checkpoints"]) assert.ok(doc.paths[p], p);
    const loaded = await lastEvent("config.loaded");
    assert.equal(JSON.parse(loaded!.data).gatewayId, t.gw.id);
  });
});

describe("gatehouse audit … (CLI)", () => {
  let env: Record<string, string>;
  before(() => {
    env = { GATEHOUSE_API: t.gw.apiUrl, GATEHOUSE_TOKEN: auditor };
  });

  test("search (table and JSON) and export to a file through the API", async () => {
    const table = await gh(["audit", "search", "--type", "operation.", "--limit", "5"], env);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^SEQ\s+TIME\s+TYPE/);
    assert.match(table.stdout, /operation\.decided.*pg-test\s+deny\s+no-drop-database\s+DROP DATABASE nope/);
    const j = await gh(["audit", "search", "--decision", "deny", "--json"], env);
    assert.equal(JSON.parse(j.stdout).items[0].rule, "no-drop-database");
    const out = join(dir, "export.csv");
    const ex = await gh(["audit", "export", "--format", "csv", "--type", "operation.", "--output", out], env);
    assert.equal(ex.code, 0, ex.stderr);
    assert.ok(readFileSync(out, "utf8").startsWith("@timestamp,event.sequence"));
    const jsonl = await gh(["audit", "export", "--type", "config."], env);
    assert.equal(jsonl.code, 0, jsonl.stderr);
    assert.equal(JSON.parse(jsonl.stdout.trim().split("\n")[0]!)["event.action"], "config.loaded");
    const denied = await gh(["audit", "search"], { ...env, GATEHOUSE_TOKEN: agent });
    assert.equal(denied.code, 2);
    assert.match(denied.stderr, /GH-API-003/);
    const refused = join(dir, "refused.csv");
    const deniedExport = await gh(["audit", "export", "--output", refused], { ...env, GATEHOUSE_TOKEN: agent });
    assert.equal(deniedExport.code, 2);
    assert.match(deniedExport.stderr, /GH-API-003/);
    assert.ok(!existsSync(refused) && !existsSync(`${refused}.partial`), "no file from a refused export");
  });

  test("verify through the API; checkpoints --latest --json exports a file for offline use", async () => {
    const v = await gh(["audit", "verify"], env);
    assert.equal(v.code, 0, v.stderr + v.stdout);
    assert.match(v.stdout, /audit chain intact/);
    const cp = await gh(["audit", "checkpoints", "--latest", "--json"], env);
    assert.equal(cp.code, 0, cp.stderr);
    writeFileSync(join(dir, "cp.json"), cp.stdout);
    assert.equal(JSON.parse(cp.stdout).keyId, signer.keyId);
  });

  test("with the gateway stopped: checkpoint and verify on the store; deleting the tail and the checkpoints is caught by the exported file", async () => {
    // Take a final exported checkpoint after some more activity, then stop the gateway.
    const mid = JSON.parse(readFileSync(join(dir, "cp.json"), "utf8")) as { seq: number };
    await t.gw.close();
    const written = await gh(["audit", "checkpoint", "--config", configFile, "--json"]);
    assert.equal(written.code, 0, written.stderr);
    const final = JSON.parse(written.stdout) as { seq: number; keyId: string };
    assert.equal(final.keyId, signer.keyId);
    assert.ok(final.seq > mid.seq, "the gateway's stop wrote more events (and its own final checkpoint)");
    writeFileSync(join(dir, "final.json"), written.stdout);

    let v = await gh(["audit", "verify", "--config", configFile, "--checkpoint", join(dir, "final.json"), "--require-signed", "--json"]);
    assert.equal(v.code, 0, v.stdout + v.stderr);
    assert.equal(JSON.parse(v.stdout).checkpoints.external, 1);

    // The attacker deletes the newest events and every stored checkpoint.
    const store = await openStore(`sqlite:${dbFile}`);
    await store.db.deleteFrom("audit_events").where("seq", ">", mid.seq).execute();
    await store.db.deleteFrom("audit_checkpoints").execute();
    await store.close();
    v = await gh(["audit", "verify", "--config", configFile]);
    assert.equal(v.code, 0, "the store alone cannot tell");
    assert.match(v.stderr, /no checkpoints/);
    v = await gh(["audit", "verify", "--config", configFile, "--checkpoint", join(dir, "final.json")]);
    assert.equal(v.code, 4, v.stdout + v.stderr);
    assert.match(v.stdout, new RegExp(`BROKEN at event #${mid.seq + 1}: the chain ends at #${mid.seq} but checkpoint #${final.seq} \\(given\\).*truncated tail`));

    // An auditor without the private key verifies with the public key; a checkpoint re-signed by
    // another key (its own public key embedded) is refused.
    const noKey = join(dir, "nokey.yaml");
    writeFileSync(noKey, `store: { url: "sqlite:${dbFile}" }\n`);
    const other = new CheckpointSigner(String(generateKeyPairSync("ed25519").privateKey.export({ format: "pem", type: "pkcs8" })));
    const f = JSON.parse(readFileSync(join(dir, "final.json"), "utf8"));
    const reSigned = { ...f, seq: mid.seq, hash: "c".repeat(64), keyId: other.keyId, publicKey: other.publicKeyPem, signature: other.sign({ seq: mid.seq, hash: "c".repeat(64), at: f.at }) };
    writeFileSync(join(dir, "forged.json"), JSON.stringify(reSigned));
    v = await gh(["audit", "verify", "--config", noKey, "--public-key", pubFile, "--checkpoint", join(dir, "forged.json"), "--json"]);
    assert.equal(v.code, 4);
    assert.match(JSON.parse(v.stdout).brokenAt.reason, /not a trusted key/);
    const bad = await gh(["audit", "verify", "--config", noKey, "--public-key", configFile]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /GH-AUDIT-003/);
  });
});

test("config.changed across restarts names the changed rule; the stop checkpoint covers gateway.stopped", async () => {
  const file = join(dir, "restart.db");
  const start = (decision: "allow" | "deny", signingKey?: string) =>
    startGateway(
      parseConfig({ store: { url: `sqlite:${file}` }, api: { host: "127.0.0.1", port: 0 }, listeners: { postgres: { enabled: false } }, policies: [{ name: "reads", operations: { kinds: ["read"] }, decision }], audit: signingKey ? { signingKey } : {}, logging: { level: "silent" } }),
      { logger: createLogger("silent") },
    );
  await assert.rejects(start("allow", `file:${configFile}`), (e: Error & { code?: string }) => e.code === "GH-AUDIT-001", "a signing key that is not a key stops the start");
  await (await start("allow")).close();
  await (await start("allow")).close();
  const gw = await start("deny");
  const changed = await gw.store.db.selectFrom("audit_events").selectAll().where("type", "=", "config.changed").execute();
  assert.equal(changed.length, 1);
  assert.deepEqual(JSON.parse(changed[0]!.data).rules, { added: [], removed: [], changed: ["reads"] });
  await gw.close();
  const store = await openStore(`sqlite:${file}`);
  try {
    const head = await store.db.selectFrom("audit_events").select(["seq", "type"]).orderBy("seq", "desc").limit(1).executeTakeFirstOrThrow();
    assert.equal(head.type, "gateway.stopped");
    const cp = await store.db.selectFrom("audit_checkpoints").select("seq").orderBy("seq", "desc").limit(1).executeTakeFirstOrThrow();
    assert.equal(Number(cp.seq), Number(head.seq));
    const { verifyChain } = await import("../src/audit/verify.ts");
    assert.equal((await verifyChain(store)).ok, true);
  } finally {
    await store.close();
  }
});

// Session recording end to end: a real psql session through the gateway, captured on the wire
// by a TCP proxy between psql and the gateway, replays byte-identically from the recording, and
// `gatehouse sessions replay` shows every statement with its rows and decision. Also: who may
// read recordings (and that reading is audited), exports, the size cap, directory storage, and
// what strict and best-effort recordings do when the store fails.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { appendFileSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, connect as netConnect, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { sql } from "kysely";
import { getSession, readFrames } from "../src/recording/read.ts";
import { api, connectDirect, connectGateway, runProcess, waitFor } from "./helpers/clients.ts";
import { startTestGateway, type TestGateway } from "./helpers/gateway.ts";

const exec = promisify(execFile);

/** A TCP relay that keeps every byte in both directions, per connection. */
async function captureProxy(targetPort: number): Promise<{ port: number; conns: Array<{ up: Buffer[]; down: Buffer[] }>; close(): Promise<void> }> {
  const conns: Array<{ up: Buffer[]; down: Buffer[] }> = [];
  const server: Server = createServer((c) => {
    const rec = { up: [] as Buffer[], down: [] as Buffer[] };
    conns.push(rec);
    const g = netConnect(targetPort, "127.0.0.1");
    c.on("data", (b) => {
      rec.up.push(b);
      g.write(b);
    });
    g.on("data", (b) => {
      rec.down.push(b);
      c.write(b);
    });
    c.on("end", () => g.end());
    g.on("end", () => c.end());
    c.on("error", () => g.destroy());
    g.on("error", () => c.destroy());
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  return { port, conns, close: () => new Promise((r) => server.close(() => r())) };
}

/** Client bytes after the password message: skip untyped startup packets, then the 'p' message. */
function afterPassword(up: Buffer): Buffer {
  let off = 0;
  for (;;) {
    const len = up.readUInt32BE(off);
    const code = up.readUInt32BE(off + 4);
    off += len;
    if (code === 196608) break;
  }
  assert.equal(String.fromCharCode(up[off]!), "p", "the first typed message is the password");
  return up.subarray(off + 1 + up.readUInt32BE(off + 1));
}

/** Server bytes from AuthenticationOk on. */
function fromAuthOk(down: Buffer): Buffer {
  const ok = Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 0]);
  const i = down.indexOf(ok);
  assert.ok(i > 0, "AuthenticationOk is in the captured stream");
  return down.subarray(i);
}

async function recordedStreams(t: TestGateway, id: string): Promise<{ client: Buffer; server: Buffer; events: Array<Record<string, unknown>> }> {
  const s = await getSession(t.gw.store, id);
  const client: Buffer[] = [];
  const server: Buffer[] = [];
  const events: Array<Record<string, unknown>> = [];
  for await (const f of readFrames(t.gw.recordings.sink, s)) {
    if (f.kind === "client") client.push(f.data);
    else if (f.kind === "server") server.push(f.data);
    else if (f.kind === "event") events.push(f.event);
  }
  return { client: Buffer.concat(client), server: Buffer.concat(server), events };
}

async function closedSession(t: TestGateway, connection: string, after: number): Promise<string> {
  return waitFor(
    async () => {
      const r = await t.gw.store.db.selectFrom("sessions").select(["id", "status"]).where("connection", "=", connection).where("started_at", ">=", after).orderBy("started_at", "desc").executeTakeFirst();
      return r?.status === "closed" ? r.id : undefined;
    },
    "the session to close",
    10_000,
  );
}

const SCRIPT = `INSERT INTO items VALUES (1, 'alpha'), (2, 'beta');
SELECT id, name FROM items ORDER BY id;
SELECT 1/0;
DROP DATABASE postgres;
SELECT count(*) AS n FROM items;
`;

describe("recording a psql session", () => {
  let t: TestGateway;
  let proxy: Awaited<ReturnType<typeof captureProxy>>;
  let sessionId: string;
  let psqlOut: string;
  before(async () => {
    t = await startTestGateway({
      extraConfig: (c) => {
        c.listeners!.postgres!.allowCleartextLoopback = true;
        c.audit = { auditorGroups: ["dba"] };
      },
    });
    const d = await connectDirect(t);
    await d.query("CREATE TABLE items (id int primary key, name text)");
    await d.end();
    proxy = await captureProxy(t.port);
    const started = Date.now();
    const env = { ...process.env, PGPASSWORD: await t.agentToken(), PGCONNECT_TIMEOUT: "5" };
    const r = await runProcess("psql", [`host=127.0.0.1 port=${proxy.port} dbname=${t.connection} user=agent sslmode=disable gssencmode=disable`, "-X"], { env, input: SCRIPT });
    psqlOut = r.stdout + r.stderr;
    assert.equal(r.code, 0, psqlOut);
    sessionId = await closedSession(t, t.connection, started - 1);
  });
  after(async () => {
    await proxy?.close();
    await t?.close();
  });

  test("the recorded bytes reassemble exactly what crossed the client's socket, both ways", async () => {
    assert.equal(proxy.conns.length, 1);
    const wire = proxy.conns[0]!;
    const rec = await recordedStreams(t, sessionId);
    assert.ok(rec.client.equals(afterPassword(Buffer.concat(wire.up))), "client → gateway bytes are identical");
    assert.ok(rec.server.equals(fromAuthOk(Buffer.concat(wire.down))), "gateway → client bytes are identical");
    assert.ok(!rec.client.includes(Buffer.from((await t.agentToken()).split(".")[0]!)), "no token material in the recording");
    const types = rec.events.map((e) => e.type);
    assert.equal(types[0], "session.started");
    assert.equal(types.at(-1), "session.ended");
    assert.equal(types.filter((x) => x === "decision").length, 5);
    const row = await getSession(t.gw.store, sessionId);
    assert.equal(row.recording.status, "complete");
    assert.ok(row.recording.bytes > rec.client.length + rec.server.length);
  });

  test("`gatehouse sessions replay` shows every statement with its rows, errors and decision", async () => {
    const token = await t.humanToken(["dba"], "Ada Auditor");
    const { stdout } = await exec(process.execPath, ["bin/gatehouse.js", "sessions", "replay", sessionId], { env: { ...process.env, GATEHOUSE_API: t.gw.apiUrl, GATEHOUSE_TOKEN: token } });
    assert.match(stdout, /=> INSERT INTO items VALUES \(1, 'alpha'\), \(2, 'beta'\);\s+\[allow · agents-write\]/);
    assert.match(stdout, /INSERT 0 2/);
    assert.match(stdout, /=> SELECT id, name FROM items ORDER BY id;\s+\[allow · agents-read\]/);
    assert.match(stdout, / id \| name\n-+\+-+\n 1 {2}\| alpha\n 2 {2}\| beta\n\(2 rows\)\nSELECT 2/);
    assert.match(stdout, /ERROR 22012: division by zero/);
    assert.match(stdout, /=> DROP DATABASE postgres;\s+\[deny · no-drop-database · refused\]/);
    assert.match(stdout, /ERROR 42501: .*GH-POLICY-001/);
    assert.match(stdout, / n\n-+\n 2\n\(1 row\)/);
    assert.match(stdout, /\d+\.\d ms/);
    assert.match(stdout, /session ended: client terminated/);
  });

  test("sessions list/show through the CLI, with filters", async () => {
    const env = { ...process.env, GATEHOUSE_API: t.gw.apiUrl, GATEHOUSE_TOKEN: await t.humanToken(["dba"], "Ada Auditor") };
    const list = await exec(process.execPath, ["bin/gatehouse.js", "sessions", "list", "--connection", t.connection, "--decision", "deny", "--json"], { env });
    const items = JSON.parse(list.stdout) as Array<{ id: string }>;
    assert.deepEqual(items.map((s) => s.id), [sessionId]);
    const none = await exec(process.execPath, ["bin/gatehouse.js", "sessions", "list", "--connection", "other", "--json"], { env });
    assert.deepEqual(JSON.parse(none.stdout), []);
    const show = await exec(process.execPath, ["bin/gatehouse.js", "sessions", "show", sessionId], { env });
    assert.match(show.stdout, /operation\.decided\s+deny\s+no-drop-database\s+DROP DATABASE postgres;/);
    assert.match(show.stdout, /recording\s+complete/);
  });

  test("only auditors may read recordings, and every read is audited", async () => {
    const agent = await t.agentToken();
    for (const path of [`/api/v1/sessions`, `/api/v1/sessions/${sessionId}`, `/api/v1/sessions/${sessionId}/replay`, `/api/v1/sessions/${sessionId}/export`]) {
      const r = await api(t, "GET", path, agent);
      assert.equal(r.status, 403, path);
      assert.equal(r.body.code, "GH-API-003");
    }
    const auditor = await t.humanToken(["dba"], "Ada Auditor");
    const before = await t.gw.store.db.selectFrom("audit_events").select("type").where("type", "in", ["recording.replayed", "recording.exported"]).execute();
    const res = await fetch(`${t.gw.apiUrl}/api/v1/sessions/${sessionId}/export?format=jsonl`, { headers: { authorization: `Bearer ${auditor}` } });
    assert.equal(res.status, 200);
    const lines = (await res.text()).trim().split("\n").map((l) => JSON.parse(l) as { kind?: string; data?: string; format?: string });
    assert.equal(lines[0]!.format, "gatehouse-recording");
    const server = Buffer.concat(lines.filter((l) => l.kind === "server").map((l) => Buffer.from(l.data!, "base64")));
    assert.ok(server.equals(fromAuthOk(Buffer.concat(proxy.conns[0]!.down))), "the JSON Lines export carries the exact bytes");
    await t.gw.audit.drain();
    const afterRows = await t.gw.store.db.selectFrom("audit_events").select(["type", "principal_name", "session_id"]).where("type", "in", ["recording.replayed", "recording.exported"]).execute();
    assert.equal(afterRows.length, before.length + 1);
    assert.deepEqual(afterRows.at(-1), { type: "recording.exported", principal_name: "Ada Auditor", session_id: sessionId });
    const missing = await api(t, "GET", `/api/v1/sessions/00000000-0000-4000-8000-000000000000/replay`, auditor);
    assert.equal(missing.status, 404);
    assert.equal(missing.body.code, "GH-REC-002");
  });

  test("asciicast v2 export: a header, then output events in time order", async () => {
    const auditor = await t.humanToken(["dba"], "Ada Auditor");
    const res = await fetch(`${t.gw.apiUrl}/api/v1/sessions/${sessionId}/export?format=asciicast`, { headers: { authorization: `Bearer ${auditor}` } });
    assert.equal(res.status, 200);
    const [head, ...events] = (await res.text()).trim().split("\n").map((l) => JSON.parse(l) as unknown);
    assert.equal((head as { version: number }).version, 2);
    let last = 0;
    for (const e of events as Array<[number, string, string]>) {
      assert.equal(e[1], "o");
      assert.ok(e[0] >= last);
      last = e[0];
    }
    assert.ok((events as Array<[number, string, string]>).some((e) => e[2].includes("alpha")));
  });

  test("psql saw the rows and the refusal", () => {
    assert.match(psqlOut, /alpha/);
    assert.match(psqlOut, /GH-POLICY-001/);
  });
});

describe("recording limits and storage", () => {
  let t: TestGateway;
  let dir: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "gh-rec-"));
    t = await startTestGateway({
      extraConfig: (c) => {
        c.recording = { storage: "directory", directory: dir, maxSessionBytes: 4096, flushInterval: "50ms" };
        c.audit = { auditorGroups: ["dba"] };
      },
    });
  });
  after(async () => {
    await t?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test("past maxSessionBytes the recording is marked truncated and the session goes on", async () => {
    const started = Date.now();
    const c = await connectGateway(t, await t.agentToken());
    const big = await c.query("SELECT repeat('x', 10000) AS v");
    assert.equal(big.rows[0].v.length, 10000);
    assert.equal((await c.query("SELECT 42 AS answer")).rows[0].answer, 42, "the session goes on");
    await c.end();
    const id = await closedSession(t, t.connection, started - 1);
    const s = await getSession(t.gw.store, id);
    assert.equal(s.recording.status, "truncated");
    assert.equal(s.recording.storage, "directory");
    const file = readFileSync(join(dir, `${id}.ghrec`));
    assert.ok(file.length < 4096 + 1024 + 512, `file is ${file.length} bytes`);
    const rec = await recordedStreams(t, id);
    assert.ok(rec.events.some((e) => e.type === "recording.truncated"));
    assert.ok(rec.events.some((e) => e.type === "session.ended"), "events still arrive after the cap");
  });

  test("a torn last record (the process died mid-append) reads up to the last whole chunk", async () => {
    const started = Date.now();
    const c = await connectGateway(t, await t.agentToken());
    await c.query("SELECT 1");
    await c.end();
    const id = await closedSession(t, t.connection, started - 1);
    const whole = await recordedStreams(t, id);
    appendFileSync(join(dir, `${id}.ghrec`), Buffer.from([0, 0, 0x10, 0, 0, 0, 0, 9, 1, 2]));
    const torn = await recordedStreams(t, id);
    assert.ok(torn.client.equals(whole.client));
    assert.equal(torn.events.length, whole.events.length);
  });
});

describe("when recording writes fail", () => {
  let t: TestGateway;
  before(async () => {
    t = await startTestGateway({
      extraConfig: (c) => {
        c.recording = { flushInterval: "50ms" };
        c.connections!.push({ ...c.connections![0]!, name: "pg-lenient", recording: { onFailure: "best-effort" } });
      },
    });
  });
  after(async () => {
    await t?.close();
  });

  test("strict (default) ends the session with GH-REC-001; best-effort goes on and flags the recording", async () => {
    const strict = await connectGateway(t, await t.agentToken());
    const lenient = await connectGateway(t, await t.agentToken(), { database: "pg-lenient" });
    await strict.query("SELECT 1");
    await lenient.query("SELECT 1");
    await t.gw.recordings.flush();
    await sql`ALTER TABLE recording_chunks RENAME TO recording_chunks_gone`.execute(t.gw.store.db);
    try {
      // The FATAL reaches node-postgres either as the running query's error or, when idle, as the
      // client's 'error' event; the connection's end then raises "terminated unexpectedly".
      const seen: Array<Error & { code?: string }> = [];
      strict.on("error", (e) => seen.push(e));
      await strict.query("SELECT 2").catch((e: Error) => seen.push(e));
      await lenient.query("SELECT 2");
      const err = await waitFor(() => seen.find((e) => /GH-REC-001/.test(e.message)), "the strict session to end with GH-REC-001", 5000);
      assert.equal(err.code, "58030");
      assert.equal((await lenient.query("SELECT 3 AS n")).rows[0].n, 3, "best-effort keeps serving");
      const ready = await fetch(`${t.gw.apiUrl}/readyz`);
      assert.equal(ready.status, 503, "readiness reports the failing recording store");
      const metrics = await (await fetch(`${t.gw.apiUrl}/metrics`)).text();
      assert.match(metrics, /gatehouse_recording_write_failures_total\{storage="store"\} [1-9]/);
    } finally {
      await sql`ALTER TABLE recording_chunks_gone RENAME TO recording_chunks`.execute(t.gw.store.db);
    }
    await lenient.query("SELECT 4");
    await t.gw.recordings.flush();
    assert.equal((await fetch(`${t.gw.apiUrl}/readyz`)).status, 200, "ready again once writes succeed");
    await lenient.end();
    const row = await waitFor(async () => {
      const r = await t.gw.store.db.selectFrom("sessions").select(["rec_status", "status"]).where("connection", "=", "pg-lenient").executeTakeFirst();
      return r?.status === "closed" ? r : undefined;
    }, "lenient session closed");
    assert.equal(row.rec_status, "failed");
  });
});

describe("retention", () => {
  let t: TestGateway;
  let dir: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "gh-ret-"));
    t = await startTestGateway({
      extraConfig: (c) => {
        c.store = { url: `sqlite:${join(dir, "gh.db")}` };
        c.recording = { flushInterval: "50ms", retention: "30d" };
        c.retention = { interval: "200ms" };
        c.audit = { auditorGroups: ["dba"] };
      },
    });
  });
  after(async () => {
    await t?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function recordOne(): Promise<string> {
    const started = Date.now();
    const c = await connectGateway(t, await t.agentToken());
    await c.query("SELECT 'kept?' AS q");
    await c.end();
    return closedSession(t, t.connection, started - 1);
  }
  const age = (id: string, days: number) => t.gw.store.db.updateTable("sessions").set({ ended_at: Date.now() - days * 86_400_000 }).where("id", "=", id).execute();

  test("`gatehouse retention run` prunes recordings past recording.retention; rows and audit stay", async () => {
    const old = await recordOne();
    const recent = await recordOne();
    await age(old, 40);
    const cfg = join(dir, "gatehouse.yaml");
    const { writeFileSync } = await import("node:fs");
    writeFileSync(cfg, `store:\n  url: sqlite:${join(dir, "gh.db")}\nrecording:\n  retention: 30d\n`);
    // The gateway's own schedule may win the race; either way the old recording goes, once.
    const { stdout } = await exec(process.execPath, ["bin/gatehouse.js", "retention", "run", "--config", cfg, "--json"]);
    const r = JSON.parse(stdout) as { recordings: { pruned: number } };
    assert.ok(r.recordings.pruned <= 1);
    const rows = await t.gw.store.db.selectFrom("sessions").select(["id", "rec_status"]).where("id", "in", [old, recent]).execute();
    assert.equal(rows.find((x) => x.id === old)?.rec_status, "pruned");
    assert.equal(rows.find((x) => x.id === recent)?.rec_status, "complete");
    assert.equal((await t.gw.store.db.selectFrom("recording_chunks").select("seq").where("session_id", "=", old).execute()).length, 0);
    const auditor = await t.humanToken(["dba"], "Ada Auditor");
    const gone = await api(t, "GET", `/api/v1/sessions/${old}/replay`, auditor);
    assert.equal(gone.status, 410);
    assert.equal(gone.body.code, "GH-REC-003");
    assert.equal((await fetch(`${t.gw.apiUrl}/api/v1/sessions/${recent}/replay`, { headers: { authorization: `Bearer ${auditor}` } })).status, 200);
    assert.ok((await t.gw.store.db.selectFrom("audit_events").select("seq").where("session_id", "=", old).execute()).length > 0, "the session's audit events stay");
    assert.ok((await t.gw.store.db.selectFrom("audit_events").select("seq").where("type", "=", "retention.run").execute()).length > 0, "retention runs are audited");
  });

  test("the gateway's scheduled job prunes without anyone asking", async () => {
    const id = await recordOne();
    await age(id, 31);
    await waitFor(async () => (await t.gw.store.db.selectFrom("sessions").select("rec_status").where("id", "=", id).executeTakeFirst())?.rec_status === "pruned", "the scheduled retention run", 5000);
  });
});

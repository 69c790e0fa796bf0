// The HTTP gate with real curl against a local HTTP service: allowed calls carry the injected
// credential (never the caller's token), a gated POST waits for approval and then runs, a denied
// call gets problem+json naming the rule, path tricks cannot dodge a rule, async reviews run the
// identical retry once (body included in the binding), and limits answer in HTTP.

import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { networkInterfaces } from "node:os";
import { after, before, describe, test } from "node:test";
import { compressChunk, decodeChunk, FrameKind } from "../src/recording/format.ts";
import { approveReview, getReview, pendingReviewFor, runProcess, waitFor } from "./helpers/clients.ts";
import { DEFAULT_POLICIES, startTestGateway, type TestGateway } from "./helpers/gateway.ts";

interface Seen {
  method: string;
  url: string;
  authorization: string | undefined;
  body: string;
  connection: string | undefined;
}

describe("HTTP gate", () => {
  let t: TestGateway;
  let target: Server;
  let stalling: Server;
  const seen: Seen[] = [];
  const seenHeaders: Array<Record<string, unknown>> = [];
  let base: string;
  let agentToken: string;

  before(async () => {
    process.env.GH_TEST_CI_TOKEN = "ci-secret-injected-by-the-agent";
    target = createServer((req, res) => {
      const parts: Buffer[] = [];
      req.on("data", (b) => parts.push(b));
      req.on("end", () => {
        seen.push({ method: req.method!, url: req.url!, authorization: req.headers.authorization, body: Buffer.concat(parts).toString(), connection: req.headers.connection });
        seenHeaders.push({ ...req.headers });
        const body = JSON.stringify({ ok: true, method: req.method, url: req.url });
        res.writeHead(req.url === "/missing" ? 404 : 200, { "content-type": "application/json", "x-target": "yes", connection: "keep-alive", "keep-alive": "timeout=5, max=77" });
        res.end(body);
      });
    });
    await new Promise<void>((r) => target.listen(0, "127.0.0.1", r));
    // Sends 3 of the 10 bytes it announces, then nothing.
    stalling = createServer((_req, res) => {
      res.writeHead(200, { "content-length": "10" });
      res.write("abc");
    });
    await new Promise<void>((r) => stalling.listen(0, "127.0.0.1", r));
    const targetUrl = `http://127.0.0.1:${(target.address() as { port: number }).port}`;
    t = await startTestGateway({
      policies: [
        ...DEFAULT_POLICIES,
        { name: "ci-read", principals: { groups: ["ai-agents"] }, operations: { protocols: ["http"], methods: ["GET"], paths: ["/**"] }, decision: "allow" },
        { name: "ci-deploy", operations: { methods: ["POST"], paths: ["/deploy", "/deploy/**"] }, decision: "review", review: { approvers: ["dba"], expires: "60s" } },
        { name: "no-delete", operations: { methods: ["DELETE"] }, decision: "deny", message: "no deletes through the gateway" },
        { name: "no-prod-config", operations: { methods: ["POST"], paths: ["/config"], json: { "/env": "prod" } }, decision: "deny", message: "prod configuration is changed by the release pipeline" },
        { name: "agents-post", principals: { groups: ["ai-agents"] }, operations: { protocols: ["http"], methods: ["POST"] }, decision: "allow" },
      ],
      extraConfig: (c) => {
        c.listeners!.http = { host: "127.0.0.1", port: 0, maxBodyBytes: 4096, maxHoldSeconds: 20, responseIdleSeconds: 1 };
        c.audit = { auditorGroups: ["dba"] };
        c.connections!.push(
          { name: "stall", protocol: "http", http: { url: `http://127.0.0.1:${(stalling.address() as AddressInfo).port}` } },
          { name: "ci", protocol: "http", http: { url: targetUrl, auth: { type: "bearer", secret: "env:GH_TEST_CI_TOKEN" } } },
          { name: "ci-async", protocol: "http", http: { url: targetUrl, auth: { type: "header", header: "X-Api-Key", secret: "env:GH_TEST_CI_TOKEN" } }, policy: { reviewMode: "async", approvers: ["dba"] } },
        );
      },
    });
    base = `http://127.0.0.1:${t.gw.http!.port}`;
    agentToken = await t.agentToken();
  });
  after(async () => {
    await t?.close();
    await new Promise((r) => target.close(r));
    stalling.closeAllConnections();
    stalling.close();
  });

  async function curl(args: string[], token: string | null = agentToken): Promise<{ status: number; body: string; headers: string }> {
    const r = await runProcess("curl", ["-s", "-S", "-i", "--path-as-is", "--max-time", "30", ...(token !== null ? ["-H", `Authorization: Bearer ${token}`] : []), ...args], { timeoutMs: 40_000 });
    assert.equal(r.code, 0, r.stderr);
    const split = r.stdout.indexOf("\r\n\r\n");
    const headers = r.stdout.slice(0, split);
    return { status: Number(/^HTTP\/[\d.]+ (\d+)/.exec(headers)?.[1]), headers, body: r.stdout.slice(split + 4) };
  }

  test("an allowed GET reaches the target with the injected credential, never the caller's token", async () => {
    const r = await curl([`${base}/ci/status?verbose=1`]);
    assert.equal(r.status, 200);
    assert.deepEqual(JSON.parse(r.body), { ok: true, method: "GET", url: "/status?verbose=1" });
    assert.match(r.headers, /x-target: yes/i);
    assert.doesNotMatch(r.headers, /max=77/i, "the target's hop-by-hop headers are not passed back");
    const s = seen.at(-1)!;
    assert.equal(s.authorization, "Bearer ci-secret-injected-by-the-agent");
    assert.ok(!JSON.stringify(seen).includes(agentToken), "the caller's token never reaches the target");
  });

  test("the query reaches the target as sent, even right after the connection or holding a slash", async () => {
    for (const [path, url] of [
      ["/ci?next=/a/b", "/?next=/a/b"],
      ["/ci/jobs?next=/a/b&x=%2F", "/jobs?next=/a/b&x=%2F"],
    ]) {
      const r = await curl([`${base}${path}`]);
      assert.equal(r.status, 200, path);
      assert.equal(JSON.parse(r.body).url, url, path);
    }
  });

  test("a UTF-8 path sent raw (as curl sends it) is forwarded percent-encoded; Expect stays at the gateway", async () => {
    const r = await curl(["-H", "Expect: 100-continue", "--data-binary", "x".repeat(2000), `${base}/ci/café`]);
    assert.equal(r.status, 100, "the gateway's interim answer");
    assert.match(r.body, /^HTTP\/1\.1 200 OK/);
    assert.equal(seen.at(-1)!.url, "/caf%C3%A9");
    assert.equal(seen.at(-1)!.body.length, 2000);
    assert.equal(seenHeaders.at(-1)!.expect, undefined, "the gateway answered the 100-continue; the target gets the whole body");
  });

  test("forwarding claims the caller could forge do not reach the target", async () => {
    await curl(["-H", "X-Forwarded-For: 10.0.0.1", "-H", "Forwarded: for=10.0.0.1", "-H", "X-Real-IP: 10.0.0.1", `${base}/ci/whoami`]);
    assert.ok(!JSON.stringify(seenHeaders.at(-1)).includes("10.0.0.1"));
    assert.equal(seenHeaders.at(-1)!.via, "1.1 gatehouse");
  });

  test("a header credential is injected as configured; the target's status passes through", async () => {
    const r = await curl([`${base}/ci-async/missing`]);
    assert.equal(r.status, 404);
    assert.equal(seen.at(-1)!.authorization, undefined);
  });

  test("a denied call gets problem+json with the rule, and never reaches the target", async () => {
    const before = seen.length;
    const r = await curl(["-X", "DELETE", `${base}/ci/jobs/1`]);
    assert.equal(r.status, 403);
    assert.match(r.headers, /content-type: application\/problem\+json/i);
    const p = JSON.parse(r.body);
    assert.equal(p.code, "GH-POLICY-001");
    assert.equal(p.rule, "no-delete");
    assert.match(p.detail, /no deletes through the gateway/);
    assert.equal(seen.length, before);
  });

  test("a gated POST /deploy waits for approval, then runs once", async () => {
    const before = seen.length;
    const pending = curl(["-X", "POST", "-H", "content-type: application/json", "--data", '{"service":"web","version":"1.2.3"}', `${base}/ci/deploy`]);
    const review = await pendingReviewFor(t, "POST /deploy", 10_000);
    assert.equal(seen.length, before, "nothing reaches the target while held");
    assert.equal(review.operation.http?.bodyText, '{"service":"web","version":"1.2.3"}', "the reviewer reads the body");
    const approved = await approveReview(t, review.id, await t.humanToken(["dba"], "Dana DBA"));
    assert.equal(approved.status, 200);
    const r = await pending;
    assert.equal(r.status, 200);
    assert.deepEqual(JSON.parse(r.body), { ok: true, method: "POST", url: "/deploy" });
    assert.equal(seen.at(-1)!.body, '{"service":"web","version":"1.2.3"}');
    assert.equal(seen.length, before + 1);
  });

  test("a client that goes away while its request is held cancels the review: approving later runs nothing", async () => {
    const before = seen.length;
    const { connect } = await import("node:net");
    const sock = connect(t.gw.http!.port, "127.0.0.1");
    await once(sock, "connect");
    const body = '{"service":"gone"}';
    sock.write(`POST /ci/deploy/gone HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${agentToken}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
    const review = await pendingReviewFor(t, "POST /deploy/gone", 10_000);
    sock.end(); // what curl -m does when its time is up: close (the gateway sees a FIN)
    const dba = await t.humanToken(["dba"], "Dana DBA");
    // The FIN in the same breath as the request (printf … | nc -N): the review is cancelled too,
    // and the client is answered at once.
    const early = connect(t.gw.http!.port, "127.0.0.1");
    await once(early, "connect");
    let answer = "";
    early.on("data", (b: Buffer) => (answer += b.toString()));
    early.end(`POST /ci/deploy/early HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${agentToken}\r\nContent-Length: 2\r\n\r\n{}`);
    const earlyReview = await pendingReviewFor(t, "POST /deploy/early", 10_000).catch(() => undefined);
    await waitFor(() => (answer.includes("GH-REVIEW-007") ? true : undefined), "the client to be answered");
    if (earlyReview) assert.equal((await getReview(t, earlyReview.id, dba)).body.status, "cancelled");
    early.destroy();
    const cancelled = await waitFor(async () => ((await getReview(t, review.id, dba)).body.status === "cancelled" ? true : undefined), "the review to be cancelled");
    assert.equal(cancelled, true);
    assert.equal((await approveReview(t, review.id, dba)).status, 409, "a cancelled review cannot be approved");
    assert.equal(seen.length, before, "nothing reached the target");
    sock.destroy();
  });

  test("a target that stops in the middle of a body is given up on after listeners.http.responseIdleSeconds: the client's connection closes", async () => {
    const started = Date.now();
    const r = await runProcess("curl", ["-s", "-S", "--max-time", "20", "-H", `Authorization: Bearer ${agentToken}`, `${base}/stall/x`], { timeoutMs: 30_000 });
    assert.notEqual(r.code, 0, "an incomplete body is an error for the client");
    assert.match(r.stderr, /transfer closed with 7 bytes remaining|Recv failure|connection/i);
    assert.equal(r.stdout, "abc");
    const took = Date.now() - started;
    assert.ok(took < 10_000, `closed after ${took} ms (responseIdleSeconds 1), not held until curl gave up`);
  });

  test("path tricks cannot dodge the deploy rule, and never reach the target", async () => {
    const before = seen.length;
    for (const path of ["/ci-async/deploy", "/ci-async/x/../deploy", "/ci-async/x/%2e%2e/deploy", "/ci-async//deploy", "/ci-async/./deploy", "/ci-async/DEPLOY", "/ci-async/%64eploy", "/ci-async/deploy/prod"]) {
      const r = await curl(["-X", "POST", "--data", "x", `${base}${path}`]);
      assert.equal(r.status, 409, path);
      const p = JSON.parse(r.body);
      assert.equal(p.code, "GH-POLICY-002", path);
      assert.match(p.reviewId, /^[0-9a-f-]{36}$/);
    }
    for (const path of ["/ci-async/x%2Fdeploy", "/ci-async/%252e%252e/deploy", "/ci-async/a\\..\\deploy"]) {
      const r = await curl(["-X", "POST", "--data", "x", `${base}${path}`]);
      assert.equal(r.status, 400, path);
      assert.equal(JSON.parse(r.body).code, "GH-HTTP-002");
    }
    assert.equal(seen.length, before);
  });

  test("async review: 409 with the review id; after approval the identical retry runs once; the body is bound", async () => {
    const body = '{"service":"api"}';
    const first = await curl(["-X", "POST", "-H", "content-type: application/json", "--data", body, `${base}/ci-async/deploy/api`]);
    assert.equal(first.status, 409);
    assert.match(first.headers, /retry-after: 30/i);
    const { reviewId } = JSON.parse(first.body) as { reviewId: string };
    // Retried before anyone decided: the same review, not a new one for the reviewers.
    const polled = await curl(["-X", "POST", "-H", "content-type: application/json", "--data", body, `${base}/ci-async/deploy/api`]);
    assert.equal(polled.status, 409);
    assert.equal(JSON.parse(polled.body).reviewId, reviewId);
    assert.equal((await t.gw.reviews.list({ status: "pending", limit: 1000 })).filter((r) => r.operation.text === "POST /deploy/api").length, 1);
    await approveReview(t, reviewId, await t.humanToken(["dba"], "Dana DBA"));
    const other = await curl(["-X", "POST", "-H", "content-type: application/json", "--data", '{"service":"db"}', `${base}/ci-async/deploy/api`]);
    assert.equal(other.status, 409, "another body is another operation");
    const before = seen.length;
    const again = await curl(["-X", "POST", "-H", "content-type: application/json", "--data", body, `${base}/ci-async/deploy/api`]);
    assert.equal(again.status, 200);
    assert.equal(seen.length, before + 1);
    const third = await curl(["-X", "POST", "-H", "content-type: application/json", "--data", body, `${base}/ci-async/deploy/api`]);
    assert.equal(third.status, 409, "an approval is spent once");
  });

  test("no token: 401 with the challenge; unknown connection: 404; body too large: 413", async () => {
    const none = await curl([`${base}/ci/status`], null);
    assert.equal(none.status, 401);
    assert.match(none.headers, /www-authenticate: Bearer realm="gatehouse"/i);
    assert.equal(JSON.parse(none.body).code, "GH-AUTH-001");
    const bad = await curl([`${base}/ci/status`], "not.a.token");
    assert.equal(bad.status, 401);
    assert.ok(!bad.body.includes("not.a.token"), "the token is never echoed");
    const unknown = await curl([`${base}/nope/status`]);
    assert.equal(unknown.status, 404);
    assert.equal(JSON.parse(unknown.body).code, "GH-HTTP-001");
  });

  test("bodies beyond maxBodyBytes stream to the target when allowed; what would need review or rests on content is refused", async () => {
    const { writeFileSync, mkdtempSync, rmSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    const dir = mkdtempSync(join(tmpdir(), "gh-big-"));
    try {
      const file = join(dir, "big.bin");
      writeFileSync(file, Buffer.alloc(300_000, 7));
      const before = seen.length;
      const up = await curl(["-X", "POST", "--data-binary", `@${file}`, `${base}/ci/upload`]);
      assert.equal(up.status, 200);
      assert.equal(seen.at(-1)!.body.length, 300_000, "the whole body reached the target");
      const chunked = await curl(["-X", "POST", "-H", "Transfer-Encoding: chunked", "--data-binary", `@${file}`, `${base}/ci/upload`]);
      assert.equal(chunked.status, 200);
      assert.equal(seen.at(-1)!.body.length, 300_000);
      const deploy = await curl(["-X", "POST", "--data-binary", `@${file}`, `${base}/ci/deploy`]);
      assert.equal(deploy.status, 403);
      assert.match(JSON.parse(deploy.body).detail, /needs review, but its body is larger than listeners\.http\.maxBodyBytes/);
      const small = await curl(["-X", "POST", "-H", "content-type: application/json", "--data", '{"env":"prod"}', `${base}/ci/config`]);
      assert.equal(JSON.parse(small.body).rule, "no-prod-config");
      writeFileSync(file, JSON.stringify({ env: "staging", pad: "x".repeat(10_000) }));
      const bigJson = await curl(["-X", "POST", "-H", "content-type: application/json", "--data-binary", `@${file}`, `${base}/ci/config`]);
      assert.equal(JSON.parse(bigJson.body).rule, "no-prod-config", "an unread body cannot dodge a rule on its content");
      assert.equal(seen.length, before + 2);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("on one keep-alive connection, only the exact header verified before is reused: a forged or missing token is refused", async () => {
    const { connect } = await import("node:net");
    const forged = `${agentToken.slice(0, -4)}${agentToken.slice(-4) === "AAAA" ? "BBBB" : "AAAA"}`;
    const req = (auth: string | undefined, path: string) => `GET /ci/${path} HTTP/1.1\r\nHost: gw\r\n${auth === undefined ? "" : `Authorization: Bearer ${auth}\r\n`}\r\n`;
    // Pipelined on one connection: verified, the same again, forged signature, none, verified.
    const text = [req(agentToken, "a"), req(agentToken, "b"), req(forged, "c"), req(undefined, "d"), req(agentToken, "e")].join("");
    const before = seen.length;
    const out = await new Promise<string>((resolve) => {
      const sock = connect(t.gw.http!.port, "127.0.0.1", () => sock.end(text));
      let buf = "";
      sock.on("data", (b) => (buf += b.toString()));
      sock.on("close", () => resolve(buf));
      sock.on("error", () => resolve(buf));
    });
    // Bodies end without a newline: a status line follows the previous body directly.
    assert.deepEqual([...out.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1])), [200, 200, 401, 401, 200]);
    assert.match(out, /GH-AUTH-003/, "the forged signature is checked, not taken from the connection's last request");
    assert.deepEqual(seen.slice(before).map((x) => x.url), ["/a", "/b", "/e"], "only the verified requests reached the target");
  });

  test("smuggling attempts (CL+TE, duplicate Content-Length, bad chunking) are refused before any judgement", async () => {
    const { connect } = await import("node:net");
    const raw = (text: string) =>
      new Promise<string>((resolve) => {
        const sock = connect(t.gw.http!.port, "127.0.0.1", () => sock.end(text));
        let out = "";
        sock.on("data", (b) => (out += b.toString()));
        sock.on("close", () => resolve(out));
        sock.on("error", () => resolve(out));
      });
    const before = seen.length;
    const auth = `Authorization: Bearer ${agentToken}`;
    const attempts = [
      `POST /ci/x HTTP/1.1\r\nHost: gw\r\n${auth}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nDELETE /ci/jobs/1 HTTP/1.1\r\nHost: gw\r\n${auth}\r\n\r\n`,
      `POST /ci/x HTTP/1.1\r\nHost: gw\r\n${auth}\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabc`,
      `POST /ci/x HTTP/1.1\r\nHost: gw\r\n${auth}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n`,
      `GET /ci/x HTTP/1.1\r\nHost: gw\r\n${auth}\r\nX-Folded: a\r\n b\r\n\r\n`,
    ];
    for (const a of attempts) assert.match(await raw(a), /^HTTP\/1\.1 400/, a.split("\r\n")[0]);
    assert.equal(seen.length, before, "nothing reached the target");
  });

  test("every request is a recorded, audited session", async () => {
    const started = Date.now();
    // Two requests on one connection: an allowed one, then a denied one.
    await curl([`${base}/ci/recorded`, "--next", "-s", "-H", `Authorization: Bearer ${agentToken}`, "-X", "DELETE", `${base}/ci/jobs/1`]);
    // curl closes its connection on exit: that ends the session.
    const row = await waitFor(async () => {
      const r = await t.gw.store.db.selectFrom("sessions").selectAll().where("connection", "=", "ci").where("started_at", ">=", started - 1).executeTakeFirst();
      return r?.status === "closed" ? r : undefined;
    }, "the HTTP session to close");
    await t.gw.audit.drain();
    assert.equal(row.end_reason, "the client closed the HTTP connection");
    assert.equal(row?.rec_status, "complete");
    const decided = await t.gw.store.db.selectFrom("audit_events").select(["decision", "rule", "data"]).where("session_id", "=", row.id).where("type", "=", "operation.decided").executeTakeFirst();
    assert.deepEqual([decided?.decision, decided?.rule], ["allow", "ci-read"]);
    assert.match(decided!.data, /GET \/recorded/);
    const replay = await fetch(`${t.gw.apiUrl}/api/v1/sessions/${row.id}/replay`, { headers: { authorization: `Bearer ${await t.humanToken(["dba"], "Ada Auditor")}` } });
    const text = await replay.text();
    assert.match(text, /"type":"http.exchange","method":"GET","path":"\/recorded","status":200/);
    assert.match(text, /"type":"http.exchange","method":"DELETE","path":"\/jobs\/1","status":403/);
    // A plain allow travels in its exchange event; a denial has its own decision event.
    assert.match(text, /"type":"http.exchange","method":"GET","path":"\/recorded","status":200,[^}]*"decision":"allow","rule":"ci-read"/);
    assert.match(text, /"type":"decision","msg":0,"decision":"deny","rule":"no-delete","forwarded":false/);
    assert.doesNotMatch(text, /"type":"http.exchange","method":"DELETE"[^}]*"decision"/);
    assert.ok(!text.includes(agentToken.split(".")[2]!), "the caller's token is not in the recording");
    // The frames: the request heads as the client sent them, credentials redacted; the responses
    // exactly as the gateway wrote them, the refusal included.
    const chunks = await t.gw.store.db.selectFrom("recording_chunks").select("data").where("session_id", "=", row.id).orderBy("seq").execute();
    const frames = chunks.flatMap((c) => decodeChunk(Buffer.from(c.data)));
    // Stored compressed (recording.compression defaults to brotli) wherever that is smaller.
    for (const c of chunks) {
      const data = Buffer.from(c.data);
      if (data[0] !== FrameKind.compressed) assert.equal(compressChunk(data), data, "a chunk stored as it is would not get smaller");
    }
    const bytes = (k: "client" | "server") => frames.flatMap((f) => (f.kind === k ? [f.data.toString("latin1")] : []));
    const [get, del] = bytes("client");
    assert.match(get!, /^GET \/ci\/recorded HTTP\/1\.1\r\n/);
    assert.match(get!, /\r\nAuthorization: \[redacted by Gatehouse\]\r\n/);
    assert.match(del!, /^DELETE \/ci\/jobs\/1 HTTP\/1\.1\r\n/);
    const [ok, refused] = bytes("server");
    assert.match(ok!, /^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\n\{"ok":true,"method":"GET","url":"\/recorded"\}$/);
    assert.match(refused!, /^HTTP\/1\.1 403 Forbidden\r\n[\s\S]*content-type: application\/problem\+json[\s\S]*\r\n\r\n\{[\s\S]*no deletes through the gateway/);
  });
});

describe("WebSocket upgrades through the HTTP gate", () => {
  let t: TestGateway;
  let wss: import("ws").WebSocketServer;
  const auth: Array<string | undefined> = [];
  /** A target without upgrade support: answers every request 200 and keeps the connection. */
  let plain: Server;
  const plainSaw: string[] = [];
  before(async () => {
    process.env.GH_TEST_WS_TOKEN = "ws-secret";
    plain = createServer((req, res) => {
      plainSaw.push(`${req.method} ${req.url}`);
      res.end("plain");
    });
    plain.listen(0, "127.0.0.1");
    await once(plain, "listening");
    const { WebSocketServer } = await import("ws");
    wss = new WebSocketServer({ port: 0, host: "127.0.0.1" });
    await new Promise((r) => wss.once("listening", r));
    wss.on("connection", (ws, req) => {
      auth.push(req.headers.authorization);
      ws.on("message", (m) => ws.send(`echo:${m.toString()}`));
    });
    t = await startTestGateway({
      policies: [
        { name: "ws-read", principals: { groups: ["ai-agents"] }, operations: { protocols: ["http"], methods: ["GET"], paths: ["/stream/**"] }, decision: "allow" },
        { name: "no-admin-ws", operations: { paths: ["/admin/**"] }, decision: "deny", message: "no admin sockets" },
      ],
      extraConfig: (c) => {
        c.listeners!.http = { host: "127.0.0.1", port: 0 };
        c.connections!.push({ name: "live", protocol: "http", http: { url: `http://127.0.0.1:${(wss.address() as { port: number }).port}`, auth: { type: "bearer", secret: "env:GH_TEST_WS_TOKEN" } } });
        c.connections!.push({ name: "plain", protocol: "http", http: { url: `http://127.0.0.1:${(plain.address() as AddressInfo).port}` } });
      },
    });
  });
  after(async () => {
    await t?.close();
    await new Promise((r) => wss.close(r));
    plain?.close();
  });

  test("a target that answers an upgrade with anything but 101 gets no raw pipe: what the client sends next never reaches it", async () => {
    const token = await t.agentToken();
    const { connect } = await import("node:net");
    const sock = connect(t.gw.http!.port, "127.0.0.1");
    await once(sock, "connect");
    let answer = "";
    sock.on("data", (b: Buffer) => (answer += b.toString("latin1")));
    // The upgrade request and, in the same write, a request the policy would deny.
    sock.write(`GET /plain/stream/ok HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: foo\r\nAuthorization: Bearer ${token}\r\n\r\nGET /admin/deploy HTTP/1.1\r\nHost: x\r\n\r\n`);
    await once(sock, "close");
    assert.match(answer, /^HTTP\/1\.1 502 Bad Gateway\r\n[\s\S]*connection: close[\s\S]*GH-HTTP-008[\s\S]*plain answered 200 OK instead of 101 Switching Protocols/);
    assert.deepEqual(plainSaw, ["GET /stream/ok"], "the target saw the upgrade request only");
  });

  test("an allowed upgrade passes through both ways with the injected credential; a denied one gets 403", async () => {
    const { default: WebSocket } = await import("ws");
    const token = await t.agentToken();
    const ws = new WebSocket(`ws://127.0.0.1:${t.gw.http!.port}/live/stream/ticks`, { headers: { authorization: `Bearer ${token}` } });
    await new Promise((r, j) => {
      ws.once("open", r);
      ws.once("error", j);
    });
    const got = new Promise<string>((r) => ws.once("message", (m) => r(m.toString())));
    ws.send("hello");
    assert.equal(await got, "echo:hello");
    ws.close();
    assert.equal(auth.at(-1), "Bearer ws-secret");
    const denied = new WebSocket(`ws://127.0.0.1:${t.gw.http!.port}/live/admin/x`, { headers: { authorization: `Bearer ${token}` } });
    const status = await new Promise<number>((r) => {
      denied.once("unexpected-response", (_q, res) => r(res.statusCode!));
      denied.once("error", () => r(-1));
    });
    assert.equal(status, 403);
    const anonymous = new WebSocket(`ws://127.0.0.1:${t.gw.http!.port}/live/stream/ticks`);
    const s401 = await new Promise<number>((r) => {
      anonymous.once("unexpected-response", (_q, res) => r(res.statusCode!));
      anonymous.once("error", () => r(-1));
    });
    assert.equal(s401, 401);
  });
});

describe("HTTP gate transport security", () => {
  let t: TestGateway;
  let tlsGw: TestGateway;
  let target: Server;
  let dir: string;
  const external = Object.values(networkInterfaces()).flat().find((i) => i && i.family === "IPv4" && !i.internal)?.address;
  before(async () => {
    const { mkdtempSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    const { ensureSelfSigned } = await import("../src/protocols/postgres/tls.ts");
    dir = mkdtempSync(join(tmpdir(), "gh-http-tls-"));
    ensureSelfSigned(dir);
    target = createServer((_req, res) => res.end("ok"));
    await new Promise<void>((r) => target.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(target.address() as { port: number }).port}`;
    const policies = [{ name: "all", principals: { groups: ["ai-agents"] }, operations: { protocols: ["http" as const] }, decision: "allow" as const }];
    t = await startTestGateway({ policies, extraConfig: (c) => {
      c.listeners!.http = { host: "0.0.0.0", port: 0, maxBodyBytes: 4096, streamLargeBodies: false };
      c.connections!.push({ name: "svc", protocol: "http", http: { url } });
    } });
    tlsGw = await startTestGateway({ policies, extraConfig: (c) => {
      c.listeners!.http = { host: "127.0.0.1", port: 0, tls: { cert: `file:${join(dir, "gateway-cert.pem")}`, key: `file:${join(dir, "gateway-key.pem")}` } };
      c.connections!.push({ name: "svc", protocol: "http", http: { url } });
    } });
  });
  after(async () => {
    await t?.close();
    await tlsGw?.close();
    await new Promise((r) => target.close(r));
    const { rmSync } = await import("node:fs");
    rmSync(dir, { recursive: true, force: true });
  });

  test("a token over plain HTTP from another host is refused (GH-HTTP-006); loopback is accepted", { skip: external ? false : "no non-loopback IPv4 address here" }, async () => {
    const token = await t.agentToken();
    const remote = await runProcess("curl", ["-s", "-H", `Authorization: Bearer ${token}`, `http://${external}:${t.gw.http!.port}/svc/x`]);
    assert.equal(JSON.parse(remote.stdout).code, "GH-HTTP-006");
    const local = await runProcess("curl", ["-s", "-H", `Authorization: Bearer ${token}`, `http://127.0.0.1:${t.gw.http!.port}/svc/x`]);
    assert.equal(local.stdout, "ok");
  });

  test("with streamLargeBodies off, a body beyond maxBodyBytes gets 413", async () => {
    const token = await t.agentToken();
    const r = await runProcess("curl", ["-s", "-X", "POST", "-H", `Authorization: Bearer ${token}`, "--data-binary", "x".repeat(10_000), `http://127.0.0.1:${t.gw.http!.port}/svc/x`]);
    assert.equal(JSON.parse(r.stdout).code, "GH-HTTP-003");
  });

  test("with listeners.http.tls the gate speaks HTTPS (curl verifies the certificate)", async () => {
    const { join } = await import("node:path");
    const token = await tlsGw.agentToken();
    const r = await runProcess("curl", ["-s", "-S", "--cacert", join(dir, "gateway-cert.pem"), "-H", `Authorization: Bearer ${token}`, `https://127.0.0.1:${tlsGw.gw.http!.port}/svc/x`]);
    assert.equal(r.stdout, "ok", r.stderr);
    // Plain HTTP to the HTTPS port gets a plain answer that says so (not an empty reply).
    const plain = await runProcess("curl", ["-s", "-S", "-i", "-H", `Authorization: Bearer ${token}`, `http://127.0.0.1:${tlsGw.gw.http!.port}/svc/x`]);
    assert.match(plain.stdout, /^HTTP\/1\.1 400 Bad Request\r\n[\s\S]*GH-HTTP-006[\s\S]*use https:\/\//);
    // Several requests on one TLS connection (keep-alive), and a client that never finishes its
    // handshake holds nothing: the listener goes on serving.
    const { connect } = await import("node:net");
    const silent = connect(tlsGw.gw.http!.port, "127.0.0.1");
    await once(silent, "connect");
    const twice = await runProcess("curl", ["-s", "-S", "--cacert", join(dir, "gateway-cert.pem"), "-H", `Authorization: Bearer ${token}`, `https://127.0.0.1:${tlsGw.gw.http!.port}/svc/x`, `https://127.0.0.1:${tlsGw.gw.http!.port}/svc/y`]);
    assert.equal(twice.stdout, "okok", twice.stderr);
    silent.destroy();
  });
});

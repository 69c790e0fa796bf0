// The gateway's tunnel endpoint against misbehaving and outdated agents, and availability with
// several agents serving one connection (in-process agents; test/remote-agent.test.ts runs them
// as separate processes).

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { once } from "node:events";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import WebSocket, { WebSocketServer } from "ws";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLogger } from "../src/observability/logger.ts";
import { ensureSelfSigned } from "../src/protocols/postgres/tls.ts";
import { AgentClient } from "../src/tunnel/agent-client.ts";
import { TargetPins } from "../src/tunnel/agent-targets.ts";
import { clientCredentialsTokenSource } from "../src/tunnel/client-credentials.ts";
import { AgentDirectory } from "../src/tunnel/directory.ts";
import { decodeFrame, decodeMessage, encodeControl, type Frame, FrameType } from "../src/tunnel/frames.ts";
import { connectGateway, runProcess, waitFor } from "./helpers/clients.ts";
import { startTestGateway, type TestGateway } from "./helpers/gateway.ts";
import { gitServer, REPO_SECRET, seedRepository } from "./helpers/git.ts";

const silent = createLogger("silent");

describe("tunnel endpoint", () => {
  let t: TestGateway;
  let secret: string;
  const url = () => `${t.gw.apiUrl.replace("http:", "ws:")}/api/v1/agents/tunnel`;
  before(async () => {
    t = await startTestGateway({ extraConfig: (c) => {
        c.connections![0]!.agent = "edge";
      },
    });
    secret = await new AgentDirectory(t.gw.store).create("edge");
  });
  after(async () => {
    await t?.close();
  });

  /** A raw tunnel client; returns the frames it receives and how the socket closed. */
  async function raw(token: string | undefined): Promise<{ ws: WebSocket; frames: Frame[]; closed: Promise<number>; status?: number }> {
    const ws = new WebSocket(url(), token ? { headers: { authorization: `Bearer ${token}` } } : {});
    const frames: Frame[] = [];
    ws.on("message", (d) => frames.push(...decodeMessage(d as Buffer)));
    ws.on("error", () => {});
    const closed = new Promise<number>((r) => ws.once("close", (code) => r(code)));
    const status = await new Promise<number | undefined>((resolve) => {
      ws.once("open", () => resolve(undefined));
      ws.once("unexpected-response", (_q, res) => resolve(res.statusCode));
    });
    return { ws, frames, closed, ...(status ? { status } : {}) };
  }

  test("no secret, a wrong one, or a revoked one: 401 with GH-AGENT-002, audited", async () => {
    assert.equal((await raw(undefined)).status, 401);
    assert.equal((await raw("gha_wrong")).status, 401);
    assert.equal((await raw("not-even-shaped-right")).status, 401);
    await t.gw.audit.drain();
    const n = await t.gw.store.db.selectFrom("audit_events").select("seq").where("type", "=", "agent.auth_failed").execute();
    assert.ok(n.length >= 3);
    const res = await fetch(`${t.gw.apiUrl}/api/v1/agents/tunnel`);
    assert.equal(res.status, 404, "a plain GET is not a tunnel");
  });

  test("an agent that shares no protocol version is told so and dropped", async () => {
    const c = await raw(secret);
    c.ws.send(encodeControl("HELLO", 0, { versions: [7, 9], software: "9.0.0" }));
    assert.equal(await c.closed, 1002);
    const bye = c.frames.find((f) => f.type === "GOODBYE") as unknown as { body: { code: string; reason: string } };
    assert.equal(bye.body.code, "GH-AGENT-005");
    assert.match(bye.body.reason, /agent speaks tunnel versions 7–9, this gateway 1–1/);
  });

  test("an older agent (versions 1–1) and a newer one (1–5) both get version 1", async () => {
    for (const versions of [[1, 1], [1, 5]]) {
      const c = await raw(secret);
      c.ws.send(encodeControl("HELLO", 0, { versions, software: "x", capabilities: ["postgres", "teleport"] }));
      await waitFor(() => c.frames.find((f) => f.type === "WELCOME"), "WELCOME");
      const w = c.frames.find((f) => f.type === "WELCOME") as unknown as { body: { version: number; capabilities: string[]; connections: string[] } };
      assert.equal(w.body.version, 1);
      assert.deepEqual(w.body.capabilities, ["postgres"], "only capabilities both sides list");
      assert.deepEqual(w.body.connections, ["pg-test"]);
      c.ws.close();
      await c.closed;
    }
    // Several frames per message only for an agent that says it reads them (this one does; the
    // two above, like agents older than BATCH, are sent one frame per message).
    const c = await raw(secret);
    c.ws.send(encodeControl("HELLO", 0, { versions: [1, 1], software: "x", capabilities: ["postgres", "batch"] }));
    await waitFor(() => c.frames.find((f) => f.type === "WELCOME"), "WELCOME");
    const w = c.frames.find((f) => f.type === "WELCOME") as unknown as { body: { capabilities: string[] } };
    assert.deepEqual(w.body.capabilities, ["postgres", "batch"]);
    c.ws.close();
    await c.closed;
  });

  test("frames before HELLO, or frames only a gateway sends, end the tunnel", async () => {
    const early = await raw(secret);
    early.ws.send(encodeControl("OPENED", 1, {}));
    assert.equal(await early.closed, 1002);
    const rogue = await raw(secret);
    rogue.ws.send(encodeControl("HELLO", 0, { versions: [1, 1] }));
    await waitFor(() => rogue.frames.find((f) => f.type === "WELCOME"), "WELCOME");
    rogue.ws.send(encodeControl("OPEN", 2, { connection: "pg-test" }));
    assert.equal(await rogue.closed, 1002);
  });

  test("an agent cannot answer for a stream it was not asked to open", async () => {
    const c = await raw(secret);
    c.ws.send(encodeControl("HELLO", 0, { versions: [1, 1] }));
    await waitFor(() => c.frames.find((f) => f.type === "WELCOME"), "WELCOME");
    c.ws.send(encodeControl("OPENED", 41, { parameterFrames: [], parameters: {}, backendKey: { processId: 1, secretKey: "" }, leftover: [], tls: false }));
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(c.ws.readyState, WebSocket.OPEN, "ignored: no session waits for stream 41");
    c.ws.close();
    await c.closed;
  });
});

describe("several agents serving one connection", () => {
  let t: TestGateway;
  const clients: AgentClient[] = [];
  before(async () => {
    t = await startTestGateway({ extraConfig: (c) => {
        c.connections![0]!.agent = ["edge-a", "edge-b"];
      },
    });
    const dir = new AgentDirectory(t.gw.store);
    for (const name of ["edge-a", "edge-b"]) {
      const a = new AgentClient({ gateway: t.gw.apiUrl, token: await dir.create(name), logger: silent, version: "test", minBackoffMs: 50, maxBackoffMs: 200 });
      a.start();
      clients.push(a);
    }
    await waitFor(() => clients.every((c) => c.state === "connected"), "both agents to connect");
  });
  after(async () => {
    for (const c of clients) await c.stop();
    await t?.close();
  });

  test("sessions go to any connected agent; with one gone, the other serves", async () => {
    const sessions = await Promise.all(Array.from({ length: 6 }, async () => connectGateway(t, await t.agentToken())));
    const status = (await (await fetch(`${t.gw.apiUrl}/metrics`)).text()).match(/gatehouse_agents_connected\{agent="edge-[ab]"\} 1/g);
    assert.equal(status?.length, 2);
    await Promise.all(sessions.map((c) => c.end()));
    const a = clients[0]!;
    await a.stop();
    for (let i = 0; i < 4; i++) {
      const c = await connectGateway(t, await t.agentToken());
      assert.equal((await c.query("SELECT 1 AS one")).rows[0].one, 1);
      await c.end();
    }
    await clients[1]!.stop();
    const err = await connectGateway(t, await t.agentToken()).then(
      () => undefined,
      (e: Error) => e,
    );
    assert.match(err!.message, /GH-AGENT-001.*none of the agents "edge-a", "edge-b" \(serving connection pg-test\) is connected/);
  });
});


describe("an agent with its own OIDC identity (client credentials)", () => {
  let t: TestGateway;
  let agent: AgentClient | undefined;
  before(async () => {
    t = await startTestGateway({
      idp: { tokenLifetimeSeconds: 4 },
      extraConfig: (c) => {
        c.connections![0]!.agent = "edge-oidc";
        c.agents = [{ name: "edge-oidc", clientIds: ["edge-oidc-app"] }];
      },
    });
  });
  after(async () => {
    await agent?.stop();
    await t?.close();
  });

  const source = (clientId: string) => clientCredentialsTokenSource({ tokenUrl: t.idp.tokenEndpoint, clientId, clientSecret: t.idp.clientSecret(clientId), resource: t.idp.audience });

  test("its token authenticates it; the tunnel closes when the token expires and comes back with a fresh one", { timeout: 30_000 }, async () => {
    let connects = 0;
    agent = new AgentClient({ gateway: t.gw.apiUrl, token: source("edge-oidc-app"), logger: silent, version: "test", minBackoffMs: 50, maxBackoffMs: 200 });
    agent.onState = (s) => {
      if (s === "connected") connects++;
    };
    agent.start();
    await waitFor(() => agent!.state === "connected", "the OIDC agent to connect", 10_000);
    const c = await connectGateway(t, await t.agentToken());
    assert.equal((await c.query("SELECT 1 AS one")).rows[0].one, 1);
    await c.end();
    await waitFor(() => connects >= 2, "a reconnect after the 4 s token expired", 15_000);
    const again = await connectGateway(t, await t.agentToken());
    assert.equal((await again.query("SELECT 2 AS two")).rows[0].two, 2);
    await again.end();
  });

  test("a token of another application, or of a revoked agent, is refused", async () => {
    const other = await source("someone-else")();
    const url = `${t.gw.apiUrl.replace("http:", "ws:")}/api/v1/agents/tunnel`;
    const status = (bearer: string) =>
      new Promise<number | undefined>((resolve) => {
        const ws = new WebSocket(url, { headers: { authorization: `Bearer ${bearer}` } });
        ws.on("error", () => {});
        ws.once("open", () => {
          ws.close();
          resolve(undefined);
        });
        ws.once("unexpected-response", (_q, res) => resolve(res.statusCode));
      });
    assert.equal(await status(other), 401);
    await new AgentDirectory(t.gw.store).revoke("edge-oidc", Date.now(), ["edge-oidc"]);
    assert.equal(await status(await source("edge-oidc-app")()), 401);
  });
});

describe("the tunnel over TLS (api.tls)", () => {
  let t: TestGateway;
  let dir: string;
  let cert: string;
  const agents: AgentClient[] = [];
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "gh-api-tls-"));
    cert = ensureSelfSigned(dir).cert;
    t = await startTestGateway({
      extraConfig: (c) => {
        c.connections![0]!.agent = "edge";
        c.api!.tls = { cert: `file:${join(dir, "gateway-cert.pem")}`, key: `file:${join(dir, "gateway-key.pem")}` };
      },
    });
  });
  after(async () => {
    for (const a of agents) await a.stop();
    await t?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test("the API answers over HTTPS and an agent trusting the CA connects over wss://; one that does not, cannot", async () => {
    assert.match(t.gw.apiUrl, /^https:/);
    const secret = await new AgentDirectory(t.gw.store).create("edge");
    const untrusting = new AgentClient({ gateway: t.gw.apiUrl, token: secret, logger: silent, version: "test", minBackoffMs: 50, maxBackoffMs: 100 });
    agents.push(untrusting);
    untrusting.start();
    await new Promise((r) => setTimeout(r, 500));
    assert.notEqual(untrusting.state, "connected", "an unverified certificate is refused");
    await untrusting.stop();
    const trusting = new AgentClient({ gateway: t.gw.apiUrl, token: secret, logger: silent, version: "test", ca: cert });
    agents.push(trusting);
    trusting.start();
    await waitFor(() => trusting.state === "connected", "the agent over wss://");
    const c = await connectGateway(t, await t.agentToken());
    assert.equal((await c.query("SELECT 'tls' AS x")).rows[0].x, "tls");
    await c.end();
  });
});

describe("HTTP through a network-resident agent", () => {
  let t: TestGateway;
  let agent: AgentClient;
  let target: import("node:http").Server;
  const seen: Array<{ authorization: string | undefined; body: string; url: string }> = [];
  let connections = 0;
  before(async () => {
    process.env.GH_TEST_EDGE_API_KEY = "edge-api-key";
    const { createServer } = await import("node:http");
    target = createServer((req, res) => {
      const parts: Buffer[] = [];
      req.on("data", (b) => parts.push(b));
      req.on("end", () => {
        seen.push({ authorization: req.headers.authorization, body: Buffer.concat(parts).toString(), url: req.url! });
        res.writeHead(200, { "content-type": "text/plain" });
        if (req.url === "/dies-mid-body") {
          // Part of a chunked body, then the target goes away.
          res.write("partial");
          setTimeout(() => req.socket.destroy(), 50);
          return;
        }
        res.end("x".repeat(200_000));
      });
    });
    target.on("connection", () => connections++);
    // WebSocket on the same target: an echo that reports the credential it was sent.
    new WebSocketServer({ server: target }).on("connection", (ws, req) => ws.on("message", (m) => ws.send(`${req.headers.authorization}:${m.toString()}`)));
    await new Promise<void>((r) => target.listen(0, "127.0.0.1", r));
    t = await startTestGateway({
      policies: [{ name: "agents-http", principals: { groups: ["ai-agents"] }, operations: { protocols: ["http"] }, decision: "allow" }],
      extraConfig: (c) => {
        c.listeners!.http = { host: "127.0.0.1", port: 0 };
        c.connections!.push({ name: "api", protocol: "http", agent: "edge-http", http: { url: `http://127.0.0.1:${(target.address() as { port: number }).port}`, auth: { type: "bearer", secret: "env:GH_TEST_EDGE_API_KEY" } } });
      },
    });
    agent = new AgentClient({ gateway: t.gw.apiUrl, token: await new AgentDirectory(t.gw.store).create("edge-http"), logger: silent, version: "test" });
    agent.start();
    await waitFor(() => agent.state === "connected", "the agent");
  });
  after(async () => {
    await agent?.stop();
    await t?.close();
    await new Promise((r) => target.close(r));
  });

  test("a WebSocket goes through the tunnel with the injected credential; a refused upgrade is not a pipe", async () => {
    const token = await t.agentToken();
    const ws = new WebSocket(`ws://127.0.0.1:${t.gw.http!.port}/api/live`, { headers: { authorization: `Bearer ${token}` } });
    await once(ws, "open");
    ws.send("ping");
    const [m] = (await once(ws, "message")) as [Buffer];
    assert.equal(m.toString(), "Bearer edge-api-key:ping");
    ws.close();
    // The target's WebSocket server refuses an upgrade to another protocol (400): the caller is
    // told so, and the connection is closed.
    const { connect } = await import("node:net");
    const sock = connect(t.gw.http!.port, "127.0.0.1");
    let answer = "";
    sock.on("data", (b: Buffer) => (answer += b.toString("latin1")));
    sock.write(`GET /api/live HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: foo\r\nAuthorization: Bearer ${token}\r\n\r\n`);
    await once(sock, "close");
    assert.match(answer, /^HTTP\/1\.1 502 [\s\S]*GH-HTTP-008[\s\S]*api answered 400 Bad Request instead of 101/);
  });

  test("requests and their bodies go through the tunnel; the agent injects the credential; large responses stream back", async () => {
    const token = await t.agentToken();
    const res = await fetch(`http://127.0.0.1:${t.gw.http!.port}/api/items?x=1`, { method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, body: JSON.stringify({ a: 1 }) });
    assert.equal(res.status, 200);
    assert.equal((await res.text()).length, 200_000);
    assert.deepEqual(seen.at(-1), { authorization: "Bearer edge-api-key", body: '{"a":1}', url: "/items?x=1" });
    const many = await Promise.all(Array.from({ length: 20 }, (_, i) => fetch(`http://127.0.0.1:${t.gw.http!.port}/api/n/${i}`, { headers: { authorization: `Bearer ${token}` } }).then(async (r) => [r.status, (await r.text()).length])));
    assert.deepEqual(many, Array.from({ length: 20 }, () => [200, 200_000]));
  });

  test("a target that dies in the middle of a body: the client's connection is closed, not left waiting", async () => {
    const res = await fetch(`http://127.0.0.1:${t.gw.http!.port}/api/dies-mid-body`, { headers: { authorization: `Bearer ${await t.agentToken()}` } });
    assert.equal(res.status, 200, "the head had already been sent");
    const started = Date.now();
    await assert.rejects(res.text(), "the body is cut off, as from the target");
    assert.ok(Date.now() - started < 5000);
    // The gateway goes on serving.
    const ok = await fetch(`http://127.0.0.1:${t.gw.http!.port}/api/after`, { headers: { authorization: `Bearer ${await t.agentToken()}` } });
    assert.equal((await ok.text()).length, 200_000);
  });

  test("one request after another, with bodies: each arrives whole, and the agent keeps one connection to the target", async () => {
    const token = await t.agentToken();
    const before = connections;
    for (let i = 0; i < 25; i++) {
      const body = JSON.stringify({ n: i, pad: "y".repeat(i * 100) });
      const res = await fetch(`http://127.0.0.1:${t.gw.http!.port}/api/seq/${i}`, { method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, body });
      assert.equal(res.status, 200);
      assert.equal((await res.text()).length, 200_000);
      assert.deepEqual(seen.at(-1), { authorization: "Bearer edge-api-key", body, url: `/seq/${i}` });
    }
    // A request body collected before it is sent goes with its head; the connection is reused.
    assert.ok(connections - before <= 1, `${connections - before} new connections to the target for 25 sequential requests`);
  });
});

describe("an agent's targets file (pinning) against a gateway that names other targets or credentials", () => {
  let t: TestGateway;
  let pinned: AgentClient;
  let open: AgentClient;
  let spySecret: string;
  /** What both agents log (the refusals' details). */
  const agentLog: string[] = [];
  const servers: Array<import("node:http").Server> = [];
  /** What each server received: its name, the Authorization header, the path. */
  const seen: Array<[string, string | undefined, string]> = [];
  const ports: number[] = [];
  before(async () => {
    Object.assign(process.env, { GH_TEST_PIN_KEY: "pin-key", GH_TEST_OTHER_KEY: "other-key", GATEHOUSE_AGENT_TOKEN: "gha_the-agents-own-secret" });
    const { createServer } = await import("node:http");
    for (const name of ["service", "attacker"]) {
      const srv = createServer((req, res) => {
        seen.push([name, req.headers.authorization, req.url!]);
        req.resume();
        res.end("ok");
      });
      await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
      servers.push(srv);
      ports.push((srv.address() as { port: number }).port);
    }
    const [service, attacker] = ports.map((p) => `http://127.0.0.1:${p}`);
    t = await startTestGateway({
      policies: [{ name: "agents-http", principals: { groups: ["ai-agents"] }, operations: { protocols: ["http"] }, decision: "allow" }],
      extraConfig: (c) => {
        c.listeners!.http = { host: "127.0.0.1", port: 0 };
        const http = (name: string, agent: string, url: string, secret: string) => c.connections!.push({ name, protocol: "http", agent, http: { url: url!, auth: { type: "bearer", secret } } });
        http("service", "edge-pinned", service!, "env:GH_TEST_PIN_KEY");
        // What a tampered configuration would add: the same credential to another host, another
        // of the agent's credentials to the pinned host, the agent's own secret anywhere.
        http("stray", "edge-pinned", attacker!, "env:GH_TEST_PIN_KEY");
        http("other-credential", "edge-pinned", service!, "env:GH_TEST_OTHER_KEY");
        http("own-secret", "edge-open", attacker!, "env:GATEHOUSE_AGENT_TOKEN");
        http("unpinned", "edge-open", attacker!, "env:GH_TEST_OTHER_KEY");
        http("spy", "edge-spy", service!, "env:GH_TEST_PIN_KEY");
      },
    });
    const dir = new AgentDirectory(t.gw.store);
    const targets = TargetPins.parse(`targets:\n  - http: ${service}\n    credentials: [env:GH_TEST_PIN_KEY]\n`);
    spySecret = await dir.create("edge-spy");
    const { PassThrough } = await import("node:stream");
    const logTo = (sink: string[]) => {
      const out = new PassThrough();
      out.on("data", (b: Buffer) => sink.push(b.toString()));
      return createLogger("warn", out);
    };
    pinned = new AgentClient({ gateway: t.gw.apiUrl, token: await dir.create("edge-pinned"), logger: logTo(agentLog), version: "test", targets });
    open = new AgentClient({ gateway: t.gw.apiUrl, token: await dir.create("edge-open"), logger: logTo(agentLog), version: "test" });
    pinned.start();
    open.start();
    await waitFor(() => pinned.state === "connected" && open.state === "connected", "the agents");
  });
  after(async () => {
    await pinned?.stop();
    await open?.stop();
    await t?.close();
    for (const srv of servers) await new Promise((r) => srv.close(r));
    for (const k of ["GH_TEST_PIN_KEY", "GH_TEST_OTHER_KEY", "GATEHOUSE_AGENT_TOKEN"]) delete process.env[k];
  });

  const get = async (connection: string) => {
    const res = await fetch(`http://127.0.0.1:${t.gw.http!.port}/${connection}/x`, { headers: { authorization: `Bearer ${await t.agentToken()}` } });
    return { status: res.status, type: res.headers.get("content-type"), body: await res.text() };
  };

  test("the pinned target gets its credential; other targets and credentials are refused before anything is sent", async () => {
    assert.deepEqual(await get("service"), { status: 200, type: null, body: "ok" });
    assert.deepEqual(seen, [["service", "Bearer pin-key", "/x"]]);
    for (const [connection, why] of [
      ["stray", /connection stray: http:\/\/127\.0\.0\.1:\d+ is not in the agent's targets file/],
      ["other-credential", /connection other-credential: the credential env:GH_TEST_OTHER_KEY is not listed for http:\/\/127\.0\.0\.1:\d+/],
      ["own-secret", /the credential env:GATEHOUSE_AGENT_TOKEN is the agent's own secret, never a target's/],
    ] as const) {
      const r = await get(connection);
      assert.equal(r.status, 502, connection);
      assert.equal(r.type, "application/problem+json");
      const problem = JSON.parse(r.body) as { code: string; detail: string };
      assert.equal(problem.code, "GH-AGENT-007");
      // The caller learns that the agent refused, not the internal address or credential names.
      assert.match(problem.detail, new RegExp(`connection ${connection}: refused by the agent \\(the agent's log names the target or credential\\)$`));
      assert.doesNotMatch(problem.detail, /127\.0\.0\.1|env:/);
      // The agent's log says exactly what was refused.
      await waitFor(() => agentLog.some((l) => why.test(l)), `the agent to log why ${connection} was refused`);
    }
    assert.equal(seen.length, 1, "neither server saw another request");
    // An agent without a targets file serves what the gateway names (its own secrets aside).
    assert.equal((await get("unpinned")).status, 200);
    assert.deepEqual(seen.at(-1), ["attacker", "Bearer other-key", "/x"]);
  });

  for (const batch of [false, true])
    test(`the caller's token and cookies never cross the tunnel: what an agent is sent${batch ? " (frames batched)" : ""}`, async () => {
      // A raw agent that records every frame the gateway sends it.
      const ws = new WebSocket(`${t.gw.apiUrl.replace("http:", "ws:")}/api/v1/agents/tunnel`, { headers: { authorization: `Bearer ${spySecret}` } });
      const messages: Buffer[] = [];
      ws.on("message", (d) => {
        const buf = d as Buffer;
        messages.push(buf);
        for (const f of decodeMessage(buf)) if (f.type === "OPEN") ws.send(encodeControl("OPEN_FAILED", f.stream, { code: "GH-HTTP-005", message: "spy" }));
      });
      await new Promise((r) => ws.once("open", r));
      ws.send(encodeControl("HELLO", 0, { versions: [1, 1], software: "spy", capabilities: batch ? ["http", "batch"] : ["http"] }));
      await waitFor(() => messages.some((b) => decodeFrame(b).type === "WELCOME"), "WELCOME");
      const token = await t.agentToken();
      const res = await fetch(`http://127.0.0.1:${t.gw.http!.port}/spy/x`, { headers: { authorization: `Bearer ${token}`, cookie: "session=caller-cookie", "x-gatehouse-token": token, "x-trace": "kept" } });
      assert.equal(res.status, 502);
      const open = messages.flatMap((b) => decodeMessage(b)).find((f) => f.type === "OPEN") as unknown as { body: { request: { headers: Record<string, string> } } };
      assert.equal(open.body.request.headers["x-trace"], "kept");
      for (const h of ["authorization", "cookie", "x-gatehouse-token"]) assert.equal(open.body.request.headers[h], undefined, h);
      const everything = Buffer.concat(messages);
      assert.equal(everything.indexOf(token.split(".")[2]!), -1, "not even the token's signature");
      assert.equal(everything.indexOf("caller-cookie"), -1);
      // The OPEN and the CLOSE of the bodiless request's stream: one BATCH for an agent that
      // announced "batch", two messages of one frame each for one that did not.
      const batches = messages.filter((b) => b[0] === FrameType.BATCH);
      if (batch) assert.deepEqual(batches.flatMap((b) => decodeMessage(b).map((f) => f.type)), ["OPEN", "CLOSE"]);
      else assert.equal(batches.length, 0);
      ws.close();
    });
});

describe("git pushes through a network-resident agent", () => {
  let t: TestGateway;
  let agent: AgentClient;
  let dir: string;
  let srv: Awaited<ReturnType<typeof gitServer>>;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "gh-git-remote-"));
    process.env.GH_TEST_REPO_SECRET = REPO_SECRET;
    await seedRepository(join(dir, "repos", "app.git"), join(dir, "seed"));
    srv = await gitServer(join(dir, "repos"));
    t = await startTestGateway({
      policies: [
        { name: "git-all", principals: { groups: ["ai-agents"] }, operations: { git: { actions: ["fetch", "push"] } }, decision: "allow" },
        { name: "no-force", operations: { git: { actions: ["force", "delete"] } }, decision: "deny", message: "no force pushes" },
      ],
      extraConfig: (c) => {
        c.listeners!.http = { host: "127.0.0.1", port: 0 };
        c.connections!.push({ name: "repo", protocol: "http", agent: "edge-git", http: { url: srv.url, auth: { type: "basic", username: "git-bot", secret: "env:GH_TEST_REPO_SECRET" }, git: true } });
      },
    });
    agent = new AgentClient({ gateway: t.gw.apiUrl, token: await new AgentDirectory(t.gw.store).create("edge-git"), logger: silent, version: "test", gitMirrorDir: join(dir, "agent-mirrors") });
    agent.start();
    await waitFor(() => agent.state === "connected", "the agent");
  });
  after(async () => {
    await agent?.stop();
    await t?.close();
    await new Promise((r) => srv?.server.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  test("the agent's mirror tells a fast-forward (passes) from a force push (refused)", async () => {
    const token = await t.agentToken();
    const work = join(dir, "work");
    const env = { PATH: process.env.PATH, HOME: dir, GIT_TERMINAL_PROMPT: "0", GIT_CONFIG_COUNT: "1", GIT_CONFIG_KEY_0: "http.extraHeader", GIT_CONFIG_VALUE_0: `Authorization: Bearer ${token}`, GIT_AUTHOR_NAME: "A", GIT_AUTHOR_EMAIL: "a@e", GIT_COMMITTER_NAME: "A", GIT_COMMITTER_EMAIL: "a@e" };
    const g = (args: string[]) => runProcess("git", args, { env, timeoutMs: 60_000 });
    assert.equal((await g(["clone", "-q", `http://127.0.0.1:${t.gw.http!.port}/repo/app.git`, work])).code, 0);
    writeFileSync(join(work, "f.txt"), "1\n");
    assert.equal((await g(["-C", work, "commit", "-q", "-am", "x", "--allow-empty"])).code, 0);
    assert.equal((await g(["-C", work, "add", "f.txt"])).code, 0);
    assert.equal((await g(["-C", work, "commit", "-q", "-m", "add f"])).code, 0);
    const ff = await g(["-C", work, "push", "origin", "main"]);
    assert.equal(ff.code, 0, ff.stderr);
    assert.equal((await g(["-C", work, "commit", "-q", "--amend", "-m", "rewritten"])).code, 0);
    const forced = await g(["-C", work, "push", "--force", "origin", "main"]);
    assert.notEqual(forced.code, 0);
    assert.match(forced.stderr, /\[remote rejected\] main -> main \(GH-POLICY-001 .*no force pushes/);
  });
});

describe("an agent batches its frames only for a gateway that reads BATCH", () => {
  for (const gatewayBatches of [true, false])
    test(`a gateway that ${gatewayBatches ? "offers" : "does not offer"} "batch" gets an HTTP answer as ${gatewayBatches ? "one BATCH" : "a message per frame"}`, async () => {
      // The target, and a raw gateway that speaks the tunnel by hand.
      const target = createServer((_req, res) => res.end("hello"));
      target.listen(0, "127.0.0.1");
      await once(target, "listening");
      const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, path: "/api/v1/agents/tunnel" });
      await once(wss, "listening");
      const messages: Buffer[] = [];
      wss.on("connection", (ws) => {
        ws.on("message", (d) => {
          const buf = d as Buffer;
          const frames = decodeMessage(buf);
          if (frames[0]!.type === "HELLO") {
            const asked = (frames[0] as unknown as { body: { capabilities: string[] } }).body.capabilities;
            assert.ok(asked.includes("batch"), "the agent says it reads BATCH");
            ws.send(encodeControl("WELCOME", 0, { version: 1, capabilities: gatewayBatches ? ["http", "batch"] : ["http"], heartbeatMs: 60_000, window: 1 << 20, agent: "edge", connections: ["svc"] }));
            ws.send(encodeControl("OPEN", 1, { connection: "svc", protocol: "http", target: { url: `http://127.0.0.1:${(target.address() as AddressInfo).port}` }, request: { method: "GET", target: "/x", headers: {}, length: 0 } }));
            ws.send(encodeControl("CLOSE", 1, {}));
            return;
          }
          messages.push(buf);
        });
      });
      const agent = new AgentClient({ gateway: `http://127.0.0.1:${(wss.address() as AddressInfo).port}`, token: "gha_test", logger: silent, version: "test" });
      agent.start();
      try {
        await waitFor(() => messages.flatMap((m) => decodeMessage(m)).some((f) => f.type === "CLOSE"), "the answer");
        const frames = messages.flatMap((m) => decodeMessage(m));
        assert.deepEqual(
          frames.map((f) => f.type),
          ["OPENED", "DATA", "CLOSE"],
        );
        assert.equal((frames[1] as { data: Buffer }).data.toString(), "hello");
        if (gatewayBatches) {
          assert.equal(messages.length, 1, "three frames, one message");
          assert.equal(messages[0]![0], FrameType.BATCH);
        } else {
          assert.equal(messages.length, 3, "an older gateway is sent single frames");
          for (const m of messages) decodeFrame(m);
        }
      } finally {
        await agent.stop();
        await new Promise((r) => wss.close(r));
        target.close();
      }
    });
});

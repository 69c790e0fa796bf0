// The HTTP gate's own HTTP/1.1 server (src/protocols/http/server.ts) and the agent's client to
// targets (src/agent/h1-client.ts), on real sockets: keep-alive, pipelining, 100-continue, bodies
// whole and streamed, half-close, timeouts, HTTP/1.0, interim responses, stale keep-alive sockets,
// and what a broken peer gets. The full gate on top is in http-gate.test.ts.

import assert from "node:assert/strict";
import { createServer as createHttpServer } from "node:http";
import { type AddressInfo, connect, createServer, type Server, type Socket } from "node:net";
import { Readable } from "node:stream";
import { after, before, describe, test } from "node:test";
import { H1Pool, type UpstreamTarget, UpstreamError } from "../src/agent/h1-client.ts";
import { HttpForwarder } from "../src/agent/http.ts";
import { SecretResolver } from "../src/agent/secrets.ts";
import type { HttpTarget } from "../src/domain/connection.ts";
import { H1Connection, type H1Request, type H1Response } from "../src/protocols/http/server.ts";

type Handler = (req: H1Request, res: H1Response) => void | Promise<void>;

async function gateServer(handler: Handler, opts: { headersTimeoutMs?: number; onUpgrade?: (req: H1Request, s: Socket, head: Buffer) => void } = {}): Promise<{ port: number; close: () => Promise<void> }> {
  const server = tracked(createServer({ allowHalfOpen: true }));
  server.on("connection", (socket: Socket) => {
    new H1Connection(
      socket,
      {
        request: (req, res) => void Promise.resolve(handler(req, res)).catch(() => res.destroy()),
        upgrade: opts.onUpgrade ?? ((_r, s) => s.destroy()),
      },
      { headersTimeoutMs: opts.headersTimeoutMs ?? 5000, keepAliveTimeoutMs: 5000 },
    );
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { port: (server.address() as AddressInfo).port, close: () => closeServer(server) };
}

const sockets = new WeakMap<Server, Set<Socket>>();

/** Track a server's sockets so closing it does not wait on idle keep-alive connections. */
function tracked<S extends Server>(server: S): S {
  const set = new Set<Socket>();
  sockets.set(server, set);
  server.on("connection", (s: Socket) => {
    set.add(s);
    s.once("close", () => set.delete(s));
  });
  return server;
}

function closeServer(server: Server): Promise<void> {
  return new Promise((r) => {
    server.close(() => r());
    for (const s of sockets.get(server) ?? []) s.destroy();
  });
}

/** Send raw bytes; collect everything until the server closes (or `until` matches). */
function exchange(port: number, chunks: (string | Buffer)[], opts: { until?: RegExp; end?: boolean; gapMs?: number } = {}): Promise<string> {
  return new Promise((resolve) => {
    const sock = connect(port, "127.0.0.1");
    let out = "";
    const done = () => {
      sock.destroy();
      resolve(out);
    };
    sock.on("data", (b) => {
      out += b.toString("latin1");
      if (opts.until?.test(out)) done();
    });
    sock.on("close", () => resolve(out));
    sock.on("error", () => resolve(out));
    sock.once("connect", async () => {
      for (const c of chunks) {
        sock.write(c);
        if (opts.gapMs) await new Promise((r) => setTimeout(r, opts.gapMs));
      }
      if (opts.end) sock.end();
    });
  });
}

const count = (s: string, re: RegExp) => (s.match(re) ?? []).length;

describe("the gate's HTTP/1.1 server", () => {
  let srv: { port: number; close: () => Promise<void> };
  const order: string[] = [];
  before(async () => {
    srv = await gateServer(async (req, res) => {
      order.push(`start ${req.target}`);
      if (req.target.startsWith("/slow")) await new Promise((r) => setTimeout(r, 50));
      if (req.target === "/echo") {
        const { body, complete } = await req.readBody(1 << 20);
        res.send(200, { "content-type": "text/plain" }, Buffer.from(`${complete ? "whole" : "partial"} ${body.length} ${body.subarray(0, 16).toString()}`));
      } else if (req.target === "/count") {
        let n = 0;
        const { body, complete } = await req.readBody(1000);
        n += body.length;
        if (!complete) for await (const c of req.rest()) n += (c as Buffer).length;
        res.send(200, {}, Buffer.from(String(n)));
      } else if (req.target === "/stream") {
        res.writeHead(200, { "content-type": "text/plain" });
        for (let i = 0; i < 3; i++) res.write(Buffer.from(`part${i};`));
        res.end();
      } else {
        // Logged before the answer: answering lets the next pipelined request start at once.
        order.push(`end ${req.target}`);
        res.send(200, { "x-target": req.target }, Buffer.from(`hello ${req.target}`));
      }
    });
  });
  after(() => srv.close());

  test("keep-alive: requests one after another on one connection", async () => {
    const out = await exchange(srv.port, ["GET /a HTTP/1.1\r\nHost: x\r\n\r\n", "GET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"], { gapMs: 30 });
    assert.equal(count(out, /HTTP\/1\.1 200 OK/g), 2);
    assert.match(out, /hello \/a[\s\S]*connection: close[\s\S]*hello \/b$/);
  });

  test("pipelining: requests sent at once are answered in order, one at a time", async () => {
    order.length = 0;
    const out = await exchange(srv.port, ["GET /slow1 HTTP/1.1\r\nHost: x\r\n\r\nGET /fast HTTP/1.1\r\nHost: x\r\n\r\nGET /slow2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"]);
    assert.ok(out.indexOf("hello /slow1") < out.indexOf("hello /fast") && out.indexOf("hello /fast") < out.indexOf("hello /slow2"), out);
    assert.deepEqual(order, ["start /slow1", "end /slow1", "start /fast", "end /fast", "start /slow2", "end /slow2"]);
  });

  test("request bodies: Content-Length and chunked, whole; bytes after them start the next request", async () => {
    const out = await exchange(srv.port, ["POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4;x=y\r\ndefg\r\n0\r\nT: 1\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"]);
    assert.match(out, /whole 11 hello world/);
    assert.match(out, /whole 7 abcdefg/);
    assert.match(out, /hello \/after$/);
  });

  test("a body larger than the reader's limit: what was read, then the rest streamed", async () => {
    const big = Buffer.alloc(3 * 1024 * 1024, 0x61);
    const out = await exchange(srv.port, [`POST /count HTTP/1.1\r\nHost: x\r\nContent-Length: ${big.length}\r\nConnection: close\r\n\r\n`, big]);
    assert.match(out, new RegExp(`\\r\\n\\r\\n${big.length}$`));
    const chunked = await exchange(srv.port, ["POST /count HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n", ...Array.from({ length: 50 }, () => `400\r\n${"b".repeat(1024)}\r\n`), "0\r\n\r\n"]);
    assert.match(chunked, /\r\n\r\n51200$/);
  });

  test("Expect: 100-continue gets 100 when the handler reads the body", async () => {
    const out = await new Promise<string>((resolve) => {
      const sock = connect(srv.port, "127.0.0.1", () => sock.write("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"));
      let got = "";
      sock.on("data", (b) => {
        got += b.toString();
        if (got === "HTTP/1.1 100 Continue\r\n\r\n") sock.write("abcde");
      });
      sock.on("close", () => resolve(got));
    });
    assert.match(out, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 OK[\s\S]*whole 5 abcde$/);
    assert.match(await exchange(srv.port, ["POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nExpect: something-else\r\n\r\nx"]), /^HTTP\/1\.1 417 /);
  });

  test("Expect: 100-continue answered before the body was asked for: the connection closes (the body may or may not follow)", async () => {
    // The handler answers /a without reading the body; the client, never sent 100, sends the next
    // request instead of the body. Reading on would take that request for the body.
    const out = await exchange(srv.port, ["POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\nExpect: 100-continue\r\n\r\n", "GET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"], { gapMs: 30 });
    assert.match(out, /^HTTP\/1\.1 200 OK\r\n[\s\S]*connection: close[\s\S]*hello \/a$/);
    assert.doesNotMatch(out, /100 Continue/);
  });

  test("empty lines before a request line are ignored (RFC 9112 §2.2)", async () => {
    const out = await exchange(srv.port, ["\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"]);
    assert.match(out, /^HTTP\/1\.1 200 OK[\s\S]*hello \/a$/);
  });

  test("a body the handler never read: skipped when short (connection reused), connection closed when long", async () => {
    const out = await exchange(srv.port, ["POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nabcdeGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"]);
    assert.equal(count(out, /HTTP\/1\.1 200/g), 2);
    const big = await exchange(srv.port, [`POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: ${10 * 1024 * 1024}\r\n\r\n`, "x".repeat(1000)]);
    assert.match(big, /^HTTP\/1\.1 200 OK[\s\S]*connection: close[\s\S]*hello \/a$/, "answered, then closed");
  });

  test("streamed responses: chunked to HTTP/1.1, until close to HTTP/1.0", async () => {
    const v11 = await exchange(srv.port, ["GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"]);
    assert.match(v11, /transfer-encoding: chunked\r\n[\s\S]*\r\n\r\n6\r\npart0;\r\n6\r\npart1;\r\n6\r\npart2;\r\n0\r\n\r\n$/);
    const v10 = await exchange(srv.port, ["GET /stream HTTP/1.0\r\n\r\n"]);
    assert.match(v10, /connection: close\r\n[\s\S]*\r\n\r\npart0;part1;part2;$/);
    assert.doesNotMatch(v10, /chunked/);
    const ka10 = await exchange(srv.port, ["GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "GET /b HTTP/1.0\r\n\r\n"], { gapMs: 30 });
    assert.match(ka10, /connection: keep-alive[\s\S]*hello \/a[\s\S]*hello \/b$/);
  });

  test("HEAD gets the head only", async () => {
    const out = await exchange(srv.port, ["HEAD /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"]);
    assert.match(out, /^HTTP\/1\.1 200 OK\r\n[\s\S]*?\r\n\r\nHTTP\/1\.1 200 OK[\s\S]*hello \/b$/);
    assert.doesNotMatch(out, /hello \/a/);
  });

  test("a client that half-closes after its request still gets the answer", async () => {
    const out = await exchange(srv.port, ["GET /half HTTP/1.1\r\nHost: x\r\n\r\n"], { end: true });
    assert.match(out, /hello \/half$/);
  });

  test("malformed requests: problem+json GH-HTTP-007 with the right status, then close", async () => {
    const cases: [string, number][] = [
      ["GET / HTTP/1.1\r\nHost: x\r\nX : y\r\n\r\n", 400],
      ["GET / HTTP/3.0\r\nHost: x\r\n\r\n", 505],
      [`GET / HTTP/1.1\r\nHost: x\r\nX: ${"a".repeat(20000)}\r\n\r\n`, 431],
      ["POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: br\r\n\r\n", 400],
      ["POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501],
      ["POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400],
    ];
    for (const [text, status] of cases) {
      const out = await exchange(srv.port, [text]);
      assert.match(out, new RegExp(`^HTTP/1\\.1 ${status} `), text.slice(0, 60));
      const body = JSON.parse(out.slice(out.indexOf("\r\n\r\n") + 4));
      assert.equal(body.code, "GH-HTTP-007");
      assert.equal(body.status, status);
      assert.ok(body.detail);
    }
  });

  test("a request head that never completes is answered 408 after the header timeout", async () => {
    const slow = await gateServer((_q, r) => r.send(200, {}, Buffer.from("x")), { headersTimeoutMs: 200 });
    try {
      const t0 = Date.now();
      const out = await exchange(slow.port, ["GET / HTTP/1.1\r\nHost: x\r\n"]);
      assert.match(out, /^HTTP\/1\.1 408 /);
      assert.ok(Date.now() - t0 >= 150);
    } finally {
      await slow.close();
    }
  });

  test("a request body that stalls is answered 408 after the header timeout; a body that keeps coming slowly is not", { timeout: 15_000 }, async () => {
    let readErr = "";
    const slow = await gateServer(
      (q, r) => {
        q.readBody(1 << 20).then(
          ({ body }) => r.send(200, {}, Buffer.from(`got ${body.length}`)),
          (e: Error) => (readErr = e.message),
        );
      },
      { headersTimeoutMs: 300 },
    );
    try {
      const t0 = Date.now();
      const out = await exchange(slow.port, ["POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc"]);
      assert.match(out, /^HTTP\/1\.1 408 [\s\S]*the request body stalled/);
      const took = Date.now() - t0;
      assert.ok(took >= 250 && took < 3000, `408 after ${took} ms`);
      assert.match(readErr, /stalled/);
      // Ten pieces 100 ms apart: each within the timeout, the whole well past it.
      const pieces = ["POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close\r\n\r\n", ..."0123456789"];
      assert.match(await exchange(slow.port, pieces, { gapMs: 100 }), /^HTTP\/1\.1 200 [\s\S]*got 10$/);
    } finally {
      await slow.close();
    }
  });

  test("after a keep-alive request, a head that never completes still gets 408 at the header timeout", async () => {
    // The idle timeout (5 s) is running when the partial head arrives: the shorter header timeout wins.
    const slow = await gateServer((_q, r) => r.send(200, {}, Buffer.from("x")), { headersTimeoutMs: 200 });
    try {
      const t0 = Date.now();
      const out = await exchange(slow.port, ["GET /a HTTP/1.1\r\nHost: x\r\n\r\n", "GET /b HTTP/1.1\r\nHost: x\r\n"], { gapMs: 50 });
      assert.match(out, /^HTTP\/1\.1 200 [\s\S]*HTTP\/1\.1 408 /);
      const took = Date.now() - t0;
      assert.ok(took >= 200 && took < 3000, `408 after ${took} ms`);
    } finally {
      await slow.close();
    }
  });

  test("an upgrade request hands the socket over with the bytes that followed the head", async () => {
    const up = await gateServer((_q, r) => r.send(200, {}, Buffer.from("no")), {
      onUpgrade: (req, s, head) => {
        s.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n${req.target}|${head.toString()}`);
        s.on("data", (b) => s.write(b));
        s.on("end", () => s.end());
      },
    });
    try {
      const out = await exchange(up.port, ["GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\nearly", "later"], { gapMs: 20, until: /later$/ });
      assert.match(out, /^HTTP\/1\.1 101 [\s\S]*\/ws\|early(early)?later$/);
    } finally {
      await up.close();
    }
  });
});

describe("the agent's HTTP/1.1 client", () => {
  let target: { port: number; close: () => Promise<void> };
  let connections = 0;
  const seen: { method: string; url: string; body: string; te?: string | undefined; cl?: string | undefined }[] = [];
  before(async () => {
    const server = tracked(createHttpServer({ keepAliveTimeout: 5000 }, async (req, res) => {
      let body = "";
      for await (const c of req) body += c;
      seen.push({ method: req.method!, url: req.url!, body, te: req.headers["transfer-encoding"], cl: req.headers["content-length"] });
      if (req.url === "/chunked") {
        res.writeHead(200, { "content-type": "text/plain" });
        for (let i = 0; i < 5; i++) res.write(`c${i}`);
        res.end();
      } else if (req.url === "/big") {
        res.writeHead(200, { "content-length": 8 * 1024 * 1024 });
        const chunk = Buffer.alloc(64 * 1024, 0x7a);
        for (let i = 0; i < 128; i++) if (!res.write(chunk)) await new Promise((r) => res.once("drain", r));
        res.end();
      } else if (req.url === "/interim") {
        res.writeContinue();
        res.writeEarlyHints({ link: "</a.css>; rel=preload" });
        res.end("after interim");
      } else if (req.url === "/slow") setTimeout(() => res.end("late"), 500);
      else res.end(`ok ${req.method} ${req.url} ${body.length}`);
    }));
    server.on("connection", () => connections++);
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    target = { port: (server.address() as AddressInfo).port, close: () => closeServer(server as unknown as Server) };
  });
  after(() => target.close());

  const t = (port: number): UpstreamTarget => ({ key: `k${port}`, host: "127.0.0.1", port, authority: `127.0.0.1:${port}`, connectTimeoutMs: 2000 });
  const text = async (body: Buffer | Readable) => {
    if (Buffer.isBuffer(body)) return body.toString();
    let s = "";
    for await (const c of body) s += c;
    return s;
  };

  test("small responses come back whole over one reused socket", async () => {
    const pool = new H1Pool();
    try {
      const before = connections;
      for (let i = 0; i < 5; i++) {
        const r = await pool.request(t(target.port), { method: "GET", path: `/x${i}`, headers: { accept: "*/*" }, body: Buffer.alloc(0), headersTimeoutMs: 2000 });
        assert.equal(r.status, 200);
        assert.ok(Buffer.isBuffer(r.body));
        assert.equal(r.body.toString(), `ok GET /x${i} 0`);
      }
      assert.equal(connections - before, 1, "keep-alive: one connection");
    } finally {
      pool.close();
    }
  });

  test("chunked and large responses stream; interim responses are skipped", async () => {
    const pool = new H1Pool();
    try {
      const c = await pool.request(t(target.port), { method: "GET", path: "/chunked", headers: {}, body: Buffer.alloc(0), headersTimeoutMs: 2000 });
      assert.equal(await text(c.body), "c0c1c2c3c4");
      const big = await pool.request(t(target.port), { method: "GET", path: "/big", headers: {}, body: Buffer.alloc(0), headersTimeoutMs: 2000 });
      assert.equal(big.length, 8 * 1024 * 1024);
      assert.ok(!Buffer.isBuffer(big.body));
      let n = 0;
      for await (const chunk of big.body as Readable) {
        n += (chunk as Buffer).length;
        if (n % (1 << 20) < 65536) await new Promise((r) => setTimeout(r, 2)); // a slow reader
      }
      assert.equal(n, 8 * 1024 * 1024);
      const i = await pool.request(t(target.port), { method: "GET", path: "/interim", headers: {}, body: Buffer.alloc(0), headersTimeoutMs: 2000 });
      assert.equal(i.status, 200);
      assert.equal(await text(i.body), "after interim");
    } finally {
      pool.close();
    }
  });

  test("request bodies: whole with Content-Length, streamed with a known length or chunked", async () => {
    const pool = new H1Pool();
    try {
      await pool.request(t(target.port), { method: "POST", path: "/b1", headers: {}, body: Buffer.from("abc"), headersTimeoutMs: 2000 });
      await pool.request(t(target.port), { method: "POST", path: "/b2", headers: {}, body: Buffer.alloc(0), headersTimeoutMs: 2000 });
      await pool.request(t(target.port), { method: "PUT", path: "/b3", headers: {}, body: Readable.from([Buffer.from("12345"), Buffer.from("678")]), length: 8, headersTimeoutMs: 2000 });
      const r = await pool.request(t(target.port), { method: "PUT", path: "/b4", headers: {}, body: Readable.from([Buffer.from("xy"), Buffer.from("z")]), headersTimeoutMs: 2000 });
      assert.equal(await text(r.body), "ok PUT /b4 3");
      const got = Object.fromEntries(seen.filter((s) => s.url.startsWith("/b")).map((s) => [s.url, s]));
      assert.deepEqual([got["/b1"]!.body, got["/b1"]!.cl], ["abc", "3"]);
      assert.deepEqual([got["/b2"]!.body, got["/b2"]!.cl], ["", "0"], "an empty POST says Content-Length: 0");
      assert.deepEqual([got["/b3"]!.body, got["/b3"]!.cl], ["12345678", "8"]);
      assert.deepEqual([got["/b4"]!.body, got["/b4"]!.te], ["xyz", "chunked"]);
    } finally {
      pool.close();
    }
  });

  test("no response head in time: ETIMEDOUT; an aborted request: ECANCELED; neither socket is reused", async () => {
    const pool = new H1Pool();
    try {
      await assert.rejects(pool.request(t(target.port), { method: "GET", path: "/slow", headers: {}, body: Buffer.alloc(0), headersTimeoutMs: 100 }), (e: unknown) => (e as UpstreamError).code === "ETIMEDOUT");
      const ac = new AbortController();
      setTimeout(() => ac.abort(), 50);
      await assert.rejects(pool.request(t(target.port), { method: "GET", path: "/slow", headers: {}, body: Buffer.alloc(0), signal: ac.signal, headersTimeoutMs: 2000 }), (e: unknown) => (e as UpstreamError).code === "ECANCELED");
      const r = await pool.request(t(target.port), { method: "GET", path: "/fine", headers: {}, body: Buffer.alloc(0), headersTimeoutMs: 2000 });
      assert.equal((r.body as Buffer).toString(), "ok GET /fine 0");
    } finally {
      pool.close();
    }
  });

  test("a reused socket holds each request to its own head timeout, a shorter one than before included", async () => {
    const pool = new H1Pool();
    try {
      const before = connections;
      const r = await pool.request(t(target.port), { method: "GET", path: "/fine", headers: {}, body: Buffer.alloc(0), headersTimeoutMs: 10_000 });
      assert.equal((r.body as Buffer).toString(), "ok GET /fine 0");
      const t0 = Date.now();
      await assert.rejects(pool.request(t(target.port), { method: "GET", path: "/slow", headers: {}, body: Buffer.alloc(0), headersTimeoutMs: 100 }), (e: unknown) => (e as UpstreamError).code === "ETIMEDOUT");
      const took = Date.now() - t0;
      assert.ok(took >= 90 && took < 400, `timed out after ${took} ms (the slow answer comes at 500 ms)`);
      assert.equal(connections - before, 1, "the second request went on the first one's socket");
    } finally {
      pool.close();
    }
  });

  test("a socket reads each response head right when heads repeat byte for byte and when they change", async () => {
    // One connection; the heads repeat (parsed once, then recognized) and change (parsed anew).
    const replies = [
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 1\r\n\r\nok",
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 1\r\n\r\nhi",
      "HTTP/1.1 201 Created\r\nContent-Length: 5\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\nhello",
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 1\r\n\r\nyo",
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 10\r\n\r\nxy",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    ];
    let conns = 0;
    const raw = tracked(createServer());
    raw.on("connection", (s: Socket) => {
      conns++;
      let i = 0;
      let buf = "";
      s.on("data", (b) => {
        buf += b.toString();
        while (buf.includes("\r\n\r\n")) {
          buf = buf.slice(buf.indexOf("\r\n\r\n") + 4);
          s.write(replies[i++]!);
        }
      });
      s.on("error", () => {});
    });
    await new Promise<void>((r) => raw.listen(0, "127.0.0.1", r));
    const port = (raw.address() as AddressInfo).port;
    const pool = new H1Pool();
    try {
      const got: [number, string, string | string[] | undefined, string][] = [];
      for (let i = 0; i < replies.length; i++) {
        const r = await pool.request(t(port), { method: "GET", path: `/${i}`, headers: {}, body: Buffer.alloc(0), headersTimeoutMs: 2000 });
        got.push([r.status, await text(r.body), r.headers["set-cookie"] ?? r.headers["x-a"], String(r.length)]);
        assert.ok(Object.isFrozen(r.headers), "a response head is shared between requests: read-only");
      }
      assert.deepEqual(got, [
        [200, "ok", "1", "2"],
        [200, "hi", "1", "2"],
        [201, "hello", ["a=1", "b=2"], "5"],
        [200, "yo", "1", "2"],
        [200, "xy", "10", "2"],
        [200, "abc", "1", "3"],
      ]);
      assert.equal(conns, 1);
    } finally {
      pool.close();
      await closeServer(raw);
    }
  });

  test("forward: requests for one connection with different settings at once both complete", async () => {
    // Each parses its own settings; neither may look the other's entry up (a reload mid-flight).
    const fwd = new HttpForwarder(new SecretResolver());
    const settings = (timeout: number): HttpTarget => ({ url: `http://127.0.0.1:${target.port}`, hosts: [], timeout, git: false });
    try {
      const ask = (timeout: number, path: string) => fwd.forward("c", settings(timeout), { method: "GET", target: path, headers: {}, body: Buffer.alloc(0) });
      const [a, b] = await Promise.all([ask(1, "/r1"), ask(2, "/r2")]);
      assert.deepEqual([(a.body as Buffer).toString(), (b.body as Buffer).toString()], ["ok GET /r1 0", "ok GET /r2 0"]);
    } finally {
      await fwd.close();
    }
  });

  test("a head timeout longer than setTimeout's limit (30 days) is held without timer overflow", async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.name);
    process.on("warning", onWarning);
    const pool = new H1Pool();
    try {
      const ac = new AbortController();
      setTimeout(() => ac.abort(), 100);
      await assert.rejects(pool.request(t(target.port), { method: "GET", path: "/slow", headers: {}, body: Buffer.alloc(0), signal: ac.signal, headersTimeoutMs: 30 * 86_400_000 }), (e: unknown) => (e as UpstreamError).code === "ECANCELED");
      await new Promise((r) => setImmediate(r));
      assert.deepEqual(warnings.filter((w) => w === "TimeoutOverflowWarning"), []);
    } finally {
      process.off("warning", onWarning);
      pool.close();
    }
  });

  test("a keep-alive socket the target dropped: an idempotent request is sent again, a POST is not", async () => {
    // A target that answers the first request on each connection, then reads the next one and
    // drops the connection without answering (as a server closing an idle socket would).
    const got: string[] = [];
    const raw = tracked(createServer());
    raw.on("connection", (s: Socket) => {
      let n = 0;
      let buf = "";
      s.on("data", (b) => {
        buf += b.toString();
        while (buf.includes("\r\n\r\n")) {
          const line = buf.slice(0, buf.indexOf("\r\n"));
          buf = buf.slice(buf.indexOf("\r\n\r\n") + 4).replace(/^abc/, "");
          got.push(line);
          if (n++ === 0) s.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
          else s.destroy();
        }
      });
      s.on("error", () => {});
    });
    await new Promise<void>((r) => raw.listen(0, "127.0.0.1", r));
    const port = (raw.address() as AddressInfo).port;
    const pool = new H1Pool();
    try {
      await pool.request(t(port), { method: "GET", path: "/1", headers: {}, body: Buffer.alloc(0), headersTimeoutMs: 2000 });
      const again = await pool.request(t(port), { method: "GET", path: "/2", headers: {}, body: Buffer.alloc(0), headersTimeoutMs: 2000 });
      assert.equal((again.body as Buffer).toString(), "ok");
      assert.deepEqual(got, ["GET /1 HTTP/1.1", "GET /2 HTTP/1.1", "GET /2 HTTP/1.1"], "GET /2 was sent twice: once on the dropped socket, once on a new one");
      got.length = 0;
      await assert.rejects(pool.request(t(port), { method: "POST", path: "/3", headers: {}, body: Buffer.from("abc"), headersTimeoutMs: 2000 }), (e: unknown) => e instanceof UpstreamError && e.noResponse);
      assert.deepEqual(got, ["POST /3 HTTP/1.1"], "a POST is never sent twice");
    } finally {
      pool.close();
      await closeServer(raw);
    }
  });

  test("broken targets: ambiguous framing, bytes between responses, injected header values", async () => {
    const replies = ["HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\nok", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"];
    let conns = 0;
    const raw = tracked(createServer());
    raw.on("connection", (s: Socket) => {
      const reply = replies[Math.min(conns++, replies.length - 1)]!;
      s.once("data", () => s.write(reply));
      s.on("data", () => {});
      s.on("error", () => {});
    });
    await new Promise<void>((r) => raw.listen(0, "127.0.0.1", r));
    const port = (raw.address() as AddressInfo).port;
    const pool = new H1Pool();
    try {
      await assert.rejects(pool.request(t(port), { method: "GET", path: "/", headers: {}, body: Buffer.alloc(0), headersTimeoutMs: 2000 }), /malformed/);
      // The extra bytes arrive with the answer: the answer is served, the socket is not reused.
      const r = await pool.request(t(port), { method: "GET", path: "/", headers: {}, body: Buffer.alloc(0), headersTimeoutMs: 2000 });
      assert.equal((r.body as Buffer).toString(), "ok");
      await pool.request(t(port), { method: "GET", path: "/", headers: {}, body: Buffer.alloc(0), headersTimeoutMs: 2000 });
      assert.equal(conns, 3, "a new connection after the one with stray bytes");
      await assert.rejects(pool.request(t(port), { method: "GET", path: "/", headers: { "x-evil": "a\r\nInjected: 1" }, body: Buffer.alloc(0), headersTimeoutMs: 2000 }), /CR, LF or NUL/);
    } finally {
      pool.close();
      await closeServer(raw);
    }
  });
});

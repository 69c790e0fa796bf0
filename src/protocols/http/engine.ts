// The HTTP gate. One request at a time, top to bottom:
//
//   route     the canonical path's first segment names the connection (or the Host header does)
//   login     the caller's bearer token (or, for git, Basic with the token as password) → Principal
//   read      the body, whole, up to listeners.http.maxBodyBytes (it is judged and bound to approvals)
//   describe  method, canonical path, query, headers, body hash, JSON; git: service and ref updates,
//             each update's fast-forward status established by the agent against the target
//   judge     gate.judge — the one place an Operation is judged — holding for review at most
//             listeners.http.maxHoldSeconds
//   forward   through the connection's agent, which injects the target's credential; the response
//             streams back. A keep-alive connection is one session per principal and connection
//             (recorded, audited); each request in it is one judged operation.
//
// Never: forward a request before its verdict, forward any path but the judged one, or pass the
// caller's credentials to the target.

import { createServer, type IncomingMessage, STATUS_CODES, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { type Duplex, Readable } from "node:stream";
import type { AddressInfo, Socket } from "node:net";
import { gunzipSync, inflateSync } from "node:zlib";
import type { AgentRegistry } from "../../agent/agent.ts";
import type { HttpForwardResponse } from "../../agent/http.ts";
import { bearerFrom } from "../../api/auth.ts";
import { problemFromError } from "../../api/problem.ts";
import type { Connection } from "../../domain/connection.ts";
import { GatehouseError } from "../../domain/errors.ts";
import type { GitRefUpdate } from "../../domain/operation.ts";
import type { Principal } from "../../domain/principal.ts";
import { verdictEvent } from "../../gate/gate.ts";
import type { EngineDeps, OpenSession } from "../../gate/sessions.ts";
import { isLoopback } from "../loopback.ts";
import { type DescribedHttp, describeHttp } from "./classify.ts";
import { GitProtocolError } from "./git.ts";
import { normalizeTarget, PathRejected } from "./normalize.ts";

export interface HttpListenerConfig {
  host: string;
  port: number;
  maxBodyBytes: number;
  maxHoldSeconds: number;
  /** Response body bytes recorded per request. */
  recordBodyBytes?: number;
  /** Accept plain HTTP from non-loopback clients (TLS terminated in front). */
  allowCleartext?: boolean;
  /** Bodies beyond maxBodyBytes are streamed when allowed (else 413). Default true. */
  streamLargeBodies?: boolean;
}

export interface HttpEngineDeps extends EngineDeps {
  config: HttpListenerConfig;
  /** Resolved PEM certificate and key: serve HTTPS. */
  tls?: { cert: string; key: string } | undefined;
}


function pkt(s: string | Buffer): Buffer {
  const b = typeof s === "string" ? Buffer.from(s) : s;
  return Buffer.concat([Buffer.from((b.length + 4).toString(16).padStart(4, "0")), b]);
}

/** A receive-pack answer refusing every ref, so `git push` prints the reason as its own error. */
function gitRefusal(updates: GitRefUpdate[], reason: string, sideband: boolean): Buffer {
  const oneLine = reason.replace(/\s+/g, " ").slice(0, 900);
  const report = Buffer.concat([pkt("unpack ok\n"), ...updates.map((u) => pkt(`ng ${u.ref} ${oneLine}\n`)), Buffer.from("0000")]);
  if (!sideband) return report;
  return Buffer.concat([pkt(Buffer.concat([Buffer.from([2]), Buffer.from(`Gatehouse: ${oneLine}\n`)])), pkt(Buffer.concat([Buffer.from([1]), report])), Buffer.from("0000")]);
}

/** Undo a gzip/deflate Content-Encoding (git compresses some requests), bounded against bombs. */
function decodeBody(body: Buffer, encoding: string | undefined, maxOutput: number): Buffer {
  const enc = (encoding ?? "identity").trim().toLowerCase();
  if (enc === "identity" || enc === "" || body.length === 0) return body;
  try {
    if (enc === "gzip" || enc === "x-gzip") return gunzipSync(body, { maxOutputLength: maxOutput });
    if (enc === "deflate") return inflateSync(body, { maxOutputLength: maxOutput });
  } catch (e) {
    throw new GatehouseError("HTTP_TARGET_REJECTED", `the ${enc} body does not decode within ${maxOutput} bytes: ${(e as Error).message}`);
  }
  throw new GatehouseError("HTTP_TARGET_REJECTED", `Content-Encoding ${enc} is not supported (identity, gzip or deflate)`);
}

function headText(req: IncomingMessage): Buffer {
  const lines = [`${req.method} ${req.url} HTTP/${req.httpVersion}`];
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i]!;
    const credential = /^(authorization|proxy-authorization|cookie)$/i.test(name);
    lines.push(`${name}: ${credential ? "[redacted by Gatehouse]" : req.rawHeaders[i + 1]}`);
  }
  return Buffer.from(`${lines.join("\r\n")}\r\n\r\n`);
}

export class HttpListener {
  readonly #d: HttpEngineDeps;
  #server: Server | undefined;
  readonly #byHost = new Map<string, Connection>();
  /** The session of each client socket (keep-alive: many requests), for one principal and connection. */
  readonly #socketSessions = new WeakMap<Socket, { key: string; session: Promise<OpenSession> }>();
  readonly #closing = new Set<Promise<void>>();

  constructor(deps: HttpEngineDeps) {
    this.#d = deps;
    for (const c of deps.connections.values()) if (c.protocol === "http") for (const h of c.http?.hosts ?? []) this.#byHost.set(h.toLowerCase(), c);
  }

  async listen(): Promise<AddressInfo> {
    const options = { requestTimeout: 0, headersTimeout: 30_000, keepAliveTimeout: 30_000 };
    const onRequest = (req: IncomingMessage, res: ServerResponse) => {
      this.#handle(req, res).catch((e) => {
        this.#d.logger.error({ err: (e as Error).stack }, "http request failed");
        if (!res.headersSent) this.#problem(res, new GatehouseError("POLICY_EVALUATION_FAILED", "internal error in the gateway"));
        else res.destroy();
      });
    };
    const server: Server = this.#d.tls ? (createHttpsServer({ ...options, cert: this.#d.tls.cert, key: this.#d.tls.key, minVersion: "TLSv1.2" }, onRequest) as unknown as Server) : createServer(options, onRequest);
    server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      socket.on("error", () => {});
      this.#upgrade(req, socket, head).catch((e) => {
        this.#d.logger.error({ err: (e as Error).stack }, "http upgrade failed");
        socket.destroy();
      });
    });
    server.on("clientError", (_e, socket) => {
      if (socket.writable) socket.end("HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n");
    });
    this.#server = server;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.#d.config.port, this.#d.config.host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    return server.address() as AddressInfo;
  }

  async close(): Promise<void> {
    const s = this.#server;
    if (!s) return;
    s.closeIdleConnections();
    await new Promise<void>((r) => {
      s.close(() => r());
      setTimeout(() => {
        s.closeAllConnections();
        r();
      }, 3000).unref();
    });
    // Sessions end when their sockets close: let those records land before the store closes.
    while (this.#closing.size) await Promise.all([...this.#closing]);
  }

  /** The session for this request: the socket's, unless the principal or connection changed. */
  #sessionFor(req: IncomingMessage, principal: Principal, connection: Connection, details: Record<string, unknown>): Promise<OpenSession> {
    const sock = req.socket;
    const key = `${principal.subject}\u0000${connection.name}`;
    const cur = this.#socketSessions.get(sock);
    if (cur?.key === key) return cur.session;
    if (cur) this.#end(cur.session, "another principal or connection on the same HTTP connection");
    const session = this.#d.sessions.open(principal, connection, sock.remoteAddress, details);
    const entry = { key, session };
    this.#socketSessions.set(sock, entry);
    session.catch(() => {
      if (this.#socketSessions.get(sock) === entry) this.#socketSessions.delete(sock);
    });
    sock.once("close", () => {
      if (this.#socketSessions.get(sock) !== entry) return;
      this.#socketSessions.delete(sock);
      this.#end(session, "the client closed the HTTP connection");
    });
    return session;
  }

  #end(session: Promise<OpenSession>, reason: string): void {
    const p = session
      .then((s) => this.#d.sessions.close(s, reason))
      .catch((e) => this.#d.logger.error({ err: (e as Error).message }, "cannot record session end"))
      .finally(() => this.#closing.delete(p));
    this.#closing.add(p);
  }

  #problem(res: ServerResponse, e: unknown, opts: { git?: boolean } = {}): void {
    const p = problemFromError(e);
    if (res.headersSent) {
      res.destroy();
      return;
    }
    if (p.status === 401) res.setHeader("www-authenticate", ['Bearer realm="gatehouse"', 'Basic realm="gatehouse"']);
    if (p.code === "GH-POLICY-002") res.setHeader("retry-after", "30");
    if (opts.git) {
      // git prints a text/plain error body as "remote: …".
      const body = `Gatehouse: ${p.code} ${p.title}${p.detail ? `: ${p.detail}` : ""}\n${p.hint}\n`;
      res.writeHead(p.status, { "content-type": "text/plain; charset=utf-8", "content-length": Buffer.byteLength(body) });
      res.end(body);
      return;
    }
    const body = JSON.stringify(p);
    res.writeHead(p.status, { "content-type": "application/problem+json", "content-length": Buffer.byteLength(body) });
    res.end(body);
  }

  /** The connection and the request target relative to it. */
  #route(req: IncomingMessage): { connection: Connection; target: string } {
    const url = req.url ?? "/";
    const host = (req.headers.host ?? "").replace(/:\d+$/, "").toLowerCase();
    const byHost = this.#byHost.get(host);
    if (byHost) return { connection: byHost, target: url };
    const t = normalizeTarget(url);
    const name = t.segments[0];
    const c = name === undefined ? undefined : this.#d.connections.get(name);
    if (!c || c.protocol !== "http") throw new GatehouseError("HTTP_NO_CONNECTION", name === undefined ? "the path names no connection" : `"${name}" is not an HTTP connection of this gateway`);
    // The canonical target minus its first segment.
    const rest = t.forward.slice(t.forward.indexOf("/", 1) < 0 ? t.forward.length : t.forward.indexOf("/", 1));
    return { connection: c, target: rest.startsWith("/") ? rest : `/${rest}` };
  }

  /** Tokens only over TLS: plain HTTP is for loopback clients, or explicitly behind a TLS proxy. */
  #checkTransport(req: IncomingMessage): void {
    if (this.#d.tls || this.#d.config.allowCleartext || isLoopback(req.socket.remoteAddress)) return;
    throw new GatehouseError("HTTP_TLS_REQUIRED", `plain HTTP from ${req.socket.remoteAddress ?? "?"}`);
  }

  async #principal(req: IncomingMessage): Promise<Principal> {
    this.#checkTransport(req);
    const h = req.headers.authorization ?? "";
    let token = bearerFrom(h);
    if (!token) {
      const basic = /^Basic[ ]+(\S+)\s*$/i.exec(h);
      if (basic) {
        const decoded = Buffer.from(basic[1]!, "base64").toString("utf8");
        token = decoded.slice(decoded.indexOf(":") + 1) || undefined;
      }
    }
    try {
      if (!token) throw new GatehouseError("AUTH_TOKEN_MISSING", "send `Authorization: Bearer <token>` (git: the token as the password)");
      return await this.#d.verifier.verify(token);
    } catch (e) {
      const code = e instanceof GatehouseError ? e.code : "internal";
      this.#d.metrics.authFailures.inc({ surface: "http", code });
      this.#d.audit.append({ type: "auth.failed", data: { surface: "http", code, client: req.socket.remoteAddress ?? null, path: (req.url ?? "").slice(0, 200) } }).catch(() => {});
      throw e;
    }
  }

  /**
   * The body, whole, up to maxBodyBytes. Past that, with streamLargeBodies, what was read comes
   * back as `streamed` with the request paused: the rest is never held, only streamed on (if the
   * verdict is allow). Without it, 413.
   */
  #readBody(req: IncomingMessage): Promise<{ body: Buffer; streamed: boolean }> {
    const max = this.#d.config.maxBodyBytes;
    const stream = this.#d.config.streamLargeBodies !== false;
    const declared = Number(req.headers["content-length"] ?? 0);
    if (declared > max && !stream) return Promise.reject(new GatehouseError("HTTP_BODY_TOO_LARGE", `${declared} bytes declared; the limit is ${max}`));
    if (declared > max) return Promise.resolve({ body: Buffer.alloc(0), streamed: true });
    return new Promise((resolve, reject) => {
      const parts: Buffer[] = [];
      let n = 0;
      const onData = (b: Buffer) => {
        n += b.length;
        parts.push(b);
        if (n <= max) return;
        if (!stream) {
          req.destroy();
          reject(new GatehouseError("HTTP_BODY_TOO_LARGE", `more than ${max} bytes`));
          return;
        }
        req.pause();
        req.off("data", onData);
        resolve({ body: Buffer.concat(parts, n), streamed: true });
      };
      req.on("data", onData);
      req.once("end", () => resolve({ body: Buffer.concat(parts, n), streamed: false }));
      req.once("error", reject);
    });
  }

  /** A streamed body: what was read, then the rest of the request as it arrives (recorded up to the limit). */
  #rest(req: IncomingMessage, first: Buffer, rec: OpenSession["recorder"], recordLimit: number): Readable {
    let recorded = first.length;
    return Readable.from(
      (async function* () {
        if (first.length) yield first;
        for await (const chunk of req) {
          const b = chunk as Buffer;
          if (rec && recorded < recordLimit) rec.client(b.length + recorded > recordLimit ? b.subarray(0, recordLimit - recorded) : b);
          recorded += b.length;
          yield b;
        }
      })(),
      { objectMode: false },
    );
  }

  /** A refusal on a socket that asked to upgrade: a plain HTTP answer, then close. */
  #rejectUpgrade(socket: Duplex, e: unknown): void {
    const p = problemFromError(e);
    const body = JSON.stringify(p);
    socket.end(`HTTP/1.1 ${p.status} ${STATUS_CODES[p.status] ?? "Error"}\r\ncontent-type: application/problem+json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n${p.status === 401 ? 'www-authenticate: Bearer realm="gatehouse"\r\n' : ""}\r\n${body}`);
  }

  /**
   * WebSocket (any Upgrade): judged like any request — the upgrade request's method, path and
   * headers — then the agent opens the target and bytes pass through both ways, recorded, as one
   * session for the upgraded connection.
   */
  async #upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    let connection: Connection;
    let target: string;
    let principal: Principal;
    let op: DescribedHttp;
    let agent: ReturnType<AgentRegistry["for"]>;
    try {
      ({ connection, target } = this.#route(req));
      principal = await this.#principal(req);
      op = describeHttp({ method: req.method ?? "GET", target, headers: req.headers, body: Buffer.alloc(0), git: false });
      agent = this.#d.agents.for(connection);
      if (!agent.httpUpgrade) throw new GatehouseError("AGENT_UNAVAILABLE", `agent "${agent.name}" cannot serve upgrades`);
    } catch (e) {
      return this.#rejectUpgrade(socket, e instanceof PathRejected ? new GatehouseError("HTTP_TARGET_REJECTED", e.reason) : e);
    }
    let session: OpenSession;
    try {
      session = await this.#d.sessions.open(principal, connection, req.socket.remoteAddress, { upgrade: String(req.headers.upgrade ?? ""), path: op.http.path });
    } catch (e) {
      return this.#rejectUpgrade(socket, e);
    }
    const rec = session.recorder;
    rec?.client(headText(req));
    const abort = new AbortController();
    socket.once("close", () => abort.abort(new Error("client gone")));
    let reason = "the client closed the connection";
    try {
      const v = await this.#d.gate.judge({ id: session.id, principal, connection }, op, { signal: abort.signal, holdTimeoutMs: this.#d.config.maxHoldSeconds * 1000 });
      rec?.event(verdictEvent(0, op, v));
      if (!v.forward) {
        reason = `refused: ${v.error.code}`;
        return this.#rejectUpgrade(socket, v.error);
      }
      let up: Duplex;
      try {
        up = await agent.httpUpgrade!(connection, { target: op.forward, headers: req.headers });
      } catch (e) {
        reason = "target unavailable";
        return this.#rejectUpgrade(socket, e);
      }
      up.on("error", () => {});
      if (head.length) {
        rec?.client(head);
        up.write(head);
      }
      up.on("data", (b: Buffer) => rec?.server(b));
      socket.on("data", (b: Buffer) => rec?.client(b));
      up.pipe(socket);
      socket.pipe(up);
      await new Promise<void>((r) => {
        let n = 0;
        const done = () => {
          if (++n === 1) {
            up.destroy();
            socket.destroy();
            r();
          }
        };
        up.once("close", () => {
          reason = "the target closed the connection";
          done();
        });
        socket.once("close", done);
      });
    } finally {
      await this.#d.sessions.close(session, reason).catch((e) => this.#d.logger.error({ err: (e as Error).message }, "cannot record session end"));
    }
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = Date.now();
    let connection: Connection;
    let target: string;
    try {
      ({ connection, target } = this.#route(req));
    } catch (e) {
      return this.#problem(res, e instanceof PathRejected ? new GatehouseError("HTTP_TARGET_REJECTED", e.reason) : e);
    }
    const isGit = connection.http?.git === true;
    let principal: Principal;
    let body: Buffer;
    let streamed: boolean;
    try {
      principal = await this.#principal(req);
      ({ body, streamed } = await this.#readBody(req));
    } catch (e) {
      return this.#problem(res, e, { git: isGit });
    }
    let op: DescribedHttp;
    let decoded = body;
    try {
      const declared = Number(req.headers["content-length"]);
      if (!streamed) decoded = decodeBody(body, req.headers["content-encoding"], this.#d.config.maxBodyBytes * 8);
      op = describeHttp({ method: req.method ?? "GET", target, headers: req.headers, body, decoded, git: isGit, ...(streamed ? { streamed: { declaredBytes: Number.isFinite(declared) ? declared : undefined } } : {}) });
    } catch (e) {
      if (e instanceof PathRejected) return this.#problem(res, new GatehouseError("HTTP_TARGET_REJECTED", e.reason), { git: isGit });
      if (e instanceof GitProtocolError) return this.#problem(res, new GatehouseError("HTTP_GIT_MALFORMED", e.message), { git: isGit });
      if (e instanceof GatehouseError) return this.#problem(res, e, { git: isGit });
      throw e;
    }
    let agent: ReturnType<AgentRegistry["for"]>;
    try {
      agent = this.#d.agents.for(connection);
      if (!agent.httpRequest) throw new GatehouseError("AGENT_UNAVAILABLE", `agent "${agent.name}" cannot serve HTTP connections (HTTP through network-resident agents is not available yet)`);
    } catch (e) {
      return this.#problem(res, e, { git: isGit });
    }
    const push = op.receivePack;
    if (push && agent.gitFastForward) await agent.gitFastForward(connection, op.http.path.replace(/\/git-receive-pack$/, ""), push.updates, decoded, push.end, push.capabilities);

    let session: OpenSession;
    try {
      session = await this.#sessionFor(req, principal, connection, { firstRequest: `${op.http.method} ${op.http.path}` });
    } catch (e) {
      return this.#problem(res, e, { git: isGit });
    }
    const rec = session.recorder;
    if (rec) {
      rec.client(headText(req));
      rec.client(body);
    }
    const abort = new AbortController();
    res.once("close", () => {
      if (!res.writableFinished) abort.abort(new Error("client gone"));
    });
    let status = 0;
    let responseBytes = 0;
    const recordLimit = this.#d.config.recordBodyBytes ?? 1 << 20;
    try {
      const gs = { id: session.id, principal, connection };
      // A streamed body cannot be bound to an approval: only `allow` may forward it, and what
      // would need review is refused (audited as such) with what to do instead.
      let decided = this.#d.gate.decide(gs, op);
      if (streamed && decided.action === "review") {
        decided = { action: "deny", rule: decided.rule, message: `needs review, but its body is larger than listeners.http.maxBodyBytes (${this.#d.config.maxBodyBytes}), so it cannot be bound to an approval; send a smaller body` };
      }
      const v = await this.#d.gate.judge(gs, op, { signal: abort.signal, holdTimeoutMs: this.#d.config.maxHoldSeconds * 1000 }, decided);
      rec?.event(verdictEvent(0, op, v));
      if (!v.forward) {
        if (push) {
          const out = gitRefusal(push.updates, `${v.error.code} ${v.error.message}`, push.capabilities.includes("side-band-64k") || push.capabilities.includes("side-band"));
          status = 200;
          responseBytes = out.length;
          res.writeHead(200, { "content-type": "application/x-git-receive-pack-result", "cache-control": "no-cache", "content-length": out.length });
          res.end(out);
          rec?.server(out);
        } else {
          status = problemFromError(v.error).status;
          this.#problem(res, v.error, { git: isGit });
        }
        return;
      }
      let upstream: HttpForwardResponse;
      try {
        upstream = await agent.httpRequest!(connection, { method: op.http.method, target: op.forward.replace(/^\/+/, "/"), headers: req.headers as Record<string, string | string[]>, body: streamed ? this.#rest(req, body, rec, recordLimit) : body, signal: abort.signal });
      } catch (e) {
        status = 502;
        return this.#problem(res, e, { git: isGit });
      }
      status = upstream.status;
      res.writeHead(upstream.status, upstream.headers);
      rec?.server(Buffer.from(`HTTP/1.1 ${upstream.status}\r\n${Object.entries(upstream.headers).map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(", ") : v}`).join("\r\n")}\r\n\r\n`));
      // pipe() keeps backpressure in native stream code; the recorder only observes the chunks.
      upstream.body.on("data", (b: Buffer) => {
        if (rec && responseBytes < recordLimit) rec.server(b.length + responseBytes > recordLimit ? b.subarray(0, recordLimit - responseBytes) : b);
        responseBytes += b.length;
      });
      await new Promise<void>((resolve) => {
        upstream.body.once("end", resolve);
        upstream.body.once("error", () => {
          res.destroy();
          resolve();
        });
        res.once("close", () => {
          upstream.body.destroy();
          resolve();
        });
        upstream.body.pipe(res);
      });
    } finally {
      rec?.event({ type: "http.exchange", method: op.http.method, path: op.http.path, status, durationMs: Date.now() - started, requestBytes: body.length, responseBytes, ...(responseBytes > recordLimit ? { responseBytesRecorded: recordLimit } : {}) });
    }
  }
}

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

import { STATUS_CODES } from "node:http";
import { type AddressInfo, createServer as createNetServer, type Server, type Socket } from "node:net";
import { type Duplex, Readable } from "node:stream";
import { createSecureContext, type SecureContext, TLSSocket } from "node:tls";
import { gunzipSync, inflateSync } from "node:zlib";
import type { AgentRegistry } from "../../agent/agent.ts";
import type { HttpForwardResponse } from "../../agent/http.ts";
import { bearerFrom } from "../../api/auth.ts";
import { problemFromError } from "../../api/problem.ts";
import type { Connection } from "../../domain/connection.ts";
import { Cancellation } from "../../domain/cancel.ts";
import { ERRORS, GatehouseError } from "../../domain/errors.ts";
import { problemOf } from "../../api/problem.ts";
import type { GitRefUpdate } from "../../domain/operation.ts";
import type { Principal } from "../../domain/principal.ts";
import type { TrustedToken } from "../../identity/verifier.ts";
import { verdictEvent } from "../../gate/gate.ts";
import { jsonString } from "../../audit/chain.ts";
import type { EngineDeps, OpenSession } from "../../gate/sessions.ts";
import { isLoopback } from "../loopback.ts";
import { bodyText, type DescribedHttp, describeHttp, SENSITIVE_HEADERS } from "./classify.ts";
import { Deadline } from "../deadline.ts";
import { GitProtocolError } from "./git.ts";
import { type NormalizedTarget, normalizeTarget, PathRejected, withoutFirstSegment } from "./normalize.ts";
import { closingProblem, H1Connection, type H1Request, type H1Response } from "./server.ts";
import { parseResponseHead } from "./h1.ts";
import { listen } from "../listen.ts";

export interface HttpListenerConfig {
  host: string;
  port: number;
  maxBodyBytes: number;
  maxHoldSeconds: number;
  /** A response body silent this long (while the client reads) is given up on; 0: never. Default 300. */
  responseIdleSeconds?: number;
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

const EMPTY = Buffer.alloc(0);

/** How long a client on the TLS listener has to send its first byte and finish the handshake. */
const TLS_HANDSHAKE_MS = 30_000;

/**
 * The HTTPS listener's connection handler: a TLS handshake goes on to `onSecure`; a plain HTTP
 * request (its first byte a letter, not a TLS record) is answered in plain HTTP — 400, use
 * https:// — instead of a connection closed without a word.
 */
function tlsOrPlainAnswer(secureContext: SecureContext, onSecure: (s: Socket) => void): (raw: Socket) => void {
  return (raw) => {
    raw.on("error", () => {});
    const timer = setTimeout(() => raw.destroy(), TLS_HANDSHAKE_MS);
    timer.unref();
    raw.once("data", (first: Buffer) => {
      raw.pause();
      raw.unshift(first);
      if (first[0] !== 0x16) {
        clearTimeout(timer);
        raw.end(closingProblem({ ...problemOf(ERRORS.HTTP_TLS_REQUIRED, "a plain HTTP request on the HTTPS listener; use https://"), status: 400 }));
        return;
      }
      // The bytes read so far are handed to TLS (TLSSocket reads what the socket holds first).
      const s = new TLSSocket(raw, { isServer: true, secureContext });
      s.on("error", () => s.destroy());
      s.once("secure", () => {
        clearTimeout(timer);
        onSecure(s);
      });
    });
  };
}

/**
 * The target's answer to an upgrade request: its status and every byte read so far (the head and
 * whatever followed it), with `up` paused after them. Rejects on a target that closes, sends a
 * head the codec refuses (over its size limit, malformed), or is silent for `timeoutMs`.
 */
function switchAnswer(up: Duplex, timeoutMs: number): Promise<{ status: number; bytes: Buffer }> {
  return new Promise((resolve, reject) => {
    let bytes: Buffer = EMPTY;
    const done = (e: Error | undefined, status = 0) => {
      clearTimeout(timer);
      up.off("data", onData);
      up.off("end", onEnd);
      up.off("close", onEnd);
      up.off("error", onError);
      if (e) reject(e);
      else resolve({ status, bytes });
    };
    const onData = (b: Buffer) => {
      bytes = bytes.length ? Buffer.concat([bytes, b]) : b;
      let head: ReturnType<typeof parseResponseHead>;
      try {
        head = parseResponseHead(bytes);
      } catch (e) {
        done(new Error(`the answer to the upgrade is not a usable HTTP/1.1 response: ${(e as Error).message}`));
        return;
      }
      if (!head) return;
      up.pause();
      done(undefined, head.status);
    };
    const onEnd = () => done(new Error("the target closed the connection before answering the upgrade"));
    const onError = (e: Error) => done(e);
    const timer = setTimeout(() => done(new Error(`no answer to the upgrade within ${timeoutMs / 1000} s`)), timeoutMs);
    up.on("data", onData);
    up.once("end", onEnd);
    up.once("close", onEnd);
    up.once("error", onError);
  });
}

const REDACTED = "[redacted by Gatehouse]";
const SENSITIVE_LENGTHS = new Set([...SENSITIVE_HEADERS].map((h) => h.length));

/** The request head as the client sent it (latin1 text), its credentials (SENSITIVE_HEADERS) redacted. */
function headText(req: H1Request): string {
  let out = `${req.method} ${req.target} HTTP/1.${req.minor}\r\n`;
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    // Lower-cased (a new string) only when its length is that of a sensitive name.
    const sensitive = SENSITIVE_LENGTHS.has(name.length) && SENSITIVE_HEADERS.has(name.toLowerCase());
    out += `${name}: ${sensitive ? REDACTED : raw[i + 1]}\r\n`;
  }
  return `${out}\r\n`;
}

/**
 * The `http.exchange` recording event, built as text (once per request: JSON.stringify of the
 * object cost twice as much). Same fields, same order, as the object form.
 */
/** A number as JSON.stringify writes it (NaN and the infinities as null). */
function num(n: number): string {
  return Number.isFinite(n) ? `${n}` : "null";
}

export function exchangeJson(method: string, path: string, status: number, durationMs: number, requestBytes: number, responseBytes: number, responseBytesRecorded: number | undefined, allowedBy: string | undefined): string {
  const recorded = responseBytesRecorded === undefined ? "" : `,"responseBytesRecorded":${num(responseBytesRecorded)}`;
  const allowed = allowedBy === undefined ? "" : `,"decision":"allow","rule":${jsonString(allowedBy)}`;
  return `{"type":"http.exchange","method":${jsonString(method)},"path":${jsonString(path)},"status":${num(status)},"durationMs":${num(durationMs)},"requestBytes":${num(requestBytes)},"responseBytes":${num(responseBytes)}${recorded}${allowed}}`;
}

/** Record what `res` writes to the client: heads whole, body bytes up to `limit`. */
function tapResponse(res: H1Response, rec: NonNullable<OpenSession["recorder"]>, limit: number): void {
  let recorded = 0;
  res.tap = (data, headLength) => {
    const body = Math.min(data.length - headLength, Math.max(0, limit - recorded));
    recorded += body;
    const n = headLength + body;
    if (n) rec.server(n === data.length ? data : data.subarray(0, n));
  };
}

/** A client connection's session: whose, on which connection, and (once open) the session itself. */
interface ConnSession {
  subject: string;
  connection: string;
  session: Promise<OpenSession>;
  open: OpenSession | undefined;
}

const NO_BODY = { body: EMPTY, streamed: false };

export class HttpListener {
  readonly #d: HttpEngineDeps;
  #server: Server | undefined;
  readonly #byHost = new Map<string, Connection>();
  /** The session of each client connection (keep-alive: many requests), for one principal and connection. */
  readonly #connSessions = new WeakMap<H1Connection, ConnSession>();
  /** The Authorization header of each connection's last verified request, and its token's trust. */
  readonly #connAuth = new WeakMap<H1Connection, { header: string; trusted: TrustedToken }>();
  readonly #conns = new Set<H1Connection>();
  readonly #closing = new Set<Promise<void>>();

  constructor(deps: HttpEngineDeps) {
    this.#d = deps;
    for (const c of deps.connections.values()) if (c.protocol === "http") for (const h of c.http?.hosts ?? []) this.#byHost.set(h.toLowerCase(), c);
  }

  async listen(): Promise<AddressInfo> {
    const handlers = {
      request: (req: H1Request, res: H1Response) => {
        this.#handle(req, res).catch((e) => {
          this.#d.logger.error({ err: (e as Error).stack }, "http request failed");
          if (!res.headersSent) this.#problem(res, new GatehouseError("POLICY_EVALUATION_FAILED", "internal error in the gateway"));
          else res.destroy();
        });
      },
      upgrade: (req: H1Request, socket: Socket, head: Buffer) => {
        this.#upgrade(req, socket, head).catch((e) => {
          this.#d.logger.error({ err: (e as Error).stack }, "http upgrade failed");
          socket.destroy();
        });
      },
      rejected: (conn: H1Connection, e: Error) => this.#d.logger.info({ client: conn.socket.remoteAddress, err: e.message }, "malformed HTTP request refused"),
    };
    const onSocket = (socket: Socket) => {
      const conn = new H1Connection(socket, handlers, { headersTimeoutMs: 30_000, keepAliveTimeoutMs: 30_000 });
      this.#conns.add(conn);
      conn.onClose(() => this.#conns.delete(conn));
    };
    // allowHalfOpen: a client that finishes sending (shutdown) still gets its response.
    const tls = this.#d.tls;
    const server: Server = createNetServer({ allowHalfOpen: true }, tls ? tlsOrPlainAnswer(createSecureContext({ cert: tls.cert, key: tls.key, minVersion: "TLSv1.2" }), onSocket) : onSocket);
    this.#server = server;
    return listen(server, this.#d.config.port, this.#d.config.host, "listeners.http");
  }

  async close(): Promise<void> {
    const s = this.#server;
    if (!s) return;
    await new Promise<void>((r) => {
      s.close(() => r());
      // Idle keep-alive connections are closed now; busy ones after their response, or in 3 s.
      for (const c of this.#conns) c.shutdown();
      setTimeout(() => {
        for (const c of this.#conns) c.destroy();
        r();
      }, 3000).unref();
    });
    // Sessions end when their sockets close: let those records land before the store closes.
    while (this.#closing.size) await Promise.all([...this.#closing]);
  }

  /**
   * The session for this request: the connection's, unless the principal or connection changed —
   * once open, without a wait.
   */
  #sessionFor(req: H1Request, principal: Principal, connection: Connection, op: DescribedHttp): OpenSession | Promise<OpenSession> {
    const conn = req.conn;
    const cur = this.#connSessions.get(conn);
    if (cur && cur.subject === principal.subject && cur.connection === connection.name) return cur.open ?? cur.session;
    if (cur) this.#end(cur.session, "another principal or connection on the same HTTP connection");
    const session = this.#d.sessions.open(principal, connection, req.remoteAddress, { firstRequest: `${op.http.method} ${op.http.path}` });
    const entry: ConnSession = { subject: principal.subject, connection: connection.name, session, open: undefined };
    this.#connSessions.set(conn, entry);
    session.then(
      (s) => {
        entry.open = s;
      },
      () => {
        if (this.#connSessions.get(conn) === entry) this.#connSessions.delete(conn);
      },
    );
    conn.onClose(() => {
      if (this.#connSessions.get(conn) !== entry) return;
      this.#connSessions.delete(conn);
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

  #problem(res: H1Response, e: unknown, opts: { git?: boolean } = {}): void {
    const p = problemFromError(e);
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const headers: Record<string, string | string[]> = {};
    if (p.status === 401) headers["www-authenticate"] = ['Bearer realm="gatehouse"', 'Basic realm="gatehouse"'];
    if (p.code === "GH-POLICY-002") headers["retry-after"] = "30";
    if (opts.git) {
      // git prints a text/plain error body as "remote: …".
      headers["content-type"] = "text/plain; charset=utf-8";
      res.send(p.status, headers, Buffer.from(`Gatehouse: ${p.code} ${p.title}${p.detail ? `: ${p.detail}` : ""}\n${p.hint}\n`));
      return;
    }
    headers["content-type"] = "application/problem+json";
    res.send(p.status, headers, Buffer.from(JSON.stringify(p)));
  }

  /** The connection and the request target relative to it. */
  #route(req: H1Request): { connection: Connection; target: string; normalized?: NormalizedTarget } {
    const url = req.target;
    const host = this.#byHost.size ? req.host.replace(/:\d+$/, "").toLowerCase() : "";
    const byHost = this.#byHost.get(host);
    if (byHost) return { connection: byHost, target: url };
    const t = normalizeTarget(url);
    const name = t.segments[0];
    const c = name === undefined ? undefined : this.#d.connections.get(name);
    if (!c || c.protocol !== "http") throw new GatehouseError("HTTP_NO_CONNECTION", name === undefined ? "the path names no connection" : `"${name}" is not an HTTP connection of this gateway`);
    const rest = withoutFirstSegment(t);
    return { connection: c, target: rest.forward, normalized: rest };
  }

  /** Tokens only over TLS: plain HTTP is for loopback clients, or explicitly behind a TLS proxy. */
  #checkTransport(req: H1Request): void {
    if (this.#d.tls || this.#d.config.allowCleartext || isLoopback(req.remoteAddress)) return;
    throw new GatehouseError("HTTP_TLS_REQUIRED", `plain HTTP from ${req.remoteAddress ?? "?"}`);
  }

  /** The caller's token from Authorization: Bearer, or (git) Basic with the token as password. */
  #token(req: H1Request): string | undefined {
    const h = req.headers.authorization;
    if (typeof h !== "string") return undefined;
    const token = bearerFrom(h);
    if (token) return token;
    const basic = /^Basic[ ]+(\S+)\s*$/i.exec(h);
    if (!basic) return undefined;
    const decoded = Buffer.from(basic[1]!, "base64").toString("utf8");
    return decoded.slice(decoded.indexOf(":") + 1) || undefined;
  }

  /**
   * Who is calling. A keep-alive client sends the same Authorization header with every request:
   * while it is the one this connection's last request verified and that token is still trusted,
   * its principal is used at once; a token verified before on any connection also needs no wait;
   * anything else is verified now. Throws (audited) when there is no token or it does not verify.
   */
  #principal(req: H1Request): Principal | Promise<Principal> {
    this.#checkTransport(req);
    const header = req.headers.authorization;
    const v = this.#d.verifier;
    const last = this.#connAuth.get(req.conn);
    if (last !== undefined && header === last.header && v.isTrusted?.(last.trusted)) return last.trusted.principal;
    const token = this.#token(req);
    const trusted = token === undefined ? undefined : v.cached?.(token);
    if (trusted && typeof header === "string") {
      this.#connAuth.set(req.conn, { header, trusted });
      return trusted.principal;
    }
    return this.#verify(req, token);
  }

  async #verify(req: H1Request, token: string | undefined): Promise<Principal> {
    try {
      if (!token) throw new GatehouseError("AUTH_TOKEN_MISSING", "send `Authorization: Bearer <token>` (git: the token as the password)");
      return await this.#d.verifier.verify(token);
    } catch (e) {
      const code = e instanceof GatehouseError ? e.code : "internal";
      this.#d.metrics.authFailures.inc({ surface: "http", code });
      this.#d.audit.append({ type: "auth.failed", data: { surface: "http", code, client: req.remoteAddress ?? null, path: req.target.slice(0, 200) } }).catch(() => {});
      throw e;
    }
  }

  /**
   * The body, whole, up to maxBodyBytes. Past that, with streamLargeBodies, what was read comes
   * back as `streamed`: the rest is never held, only streamed on (if the verdict is allow).
   * Without it, 413.
   */
  async #readBody(req: H1Request, res: H1Response): Promise<{ body: Buffer; streamed: boolean }> {
    const max = this.#d.config.maxBodyBytes;
    const stream = this.#d.config.streamLargeBodies !== false;
    const f = req.framing;
    if (f.kind === "none") return { body: EMPTY, streamed: false };
    if (f.kind === "length" && f.length > max) {
      if (!stream) {
        res.closeAfter();
        throw new GatehouseError("HTTP_BODY_TOO_LARGE", `${f.length} bytes declared; the limit is ${max}`);
      }
      return { body: EMPTY, streamed: true };
    }
    const { body, complete } = await req.readBody(max);
    if (!complete && !stream) {
      res.closeAfter();
      throw new GatehouseError("HTTP_BODY_TOO_LARGE", `more than ${max} bytes`);
    }
    return { body, streamed: !complete };
  }

  /** A streamed body: what was read, then the rest of the request as it arrives (recorded up to the limit). */
  #rest(req: H1Request, first: Buffer, rec: OpenSession["recorder"], recordLimit: number): Readable {
    let recorded = first.length;
    const rest = req.rest();
    return Readable.from(
      (async function* () {
        if (first.length) yield first;
        for await (const chunk of rest) {
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
    socket.end(closingProblem(p, p.status === 401 ? 'www-authenticate: Bearer realm="gatehouse"\r\n' : ""));
  }

  /**
   * WebSocket (any Upgrade): judged like any request — the upgrade request's method, path and
   * headers — then the agent opens the target and bytes pass through both ways, recorded, as one
   * session for the upgraded connection.
   */
  async #upgrade(req: H1Request, socket: Socket, head: Buffer): Promise<void> {
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
      session = await this.#d.sessions.open(principal, connection, req.remoteAddress, { upgrade: String(req.headers.upgrade ?? ""), path: op.http.path });
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
      // Only a target that switches protocols gets a raw pipe. Any other answer (a server without
      // upgrade support answers 200 and keeps the connection) would make the rest of the client's
      // bytes unjudged requests on it: the connection is refused and closed instead. What the
      // client sent after its upgrade request waits until then.
      let answer: { status: number; bytes: Buffer };
      try {
        answer = await switchAnswer(up, (connection.http?.timeout ?? 60) * 1000);
      } catch (e) {
        up.destroy();
        reason = "target unavailable";
        return this.#rejectUpgrade(socket, new GatehouseError("HTTP_TARGET_UNAVAILABLE", `${connection.name}: ${(e as Error).message}`));
      }
      if (answer.status !== 101) {
        up.destroy();
        reason = `refused by the target (${answer.status})`;
        return this.#rejectUpgrade(socket, new GatehouseError("HTTP_UPGRADE_REFUSED", `${connection.name} answered ${answer.status}${STATUS_CODES[answer.status] ? ` ${STATUS_CODES[answer.status]}` : ""} instead of 101 Switching Protocols; the connection is closed, not passed through`));
      }
      rec?.server(answer.bytes);
      socket.write(answer.bytes);
      if (head.length) {
        rec?.client(head);
        up.write(head);
      }
      up.on("data", (b: Buffer) => rec?.server(b));
      socket.on("data", (b: Buffer) => rec?.client(b));
      up.pipe(socket);
      socket.pipe(up);
      if (socket.isPaused()) socket.resume();
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

  async #handle(req: H1Request, res: H1Response): Promise<void> {
    const started = Date.now();
    let connection: Connection;
    let target: string;
    let normalized: NormalizedTarget | undefined;
    try {
      ({ connection, target, normalized } = this.#route(req));
    } catch (e) {
      return this.#problem(res, e instanceof PathRejected ? new GatehouseError("HTTP_TARGET_REJECTED", e.reason) : e);
    }
    const isGit = connection.http?.git === true;
    let principal: Principal;
    let body: Buffer;
    let streamed: boolean;
    try {
      const p = this.#principal(req);
      principal = p instanceof Promise ? await p : p;
      ({ body, streamed } = req.framing.kind === "none" ? NO_BODY : await this.#readBody(req, res));
    } catch (e) {
      return this.#problem(res, e, { git: isGit });
    }
    let op: DescribedHttp;
    let decoded = body;
    try {
      const f = req.framing;
      if (!streamed) decoded = decodeBody(body, req.headers["content-encoding"] as string | undefined, this.#d.config.maxBodyBytes * 8);
      op = describeHttp({ method: req.method, target, normalized, headers: req.headers, body, decoded, git: isGit, ...(streamed ? { streamed: { declaredBytes: f.kind === "length" ? f.length : undefined } } : {}) });
    } catch (e) {
      if (e instanceof PathRejected) return this.#problem(res, new GatehouseError("HTTP_TARGET_REJECTED", e.reason), { git: isGit });
      if (e instanceof GitProtocolError) return this.#problem(res, new GatehouseError("HTTP_GIT_MALFORMED", e.message), { git: isGit });
      if (e instanceof GatehouseError) return this.#problem(res, e, { git: isGit });
      throw e;
    }
    let agent: ReturnType<AgentRegistry["for"]>;
    try {
      agent = this.#d.agents.for(connection);
      if (!agent.httpRequest) throw new GatehouseError("AGENT_UNAVAILABLE", `agent "${agent.name}" cannot serve HTTP connections`);
    } catch (e) {
      return this.#problem(res, e, { git: isGit });
    }
    // git's probe before a large push (a flush-pkt, no commands) is judged and answered like any request.
    const push = op.receivePack?.updates.length ? op.receivePack : undefined;
    if (push && agent.gitFastForward) await agent.gitFastForward(connection, op.http.path.replace(/\/git-receive-pack$/, ""), push.updates, decoded, push.end, push.capabilities);

    let session: OpenSession;
    try {
      const s = this.#sessionFor(req, principal, connection, op);
      session = s instanceof Promise ? await s : s;
    } catch (e) {
      return this.#problem(res, e, { git: isGit });
    }
    const rec = session.recorder;
    const recordLimit = this.#d.config.recordBodyBytes ?? 1 << 20;
    if (rec) {
      rec.client(headText(req), body.length ? body : undefined);
      tapResponse(res, rec, recordLimit);
    }
    const abort = new Cancellation();
    res.onClose(() => abort.cancel(new Error("client gone")));
    let status = 0;
    let responseBytes = 0;
    /** Set for a plain allow (no review): recorded in the exchange event, not an event of its own. */
    let allowedBy: string | undefined;
    try {
      const gs = { id: session.id, principal, connection };
      // A streamed body cannot be bound to an approval: only `allow` may forward it, and what
      // would need review is refused (audited as such) with what to do instead.
      let decided = this.#d.gate.decide(gs, op);
      // What a reviewer reads: the body, when it is short text.
      if (decided.action === "review" && !streamed) {
        const text = bodyText(decoded);
        if (text !== undefined) op.http.bodyText = text;
      }
      if (streamed && decided.action === "review") {
        decided = { action: "deny", rule: decided.rule, message: `needs review, but its body is larger than listeners.http.maxBodyBytes (${this.#d.config.maxBodyBytes}), so it cannot be bound to an approval; send a smaller body` };
      }
      // A client that closes while its request is held for review is gone: the review is
      // cancelled rather than approved later and run for no one. (A FIN may also be a half-close
      // — `printf … | nc` — but a held request could then wait for minutes for nothing.)
      if (decided.action === "review") res.onClientEnd(() => abort.cancel(new Error("the client closed the connection")));
      const v = await this.#d.gate.judge(gs, op, { signal: abort, holdTimeoutMs: this.#d.config.maxHoldSeconds * 1000 }, decided);
      if (v.forward && v.review === undefined && v.replacement === undefined) allowedBy = v.decision.rule;
      else rec?.event(verdictEvent(0, op, v));
      if (!v.forward) {
        if (push) {
          const out = gitRefusal(push.updates, `${v.error.code} ${v.error.message}`, push.capabilities.includes("side-band-64k") || push.capabilities.includes("side-band"));
          status = 200;
          responseBytes = out.length;
          res.send(200, { "content-type": "application/x-git-receive-pack-result", "cache-control": "no-cache" }, out);
        } else {
          status = problemFromError(v.error).status;
          this.#problem(res, v.error, { git: isGit });
        }
        return;
      }
      let upstream: HttpForwardResponse;
      try {
        // The method as the client wrote it (methods are case-sensitive; policy compares them without case).
        upstream = await agent.httpRequest!(connection, { method: req.method, target: op.forward.replace(/^\/+/, "/"), headers: req.headers, body: streamed ? this.#rest(req, body, rec, recordLimit) : body, signal: abort });
      } catch (e) {
        status = 502;
        return this.#problem(res, e, { git: isGit });
      }
      status = upstream.status;
      const ub = upstream.body;
      if (Buffer.isBuffer(ub)) {
        // The whole response arrived with its head: one write.
        responseBytes = ub.length;
        res.send(upstream.status, upstream.headers, ub);
        return;
      }
      res.writeHead(upstream.status, upstream.headers, upstream.length);
      // A target that stops sending in the middle of a body (for listeners.http.responseIdleSeconds,
      // while the client is reading) is given up on: its body and the client's connection are
      // closed, not held forever. Long-lived streams that go quiet longer need it raised (or 0).
      const idleMs = (this.#d.config.responseIdleSeconds ?? 300) * 1000;
      const idle = idleMs > 0 ? new Deadline(() => ub.destroy()) : undefined;
      await new Promise<void>((resolve) => {
        res.onClose(() => {
          ub.destroy();
          resolve();
        });
        idle?.arm(idleMs);
        ub.on("data", (b: Buffer) => {
          responseBytes += b.length;
          idle?.arm(idleMs);
          if (!res.write(b)) {
            ub.pause();
            idle?.disarm();
            void res.drain().then(() => {
              if (ub.destroyed) return;
              idle?.arm(idleMs);
              ub.resume();
            });
          }
        });
        let ended = false;
        ub.once("end", () => {
          ended = true;
          res.end();
          resolve();
        });
        ub.once("error", () => {
          res.destroy();
          resolve();
        });
        // Destroyed without an error (a tunnel stream reset by the agent, the tunnel gone): the
        // body cannot be completed, so the client's connection is closed rather than left waiting.
        ub.once("close", () => {
          if (ended) return;
          res.destroy();
          resolve();
        });
      }).finally(() => idle?.stop());
    } finally {
      if (rec) {
        rec.eventJson(exchangeJson(op.http.method, op.http.path, status, Date.now() - started, body.length, responseBytes, responseBytes > recordLimit ? recordLimit : undefined, allowedBy));
      }
    }
  }
}

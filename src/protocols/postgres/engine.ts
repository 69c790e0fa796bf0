// The PostgreSQL gate. One script per client connection, top to bottom:
//
//   startup   SSLRequest → TLS; GSSENCRequest → 'N'; CancelRequest → delivered through the agent
//   login     cleartext password (the OIDC access token) over TLS → Principal; dbname → Connection
//   open      the agent serving the Connection opens an authenticated target session
//   relay     every Query / Parse / gated Bind goes through gate.judge() — the one place an
//             Operation is judged — and is forwarded only on `forward`; refused ones are replaced
//             by a marker statement whose server error is swapped for the refusal (server-stream.ts)
//
// Never: forward a statement before its Verdict, let one session's bytes reach another, or leave a
// target connection open after its client is gone.

import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { TLSSocket, type SecureContext } from "node:tls";
import type { PostgresTargetSession } from "../../agent/postgres.ts";
import type { Connection } from "../../domain/connection.ts";
import type { Decision } from "../../domain/decision.ts";
import { GatehouseError } from "../../domain/errors.ts";
import type { Operation, SqlDescription, SqlStatement } from "../../domain/operation.ts";
import type { Principal } from "../../domain/principal.ts";
import { type GateSession, HoldWithdrawn, type Verdict, verdictEvent } from "../../gate/gate.ts";
import type { EngineDeps, OpenSession } from "../../gate/sessions.ts";
import type { SessionRecorder } from "../../recording/recorder.ts";
import { commitInSession, describeInSession, PreparedStatementRegistry, type SessionDescription } from "./classify/index.ts";
import { BackendType, backend, type BindMessage, bindParamFormat, FrontendDecoder, type FrontendMessage, frontendWriter, isProtocolError, parseParameterStatus, parsePassword, type StartupMessage } from "./codec/index.ts";
import { isLoopback } from "../loopback.ts";
import { newMarker, ServerStream } from "./server-stream.ts";
import { errorFrame, noticeFrame, toGatehouseError } from "./wire-errors.ts";
import { listen } from "../listen.ts";

export interface PostgresListenerConfig {
  host: string;
  port: number;
  allowCleartextLoopback: boolean;
  /** Connections accepted at once; more are refused before login (default 1000). */
  maxSessions?: number;
}

export interface PostgresEngineDeps extends EngineDeps {
  config: PostgresListenerConfig;
  secureContext: SecureContext | undefined;
  /** Login must finish within this time. */
  loginTimeoutMs?: number;
}

/** While a statement is being judged, buffer at most this many client bytes before pausing reads. */
const INBOX_LIMIT_BYTES = 1 << 20;

const keyOf = (processId: number, secret: Buffer) => `${processId}:${secret.toString("hex")}`;

/** A Parse that cannot succeed, naming the marker token in its syntax error. */
const markerParse = (marker: string) => frontendWriter.parse("", marker);

function bindParameters(m: BindMessage): (string | null)[] {
  return m.params.map((p, i) => (p === null ? null : bindParamFormat(m, i) === 1 ? `\u0000\\x${p.toString("hex")}` : p.toString("utf8")));
}

export class PostgresListener {
  readonly #d: PostgresEngineDeps;
  #server: Server | undefined;
  readonly #live = new Set<PgSession>();
  /** Target backend key → the session, for CancelRequest routing. */
  readonly cancelKeys = new Map<string, { connection: Connection; withdrawHold: () => void }>();

  constructor(deps: PostgresEngineDeps) {
    this.#d = deps;
  }

  get activeSessions(): number {
    return this.#live.size;
  }

  async listen(): Promise<AddressInfo> {
    const server = createServer({ noDelay: true }, (socket) => {
      // Over the limit, the connection still gets its TLS and startup read, so the client can be
      // told why in its own protocol, but it never reaches login or a target.
      const full = this.#live.size >= (this.#d.config.maxSessions ?? 1000);
      const s = new PgSession(socket, this.#d, this, full ? `${this.#live.size} sessions are open` : undefined);
      if (full) {
        this.#d.metrics.authFailures.inc({ surface: "postgres", code: "GH-PG-008" });
        void s.run().catch(() => {});
        return;
      }
      this.#live.add(s);
      s.run()
        .catch((e) => this.#d.logger.error({ err: (e as Error).stack }, "postgres session crashed"))
        .finally(() => this.#live.delete(s));
    });
    this.#server = server;
    const address = await listen(server, this.#d.config.port, this.#d.config.host, "listeners.postgres");
    server.on("error", (e) => this.#d.logger.error({ err: e.message }, "postgres listener error"));
    return address;
  }

  async close(): Promise<void> {
    const server = this.#server;
    // Stop accepting at once, but end the live sessions before waiting for the server's close
    // callback: it fires only when every connection is gone, so awaiting it first never returned
    // while a client was connected. (Found by test/postgres-errors.test.ts.)
    const stopped = server ? new Promise<void>((r) => server.close(() => r())) : Promise.resolve();
    await Promise.all([...this.#live].map((s) => s.shutdown("the gateway is shutting down")));
    await stopped;
  }
}

/** One meaning a statement name may have on the server (a Parse forwarded under it). */
interface NamedStatement {
  text: string;
  sql: SessionDescription;
  /** It needs a review per execution: judged at each Bind with the bound values. */
  gated: boolean;
  /** Its effect on the session's prepared statements has been recorded. */
  committed: boolean;
  /** The gate could not read it as one statement (the server should refuse it): judged at every Bind all the same. */
  unread?: true;
}

/** A change to the statement namespace, applied once the server has answered cycle `cycle` with no error since `errors`. */
interface PendingNameChange {
  cycle: number;
  errors: number;
  apply: () => void;
}

/** Client encodings in which statement text reads as the gate reads it (UTF-8; SQL_ASCII passes bytes on unchanged). */
const SAFE_ENCODINGS = new Set(["UTF8", "UNICODE", "SQLASCII"]);

/** Printable ASCII only (an empty name is the unnamed statement or portal). */
function isAsciiName(name: string): boolean {
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

/**
 * A DO block's body is read by the server when it runs — after the statements sent before it in
 * the same text or pipeline, which may have changed how the server reads text (SET
 * standard_conforming_strings = off; DO …). One whose reading could differ is taken only as a
 * simple query on its own (the caller decides when that is); otherwise this is the refusal.
 */
function deferredBodyRefusal(text: string, sql: SessionDescription): GatehouseError | undefined {
  if (!sql.statements.some((st) => st.nodeType === "DoStmt") || !settingDependent(text)) return undefined;
  return new GatehouseError("PG_SETTINGS_AMBIGUOUS", "a DO block with backslashes or non-ASCII characters is read by the server only when it runs, after what was sent before it in the same text or pipeline (which may change how it reads it); send it as a simple query on its own");
}

/** Whether text could read differently under other settings: a backslash, or a character outside ASCII. */
function settingDependent(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x5c || c > 0x7e) return true;
  }
  return false;
}

class PgSession {
  #client: Socket | TLSSocket;
  readonly #raw: Socket;
  readonly #d: PostgresEngineDeps;
  readonly #listener: PostgresListener;
  readonly #decoder = new FrontendDecoder();
  readonly #addr: string | undefined;
  #tls = false;

  // relay state
  #target: PostgresTargetSession | undefined;
  #session: OpenSession | undefined;
  #gateSession: GateSession | undefined;
  readonly #stream = new ServerStream();
  /**
   * Protocol-level statements (extended-protocol Parse) forwarded to the target, by name: every
   * statement the name may mean on the server (more than one while a change to it is not yet
   * confirmed). PostgreSQL keeps them in one namespace with SQL PREPARE, so `EXECUTE name` in a
   * Query can run them: the registry judges that EXECUTE by this body when it is the only one,
   * not as "unknown" (which a connection whose default is allow would let through without the
   * review the body needs). (Found by test/postgres-statements.test.ts.)
   */
  readonly #named = new Map<string, NamedStatement[]>();
  readonly #prepared = new PreparedStatementRegistry({ fallback: (name) => this.#namedStatement(name) });
  /**
   * Changes to the statement namespace (Close, DEALLOCATE, a Parse replacing a name, a Query
   * dropping the unnamed statement) applied only once the server has answered them without an
   * error: after an error the server skips messages until Sync, and a DEALLOCATE in a failed
   * transaction does nothing, so forgetting a name on the client's word alone let a held
   * statement run unjudged. (Found by black-box testing.)
   */
  #pendingNames: PendingNameChange[] = [];
  /**
   * Statements parsed since the last Sync, by name. A Bind after a Parse of its name in the same
   * pipeline segment runs that statement or nothing (after an error the server skips both), so
   * for it older meanings do not count.
   */
  readonly #segmentParses = new Map<string, NamedStatement>();
  /** Statement names Closed since the last Sync: a Parse of one later in the segment runs only if the Close did. */
  readonly #segmentCloses = new Set<string>();
  /** standard_conforming_strings as the server last reported it is off. */
  #scsOff = false;
  /** client_encoding as the server last reported it, and whether the gate reads text in it. */
  #encoding = "UTF8";
  #encodingSafe = true;
  #inbox: FrontendMessage[] = [];
  /** A FATAL waiting for the end of the server message the client is inside; null once sent. */
  #fatalFrame: Buffer | null | undefined;
  /** The session's recorder (undefined before the session opens or when recording is off). */
  #rec: SessionRecorder | undefined;
  /** Index of the client message being handled, counted from the first after authentication (recording events refer to it). */
  #msgIndex = -1;
  #inboxBytes = 0;
  #pumping = false;
  #toTarget: Buffer[] = [];
  /** Query cycles sent to the target (each answered by one ReadyForQuery). */
  #cycles = 0;
  /** An Execute was forwarded and no Sync has followed yet (it may be running, e.g. under Flush). */
  #unsynced = false;
  #closed = false;
  #cancelSent = false;
  #endReason = "client disconnected";
  readonly #abort = new AbortController();
  /** The abort of the judgement in progress (a review hold the client may withdraw). */
  #hold: AbortController | undefined;
  #cancelKey: string | undefined;
  /** Settles when the client's TCP connection is gone (TLS or not). */
  readonly #rawClosed: Promise<void>;

  /** Set when the listener is full: the session is refused right after its startup message. */
  readonly #refuse: string | undefined;

  constructor(socket: Socket, deps: PostgresEngineDeps, listener: PostgresListener, refuse?: string) {
    this.#refuse = refuse;
    this.#raw = socket;
    this.#client = socket;
    this.#d = deps;
    this.#listener = listener;
    this.#addr = socket.remoteAddress;
    socket.setNoDelay(true);
    this.#rawClosed = new Promise((r) => socket.once("close", () => r()));
  }

  async run(): Promise<void> {
    this.#raw.on("error", () => {});
    let startup: StartupMessage | undefined;
    let principal: Principal;
    let connection: Connection;
    const loginTimer = setTimeout(() => this.#fatal(new GatehouseError("PG_LOGIN_TIMEOUT")), this.#d.loginTimeoutMs ?? 30_000);
    try {
      startup = await this.#readStartup();
      if (!startup) return;
      if (this.#refuse) throw new GatehouseError("PG_TOO_MANY_SESSIONS", this.#refuse);
      ({ principal, connection } = await this.#login(startup));
    } catch (e) {
      this.#fatal(e instanceof GatehouseError ? e : isProtocolError(e) ? new GatehouseError("PG_PROTOCOL_VIOLATION", (e as Error).message) : toGatehouseError(e));
      return;
    } finally {
      clearTimeout(loginTimer);
    }

    // open: session record first (audited), then the target through the agent
    try {
      this.#session = await this.#d.sessions.open(principal, connection, this.#addr, { tls: this.#tls, clientUser: startup.parameters.user ?? null, application: startup.parameters.application_name ?? null });
      this.#gateSession = { id: this.#session.id, principal, connection };
      this.#rec = this.#session.recorder;
      if (this.#rec) {
        this.#rec.onFatal = (err) => {
          this.#endReason = "the session's recording failed";
          this.#fatal(err);
        };
      }
      this.#target = await this.#d.agents.for(connection).openPostgres(connection, startup.parameters);
    } catch (e) {
      const err = toGatehouseError(e);
      this.#d.logger.warn({ connection: connection.name, code: err.code, err: err.message }, "cannot open target session");
      this.#endReason = `target unavailable: ${err.message}`;
      this.#fatal(err);
      await this.#finish();
      return;
    }
    if (this.#closed || this.#raw.destroyed) {
      this.#target.socket.destroy();
      await this.#finish();
      return;
    }
    this.#relay(startup);
    await this.#rawClosed;
    await this.#finish();
  }

  // ---------------------------------------------------------------------------------- startup

  /** Next message from the client during startup/login. */
  #next(): Promise<FrontendMessage> {
    return new Promise((resolve, reject) => {
      const sock = this.#client;
      const pending = this.#inbox.shift();
      if (pending) return resolve(pending);
      const onData = (chunk: Buffer) => {
        try {
          const msgs = this.#decoder.push(chunk);
          if (msgs.length === 0) return;
          cleanup();
          this.#inbox.push(...msgs.slice(1));
          resolve(msgs[0]!);
        } catch (e) {
          cleanup();
          reject(e);
        }
      };
      const onEnd = () => {
        cleanup();
        reject(new ClientGone());
      };
      const cleanup = () => {
        sock.off("data", onData);
        sock.off("end", onEnd);
        sock.off("close", onEnd);
        sock.off("error", onEnd);
        sock.pause();
      };
      sock.on("data", onData);
      sock.once("end", onEnd);
      sock.once("close", onEnd);
      sock.once("error", onEnd);
      sock.resume();
    });
  }

  async #readStartup(): Promise<StartupMessage | undefined> {
    for (;;) {
      let m: FrontendMessage;
      try {
        m = await this.#next();
      } catch (e) {
        if (e instanceof ClientGone) return undefined;
        throw e;
      }
      switch (m.type) {
        case "SSLRequest": {
          if (this.#tls || !this.#d.secureContext) {
            this.#client.write("N");
            continue;
          }
          // Bytes pipelined after the SSLRequest would be read as if they came through TLS (CVE-2021-23214).
          if (this.#decoder.buffered > 0 || this.#inbox.length) throw new GatehouseError("PG_PROTOCOL_VIOLATION", "data sent after SSLRequest before the TLS handshake");
          this.#client.write("S");
          this.#client = await this.#startTls();
          this.#tls = true;
          continue;
        }
        case "GSSENCRequest":
          this.#client.write("N");
          continue;
        case "CancelRequest": {
          const target = this.#listener.cancelKeys.get(keyOf(m.processId, m.secretKey));
          if (target) {
            // A statement held for review is the one running, as far as the client knows: the
            // cancel withdraws it (its review is cancelled), as well as reaching the target.
            target.withdrawHold();
            const agent = this.#d.agents.for(target.connection);
            await agent.cancelPostgres(target.connection, { processId: m.processId, secretKey: Buffer.from(m.secretKey) }).catch(() => {});
            this.#d.audit.append({ type: "session.cancel_requested", connection: target.connection.name, data: { client: this.#addr } }).catch(() => {});
          }
          this.#client.end();
          return undefined;
        }
        case "StartupMessage":
          return m;
        default:
          throw new GatehouseError("PG_PROTOCOL_VIOLATION", `${m.type} before the startup message`);
      }
    }
  }

  #startTls(): Promise<TLSSocket> {
    return new Promise((resolve, reject) => {
      const t = new TLSSocket(this.#raw, { isServer: true, secureContext: this.#d.secureContext });
      t.once("secure", () => {
        t.off("error", onError);
        t.on("error", () => {});
        resolve(t);
      });
      const onError = (e: Error) => reject(new GatehouseError("PG_PROTOCOL_VIOLATION", `TLS handshake failed: ${e.message}`));
      t.once("error", onError);
    });
  }

  async #login(startup: StartupMessage): Promise<{ principal: Principal; connection: Connection }> {
    const p = startup.parameters;
    const replication = p.replication;
    if (replication && !["false", "off", "no", "0"].includes(replication.toLowerCase())) throw new GatehouseError("PG_UNSUPPORTED", "replication connections are not available through Gatehouse");
    if (!p.database && !p.user) throw new GatehouseError("PG_STARTUP_INVALID");
    const database = p.database || p.user!;
    if (!this.#tls && !(this.#d.config.allowCleartextLoopback && isLoopback(this.#addr))) throw new GatehouseError("PG_TLS_REQUIRED");
    // The client asked for a newer minor version or protocol options: say what we speak.
    const pqOptions = Object.keys(p).filter((k) => k.startsWith("_pq_."));
    if (startup.minorVersion > 0 || pqOptions.length) this.#client.write(backend.negotiateProtocolVersion(0, pqOptions));
    this.#client.write(backend.authenticationCleartextPassword());
    const reply = await this.#next().catch((e) => {
      throw e instanceof ClientGone ? new GatehouseError("AUTH_TOKEN_MISSING", "the client closed the connection instead of sending a password") : e;
    });
    if (reply.type !== "AuthResponse") throw new GatehouseError("PG_PROTOCOL_VIOLATION", `expected a password message, got ${reply.type}`);
    const token = parsePassword(reply.payload);
    let principal: Principal;
    try {
      principal = await this.#d.verifier.verify(token);
    } catch (e) {
      const code = e instanceof GatehouseError ? e.code : "internal";
      this.#d.metrics.authFailures.inc({ surface: "postgres", code });
      this.#d.audit.append({ type: "auth.failed", data: { surface: "postgres", code, client: this.#addr ?? null, database } }).catch(() => {});
      throw e;
    }
    const connection = this.#d.connections.get(database);
    if (!connection || connection.protocol !== "postgres") {
      throw new GatehouseError("POLICY_UNKNOWN_CONNECTION", `"${database}" is not a PostgreSQL connection of this gateway`);
    }
    return { principal, connection };
  }

  // ------------------------------------------------------------------------------------ relay

  #relay(startup: StartupMessage): void {
    const target = this.#target!;
    const tsock = target.socket;
    this.#cancelKey = keyOf(target.backendKey.processId, target.backendKey.secretKey);
    this.#listener.cancelKeys.set(this.#cancelKey, { connection: this.#gateSession!.connection, withdrawHold: () => this.#hold?.abort(new HoldWithdrawn("the client cancelled the statement while it waited for review")) });

    // The settings that change how the server reads statement text, as it reports them.
    for (const f of target.parameterFrames) {
      if (f[0] !== BackendType.ParameterStatus) continue;
      try {
        const { name, value } = parseParameterStatus(f.subarray(5));
        this.#onServerParameter(name, value);
      } catch {
        /* malformed: passed on as it is */
      }
    }
    this.#stream.onParameter = (name, value) => this.#onServerParameter(name, value);
    this.#stream.onReady = (count, error) => this.#settle(count, error);
    const hello: Buffer[] = [backend.authenticationOk(), ...target.parameterFrames, backend.backendKeyData(target.backendKey.processId, target.backendKey.secretKey)];
    const dropped = Object.keys(startup.parameters).filter((k) => k === "options");
    if (dropped.length) hello.push(noticeFrame("Gatehouse does not pass the startup parameter `options` to the target", "Run SET statements instead; they are judged by policy like any other statement."));
    hello.push(backend.readyForQuery("I"));
    this.#toClient(Buffer.concat(hello));

    // target → client
    tsock.on("data", (chunk: Buffer) => {
      if (this.#fatalFrame === null) return;
      const out = this.#stream.push(chunk);
      const fatal = this.#fatalFrame;
      if (fatal) {
        // Ending: pass the server's bytes up to the FATAL, then nothing more.
        const at = out.indexOf(fatal);
        if (at < 0) {
          for (const b of out) this.#toClient(b);
          return;
        }
        for (const b of out.slice(0, at + 1)) this.#toClient(b);
        this.#fatalFrame = null;
        this.#client.end();
        return;
      }
      for (const b of out) if (!this.#toClient(b)) tsock.pause();
    });
    this.#client.on("drain", () => tsock.resume());
    tsock.on("close", () => {
      if (this.#fatalFrame) this.#client.end();
      if (this.#closed) return;
      // A tunnel stream says why it ended (e.g. the remote agent disconnected, naming it).
      const why = (tsock as { closeReason?: GatehouseError }).closeReason ?? new GatehouseError("PG_TARGET_LOST");
      this.#endReason = why.code === "GH-PG-005" ? "the target closed the connection" : why.message;
      const frames = this.#stream.inject(errorFrame(why, "FATAL"));
      for (const f of frames) this.#toClient(f);
      this.#client.end();
    });
    tsock.on("error", () => {});
    for (const b of target.leftover) for (const o of this.#stream.push(b)) this.#toClient(o);
    tsock.on("drain", () => {
      if (this.#inboxBytes < INBOX_LIMIT_BYTES) this.#client.resume();
    });
    tsock.resume();

    // client → target
    const onClientData = (chunk: Buffer) => {
      this.#rec?.client(chunk);
      let msgs: FrontendMessage[];
      try {
        msgs = this.#decoder.push(chunk);
      } catch (e) {
        this.#endReason = "protocol violation";
        this.#fatal(new GatehouseError("PG_PROTOCOL_VIOLATION", (e as Error).message));
        return;
      }
      for (const m of msgs) {
        this.#inbox.push(m);
        this.#inboxBytes += m.raw.length;
      }
      if (this.#inboxBytes >= INBOX_LIMIT_BYTES) this.#client.pause();
      void this.#pump();
    };
    this.#client.on("data", onClientData);
    const gone = () => {
      this.#abort.abort(new ClientGone());
      this.#closeTarget();
    };
    this.#client.once("end", gone);
    this.#client.once("close", gone);
    this.#client.on("error", () => {});
    // Messages that arrived together with the password (and the start of one not complete yet).
    if (this.#rec) this.#rec.client(Buffer.concat([...this.#inbox.map((m) => m.raw), this.#decoder.pendingBytes()]));
    if (this.#inbox.length) {
      for (const m of this.#inbox) this.#inboxBytes += m.raw.length;
      void this.#pump();
    }
    this.#client.resume();
  }

  async #pump(): Promise<void> {
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      while (this.#inbox.length && !this.#closed) {
        const m = this.#inbox.shift()!;
        this.#inboxBytes -= m.raw.length;
        const pending = this.#handle(m);
        if (pending) {
          this.#flush();
          await pending;
        }
      }
    } catch (e) {
      this.#d.logger.error({ err: (e as Error).stack }, "postgres relay failed");
      this.#endReason = "internal error";
      this.#fatal(new GatehouseError("POLICY_EVALUATION_FAILED", "internal error in the gateway; the session was closed"));
    } finally {
      this.#pumping = false;
      this.#flush();
      if (!this.#closed && this.#inboxBytes < INBOX_LIMIT_BYTES && !this.#target?.socket.writableNeedDrain) this.#client.resume();
    }
  }

  /** Everything the client receives after authentication goes through here, so it is recorded. */
  #toClient(b: Buffer): boolean {
    this.#rec?.server(b);
    return this.#client.write(b);
  }

  #send(b: Buffer): void {
    this.#toTarget.push(b);
  }

  #flush(): void {
    const bufs = this.#toTarget;
    if (!bufs.length || this.#closed) return;
    this.#toTarget = [];
    const t = this.#target!.socket;
    if (!t.write(bufs.length === 1 ? bufs[0]! : Buffer.concat(bufs))) this.#client.pause();
  }

  /** Handle one client message; returns a promise only when the message must wait (judging). */
  #handle(m: FrontendMessage): Promise<void> | undefined {
    this.#msgIndex++;
    // Statement and portal names are keys here and on the server: decoded lossily, two names
    // in another encoding (or invalid UTF-8) could be one key here and two there. Drivers use
    // ASCII names; others are refused. (Found by black-box testing.)
    const names = m.type === "Parse" || m.type === "Close" || m.type === "Describe" ? [m.name] : m.type === "Bind" ? [m.statement, m.portal] : m.type === "Execute" ? [m.portal] : undefined;
    if (names?.some((n) => !isAsciiName(n))) {
      this.#refused(new GatehouseError("PG_UNSUPPORTED", "prepared statement and portal names must be printable ASCII"), "extended");
      return undefined;
    }
    switch (m.type) {
      case "Query":
        return this.#onQuery(m.query, m.raw);
      case "Parse":
        return this.#onParse(m.name, m.query, m.paramTypes, m.raw);
      case "Bind":
        return this.#onBind(m);
      case "Close":
        if (m.kind === "S") {
          const name = m.name;
          this.#segmentCloses.add(name);
          this.#segmentParses.delete(name);
          const named = this.#forgetter(name);
          const registry = this.#prepared.forgetter(name);
          this.#afterConfirmed(this.#cycles + 1, () => {
            named();
            registry();
          });
        }
        this.#send(m.raw);
        return undefined;
      case "Sync":
        this.#cycles++;
        this.#unsynced = false;
        this.#segmentParses.clear();
        this.#segmentCloses.clear();
        this.#send(m.raw);
        return undefined;
      case "Execute":
        this.#unsynced = true;
        this.#send(m.raw);
        return undefined;
      case "Describe":
      case "Flush":
      case "CopyData":
      case "CopyDone":
      case "CopyFail":
        this.#send(m.raw);
        return undefined;
      case "FunctionCall":
        this.#refused(new GatehouseError("PG_UNSUPPORTED", "fastpath function calls cannot be judged; call the function from SQL"), "query");
        return undefined;
      case "Terminate":
        this.#endReason = "client terminated";
        this.#send(m.raw);
        this.#flush();
        this.#client.end();
        return undefined;
      default:
        this.#endReason = "protocol violation";
        this.#fatal(new GatehouseError("PG_PROTOCOL_VIOLATION", `unexpected ${m.type} message during a session`));
        return undefined;
    }
  }

  async #judge(op: Operation, decided?: Decision): Promise<Verdict> {
    const msg = this.#msgIndex;
    // Aborted when the client goes away, or cancels (CancelRequest) while the statement is held.
    const hold = new AbortController();
    this.#hold = hold;
    const gone = () => hold.abort(this.#abort.signal.reason);
    if (this.#abort.signal.aborted) gone();
    else this.#abort.signal.addEventListener("abort", gone, { once: true });
    const v = await this.#d.gate.judge(this.#gateSession!, op, {
      signal: hold.signal,
      onHeld: (review) => {
        const url = this.#d.gate.reviewUrl(review.id);
        const n = noticeFrame(
          `Gatehouse: this statement is waiting for review ${review.id} (rule ${review.rule})`,
          `Approvers: ${review.approvers.join(", ") || "(none configured)"}; expires ${new Date(review.expiresAt).toISOString()}.${url ? ` ${url}` : ""}`,
          `A reviewer runs: gatehouse reviews approve ${review.id}`,
        );
        for (const f of this.#stream.inject(n)) this.#toClient(f);
        this.#rec?.event({ type: "review.held", msg, reviewId: review.id, rule: review.rule });
      },
    }, decided).finally(() => {
      this.#abort.signal.removeEventListener("abort", gone);
      if (this.#hold === hold) this.#hold = undefined;
    });
    this.#rec?.event(verdictEvent(msg, op, v));
    return v;
  }

  async #onQuery(text: string, raw: Buffer): Promise<void> {
    const lexing = this.#lexingRefusal(text);
    if (lexing) return this.#refused(lexing, "query");
    const sql = describeInSession(text, this.#prepared);
    const deferred = sql.statements.length > 1 ? deferredBodyRefusal(text, sql) : undefined;
    if (deferred) return this.#refused(deferred, "query");
    const clash = this.#reusedGatedName(sql);
    if (clash) return this.#refused(clash, "query");
    const v = await this.#judge({ protocol: "postgres", text, sql });
    if (!v.forward) return this.#refuseQuery(v.error);
    this.#cycles++;
    this.#segmentParses.clear();
    this.#segmentCloses.clear();
    // A simple Query drops the unnamed prepared statement.
    if (this.#named.has("")) this.#afterConfirmed(this.#cycles, this.#forgetter(""));
    if (v.replacement) {
      // A reviewer rewrote the statement: the client is told, and the replacement runs instead.
      this.#tellReplaced(v.replacement.text);
      this.#commit(describeInSession(v.replacement.text, this.#prepared), this.#cycles);
      this.#send(frontendWriter.query(v.replacement.text));
      return;
    }
    this.#commit(sql, this.#cycles);
    this.#send(raw);
  }

  /**
   * The gate reads statement text as UTF-8 with standard_conforming_strings on. When the session
   * says otherwise, a backslash in a string literal or a non-ASCII byte can end a literal for the
   * server where it does not for the gate (`SELECT 'a\' || ' ; DELETE …'` with the setting off;
   * an SJIS character whose second byte is a backslash) and hide statements from it. Text
   * without either reads the same every way, so only such text is refused, and only while the
   * settings differ — or may differ: a statement still running (a trigger, a function, a DO
   * block can change them) is reported on only at its ReadyForQuery. (Found by black-box testing.)
   */
  #lexingRefusal(text: string): GatehouseError | undefined {
    const unconfirmed = this.#stream.readyCount < this.#cycles || this.#unsynced;
    const encodingSafe = this.#encodingSafe;
    if (!unconfirmed && !this.#scsOff && encodingSafe) return undefined;
    if (!settingDependent(text)) return undefined;
    const why = this.#scsOff
      ? "standard_conforming_strings is off in this session, so the server reads backslashes in string literals differently from the gate; SET standard_conforming_strings = on"
      : !encodingSafe
        ? `client_encoding is ${this.#encoding}, which the gate does not read; connect with client_encoding UTF8`
        : "it was sent before the previous statement finished, and that statement may change how the server reads it (standard_conforming_strings, client_encoding); send it once the previous one has completed";
    return new GatehouseError("PG_SETTINGS_AMBIGUOUS", `a statement with backslashes or non-ASCII characters cannot be judged here: ${why}`);
  }

  /** The server reported a setting: the ones that change how statement text is read are kept. */
  #onServerParameter(name: string, value: string): void {
    if (name === "standard_conforming_strings") this.#scsOff = value.toLowerCase() !== "on";
    else if (name === "client_encoding") {
      this.#encoding = value;
      this.#encodingSafe = SAFE_ENCODINGS.has(value.toUpperCase().replace(/[-_]/g, ""));
    }
  }

  /** Run `apply` once the server has answered cycle `cycle`, if no error was reported in between. */
  #afterConfirmed(cycle: number, apply: () => void): void {
    this.#pendingNames.push({ cycle, errors: this.#stream.errorCount, apply });
  }

  /**
   * A ReadyForQuery arrived: namespace changes of the cycles it ends take effect — unless an error
   * came in its cycle (`error`: the server skipped the rest of it), or at all since they were
   * recorded (an error of an earlier cycle arriving late: judged the safe way).
   */
  #settle(count: number, error: boolean): void {
    if (!this.#pendingNames.length) return;
    const still: PendingNameChange[] = [];
    for (const p of this.#pendingNames) {
      if (p.cycle > count) still.push(p);
      else if (!error && p.errors === this.#stream.errorCount) p.apply();
    }
    this.#pendingNames = still;
  }

  /** A function that forgets what `name` may mean now (not any meaning added after this call). */
  #forgetter(name: string): () => void {
    const was = this.#named.get(name);
    return () => {
      const now = this.#named.get(name);
      if (!now || !was) return;
      const rest = now.filter((e) => !was.includes(e));
      if (rest.length) this.#named.set(name, rest);
      else this.#named.delete(name);
    };
  }

  /** What `EXECUTE name` runs when the name is a protocol-level statement with one known meaning. */
  #namedStatement(name: string): SqlStatement | undefined {
    const list = this.#named.get(name);
    const st = list?.length === 1 ? list[0]!.sql.statements : undefined;
    return st?.length === 1 ? st[0] : undefined;
  }

  #tellReplaced(text: string): void {
    const n = noticeFrame("Gatehouse: a reviewer modified this statement; the modified statement runs instead", text.length > 2000 ? `${text.slice(0, 2000)}…` : text);
    for (const f of this.#stream.inject(n)) this.#toClient(f);
  }

  /**
   * A named statement that needs a review per execution (gated) may still exist on the server,
   * and PostgreSQL answers a Parse or SQL PREPARE of an existing name with an error and keeps the
   * old statement. Taking the new text as that name's meaning would let a later Bind or EXECUTE
   * run the held statement judged as the harmless new one (Parse "pd" = DELETE; Parse "pd" =
   * SELECT 1; Bind "pd" ran the DELETE unreviewed). Such a reuse is refused until the client
   * Closes or DEALLOCATEs the name. (Found by test/postgres-statements.test.ts.)
   */
  #reusedGatedName(sql: SessionDescription, parseName = ""): GatehouseError | undefined {
    const names = sql.preparedEffects.flatMap((e) => (e.op === "prepare" ? [e.name] : []));
    if (parseName !== "") names.push(parseName);
    // A Parse after a Close of its name in the same segment is safe: if the Close did not run
    // (an error before it), the server skips the Parse and the rest of the segment too.
    const reused = names.find((n) => this.#named.get(n)?.some((e) => e.gated) && !(n === parseName && this.#segmentCloses.has(n)));
    if (reused === undefined) return undefined;
    return new GatehouseError("PG_UNSUPPORTED", `prepared statement "${reused}" already exists in this session and needs a review per execution; Close it (or DEALLOCATE ${reused}) before preparing another statement under that name`);
  }

  /**
   * After a verdict to forward: record what the text does to the session's prepared statements
   * — a PREPARE at once (the name may mean it from now on), a DEALLOCATE once the server has
   * answered cycle `cycle` without an error.
   */
  #commit(sql: SessionDescription, cycle: number | "extended"): void {
    // A statement sent with Parse runs at an Execute the gate does not tie to it (a Parse of
    // DEALLOCATE that is never executed drops nothing): its DEALLOCATEs are never applied here —
    // the name keeps its meaning, which only ever judges more strictly. (Found by black-box testing.)
    const defer = cycle === "extended" ? () => {} : (apply: () => void) => this.#afterConfirmed(cycle, apply);
    // A name this text prepares or drops no longer means what was Parsed under it in this segment.
    for (const e of sql.preparedEffects) {
      if (e.op === "deallocate-all") this.#segmentParses.clear();
      else this.#segmentParses.delete(e.name);
    }
    commitInSession(sql, this.#prepared, defer);
    // DEALLOCATE and DISCARD ALL also drop protocol-level statements (one namespace).
    for (const e of sql.preparedEffects) {
      if (e.op === "deallocate") {
        defer(this.#forgetter(e.name));
      } else if (e.op === "deallocate-all") {
        const all = [...this.#named.keys()].map((name) => this.#forgetter(name));
        defer(() => {
          for (const forget of all) forget();
        });
      }
    }
  }

  /** A Parse of `name` forwarded: the name may mean `entry` from now on, and only it once the server confirms. */
  #addMeaning(name: string, entry: NamedStatement): void {
    this.#named.set(name, [...(this.#named.get(name) ?? []), entry]);
    this.#segmentParses.set(name, entry);
    this.#afterConfirmed(this.#cycles + 1, () => {
      const now = this.#named.get(name);
      const at = now?.indexOf(entry) ?? -1;
      if (now && at > 0) this.#named.set(name, now.slice(at));
    });
  }

  /** A refusal that no policy decision made (protocol limits): recorded, then refused. */
  #refused(err: GatehouseError, how: "query" | "extended"): void {
    this.#rec?.event({ type: "refused", msg: this.#msgIndex, code: err.code, message: err.message });
    if (how === "query") this.#refuseQuery(err);
    else this.#refuseExtended(err);
  }

  /** Replace a Query-cycle message with a marker Query; the server's error becomes `err`. */
  #refuseQuery(err: GatehouseError): void {
    const marker = newMarker();
    this.#cycles++;
    this.#stream.expectMarker(marker, errorFrame(err), this.#cycles);
    this.#send(frontendWriter.query(marker));
  }

  /** Replace an extended-protocol message with a failing Parse; the server then skips to Sync. */
  #refuseExtended(err: GatehouseError): void {
    const marker = newMarker();
    this.#stream.expectMarker(marker, errorFrame(err), this.#cycles + 1);
    this.#send(markerParse(marker));
  }

  async #onParse(name: string, text: string, paramTypes: number[], raw: Buffer): Promise<void> {
    const lexing = this.#lexingRefusal(text);
    if (lexing) return this.#refused(lexing, "extended");
    const sql = describeInSession(text, this.#prepared);
    const op: Operation = { protocol: "postgres", text, sql };
    const clash = this.#reusedGatedName(sql, name);
    if (clash) return this.#refused(clash, "extended");
    const deferred = deferredBodyRefusal(text, sql);
    if (deferred) return this.#refused(deferred, "extended");
    // Only one statement that parses becomes a prepared statement on the server.
    const creates = sql.parseError === undefined && sql.statements.length === 1;
    // A statement that needs review is judged when its parameters are bound (the approval covers
    // text + values). Parsing it on the server runs nothing.
    // Only a text the server can turn into a prepared statement is deferred like that: one
    // statement that parsed. Unparseable text or several statements make the server fail the
    // Parse and skip the Bind, yet the deferred Bind would still open a review — and in hold mode
    // wedge the session behind it — for something that can never run, after unparseable text had
    // already reached the target without a verdict. Those are judged here, like a simple Query.
    // (Found by test/postgres-statements.test.ts: extended `SELEC * FROM t` answered 42601.)
    const deferToBind = sql.parseError === undefined && sql.statements.length === 1;
    const decision = this.#d.gate.decide(this.#gateSession!, op);
    if (deferToBind && decision.action === "review") {
      this.#rec?.event({ type: "decision.deferred", msg: this.#msgIndex, decision: decision.action, rule: decision.rule, reason: "needs a review per execution; judged at Bind with its parameters" });
      this.#addMeaning(name, { text, sql, gated: true, committed: false });
      this.#send(raw);
      return;
    }
    const v = await this.#judge(op, decision);
    if (!v.forward) return this.#refuseExtended(v.error);
    if (v.replacement) {
      this.#tellReplaced(v.replacement.text);
      const replaced = describeInSession(v.replacement.text, this.#prepared);
      this.#commit(replaced, "extended");
      if (replaced.parseError === undefined && replaced.statements.length === 1) this.#addMeaning(name, { text: v.replacement.text, sql: replaced, gated: false, committed: true });
      this.#send(frontendWriter.parse(name, v.replacement.text, paramTypes));
      return;
    }
    this.#commit(sql, "extended");
    // Text the gate could not read as one statement, sent anyway (policy allowed it): should the
    // server make a statement of it after all, every Bind of it is judged, never passed on.
    this.#addMeaning(name, creates ? { text, sql, gated: false, committed: true } : { text, sql, gated: false, unread: true, committed: true });
    this.#send(raw);
  }

  /**
   * A Bind runs the statement its name means: one allowed when it was parsed goes on; one that
   * needs a review per execution, or one made by SQL PREPARE (judged like EXECUTE, each time), is
   * judged with the bound values; a name the gate does not know, or one that may mean several
   * statements after an error, is refused — the server would otherwise run whatever it holds.
   */
  #onBind(m: BindMessage): Promise<void> | undefined {
    const name = m.statement;
    const latest = this.#segmentParses.get(name);
    const meanings = latest ? [latest] : (this.#named.get(name) ?? []);
    // Counted even after a Parse in this segment: a Close and an SQL PREPARE of the name may
    // have come between them.
    const prepared = this.#prepared.get(name);
    const distinct = new Set(meanings.map((e) => e.text));
    // Binding plans the statement, which can already run functions: from here it is in flight.
    this.#unsynced = true;
    if (prepared === undefined && meanings.length && distinct.size === 1 && !meanings.some((e) => e.gated || e.unread)) {
      this.#send(m.raw);
      return undefined;
    }
    if (prepared === undefined && !meanings.length) {
      this.#refused(new GatehouseError("PG_UNSUPPORTED", `prepared statement "${name}" is not known to the gate (never prepared through it, or dropped); Parse it first`), "extended");
      return undefined;
    }
    if (distinct.size + (prepared ? 1 : 0) > 1) {
      this.#refused(new GatehouseError("PG_UNSUPPORTED", `prepared statement "${name}" may mean more than one statement after an error in the pipeline; Sync, Close it and Parse it again`), "extended");
      return undefined;
    }
    const gated = meanings.find((e) => e.gated || e.unread);
    const judged: { text: string; sql: SqlDescription } = gated ?? { text: prepared!.text, sql: { statements: [prepared!] } };
    return (async () => {
      const v = await this.#judge({ protocol: "postgres", text: judged.text, parameters: bindParameters(m), sql: judged.sql });
      if (v.forward) {
        // A statement's effect on the session's prepared statements is recorded once, however
        // many approved executions follow (a description can be committed only once).
        if (gated && !gated.committed) {
          this.#commit(gated.sql, "extended");
          gated.committed = true;
        }
        this.#send(m.raw);
      } else {
        this.#refuseExtended(v.error);
      }
    })();
  }

  // ---------------------------------------------------------------------------------- endings

  #fatal(e: GatehouseError): void {
    if (this.#closed) return;
    const sock = this.#client;
    const frame = errorFrame(e, "FATAL");
    this.#rec?.event({ type: "session.error", code: e.code, message: e.message });
    if (this.#target && !this.#stream.atBoundary) {
      // The client is inside one of the server's messages: the FATAL goes out where that message
      // ends (the target relay cuts the stream there), never in the middle of it.
      this.#fatalFrame = frame;
      this.#stream.inject(frame);
      this.#closed = true;
      this.#closeTarget();
      setTimeout(() => sock.destroy(), 2000).unref();
      return;
    }
    this.#toClient(frame);
    sock.end();
    this.#closed = true;
    this.#closeTarget();
    // A client that never reads must not keep the socket forever.
    setTimeout(() => sock.destroy(), 2000).unref();
  }

  #closeTarget(): void {
    this.#closed = true;
    const t = this.#target?.socket;
    if (t && !t.destroyed) {
      // A statement still running on the server would run to its end after the client is gone:
      // a backend notices a closed socket only when it next writes, and reads our Terminate only
      // when it next waits for a command. Cancel it, as the client itself could have.
      // (Found by test/postgres-errors.test.ts: a client killed during a long query left its
      // target backend `active` until the query finished.)
      if (this.#stream.readyCount < this.#cycles || this.#unsynced) this.#cancelInFlight();
      if (t.writable) t.end(frontendWriter.terminate());
      setTimeout(() => t.destroy(), 1000).unref();
    }
  }

  #cancelInFlight(): void {
    const target = this.#target;
    const connection = this.#gateSession?.connection;
    if (!target || !connection || this.#cancelSent) return;
    this.#cancelSent = true;
    try {
      this.#d.agents
        .for(connection)
        .cancelPostgres(connection, target.backendKey)
        .catch((e) => this.#d.logger.warn({ connection: connection.name, err: (e as Error).message }, "cannot cancel the statement of a closed session"));
    } catch (e) {
      this.#d.logger.warn({ connection: connection.name, err: (e as Error).message }, "cannot cancel the statement of a closed session");
    }
  }

  async shutdown(reason: string): Promise<void> {
    this.#endReason = reason;
    this.#fatal(new GatehouseError("PG_TARGET_LOST", reason));
    await new Promise<void>((r) => {
      if (this.#client.destroyed) r();
      else this.#client.once("close", () => r());
      setTimeout(r, 2500).unref();
    });
  }

  async #finish(): Promise<void> {
    this.#closeTarget();
    if (this.#cancelKey) this.#listener.cancelKeys.delete(this.#cancelKey);
    if (this.#session) {
      const s = this.#session;
      this.#session = undefined;
      await this.#d.sessions.close(s, this.#endReason).catch((e) => this.#d.logger.error({ err: (e as Error).message }, "cannot record session end"));
    }
  }
}

class ClientGone extends Error {
  constructor() {
    super("client disconnected");
  }
}

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
import type { Operation, SqlStatement } from "../../domain/operation.ts";
import type { Principal } from "../../domain/principal.ts";
import { type GateSession, type Verdict, verdictEvent } from "../../gate/gate.ts";
import type { EngineDeps, OpenSession } from "../../gate/sessions.ts";
import type { SessionRecorder } from "../../recording/recorder.ts";
import { commitInSession, describeInSession, PreparedStatementRegistry, type SessionDescription } from "./classify/index.ts";
import { backend, type BindMessage, bindParamFormat, FrontendDecoder, type FrontendMessage, frontendWriter, isProtocolError, parsePassword, type StartupMessage } from "./codec/index.ts";
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
  readonly cancelKeys = new Map<string, { connection: Connection }>();

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
   * Named protocol-level statements (extended-protocol Parse) forwarded to the target, by what
   * they run. PostgreSQL keeps them in one namespace with SQL PREPARE, so `EXECUTE name` in a
   * Query can run them: the registry must judge that EXECUTE by this body, not as "unknown"
   * (which a connection whose default is allow would let through without the review the body
   * needs). (Found by test/postgres-statements.test.ts.)
   */
  readonly #protocolStatements = new Map<string, SqlStatement>();
  readonly #prepared = new PreparedStatementRegistry({ fallback: (name) => this.#protocolStatements.get(name) });
  /** Protocol-level prepared statements that need a review per execution (judged at Bind). */
  readonly #gated = new Map<string, { text: string; sql: SessionDescription; committed: boolean }>();
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
    this.#listener.cancelKeys.set(this.#cancelKey, { connection: this.#gateSession!.connection });

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
    switch (m.type) {
      case "Query":
        return this.#onQuery(m.query, m.raw);
      case "Parse":
        return this.#onParse(m.name, m.query, m.paramTypes, m.raw);
      case "Bind":
        return this.#onBind(m);
      case "Close":
        if (m.kind === "S") {
          this.#gated.delete(m.name);
          this.#protocolStatements.delete(m.name);
        }
        this.#send(m.raw);
        return undefined;
      case "Sync":
        this.#cycles++;
        this.#unsynced = false;
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
    const v = await this.#d.gate.judge(this.#gateSession!, op, {
      signal: this.#abort.signal,
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
    }, decided);
    this.#rec?.event(verdictEvent(msg, op, v));
    return v;
  }

  async #onQuery(text: string, raw: Buffer): Promise<void> {
    const sql = describeInSession(text, this.#prepared);
    const clash = this.#reusedGatedName(sql);
    if (clash) return this.#refused(clash, "query");
    const v = await this.#judge({ protocol: "postgres", text, sql });
    if (!v.forward) return this.#refuseQuery(v.error);
    this.#cycles++;
    if (v.replacement) {
      // A reviewer rewrote the statement: the client is told, and the replacement runs instead.
      this.#tellReplaced(v.replacement.text);
      this.#commit(describeInSession(v.replacement.text, this.#prepared));
      this.#send(frontendWriter.query(v.replacement.text));
      return;
    }
    this.#commit(sql);
    this.#send(raw);
  }

  #tellReplaced(text: string): void {
    const n = noticeFrame("Gatehouse: a reviewer modified this statement; the modified statement runs instead", text.length > 2000 ? `${text.slice(0, 2000)}…` : text);
    for (const f of this.#stream.inject(n)) this.#toClient(f);
  }

  /**
   * A named statement that needs a review per execution (#gated) may still exist on the server,
   * and PostgreSQL answers a Parse or SQL PREPARE of an existing name with an error and keeps the
   * old statement. Taking the new text as that name's meaning would let a later Bind or EXECUTE
   * run the held statement judged as the harmless new one (Parse "pd" = DELETE; Parse "pd" =
   * SELECT 1; Bind "pd" ran the DELETE unreviewed). Such a reuse is refused until the client
   * Closes or DEALLOCATEs the name. (Found by test/postgres-statements.test.ts.)
   */
  #reusedGatedName(sql: SessionDescription, parseName = ""): GatehouseError | undefined {
    const names = sql.preparedEffects.flatMap((e) => (e.op === "prepare" ? [e.name] : []));
    if (parseName !== "") names.push(parseName);
    const reused = names.find((n) => this.#gated.has(n));
    if (reused === undefined) return undefined;
    return new GatehouseError("PG_UNSUPPORTED", `prepared statement "${reused}" already exists in this session and needs a review per execution; Close it (or DEALLOCATE ${reused}) before preparing another statement under that name`);
  }

  /** After a verdict to forward: record what the text does to the session's prepared statements. */
  #commit(sql: SessionDescription): void {
    commitInSession(sql, this.#prepared);
    // DEALLOCATE and DISCARD ALL also drop protocol-level statements (one namespace).
    for (const e of sql.preparedEffects) {
      if (e.op === "deallocate") {
        this.#gated.delete(e.name);
        this.#protocolStatements.delete(e.name);
      } else if (e.op === "deallocate-all") {
        this.#gated.clear();
        this.#protocolStatements.clear();
      }
    }
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
    const sql = describeInSession(text, this.#prepared);
    const op: Operation = { protocol: "postgres", text, sql };
    const clash = this.#reusedGatedName(sql, name);
    if (clash) return this.#refused(clash, "extended");
    this.#gated.delete(name);
    this.#protocolStatements.delete(name);
    const remember = () => {
      if (name !== "" && sql.statements.length === 1) this.#protocolStatements.set(name, sql.statements[0]!);
    };
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
      this.#gated.set(name, { text, sql, committed: false });
      remember();
      this.#send(raw);
      return;
    }
    const v = await this.#judge(op, decision);
    if (!v.forward) return this.#refuseExtended(v.error);
    if (v.replacement) {
      this.#tellReplaced(v.replacement.text);
      this.#commit(describeInSession(v.replacement.text, this.#prepared));
      this.#send(frontendWriter.parse(name, v.replacement.text, paramTypes));
      return;
    }
    this.#commit(sql);
    remember();
    this.#send(raw);
  }

  #onBind(m: BindMessage): Promise<void> | undefined {
    const gated = this.#gated.get(m.statement);
    if (!gated) {
      this.#send(m.raw);
      return undefined;
    }
    return (async () => {
      const v = await this.#judge({ protocol: "postgres", text: gated.text, parameters: bindParameters(m), sql: gated.sql });
      if (v.forward) {
        // A statement's effect on the session's prepared statements is recorded once, however
        // many approved executions follow (a description can be committed only once).
        if (!gated.committed) {
          this.#commit(gated.sql);
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

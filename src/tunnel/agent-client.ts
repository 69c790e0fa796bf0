// The agent process's end of the tunnel: dial OUT to the gateway (no inbound port in the private
// network), introduce itself, and serve the gateway's OPENs by logging in to targets with
// credentials resolved here — the only place they exist. Reconnects with jittered exponential
// backoff; reports its health in heartbeats.
//
// Never: send a resolved credential to the gateway, or send the agent secret over plaintext to a
// host that is not loopback (unless told to on a trusted network).

import { hostname } from "node:os";
import type { Socket } from "node:net";
import WebSocket from "ws";
import { cancelPostgresTarget, openPostgresTarget, TargetError } from "../agent/postgres.ts";
import { SecretResolver } from "../agent/secrets.ts";
import { httpTargetSchema, postgresTargetSchema } from "../config/schema.ts";
import { GitMirrors } from "../agent/git-mirror.ts";
import { HttpForwarder } from "../agent/http.ts";
import type { HttpTarget, PostgresTarget } from "../domain/connection.ts";
import type { GitRefUpdate } from "../domain/operation.ts";
import { GatehouseError } from "../domain/errors.ts";
import type { Logger } from "../observability/logger.ts";
import { type Frame, MAX_FRAME_BYTES, MIN_TUNNEL_VERSION, TUNNEL_VERSION } from "./frames.ts";
import { Mux } from "./mux.ts";
import { TUNNEL_PATH } from "./server.ts";
import type { TunnelStream } from "./stream.ts";
import { checkOwnSecrets, type TargetPins } from "./agent-targets.ts";

export interface AgentClientOptions {
  /** The gateway's API URL (http/https) or the tunnel URL itself (ws/wss). */
  gateway: string;
  /** The agent's secret (`gha_…`), or a source of fresh OIDC access tokens (client credentials). */
  token: string | (() => Promise<string>);
  logger: Logger;
  version: string;
  secrets?: SecretResolver;
  /** PEM CA bundle to verify a gateway with a private CA. */
  ca?: string;
  allowInsecure?: boolean;
  /** Where bare mirrors of git targets are kept (fast-forward checks). */
  gitMirrorDir?: string;
  /** The targets (and credentials per target) this agent may open (--targets); without, any target the gateway names. */
  targets?: TargetPins;
  /** Backoff bounds (ms). */
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

/** Request bodies of a known length up to this are collected before they go to the target. */
const WHOLE_REQUEST_BYTES = 1 << 20;

/** Validated HTTP targets kept (#httpTarget). */
const TARGET_CACHE = 256;

/** An HTTP OPEN's target as validated, and (once checked) whether this agent refuses it. */
interface HttpTargetEntry {
  parsed: ReturnType<typeof httpTargetSchema.safeParse>;
  refusal: GatehouseError | null | undefined;
}

/** The GH-AGENT-007 a pinning check throws, or null when it passes. */
function refusalOf(check: () => void): GatehouseError | null {
  try {
    check();
    return null;
  } catch (e) {
    if (e instanceof GatehouseError) return e;
    throw e;
  }
}

export type AgentState = "connecting" | "connected" | "waiting";

function isLoopbackHost(h: string): boolean {
  return h === "localhost" || h === "[::1]" || h === "::1" || h.startsWith("127.");
}

/** The tunnel URL for a gateway address; refuses plaintext to anything but loopback unless allowed. */
export function tunnelUrl(gateway: string, allowInsecure = false): string {
  let u: URL;
  try {
    u = new URL(gateway);
  } catch {
    throw new GatehouseError("CONFIG_INVALID", `--gateway "${gateway}" is not a URL (e.g. https://gatehouse.example.com)`);
  }
  const map: Record<string, string> = { "http:": "ws:", "https:": "wss:", "ws:": "ws:", "wss:": "wss:" };
  const proto = map[u.protocol];
  if (!proto) throw new GatehouseError("CONFIG_INVALID", `--gateway must be an http(s):// or ws(s):// URL, not ${u.protocol}`);
  if (proto === "ws:" && !allowInsecure && !isLoopbackHost(u.hostname)) throw new GatehouseError("AGENT_INSECURE_GATEWAY", `${u.host} is not loopback`);
  u.protocol = proto;
  if (u.pathname === "/" || u.pathname === "") u.pathname = TUNNEL_PATH;
  return u.toString();
}

export class AgentClient {
  readonly #o: AgentClientOptions;
  readonly #url: string;
  readonly #secrets: SecretResolver;
  readonly #http: HttpForwarder;
  readonly #targetCache = new Map<string, HttpTargetEntry>();
  readonly #git: GitMirrors;
  #mux: Mux | undefined;
  #ws: WebSocket | undefined;
  #attempt = 0;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #started = Date.now();
  #served = 0;
  state: AgentState = "waiting";
  /** Connections the gateway said this agent serves (from WELCOME). */
  connections: string[] = [];
  onState: ((s: AgentState) => void) | undefined;

  constructor(o: AgentClientOptions) {
    this.#o = o;
    this.#url = tunnelUrl(o.gateway, o.allowInsecure);
    this.#secrets = o.secrets ?? new SecretResolver();
    this.#http = new HttpForwarder(this.#secrets);
    this.#git = new GitMirrors(o.gitMirrorDir ?? "./data/git-mirrors", this.#secrets, o.logger);
  }

  start(): void {
    this.#connect();
  }

  #set(s: AgentState): void {
    this.state = s;
    this.onState?.(s);
  }

  #connect(): void {
    if (this.#stopped) return;
    this.#set("connecting");
    const token = this.#o.token;
    if (typeof token === "string") this.#dial(token);
    else
      token().then(
        (t) => this.#dial(t),
        (e: Error) => {
          this.#o.logger.error({ err: e.message }, "cannot get an access token for the agent; retrying with backoff");
          this.#retry();
        },
      );
  }

  #retry(): void {
    if (this.#stopped) return;
    this.#set("waiting");
    const cap = this.#o.maxBackoffMs ?? 30_000;
    const base = Math.min(cap, (this.#o.minBackoffMs ?? 500) * 2 ** Math.min(this.#attempt, 16));
    // Full jitter in [base/2, base]: agents restarted together do not reconnect in lockstep.
    const delay = Math.round(base / 2 + (Math.random() * base) / 2);
    this.#attempt++;
    this.#o.logger.info({ inMs: delay, attempt: this.#attempt }, "reconnecting to the gateway");
    this.#timer = setTimeout(() => this.#connect(), delay);
  }

  #dial(bearer: string): void {
    if (this.#stopped) return;
    const ws = new WebSocket(this.#url, { headers: { authorization: `Bearer ${bearer}` }, maxPayload: MAX_FRAME_BYTES, perMessageDeflate: false, handshakeTimeout: 10_000, ...(this.#o.ca ? { ca: this.#o.ca } : {}) });
    this.#ws = ws;
    ws.on("unexpected-response", (_req, res) => {
      let body = "";
      res.on("data", (d: Buffer) => (body += d.toString("utf8")));
      res.on("end", () => {
        let detail = body.slice(0, 300);
        try {
          const p = JSON.parse(body) as { code?: string; detail?: string };
          detail = `${p.code ?? ""} ${p.detail ?? ""}`.trim();
        } catch {
          /* not problem+json */
        }
        this.#o.logger.error({ status: res.statusCode, detail }, res.statusCode === 401 ? "the gateway refused this agent's secret (GH-AGENT-002); check GATEHOUSE_AGENT_TOKEN — retrying with backoff" : "the gateway refused the tunnel");
        ws.terminate();
      });
    });
    ws.on("error", (e) => this.#o.logger.warn({ err: e.message, gateway: this.#url }, "tunnel error"));
    ws.on("open", () => {
      const mux = new Mux(ws, {
        window: 1 << 20,
        heartbeatMs: 10_000,
        pingBody: () => ({ health: { streams: mux.streams.size, served: this.#served, uptimeSeconds: Math.round((Date.now() - this.#started) / 1000), rssBytes: process.memoryUsage().rss } }),
        onControl: (f) => this.#onControl(mux, f),
        onClosed: (reason) => {
          this.#o.logger.warn({ reason: reason.message }, "tunnel closed");
        },
      });
      this.#mux = mux;
      mux.control("HELLO", { versions: [MIN_TUNNEL_VERSION, TUNNEL_VERSION], agent: hostname(), software: this.#o.version, node: process.version, capabilities: ["postgres", "cancel", "health", "http", "git", "batch"] });
    });
    ws.on("close", () => {
      this.#mux = undefined;
      this.#retry();
    });
  }

  #onControl(mux: Mux, f: Frame & { body: Record<string, unknown> }): void {
    switch (f.type) {
      case "WELCOME":
        this.#attempt = 0;
        // The gateway's flow-control window for every stream (both ends must agree).
        if (typeof f.body.window === "number") mux.setWindow(f.body.window);
        // Several frames per message only to a gateway that reads them (an older one does not).
        if (Array.isArray(f.body.capabilities) && f.body.capabilities.includes("batch")) mux.enableBatching();
        this.connections = Array.isArray(f.body.connections) ? (f.body.connections as string[]) : [];
        this.#o.logger.info({ gateway: this.#url, agent: f.body.agent, version: f.body.version, connections: this.connections }, "connected to the gateway");
        this.#set("connected");
        return;
      case "OPEN":
        if (f.body.protocol === "http") void this.#openHttp(mux, f);
        else if (f.body.protocol === "git-ancestry") void this.#gitAncestry(mux, f);
        else if (f.body.protocol === "http-upgrade") void this.#openUpgrade(mux, f);
        else void this.#open(mux, f);
        return;
      case "CANCEL":
        void this.#cancel(f.body);
        return;
      case "GOODBYE":
        this.#o.logger.warn({ code: f.body.code, reason: f.body.reason }, "the gateway closed the tunnel");
        return;
      default:
        mux.close(new GatehouseError("AGENT_UNAVAILABLE", `unexpected ${f.type} from the gateway`), 1002);
    }
  }

  /**
   * An HTTP OPEN's target, validated (httpTargetSchema). The same few targets come with every
   * request: results are kept by connection and the target's JSON text (a string compare instead of the schema's
   * walk and URL parse per request), at most TARGET_CACHE entries.
   */
  #httpTarget(connection: unknown, raw: unknown): HttpTargetEntry {
    // Per connection too: a refusal names the connection it was for.
    const key = `${String(connection)}\u0000${JSON.stringify(raw) ?? ""}`;
    let r = this.#targetCache.get(key);
    if (!r) {
      r = { parsed: httpTargetSchema.safeParse(raw), refusal: undefined };
      if (this.#targetCache.size >= TARGET_CACHE) this.#targetCache.clear();
      this.#targetCache.set(key, r);
    }
    return r;
  }

  /** The stream an OPEN names; a gateway reusing an open stream id loses the tunnel. */
  #adopt(mux: Mux, f: Frame, halfOpen = false): TunnelStream | undefined {
    try {
      const s = mux.adopt(f.stream, halfOpen);
      s.on("error", () => {});
      return s;
    } catch (e) {
      mux.close(new GatehouseError("AGENT_UNAVAILABLE", (e as Error).message), 1002);
      return undefined;
    }
  }

  async #open(mux: Mux, f: Frame & { body: Record<string, unknown> }): Promise<void> {
    const stream = this.#adopt(mux, f);
    if (!stream) return;
    const b = f.body;
    const fail = (message: string, sqlstate = "08006") => this.#failOpen(mux, f.stream, { message, sqlstate, connection: b.connection });
    if (b.protocol !== "postgres") return fail(`protocol ${String(b.protocol)} is not supported by this agent`, "0A000");
    const target = postgresTargetSchema.safeParse(b.target);
    if (!target.success) return fail(`the gateway sent no usable target for ${String(b.connection)}`);
    const refused = this.#refusedPostgres(String(b.connection), target.data);
    if (refused) return this.#failOpen(mux, f.stream, { code: refused.code, message: this.#refusalMessage(String(b.connection), refused), sqlstate: refused.def.sqlstate, connection: b.connection });
    const clientParameters = b.clientParameters && typeof b.clientParameters === "object" ? (b.clientParameters as Record<string, string>) : {};
    let t: Awaited<ReturnType<typeof openPostgresTarget>>;
    try {
      t = await openPostgresTarget(target.data, this.#secrets, { clientParameters });
    } catch (e) {
      return fail(e instanceof TargetError ? e.message : (e as Error).message, e instanceof TargetError ? e.sqlstate : "08006");
    }
    if (stream.destroyed || mux.closed) {
      t.socket.destroy();
      return;
    }
    this.#served++;
    mux.control(
      "OPENED",
      {
        parameterFrames: t.parameterFrames.map((x) => x.toString("base64")),
        parameters: Object.fromEntries(t.parameters),
        backendKey: { processId: t.backendKey.processId, secretKey: t.backendKey.secretKey.toString("base64") },
        leftover: t.leftover.map((x) => x.toString("base64")),
        tls: t.tls,
      },
      f.stream,
    );
    bridge(t.socket, stream);
  }

  /** Collect what the gateway sends on a half-open stream (a request body), bounded. */
  #collect(stream: TunnelStream, max = 1 << 30): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const parts: Buffer[] = [];
      let n = 0;
      let settled = false;
      stream.on("data", (b: Buffer) => {
        n += b.length;
        if (n > max) stream.destroy(new Error("request body too large"));
        else parts.push(b);
      });
      stream.once("end", () => {
        settled = true;
        resolve(parts.length === 1 ? parts[0]! : Buffer.concat(parts, n));
      });
      stream.once("error", (e) => {
        settled = true;
        reject(e);
      });
      // 'close' follows every 'end': an Error (and its stack) only when the body did not end.
      stream.once("close", () => {
        if (!settled) reject(new Error("the stream closed before the request body ended"));
      });
    });
  }

  /** Answer an OPEN with OPEN_FAILED (`code` or `sqlstate` says what kind) and drop the stream. */
  #failOpen(mux: Mux, id: number, b: { message: string; code?: string; sqlstate?: string; connection?: unknown }): void {
    this.#o.logger.warn({ connection: b.connection, err: b.message }, "cannot open target");
    const { connection: _c, ...body } = b;
    try {
      mux.control("OPEN_FAILED", body, id);
    } catch {
      /* tunnel gone */
    }
    mux.forget(id);
  }

  async #openHttp(mux: Mux, f: Frame & { body: Record<string, unknown> }): Promise<void> {
    const stream = this.#adopt(mux, f, true);
    if (!stream) return;
    const entry = this.#httpTarget(f.body.connection, f.body.target);
    const target = entry.parsed;
    const r = f.body.request as { method?: string; target?: string; headers?: Record<string, string | string[]>; length?: number } | undefined;
    if (!target.success || !r?.method || typeof r.target !== "string") return this.#failOpen(mux, f.stream, { code: "GH-HTTP-005", message: `the gateway sent no usable HTTP target for ${String(f.body.connection)}` });
    if (this.#refuseHttp(mux, f, entry)) return;
    try {
      const length = typeof r.length === "number" && Number.isSafeInteger(r.length) && r.length >= 0 ? r.length : undefined;
      // A body of known, small length (the gateway read it whole to judge it: nearly every
      // request) is collected first and sent with the head in one write, on a connection that
      // goes back to the pool at once; larger or open-ended bodies stream to the target, never
      // held whole here.
      const requestBody = length !== undefined && length <= WHOLE_REQUEST_BYTES ? await this.#collect(stream, length) : stream;
      if (Buffer.isBuffer(requestBody) && requestBody.length !== length) throw new Error("the request body ended before its Content-Length");
      const res = await this.#http.forward(String(f.body.connection), target.data as HttpTarget, { method: r.method, target: r.target, headers: r.headers ?? {}, body: requestBody, length });
      this.#served++;
      mux.control("OPENED", { status: res.status, headers: res.headers, ...(res.length !== undefined ? { length: res.length } : {}) }, f.stream);
      const body = res.body;
      if (Buffer.isBuffer(body)) stream.end(body);
      else {
        body.on("error", () => stream.destroy());
        body.pipe(stream);
        stream.once("close", () => body.destroy());
      }
    } catch (e) {
      this.#failOpen(mux, f.stream, { code: "GH-HTTP-005", message: (e as Error).message });
    }
  }

  async #openUpgrade(mux: Mux, f: Frame & { body: Record<string, unknown> }): Promise<void> {
    const stream = this.#adopt(mux, f);
    if (!stream) return;
    const entry = this.#httpTarget(f.body.connection, f.body.target);
    const target = entry.parsed;
    const r = f.body.request as { target?: string; headers?: Record<string, string | string[]> } | undefined;
    if (!target.success || typeof r?.target !== "string") return this.#failOpen(mux, f.stream, { code: "GH-HTTP-005", message: "the gateway sent no usable upgrade target" });
    if (this.#refuseHttp(mux, f, entry)) return;
    try {
      const socket = await this.#http.upgrade(String(f.body.connection), target.data as HttpTarget, { target: r.target, headers: r.headers ?? {} });
      this.#served++;
      mux.control("OPENED", {}, f.stream);
      bridge(socket as Socket, stream);
    } catch (e) {
      this.#failOpen(mux, f.stream, { code: "GH-HTTP-005", message: (e as Error).message });
    }
  }

  async #gitAncestry(mux: Mux, f: Frame & { body: Record<string, unknown> }): Promise<void> {
    const stream = this.#adopt(mux, f, true);
    if (!stream) return;
    const b = f.body;
    const entry = this.#httpTarget(b.connection, b.target);
    const target = entry.parsed;
    if (!target.success || typeof b.repoPath !== "string" || !Array.isArray(b.updates)) return this.#failOpen(mux, f.stream, { code: "GH-HTTP-005", message: "the gateway sent no usable git target" });
    if (this.#refuseHttp(mux, f, entry)) return;
    try {
      const body = await this.#collect(stream);
      const updates = (b.updates as GitRefUpdate[]).map((u) => ({ ...u, fastForward: undefined as boolean | undefined }));
      await this.#git.classify(String(b.connection), target.data as HttpTarget, b.repoPath, updates, body, Number(b.commandsEnd), Array.isArray(b.capabilities) ? (b.capabilities as string[]) : []);
      mux.control("OPENED", { fastForward: updates.map((u) => u.fastForward ?? null) }, f.stream);
      stream.end();
    } catch (e) {
      this.#failOpen(mux, f.stream, { code: "GH-HTTP-005", message: (e as Error).message });
    }
  }

  /**
   * GH-AGENT-007 when this agent may not open the PostgreSQL target: not in its targets file, a
   * credential not listed for it, or the agent's own secret. Checked before anything is resolved.
   */
  #refusedPostgres(connection: string, t: Pick<PostgresTarget, "host" | "port" | "password" | "ca" | "tls">): GatehouseError | null {
    return refusalOf(() => {
      checkOwnSecrets(connection, [t.password, t.ca]);
      this.#o.targets?.checkPostgres(connection, t);
    });
  }

  /**
   * The HTTP counterpart of #refusedPostgres: answers the OPEN with OPEN_FAILED and returns true
   * when refused. The verdict is kept with the validated target (targets and pins do not change
   * while the agent runs), so pinning costs no URL parse per request.
   */
  #refuseHttp(mux: Mux, f: Frame & { body: Record<string, unknown> }, entry: HttpTargetEntry): boolean {
    const connection = String(f.body.connection);
    if (entry.refusal === undefined) {
      const t = entry.parsed.data as HttpTarget;
      entry.refusal = refusalOf(() => {
        checkOwnSecrets(connection, [t.auth?.secret, t.ca]);
        this.#o.targets?.checkHttp(connection, t);
      });
    }
    if (!entry.refusal) return false;
    this.#failOpen(mux, f.stream, { code: entry.refusal.code, message: this.#refusalMessage(connection, entry.refusal), connection });
    return true;
  }

  /**
   * What the gateway (and through it the caller) is told of a refusal: that it happened and where
   * to look. The target's address and the credential's name stay in this agent's log.
   */
  #refusalMessage(connection: string, e: GatehouseError): string {
    this.#o.logger.warn({ connection, err: e.detail }, "refused a target or credential this agent does not serve");
    return `connection ${connection}: refused by the agent (the agent's log names the target or credential)`;
  }

  async #cancel(b: Record<string, unknown>): Promise<void> {
    const target = postgresTargetSchema.safeParse(b.target);
    if (!target.success || typeof b.processId !== "number" || typeof b.secretKey !== "string") return;
    const refused = this.#refusedPostgres(String(b.connection ?? "(cancel)"), target.data);
    if (refused) {
      this.#o.logger.warn({ err: refused.message }, "refused a cancel request for a target this agent does not serve");
      return;
    }
    await cancelPostgresTarget(target.data, { processId: b.processId, secretKey: Buffer.from(b.secretKey, "base64") }).catch((e) => this.#o.logger.warn({ err: (e as Error).message }, "cannot deliver a cancel request"));
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    void this.#http.close();
    if (this.#timer) clearTimeout(this.#timer);
    const mux = this.#mux;
    if (mux && !mux.closed) {
      try {
        mux.control("GOODBYE", { reason: "the agent is shutting down" });
      } catch {
        /* closing */
      }
      mux.close(new GatehouseError("AGENT_UNAVAILABLE", "the agent is shutting down"));
    } else this.#ws?.terminate();
  }
}

/** Target socket ↔ tunnel stream, with backpressure both ways and endings propagated. */
function bridge(target: Socket, stream: TunnelStream): void {
  target.on("error", () => {});
  stream.on("error", () => {});
  target.pipe(stream);
  stream.pipe(target);
  target.once("close", () => {
    if (!stream.destroyed && !stream.writableEnded) stream.destroy();
  });
  stream.once("close", () => {
    if (!target.destroyed) target.destroy();
  });
  target.resume();
}

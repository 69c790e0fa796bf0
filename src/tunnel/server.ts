// The gateway end of the agent tunnels: WebSocket upgrades on the API listener at
// /api/v1/agents/tunnel, authenticated by the agent's secret, a versioned HELLO/WELCOME handshake,
// then the agent serves OPENs for the connections that name it — and only those.
//
// Never: let an agent serve a connection that does not name it, keep a revoked agent's tunnel, or
// answer an unauthenticated upgrade with anything but 401.

import type { IncomingMessage, Server } from "node:http";
import type { Duplex } from "node:stream";
import { randomUUID } from "node:crypto";
import { WebSocketServer } from "ws";
import type { AgentRegistry } from "../agent/agent.ts";
import { bearerFrom, type Verifier } from "../api/auth.ts";
import type { AuditLog } from "../audit/log.ts";
import type { Connection } from "../domain/connection.ts";
import { ERRORS, GatehouseError } from "../domain/errors.ts";
import type { Logger } from "../observability/logger.ts";
import type { GatewayMetrics } from "../observability/metrics.ts";
import { AGENT_SECRET_PREFIX, type AgentDirectory } from "./directory.ts";
import { MAX_FRAME_BYTES, MIN_TUNNEL_VERSION, TUNNEL_VERSION } from "./frames.ts";
import { Mux } from "./mux.ts";
import { RemoteAgent, TunnelLink } from "./remote-agent.ts";

export const TUNNEL_PATH = "/api/v1/agents/tunnel";
export const DEFAULT_WINDOW = 1 << 20;
export const DEFAULT_HEARTBEAT_MS = 10_000;
const HELLO_TIMEOUT_MS = 10_000;
/** Capabilities this gateway offers; an agent uses only what both sides list. */
export const GATEWAY_CAPABILITIES = ["postgres", "cancel", "health", "http", "git", "batch"];

export interface TunnelServerDeps {
  directory: AgentDirectory;
  /** Verifies OIDC access tokens (agents that authenticate with their own client-credentials token). */
  verifier?: Verifier;
  /** Client id → agent name, from config `agents`. */
  tokenAgents?: Map<string, string>;
  registry: AgentRegistry;
  connections: Map<string, Connection>;
  audit: AuditLog;
  metrics: GatewayMetrics;
  logger: Logger;
  window?: number;
  heartbeatMs?: number;
}

export interface AgentStatus {
  name: string;
  status: "connected" | "disconnected" | "revoked";
  createdAt: string | null;
  revokedAt: string | null;
  lastSeenAt: string | null;
  connections: string[];
  tunnels: Array<{ id: string; address: string | null; version: string | null; protocolVersion: number; connectedAt: string; streams: number; health: Record<string, unknown> }>;
}

function rejectUpgrade(socket: Duplex, status: number, def: (typeof ERRORS)[keyof typeof ERRORS], detail: string): void {
  const body = JSON.stringify({ type: `urn:gatehouse:error:${def.code}`, title: def.title, status, code: def.code, hint: def.hint, detail });
  socket.end(`HTTP/1.1 ${status} ${status === 401 ? "Unauthorized" : status === 404 ? "Not Found" : "Bad Request"}\r\ncontent-type: application/problem+json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n${status === 401 ? 'www-authenticate: Bearer realm="gatehouse-agent"\r\n' : ""}\r\n${body}`);
  setTimeout(() => socket.destroy(), 1000).unref();
}

export class TunnelServer {
  readonly #d: TunnelServerDeps;
  readonly #wss = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME_BYTES, perMessageDeflate: false });
  readonly #agents = new Map<string, RemoteAgent>();
  #sweep: NodeJS.Timeout | undefined;
  #closing = false;

  constructor(deps: TunnelServerDeps) {
    this.#d = deps;
  }

  /** Serve tunnel upgrades on the API's HTTP server; check revocations every heartbeat. */
  attach(server: Server): void {
    server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      socket.on("error", () => {});
      const path = (req.url ?? "").split("?")[0];
      if (path !== TUNNEL_PATH) return rejectUpgrade(socket, 404, ERRORS.API_NOT_FOUND, `no WebSocket endpoint at ${path}`);
      this.#upgrade(req, socket, head).catch((e) => {
        this.#d.logger.error({ err: (e as Error).message }, "agent tunnel upgrade failed");
        socket.destroy();
      });
    });
    this.#sweep = setInterval(() => void this.#checkRevoked(), this.#d.heartbeatMs ?? DEFAULT_HEARTBEAT_MS);
    this.#sweep.unref();
  }

  /** Connections that name this agent. */
  connectionsOf(agent: string): string[] {
    return [...this.#d.connections.values()].filter((c) => c.agents.includes(agent)).map((c) => c.name);
  }

  async #upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const bearer = bearerFrom(req.headers.authorization);
    const { name, expiresAt } = bearer ? await this.#authenticate(bearer) : { name: undefined, expiresAt: undefined };
    const address = req.socket.remoteAddress ?? null;
    if (!name || this.#closing) {
      this.#d.metrics.authFailures.inc({ surface: "tunnel", code: ERRORS.AGENT_AUTH_FAILED.code });
      this.#d.audit.append({ type: "agent.auth_failed", data: { address, reason: bearer ? "unknown or revoked secret" : "no bearer secret" } }).catch(() => {});
      return rejectUpgrade(socket, 401, ERRORS.AGENT_AUTH_FAILED, bearer ? "unknown or revoked agent secret, or a token that is not an agent's" : "send the agent secret as `Authorization: Bearer gha_…`");
    }
    this.#wss.handleUpgrade(req, socket, head, (ws) => {
      let link: TunnelLink | undefined;
      const agent = this.#agents.get(name) ?? new RemoteAgent(name);
      if (!this.#agents.has(name)) {
        this.#agents.set(name, agent);
        this.#d.registry.register(agent);
      }
      const hello = setTimeout(() => mux.close(new GatehouseError("AGENT_UNAVAILABLE", "no HELLO within 10 s"), 1002), HELLO_TIMEOUT_MS);
      const mux: Mux = new Mux(ws, {
        window: this.#d.window ?? DEFAULT_WINDOW,
        heartbeatMs: this.#d.heartbeatMs ?? DEFAULT_HEARTBEAT_MS,
        onPing: (body) => {
          if (link && body.health && typeof body.health === "object") link.info.health = body.health as Record<string, unknown>;
        },
        onControl: (f) => {
          if (f.type === "HELLO" && !link) {
            clearTimeout(hello);
            const b = f.body;
            const [min, max] = Array.isArray(b.versions) ? (b.versions as number[]) : [Number(b.version), Number(b.version)];
            const version = Math.min(TUNNEL_VERSION, Number(max));
            if (!Number.isInteger(version) || version < Math.max(MIN_TUNNEL_VERSION, Number(min))) {
              const err = new GatehouseError("AGENT_VERSION_MISMATCH", `the agent speaks tunnel versions ${min}–${max}, this gateway ${MIN_TUNNEL_VERSION}–${TUNNEL_VERSION}`);
              mux.control("GOODBYE", { code: err.code, reason: err.message });
              mux.close(err, 1002);
              return;
            }
            const software = typeof b.software === "string" ? b.software.slice(0, 64) : null;
            link = new TunnelLink(mux, { id: randomUUID(), address, version: software, protocolVersion: version, connectedAt: Date.now(), health: {} });
            if (expiresAt !== undefined) {
              // A tunnel opened with a token lives as long as the token; the agent comes back with a fresh one.
              const closeAt = setTimeout(() => {
                try {
                  mux.control("GOODBYE", { code: ERRORS.AGENT_AUTH_FAILED.code, reason: "the agent's access token expired; reconnect with a fresh one" });
                } catch {
                  /* closing */
                }
                mux.close(new GatehouseError("AGENT_UNAVAILABLE", `the access token of agent "${name}" expired`), 4001);
              }, Math.max(0, expiresAt * 1000 - Date.now()));
              closeAt.unref();
              ws.once("close", () => clearTimeout(closeAt));
            }
            agent.links.add(link);
            const capabilities = Array.isArray(b.capabilities) ? GATEWAY_CAPABILITIES.filter((c) => (b.capabilities as unknown[]).includes(c)) : [];
            // Batched only once the agent has said it reads BATCH (an older agent does not).
            if (capabilities.includes("batch")) mux.enableBatching();
            mux.control("WELCOME", { version, capabilities, heartbeatMs: this.#d.heartbeatMs ?? DEFAULT_HEARTBEAT_MS, window: this.#d.window ?? DEFAULT_WINDOW, agent: name, connections: this.connectionsOf(name) });
            this.#d.metrics.agentsConnected.set({ agent: name }, [...agent.links].filter((l) => !l.mux.closed).length);
            this.#d.directory.seen(name, address, software).catch(() => {});
            this.#d.audit.append({ type: "agent.connected", data: { agent: name, tunnel: link.info.id, address, version: software, protocolVersion: version } }).catch(() => {});
            this.#d.logger.info({ agent: name, address, version: software }, "agent connected");
            return;
          }
          if (!link) {
            mux.close(new GatehouseError("AGENT_UNAVAILABLE", `${f.type} before HELLO`), 1002);
            return;
          }
          if (f.type === "OPENED" || f.type === "OPEN_FAILED") return link.onOpenResult(f);
          if (f.type === "GOODBYE") return mux.close(new GatehouseError("AGENT_UNAVAILABLE", `agent "${name}" said goodbye: ${String(f.body.reason ?? "")}`));
          // An agent never opens streams or sends WELCOME/CANCEL: a peer that does is not an agent.
          mux.close(new GatehouseError("AGENT_UNAVAILABLE", `unexpected ${f.type} from agent "${name}"`), 1002);
        },
        onClosed: (reason) => {
          clearTimeout(hello);
          if (!link) return;
          link.failOpens(reason);
          agent.links.delete(link);
          this.#d.metrics.agentsConnected.set({ agent: name }, [...agent.links].filter((l) => !l.mux.closed).length);
          this.#d.audit.append({ type: "agent.disconnected", data: { agent: name, tunnel: link.info.id, reason: reason.message } }).catch(() => {});
          this.#d.logger.warn({ agent: name, reason: reason.message }, "agent disconnected");
          this.#d.directory.seen(name, link.info.address, link.info.version).catch(() => {});
        },
      });
    });
  }

  /** A `gha_` secret, or an app-only OIDC token of a client id listed in config `agents`. */
  async #authenticate(bearer: string): Promise<{ name: string | undefined; expiresAt: number | undefined }> {
    if (bearer.startsWith(AGENT_SECRET_PREFIX)) return { name: await this.#d.directory.authenticate(bearer), expiresAt: undefined };
    if (!this.#d.verifier || !this.#d.tokenAgents?.size) return { name: undefined, expiresAt: undefined };
    try {
      const p = await this.#d.verifier.verify(bearer);
      const name = p.kind === "service" && p.clientId ? this.#d.tokenAgents.get(p.clientId) : undefined;
      if (!name || (await this.#d.directory.isRevoked(name))) return { name: undefined, expiresAt: undefined };
      return { name, expiresAt: p.expiresAt };
    } catch {
      return { name: undefined, expiresAt: undefined };
    }
  }

  /** Names that authenticate by OIDC token. */
  get tokenAgentNames(): string[] {
    return [...new Set(this.#d.tokenAgents?.values() ?? [])];
  }

  /** Drop every tunnel of an agent at once (revocation). */
  drop(name: string, why: string, code: string = ERRORS.AGENT_UNAVAILABLE.code): number {
    const agent = this.#agents.get(name);
    if (!agent) return 0;
    let n = 0;
    for (const l of agent.links) {
      if (l.mux.closed) continue;
      try {
        l.mux.control("GOODBYE", { code, reason: why });
      } catch {
        /* closing */
      }
      l.mux.close(new GatehouseError("AGENT_UNAVAILABLE", `agent "${name}" ${why}`), 4001);
      n++;
    }
    return n;
  }

  async #checkRevoked(): Promise<void> {
    for (const [name, agent] of this.#agents) {
      if (!agent.connected) continue;
      try {
        if (await this.#d.directory.isRevoked(name)) this.drop(name, "was revoked", ERRORS.AGENT_AUTH_FAILED.code);
      } catch {
        /* store hiccup: try again next time */
      }
    }
  }

  async status(): Promise<AgentStatus[]> {
    const rows = await this.#d.directory.list();
    const iso = (t: number | null) => (t === null ? null : new Date(Number(t)).toISOString());
    const names = new Set([...rows.map((r) => r.name), ...this.#agents.keys(), ...this.tokenAgentNames]);
    return [...names].sort().map((name) => {
      const r = rows.find((x) => x.name === name);
      const links = [...(this.#agents.get(name)?.links ?? [])].filter((l) => !l.mux.closed);
      return {
        name,
        status: r?.revoked_at ? "revoked" : links.length ? "connected" : "disconnected",
        createdAt: iso(r?.created_at ?? null),
        revokedAt: iso(r?.revoked_at ?? null),
        lastSeenAt: links.length ? new Date().toISOString() : iso(r?.last_seen_at ?? null),
        connections: this.connectionsOf(name),
        tunnels: links.map((l) => ({ id: l.info.id, address: l.info.address, version: l.info.version, protocolVersion: l.info.protocolVersion, connectedAt: new Date(l.info.connectedAt).toISOString(), streams: l.streams, health: l.info.health })),
      };
    });
  }

  async close(): Promise<void> {
    this.#closing = true;
    if (this.#sweep) clearInterval(this.#sweep);
    for (const name of this.#agents.keys()) this.drop(name, "disconnected: the gateway is shutting down");
    await new Promise<void>((r) => this.#wss.close(() => r()));
  }
}

// The gateway's view of a network-resident agent: the tunnels it has open (one per agent process;
// several processes may share a name), and the Agent interface the engines use — opening a target
// session is an OPEN on a new stream, answered by the agent once it has logged in to the target.

import type { Agent } from "../agent/agent.ts";
import type { HttpForwardRequest, HttpForwardResponse } from "../agent/http.ts";
import type { PostgresTargetSession } from "../agent/postgres.ts";
import type { GitRefUpdate } from "../domain/operation.ts";
import type { Duplex, Readable } from "node:stream";
import type { TunnelStream } from "./stream.ts";
import type { Connection } from "../domain/connection.ts";
import { GatehouseError } from "../domain/errors.ts";
import { SENSITIVE_HEADERS } from "../protocols/http/classify.ts";
import type { Frame } from "./frames.ts";
import type { Mux } from "./mux.ts";

/** How long an agent may take to dial and log in to a target. */
const OPEN_TIMEOUT_MS = 20_000;

export interface TunnelInfo {
  id: string;
  address: string | null;
  version: string | null;
  protocolVersion: number;
  connectedAt: number;
  health: Record<string, unknown>;
}

export class TunnelLink {
  readonly mux: Mux;
  readonly info: TunnelInfo;
  readonly #opens = new Map<number, { resolve: (b: Record<string, unknown>) => void; reject: (e: GatehouseError) => void }>();

  constructor(mux: Mux, info: TunnelInfo) {
    this.mux = mux;
    this.info = info;
  }

  get streams(): number {
    return this.mux.streams.size;
  }

  /** OPENED / OPEN_FAILED for one of our streams. */
  onOpenResult(f: Frame & { body: Record<string, unknown> }): void {
    const p = this.#opens.get(f.stream);
    if (!p) return;
    this.#opens.delete(f.stream);
    if (f.type === "OPENED") p.resolve(f.body);
    else {
      const code = f.body.code === "GH-AGENT-007" ? "AGENT_TARGET_REFUSED" : f.body.code === "GH-HTTP-005" ? "HTTP_TARGET_UNAVAILABLE" : "PG_TARGET_UNAVAILABLE";
      p.reject(new GatehouseError(code, `${String(f.body.message ?? "the agent could not open the target")}`, { sqlstate: f.body.sqlstate }));
    }
  }

  /** The tunnel closed: every open still waiting fails. */
  failOpens(reason: GatehouseError): void {
    for (const p of this.#opens.values()) p.reject(reason);
    this.#opens.clear();
  }

  /**
   * One request-shaped exchange on a new half-open stream: OPEN with `open`, then `body` as the
   * stream's data; resolves with OPENED's body and the stream (whose readable side carries the
   * answer's data).
   */
  async exchange(open: Record<string, unknown>, body: Buffer | Readable | undefined, agentName: string, what: string): Promise<{ result: Record<string, unknown>; stream: TunnelStream }> {
    const stream = this.mux.newStream(body !== undefined);
    const opened = new Promise<Record<string, unknown>>((resolve, reject) => this.#opens.set(stream.id, { resolve, reject }));
    const timer = setTimeout(() => this.#opens.get(stream.id)?.reject(new GatehouseError("AGENT_UNAVAILABLE", `agent "${agentName}" did not answer ${what} within ${OPEN_TIMEOUT_MS / 1000} s`)), OPEN_TIMEOUT_MS);
    try {
      this.mux.control("OPEN", open, stream.id);
      if (Buffer.isBuffer(body)) stream.end(body);
      else if (body) {
        body.once("error", () => stream.destroy());
        body.pipe(stream);
      }
      return { result: await opened, stream };
    } catch (e) {
      this.#opens.delete(stream.id);
      stream.destroy();
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  async openPostgres(connection: Connection, clientParameters: Record<string, string>, agentName: string): Promise<PostgresTargetSession> {
    // The target as configured: host, port, database, user and credential *references*; the
    // agent resolves them in its own environment.
    const { result: b, stream } = await this.exchange({ connection: connection.name, protocol: "postgres", target: connection.postgres ?? null, clientParameters }, undefined, agentName, `opening ${connection.name}`);
    const key = b.backendKey as { processId: number; secretKey: string };
    return {
      socket: stream as unknown as PostgresTargetSession["socket"],
      parameterFrames: (b.parameterFrames as string[]).map((x) => Buffer.from(x, "base64")),
      parameters: new Map(Object.entries(b.parameters as Record<string, string>)),
      backendKey: { processId: key.processId, secretKey: Buffer.from(key.secretKey, "base64") },
      leftover: (b.leftover as string[]).map((x) => Buffer.from(x, "base64")),
      tls: b.tls === true,
    };
  }

}

/**
 * The caller's headers without its credentials (its Gatehouse token above all): a remote agent
 * never sees them — it would drop them anyway, but the token must not cross the tunnel at all.
 */
function withoutCallerCredentials<T extends string | string[] | undefined>(headers: Record<string, T>): Record<string, T> {
  const out: Record<string, T> = {};
  for (const k in headers) if (!SENSITIVE_HEADERS.has(k.toLowerCase())) out[k] = headers[k]!;
  return out;
}

/** Responses up to this size that are complete when OPENED arrives are handed over as one buffer. */
const WHOLE_RESPONSE_BYTES = 256 << 10;

/** All tunnels of one agent name; sessions are spread over them. */
export class RemoteAgent implements Agent {
  readonly name: string;
  readonly links = new Set<TunnelLink>();
  #next = 0;

  constructor(name: string) {
    this.name = name;
  }

  get connected(): boolean {
    return [...this.links].some((l) => !l.mux.closed);
  }

  #pick(): TunnelLink {
    const live = [...this.links].filter((l) => !l.mux.closed);
    if (!live.length) throw new GatehouseError("AGENT_UNAVAILABLE", `agent "${this.name}" is not connected`);
    // Fewest open streams first; ties rotate.
    this.#next = (this.#next + 1) % live.length;
    return live.map((l, i) => ({ l, k: l.streams * live.length + ((i + this.#next) % live.length) })).sort((a, b) => a.k - b.k)[0]!.l;
  }

  openPostgres(connection: Connection, clientParameters: Record<string, string>): Promise<PostgresTargetSession> {
    return this.#pick().openPostgres(connection, clientParameters, this.name);
  }

  async httpRequest(connection: Connection, req: HttpForwardRequest): Promise<HttpForwardResponse> {
    const { result, stream } = await this.#pick().exchange({ connection: connection.name, protocol: "http", target: connection.http ?? null, request: { method: req.method, target: req.target, headers: withoutCallerCredentials(req.headers), ...(Buffer.isBuffer(req.body) ? { length: req.body.length } : req.length !== undefined ? { length: req.length } : {}) } }, req.body, this.name, `${req.method} for ${connection.name}`);
    req.signal?.addEventListener("abort", () => stream.destroy(), { once: true });
    const status = Number(result.status);
    if (!Number.isInteger(status) || status < 100 || status > 599) {
      stream.destroy();
      throw new GatehouseError("HTTP_TARGET_UNAVAILABLE", `agent "${this.name}" answered ${connection.name} with no valid status (${JSON.stringify(result.status)?.slice(0, 40)})`);
    }
    const length = typeof result.length === "number" && Number.isSafeInteger(result.length) && result.length >= 0 ? result.length : undefined;
    // A small response that arrived whole with its OPENED (the agent sends them in one write) is
    // handed over as one buffer, like the embedded agent does: the client gets it in one write.
    const whole = stream.takeWhole(WHOLE_RESPONSE_BYTES);
    return { status, headers: (result.headers ?? {}) as Record<string, string | string[]>, body: whole ?? stream, length: whole ? whole.length : length };
  }

  async httpUpgrade(connection: Connection, req: { target: string; headers: Record<string, string | string[] | undefined> }): Promise<Duplex> {
    const { stream } = await this.#pick().exchange({ connection: connection.name, protocol: "http-upgrade", target: connection.http ?? null, request: { target: req.target, headers: withoutCallerCredentials(req.headers) } }, undefined, this.name, `an upgrade for ${connection.name}`);
    return stream;
  }

  async gitFastForward(connection: Connection, repoPath: string, updates: GitRefUpdate[], body: Buffer, commandsEnd: number, capabilities: string[]): Promise<void> {
    const { result, stream } = await this.#pick().exchange({ connection: connection.name, protocol: "git-ancestry", target: connection.http ?? null, repoPath, updates, commandsEnd, capabilities }, body, this.name, `a fast-forward check for ${connection.name}`);
    stream.resume();
    const ff = Array.isArray(result.fastForward) ? (result.fastForward as Array<boolean | null>) : [];
    updates.forEach((u, i) => {
      const v = ff[i];
      if (typeof v === "boolean") u.fastForward = v;
    });
  }

  async cancelPostgres(connection: Connection, key: { processId: number; secretKey: Buffer }): Promise<void> {
    this.#pick().mux.control("CANCEL", { connection: connection.name, target: connection.postgres ?? null, processId: key.processId, secretKey: key.secretKey.toString("base64") });
  }
}

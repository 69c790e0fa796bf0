// The agent side of an HTTP connection: send the judged request to the target with the
// connection's own credential injected (the caller's never reaches it), over a keep-alive agent
// per connection (node:http: measured faster than an undici pool for small requests here), and
// hand back the response to stream to the caller.
//
// Never: pass the caller's Authorization/Cookie or hop-by-hop headers on, or put a credential in
// an error message.

import { connect as netConnect } from "node:net";
import type { Duplex, Readable } from "node:stream";
import { connect as tlsConnect } from "node:tls";
import { Agent as HttpAgent, request as httpRequest } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import type { HttpTarget } from "../domain/connection.ts";
import { GatehouseError } from "../domain/errors.ts";
import type { SecretResolver } from "./secrets.ts";

export interface HttpForwardRequest {
  method: string;
  /** Canonical path (re-encoded) and query, relative to the target URL. */
  target: string;
  headers: Record<string, string | string[]>;
  /** The whole body, or a stream of it (bodies larger than the gate reads; Content-Length as declared). */
  body: Buffer | Readable;
  /** Aborted when the caller goes away. */
  signal?: AbortSignal;
}

export interface HttpForwardResponse {
  status: number;
  headers: Record<string, string | string[]>;
  body: Readable;
}

/** RFC 9110 §7.6.1 connection-specific fields, plus credentials the caller sent. */
const HOP_BY_HOP = new Set(["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "proxy-authenticate", "proxy-authorization", "host", "content-length"]);
/** The caller's credentials, and forwarding claims it could forge (the target might trust them). */
const CALLER_CREDENTIALS = new Set(["authorization", "cookie", "x-gatehouse-token", "forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-real-ip"]);

/** Drop hop-by-hop headers (and those the Connection header names). */
export function endToEnd(headers: Record<string, string | string[] | undefined>, extraDrop: ReadonlySet<string> = new Set()): Record<string, string | string[]> {
  const named = new Set(
    String(headers.connection ?? "")
      .split(",")
      .map((x) => x.trim().toLowerCase())
      .filter(Boolean),
  );
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(headers)) {
    const n = k.toLowerCase();
    if (v === undefined || HOP_BY_HOP.has(n) || named.has(n) || extraDrop.has(n)) continue;
    out[n] = v;
  }
  return out;
}

export class HttpForwarder {
  readonly #agents = new Map<string, HttpAgent>();
  constructor(private readonly secrets: SecretResolver) {}

  async #credential(t: HttpTarget, headers: Record<string, string | string[]>): Promise<void> {
    if (!t.auth) return;
    const secret = await this.secrets.resolve(t.auth.secret);
    if (t.auth.type === "bearer") headers.authorization = `Bearer ${secret}`;
    else if (t.auth.type === "basic") headers.authorization = `Basic ${Buffer.from(`${t.auth.username ?? ""}:${secret}`).toString("base64")}`;
    else headers[t.auth.header!.toLowerCase()] = secret;
  }

  /**
   * An upgrade (WebSocket): dial the target, send the judged request head with the credential
   * injected, and hand back the socket; from here on bytes pass through both ways (the target's
   * `101 Switching Protocols` included).
   */
  async upgrade(name: string, t: HttpTarget, req: { target: string; headers: Record<string, string | string[] | undefined> }): Promise<Duplex> {
    const base = new URL(t.url);
    const path = `${base.pathname.replace(/\/$/, "")}${req.target}`;
    const headers = endToEnd(req.headers, CALLER_CREDENTIALS);
    await this.#credential(t, headers);
    const upgrade = req.headers.upgrade;
    if (typeof upgrade !== "string") throw new GatehouseError("HTTP_TARGET_REJECTED", "an upgrade request without an Upgrade header");
    const secure = base.protocol === "https:";
    const port = Number(base.port || (secure ? 443 : 80));
    const ca = t.ca ? await this.secrets.resolve(t.ca) : undefined;
    const socket: Duplex = await new Promise((resolve, reject) => {
      const s = secure ? tlsConnect({ host: base.hostname, port, servername: base.hostname, ...(ca ? { ca } : {}) }) : netConnect({ host: base.hostname, port });
      const timer = setTimeout(() => s.destroy(new Error(`connecting timed out after ${t.timeout} s`)), t.timeout * 1000);
      s.once(secure ? "secureConnect" : "connect", () => {
        clearTimeout(timer);
        s.removeAllListeners("error");
        resolve(s);
      });
      s.once("error", (e) => {
        clearTimeout(timer);
        reject(new GatehouseError("HTTP_TARGET_UNAVAILABLE", `${name}: ${e.message}`));
      });
    });
    const lines = [`GET ${path} HTTP/1.1`, `host: ${base.host}`, "connection: Upgrade", `upgrade: ${upgrade}`];
    for (const [k, v] of Object.entries(headers)) for (const x of Array.isArray(v) ? v : [v]) lines.push(`${k}: ${x}`);
    socket.write(`${lines.join("\r\n")}\r\n\r\n`);
    return socket;
  }

  async forward(name: string, t: HttpTarget, req: HttpForwardRequest): Promise<HttpForwardResponse> {
    const base = new URL(t.url);
    const url = new URL(`${base.pathname.replace(/\/$/, "")}${req.target}`, base);
    const headers = endToEnd(req.headers, CALLER_CREDENTIALS);
    headers.via = "1.1 gatehouse";
    await this.#credential(t, headers);
    const ca = t.ca ? await this.secrets.resolve(t.ca) : undefined;
    const declared = req.headers["content-length"];
    if (Buffer.isBuffer(req.body)) {
      if (req.body.length || !["GET", "HEAD"].includes(req.method)) headers["content-length"] = String(req.body.length);
    } else if (typeof declared === "string" && /^\d+$/.test(declared)) headers["content-length"] = declared;
    const secure = url.protocol === "https:";
    const agent = this.#agent(name, secure, ca);
    return new Promise<HttpForwardResponse>((resolve, reject) => {
      const fail = (e: Error & { code?: string }) => reject(new GatehouseError("HTTP_TARGET_UNAVAILABLE", `${name}: ${e.code ?? ""} ${e.message}`.trim()));
      const r = (secure ? httpsRequest : httpRequest)(url, { method: req.method, headers, agent, ...(req.signal ? { signal: req.signal } : {}) }, (res) => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 502, headers: endToEnd(res.headers), body: res });
      });
      // Time allowed for the response headers (http.timeout); the body may take as long as it takes.
      const timer = setTimeout(() => r.destroy(Object.assign(new Error(`no response headers within ${t.timeout} s`), { code: "ETIMEDOUT" })), t.timeout * 1000);
      r.once("error", (e) => {
        clearTimeout(timer);
        fail(e);
      });
      if (Buffer.isBuffer(req.body)) r.end(req.body.length ? req.body : undefined);
      else {
        req.body.once("error", (e) => r.destroy(e));
        req.body.pipe(r);
      }
    });
  }

  /** A keep-alive agent per connection (node:http: the lightest client path for small requests). */
  #agent(name: string, secure: boolean, ca: string | undefined): HttpAgent {
    let a = this.#agents.get(name);
    if (!a) {
      a = secure ? new HttpsAgent({ keepAlive: true, maxSockets: 256, maxFreeSockets: 64, ...(ca ? { ca } : {}) }) : new HttpAgent({ keepAlive: true, maxSockets: 256, maxFreeSockets: 64 });
      this.#agents.set(name, a);
    }
    return a;
  }

  async close(): Promise<void> {
    for (const a of this.#agents.values()) a.destroy();
    this.#agents.clear();
  }
}

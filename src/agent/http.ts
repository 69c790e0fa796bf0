// The agent side of an HTTP connection: send the judged request to the target with the
// connection's own credential injected (the caller's never reaches it), over keep-alive sockets
// per connection (h1-client.ts: the gateway's own HTTP/1.1 client, measured in bench/http), and
// hand back the response to stream to the caller.
//
// Never: pass the caller's Authorization/Cookie or hop-by-hop headers on, or put a credential in
// an error message.

import { isIP } from "node:net";
import type { Duplex, Readable } from "node:stream";
import { headerLines } from "../protocols/http/h1.ts";
import { dialTarget, H1Pool, type UpstreamTarget } from "./h1-client.ts";
import type { CancelSignal } from "../domain/cancel.ts";
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
  /** A streamed body's length, when known (else taken from Content-Length, else sent chunked). */
  length?: number | undefined;
  /** Aborted when the caller goes away. */
  signal?: CancelSignal;
}

export interface HttpForwardResponse {
  status: number;
  headers: Record<string, string | string[]>;
  /** The whole body, or a stream of it. */
  body: Buffer | Readable;
  /** The body's length when known. */
  length?: number | undefined;
}

/** RFC 9110 §7.6.1 connection-specific fields, plus credentials the caller sent. */
const HOP_BY_HOP_NAMES = ["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "proxy-authenticate", "proxy-authorization", "host", "content-length"];
const HOP_BY_HOP: ReadonlySet<string> = new Set(HOP_BY_HOP_NAMES);
/**
 * What a request to the target never carries: hop-by-hop fields, the caller's credentials, and
 * forwarding claims it could forge (the target might trust them), and Expect (the gateway answered
 * it; the target gets the whole body at once). One set: one lookup per field.
 */
const NOT_TO_TARGET: ReadonlySet<string> = new Set([...HOP_BY_HOP_NAMES, "authorization", "cookie", "x-gatehouse-token", "forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-real-ip", "expect"]);

/** Drop the fields in `drop` (hop-by-hop ones by default) and those the Connection header names. */
export function endToEnd(headers: Record<string, string | string[] | undefined>, drop: ReadonlySet<string> = HOP_BY_HOP): Record<string, string | string[]> {
  const c = headers.connection;
  // `keep-alive` and `close` (most messages) name nothing that is not dropped anyway.
  const named = c === undefined || c === "keep-alive" || c === "close" ? undefined : new Set(String(c).split(",").map((x) => x.trim().toLowerCase()));
  const out: Record<string, string | string[]> = {};
  for (const k in headers) {
    const v = headers[k];
    if (v === undefined) continue;
    // Keys are lower case already when they come from our parser; others (a caller's object) may not be.
    const n = k.toLowerCase();
    if (drop.has(n) || named?.has(n)) continue;
    out[n] = v;
  }
  return out;
}

/** Resolved credentials are kept this long (a rotated file or variable is picked up after it). */
const CREDENTIAL_TTL_MS = 5_000;

/** A header value carries bytes: non-Latin-1 text goes as its UTF-8 bytes. */
function latin1(v: string): string {
  return /^[\x20-\xff]*$/.test(v) ? v : Buffer.from(v, "utf8").toString("latin1");
}

/** A connection's target as parsed from its URL: where to dial, and the path prefix. */
type ParsedTarget = { upstream: UpstreamTarget; basePath: string };

export class HttpForwarder {
  readonly #pool = new H1Pool();
  readonly #targets = new Map<string, { url: string; caRef: string | undefined; timeout: number; basePath: string; upstream: UpstreamTarget }>();
  readonly #secretCache = new Map<string, { value: string; at: number }>();
  constructor(private readonly secrets: SecretResolver) {}

  async #secret(ref: string): Promise<string> {
    const value = latin1(await this.secrets.resolve(ref));
    this.#secretCache.set(ref, { value, at: Date.now() });
    return value;
  }

  /** Put the target's credential into `headers`: at once while it is cached, else once resolved. */
  #credential(t: HttpTarget, headers: Record<string, string | string[]>): Promise<void> | undefined {
    const auth = t.auth;
    if (!auth) return undefined;
    const inject = (secret: string) => {
      if (auth.type === "bearer") headers.authorization = `Bearer ${secret}`;
      else if (auth.type === "basic") headers.authorization = `Basic ${Buffer.concat([Buffer.from(`${auth.username ?? ""}:`), Buffer.from(secret, "latin1")]).toString("base64")}`;
      else headers[auth.header!.toLowerCase()] = secret;
    };
    const c = this.#secretCache.get(auth.secret);
    if (c && Date.now() - c.at < CREDENTIAL_TTL_MS) {
      inject(c.value);
      return undefined;
    }
    return this.#secret(auth.secret).then(inject);
  }

  /**
   * An upgrade (WebSocket): dial the target, send the judged request head with the credential
   * injected, and hand back the socket; from here on bytes pass through both ways (the target's
   * `101 Switching Protocols` included).
   */
  async upgrade(name: string, t: HttpTarget, req: { target: string; headers: Record<string, string | string[] | undefined> }): Promise<Duplex> {
    const target = this.#cachedTarget(name, t) ?? (await this.#target(name, t));
    const headers = endToEnd(req.headers, NOT_TO_TARGET);
    await this.#credential(t, headers);
    const upgrade = req.headers.upgrade;
    if (typeof upgrade !== "string") throw new GatehouseError("HTTP_TARGET_REJECTED", "an upgrade request without an Upgrade header");
    const u = target.upstream;
    let head: string;
    try {
      head = `GET ${target.basePath}${req.target} HTTP/1.1\r\nhost: ${u.authority}\r\nconnection: Upgrade\r\n${headerLines({ upgrade, ...headers })}\r\n`;
    } catch (e) {
      throw new GatehouseError("HTTP_TARGET_REJECTED", (e as Error).message);
    }
    let socket: Duplex;
    try {
      socket = await dialTarget(u);
    } catch (e) {
      throw new GatehouseError("HTTP_TARGET_UNAVAILABLE", `${name}: ${(e as Error).message}`);
    }
    socket.write(Buffer.from(head, "latin1"));
    return socket;
  }

  /**
   * Send the request to the connection's target with its credential. Not an async function: on
   * the common path (target parsed before, credential cached) the pool's promise is the only
   * one, and a small request's cost is counted in such steps.
   */
  forward(name: string, t: HttpTarget, req: HttpForwardRequest): Promise<HttpForwardResponse> {
    const target = this.#cachedTarget(name, t);
    // The entry parsed for these settings is used as it is: looking it up again could miss (a
    // request with other settings for the same name may have replaced it meanwhile).
    if (!target) return this.#target(name, t).then((parsed) => this.#withTarget(name, t, parsed, req));
    return this.#withTarget(name, t, target, req);
  }

  #withTarget(name: string, t: HttpTarget, target: ParsedTarget, req: HttpForwardRequest): Promise<HttpForwardResponse> {
    const headers = endToEnd(req.headers, NOT_TO_TARGET);
    headers.via = "1.1 gatehouse";
    const credential = this.#credential(t, headers);
    if (credential) return credential.then(() => this.#send(name, t, target, req, headers));
    return this.#send(name, t, target, req, headers);
  }

  #send(name: string, t: HttpTarget, target: ParsedTarget, req: HttpForwardRequest, headers: Record<string, string | string[]>): Promise<HttpForwardResponse> {
    const declared = req.headers["content-length"];
    const length = Buffer.isBuffer(req.body) ? undefined : (req.length ?? (typeof declared === "string" && /^\d+$/.test(declared) ? Number(declared) : undefined));
    return this.#pool.request(target.upstream, { method: req.method, path: `${target.basePath}${req.target}`, headers, body: req.body, length, signal: req.signal, headersTimeoutMs: t.timeout * 1000 }).then(
      (res) => {
        const out = endToEnd(res.headers);
        // A HEAD or 304 response has no body, but its Content-Length still describes the resource.
        const cl = res.headers["content-length"];
        if ((req.method === "HEAD" || res.status === 304) && typeof cl === "string") out["content-length"] = cl;
        return { status: res.status, headers: out, body: res.body, length: res.length };
      },
      (e: Error & { code?: string }) => {
        throw new GatehouseError("HTTP_TARGET_UNAVAILABLE", `${name}: ${e.code ?? ""} ${e.message}`.trim());
      },
    );
  }

  /** The connection's target as parsed before, if its settings have not changed since. */
  #cachedTarget(name: string, t: HttpTarget): ParsedTarget | undefined {
    const cached = this.#targets.get(name);
    return cached && cached.url === t.url && cached.caRef === t.ca && cached.timeout === t.timeout ? cached : undefined;
  }

  /** Where a connection's target is, parsed once per URL (and its CA resolved once). */
  async #target(name: string, t: HttpTarget): Promise<ParsedTarget> {
    const cached = this.#cachedTarget(name, t);
    if (cached) return cached;
    const base = new URL(t.url);
    const secure = base.protocol === "https:";
    const ca = t.ca ? await this.secrets.resolve(t.ca) : undefined;
    const host = base.hostname.replace(/^\[|\]$/g, "");
    const entry = {
      url: t.url,
      caRef: t.ca,
      timeout: t.timeout,
      basePath: base.pathname.replace(/\/$/, ""),
      upstream: { key: `${name}\u0000${t.url}`, host, port: Number(base.port || (secure ? 443 : 80)), authority: base.host, tls: secure ? { ...(isIP(host) ? {} : { servername: host }), ...(ca ? { ca } : {}) } : undefined, connectTimeoutMs: t.timeout * 1000 },
    };
    this.#targets.set(name, entry);
    return entry;
  }

  async close(): Promise<void> {
    this.#pool.close();
  }
}

// The agent's HTTP/1.1 client to targets: keep-alive sockets pooled per connection, one request
// at a time per socket, responses read with the strict codec the gate's server uses
// (src/protocols/http/h1.ts). Small responses come back whole (one Buffer); larger ones stream,
// with backpressure from the caller to the target's socket.
//
// A request that fails on a reused socket before any byte of the response arrived (the target
// closed the idle connection as we wrote) is sent once more on a new socket — only when it is
// idempotent (RFC 9110 §9.2.2) and its body is in memory; anything else reports the failure.
//
// Never: reuse a socket whose response was not read to its end, or one with bytes left over
// (the target's framing cannot be trusted then); write a head with CR/LF inside a value.

import { connect as netConnect, type Socket } from "node:net";
import { Readable } from "node:stream";
import { connect as tlsConnect } from "node:tls";
import type { CancelSignal } from "../domain/cancel.ts";
import { Deadline } from "../protocols/deadline.ts";
import { ChunkedDecoder, encodeChunk, type Framing, type HeaderMap, headerLines, HttpSyntaxError, keepAlive, LAST_CHUNK, parseResponseHead, type ResponseHead, responseFraming } from "../protocols/http/h1.ts";

export interface UpstreamTarget {
  /** Pool key: requests with the same key share sockets. */
  key: string;
  host: string;
  port: number;
  /** The Host field to send. */
  authority: string;
  tls?: { ca?: string; servername?: string } | undefined;
  connectTimeoutMs: number;
}

export interface UpstreamRequest {
  method: string;
  /** Origin-form path and query. */
  path: string;
  /** End-to-end fields only (the caller dropped hop-by-hop ones); Host and framing are added here. */
  headers: Record<string, string | string[]>;
  body: Buffer | Readable;
  /** For a streamed body: its length if known (else it is sent chunked). */
  length?: number | undefined;
  signal?: CancelSignal | undefined;
  /** Time allowed for the response head. */
  headersTimeoutMs: number;
}

export interface UpstreamResponse {
  status: number;
  headers: HeaderMap;
  /** The whole body when it arrived with the head, else a stream of it. */
  body: Buffer | Readable;
  /** The body's length when known (Content-Length, or a whole body). */
  length: number | undefined;
}

export class UpstreamError extends Error {
  /** Set when the socket failed before any byte of a response arrived. */
  noResponse = false;
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
    this.name = "UpstreamError";
  }
}

const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"]);
const IDLE_MS = 30_000;
const MAX_IDLE_PER_KEY = 64;
const EMPTY = Buffer.alloc(0);
/** Response heads up to this size are remembered per socket (see UpConn.#parseHead). */
const MAX_CACHED_HEAD = 4096;

interface Pending {
  method: string;
  resolve(r: UpstreamResponse): void;
  reject(e: Error): void;
  headersTimeoutMs: number;
  /** Set once the response head was handed out. */
  body?: Readable | undefined;
  /** Collected slices of a body that may still arrive whole. */
  parts?: Buffer[] | undefined;
  head?: ResponseHead | undefined;
  framing?: Framing | undefined;
  remaining: number;
  decoder?: ChunkedDecoder | undefined;
  got: number;
  /** The request body is still being written (a streamed one). */
  sending: boolean;
}

/** One socket to a target. */
class UpConn {
  buf: Buffer = EMPTY;
  cur: Pending | undefined;
  idleSince = 0;
  dead = false;
  /** The response-head timeout of the request in flight (one per socket, across its requests). */
  readonly headTimeout = new Deadline(() => {
    const p = this.cur;
    if (p && !this.dead) this.fail(new UpstreamError(`no response head within ${p.headersTimeoutMs / 1000} s`, "ETIMEDOUT"));
  });
  /**
   * The last response head this socket parsed: its bytes, and the result (frozen). A target
   * answers an endpoint with the same head, byte for byte, until its Date changes — so a head that
   * starts the buffer with exactly those bytes (its CRLFCRLF included) is that head again.
   */
  #lastHeadBytes: Buffer | undefined;
  #lastHead: ResponseHead | undefined;

  constructor(
    readonly socket: Socket,
    readonly pool: H1Pool,
    readonly key: string,
  ) {
    socket.setNoDelay(true);
    socket.on("error", (e) => this.fail(new UpstreamError(e.message, (e as NodeJS.ErrnoException).code ?? "ECONNRESET")));
    socket.on("end", () => this.onEnd());
    socket.on("close", () => this.fail(new UpstreamError("the target closed the connection", "ECONNRESET")));
  }

  #parseHead(): ResponseHead | undefined {
    const buf = this.buf;
    const prev = this.#lastHeadBytes;
    if (prev && buf.length >= prev.length && buf.compare(prev, 0, prev.length, 0, prev.length) === 0) return this.#lastHead;
    const head = parseResponseHead(buf, { maxHeadBytes: 64 * 1024, maxHeaders: 500 });
    if (head && head.length <= MAX_CACHED_HEAD) {
      for (const v of Object.values(head.headers)) if (Array.isArray(v)) Object.freeze(v);
      Object.freeze(head.headers);
      Object.freeze(head.raw);
      this.#lastHead = Object.freeze(head);
      this.#lastHeadBytes = Buffer.from(buf.subarray(0, head.length));
    }
    return head;
  }

  /** Never to be used again: out of the pool, its timeout stopped, its socket destroyed. */
  discard(): void {
    this.dead = true;
    this.headTimeout.stop();
    this.pool.forget(this);
    this.socket.destroy();
  }

  onEnd(): void {
    const p = this.cur;
    // A close-delimited body ends here.
    if (p?.framing?.kind === "close") {
      this.complete(false);
      return;
    }
    this.fail(new UpstreamError("the target closed the connection", "ECONNRESET"));
  }

  fail(e: Error): void {
    if (this.dead) return;
    this.discard();
    const p = this.cur;
    this.cur = undefined;
    if (!p) return;
    if (p.got === 0 && e instanceof UpstreamError) e.noResponse = true;
    if (p.body) p.body.destroy(e);
    else p.reject(e);
  }

  onData(b: Buffer): void {
    const p = this.cur;
    if (!p) {
      // Bytes from an idle target: its framing cannot be trusted any more.
      this.fail(new UpstreamError("the target sent bytes between responses", "EPROTO"));
      return;
    }
    p.got += b.length;
    this.buf = this.buf.length === 0 ? b : Buffer.concat([this.buf, b]);
    try {
      this.process(p);
    } catch (e) {
      this.fail(e instanceof HttpSyntaxError ? new UpstreamError(`the target's response is malformed: ${e.message}`, "EPROTO") : (e as Error));
    }
  }

  process(p: Pending): void {
    while (!p.head) {
      const head = this.#parseHead();
      if (!head) return;
      this.buf = this.buf.subarray(head.length);
      if (head.status === 101) throw new HttpSyntaxError(502, "101 Switching Protocols to a request that did not ask to upgrade");
      if (head.status < 200) continue; // 100 Continue, 103 Early Hints: interim, not forwarded
      p.head = head;
      p.framing = responseFraming(head, p.method);
      this.headTimeout.disarm();
      if (p.framing.kind === "length") p.remaining = p.framing.length;
      else if (p.framing.kind === "chunked") p.decoder = new ChunkedDecoder(502);
      p.parts = [];
    }
    const f = p.framing!;
    if (f.kind === "none") {
      this.hand(p, EMPTY);
      this.complete(true);
      return;
    }
    let done = false;
    if (this.buf.length) {
      if (f.kind === "length") {
        const take = Math.min(p.remaining, this.buf.length);
        this.emit(p, take === this.buf.length ? this.buf : this.buf.subarray(0, take));
        p.remaining -= take;
        this.buf = take === this.buf.length ? EMPTY : this.buf.subarray(take);
        done = p.remaining === 0;
      } else if (f.kind === "chunked") {
        const used = p.decoder!.feed(this.buf, 0, (s) => this.emit(p, s));
        this.buf = used === this.buf.length ? EMPTY : this.buf.subarray(used);
        done = p.decoder!.done;
      } else {
        this.emit(p, this.buf);
        this.buf = EMPTY;
      }
    }
    if (done) {
      if (!p.body) this.hand(p, p.parts!.length === 1 ? p.parts![0]! : Buffer.concat(p.parts!));
      this.complete(true);
    } else if (!p.body) {
      // Not all there yet: stream it from here on.
      const parts = p.parts!;
      p.parts = undefined;
      const body = new Readable({
        read: () => {
          if (this.socket.isPaused() && !this.dead) this.socket.resume();
        },
        destroy: (e, cb) => {
          // The caller stopped reading before the end: this socket cannot be reused.
          if (this.cur === p) this.fail(e ?? new UpstreamError("the response body was abandoned", "ECANCELED"));
          cb(e);
        },
      });
      p.body = body;
      for (const s of parts) body.push(s);
      p.resolve({ status: p.head!.status, headers: p.head!.headers, body, length: f.kind === "length" ? f.length : undefined });
    }
  }

  emit(p: Pending, s: Buffer): void {
    if (p.body) {
      if (!p.body.push(s)) this.socket.pause();
    } else p.parts!.push(s);
  }

  hand(p: Pending, body: Buffer): void {
    p.resolve({ status: p.head!.status, headers: p.head!.headers, body, length: body.length });
  }

  /** The response ended: back to the pool if the connection may carry another. */
  complete(reusable: boolean): void {
    const p = this.cur!;
    this.cur = undefined;
    if (p.body) p.body.push(null);
    if (reusable && !p.sending && this.buf.length === 0 && keepAlive(p.head!.minor, p.head!.headers)) {
      // A slow reader may have paused the socket: idle sockets must see the target's close.
      if (this.socket.isPaused()) this.socket.resume();
      this.pool.release(this);
    }
    else this.discard();
  }
}

/**
 * The read buffer of every plain-TCP pooled socket. Node reads into it (no buffer allocated per
 * read, and no Readable stream in between) and hands each read to the socket's callback, which
 * copies what it keeps before returning — so one buffer serves them all: reads never overlap.
 */
let sharedReadBuffer: Buffer | undefined;

/**
 * A connected (and, for https, handshaken) socket to the target, within its connect timeout.
 * With `onData`, what the socket reads goes there (a Buffer of its own each time) instead of to
 * 'data' events.
 */
export function dialTarget(t: UpstreamTarget, onData?: (b: Buffer) => void): Promise<Socket> {
  return new Promise((resolve, reject) => {
    let s: Socket;
    if (t.tls) {
      s = tlsConnect({ host: t.host, port: t.port, ...t.tls });
      if (onData) s.on("data", onData);
    } else if (onData) {
      sharedReadBuffer ??= Buffer.allocUnsafeSlow(64 * 1024);
      s = netConnect({
        host: t.host,
        port: t.port,
        onread: {
          buffer: sharedReadBuffer,
          callback: (n: number, buf: Uint8Array) => {
            onData(Buffer.from(buf.subarray(0, n))); // a copy: the buffer is read into again
            return true;
          },
        },
      });
    } else s = netConnect({ host: t.host, port: t.port });
    const timer = setTimeout(() => s.destroy(new UpstreamError(`connecting timed out after ${t.connectTimeoutMs / 1000} s`, "ETIMEDOUT")), t.connectTimeoutMs);
    const onError = (e: Error) => {
      clearTimeout(timer);
      reject(e instanceof UpstreamError ? e : new UpstreamError(e.message, (e as NodeJS.ErrnoException).code ?? "ECONNREFUSED"));
    };
    s.once("error", onError);
    s.once(t.tls ? "secureConnect" : "connect", () => {
      clearTimeout(timer);
      s.off("error", onError);
      resolve(s);
    });
  });
}

/** Keep-alive sockets to targets, per key. */
export class H1Pool {
  readonly #idle = new Map<string, UpConn[]>();
  readonly #sweeper: NodeJS.Timeout;
  #closed = false;

  constructor() {
    this.#sweeper = setInterval(() => this.#sweep(), 5_000);
    this.#sweeper.unref();
  }

  #sweep(): void {
    const old = Date.now() - IDLE_MS;
    for (const list of this.#idle.values())
      for (const c of [...list]) if (c.idleSince < old) c.fail(new UpstreamError("idle", "EIDLE"));
  }

  release(c: UpConn): void {
    if (this.#closed) {
      c.discard();
      return;
    }
    let list = this.#idle.get(c.key);
    if (!list) {
      list = [];
      this.#idle.set(c.key, list);
    }
    if (list.length >= MAX_IDLE_PER_KEY) {
      c.discard();
      return;
    }
    c.idleSince = Date.now();
    list.push(c);
  }

  forget(c: UpConn): void {
    const list = this.#idle.get(c.key);
    if (!list) return;
    const i = list.indexOf(c);
    if (i >= 0) list.splice(i, 1);
  }

  async #connect(t: UpstreamTarget): Promise<UpConn> {
    let conn: UpConn | undefined;
    const early: Buffer[] = [];
    const socket = await dialTarget(t, (b) => (conn ? conn.onData(b) : early.push(b)));
    conn = new UpConn(socket, this, t.key);
    // Bytes before any request (a target that talks first) fail the connection: refuse it here
    // rather than hand out a dead one.
    for (const b of early) conn.onData(b);
    if (conn.dead) throw new UpstreamError("the target sent bytes before the request", "EPROTO");
    return conn;
  }

  /** An idle pooled socket to the target that is still usable, if any. */
  #idleSocket(t: UpstreamTarget): UpConn | undefined {
    const list = this.#idle.get(t.key);
    while (list?.length) {
      const c = list.pop()!;
      if (!c.dead && !c.socket.destroyed && !c.socket.readableEnded) return c;
    }
    return undefined;
  }

  /** Not an async function: a reused socket's exchange is the request's only promise. */
  request(t: UpstreamTarget, r: UpstreamRequest): Promise<UpstreamResponse> {
    if (this.#closed) return Promise.reject(new UpstreamError("the agent is shutting down", "ECANCELED"));
    const c = this.#idleSocket(t);
    if (!c) return this.#connect(t).then((fresh) => this.#exchange(fresh, t, r));
    const retryable = IDEMPOTENT.has(r.method) && Buffer.isBuffer(r.body);
    const sent = this.#exchange(c, t, r);
    if (!retryable) return sent;
    return sent.catch((e: unknown) => {
      if (e instanceof UpstreamError && e.noResponse && e.code !== "ETIMEDOUT" && e.code !== "ECANCELED" && !r.signal?.aborted) {
        return this.#connect(t).then((fresh) => this.#exchange(fresh, t, r));
      }
      throw e;
    });
  }

  #exchange(c: UpConn, t: UpstreamTarget, r: UpstreamRequest): Promise<UpstreamResponse> {
    return new Promise<UpstreamResponse>((resolve, reject) => {
      // A connection that failed is never handed a request: nothing would settle it.
      if (c.dead) {
        reject(new UpstreamError("the connection to the target failed", "ECONNRESET"));
        return;
      }
      const p: Pending = { method: r.method, resolve, reject, headersTimeoutMs: r.headersTimeoutMs, remaining: 0, got: 0, sending: !Buffer.isBuffer(r.body) };
      c.cur = p;
      c.buf = EMPTY;
      if (r.signal) {
        if (r.signal.aborted) return c.fail(new UpstreamError("the caller went away", "ECANCELED"));
        r.signal.addEventListener("abort", () => c.cur === p && c.fail(new UpstreamError("the caller went away", "ECANCELED")), { once: true });
      }
      c.headTimeout.arm(r.headersTimeoutMs);
      let framing = "";
      const body = r.body;
      if (Buffer.isBuffer(body)) {
        if (body.length || !(r.method === "GET" || r.method === "HEAD" || r.method === "DELETE" || r.method === "OPTIONS")) framing = `content-length: ${body.length}\r\n`;
      } else framing = r.length !== undefined ? `content-length: ${r.length}\r\n` : "transfer-encoding: chunked\r\n";
      let head: Buffer;
      try {
        head = Buffer.from(`${r.method} ${r.path} HTTP/1.1\r\nhost: ${t.authority}\r\n${headerLines(r.headers)}${framing}\r\n`, "latin1");
      } catch (e) {
        c.cur = undefined;
        c.pool.release(c);
        reject(new UpstreamError((e as Error).message, "EINVAL"));
        return;
      }
      if (Buffer.isBuffer(body)) {
        c.socket.write(body.length ? Buffer.concat([head, body], head.length + body.length) : head);
        return;
      }
      c.socket.write(head);
      const chunked = r.length === undefined;
      let sent = 0;
      body.on("data", (b: Buffer) => {
        sent += b.length;
        if (r.length !== undefined && sent > r.length) {
          body.destroy();
          c.fail(new UpstreamError("the request body is longer than its Content-Length", "EPROTO"));
          return;
        }
        const ok = c.socket.write(chunked ? encodeChunk(b) : b);
        if (!ok) {
          body.pause();
          c.socket.once("drain", () => body.resume());
        }
      });
      body.once("end", () => {
        p.sending = false;
        if (r.length !== undefined && sent !== r.length) c.fail(new UpstreamError("the request body ended before its Content-Length", "EPROTO"));
        else if (chunked) c.socket.write(LAST_CHUNK);
      });
      body.once("error", (e) => c.fail(new UpstreamError(`the request body failed: ${e.message}`, "EPROTO")));
    });
  }

  close(): void {
    this.#closed = true;
    clearInterval(this.#sweeper);
    for (const list of this.#idle.values()) for (const c of list.splice(0)) c.fail(new UpstreamError("closing", "ECANCELED"));
  }
}

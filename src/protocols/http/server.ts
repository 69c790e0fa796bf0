// The HTTP gate's own HTTP/1.1 server: one H1Connection per client socket (TCP or TLS), reading
// requests with the strict codec in h1.ts and writing responses, with keep-alive, pipelining (one
// request at a time, in order), `Expect: 100-continue`, request bodies whole or streamed with
// backpressure, header and idle timeouts, and Upgrade handed over as a raw socket.
//
// Why not node:http: the gate's budget is a few percent of a bare node:http proxy, and node:http
// spends most of a small request in IncomingMessage/ServerResponse/ClientRequest machinery that
// the gate does not need. Measured in bench/http.
//
// Never: start the next request before the previous response is complete, read a request body
// nobody asked for into memory without bound, or answer a malformed request other than with an
// error and a closed connection.

import type { Socket } from "node:net";
import { Readable } from "node:stream";
import { problemOf } from "../../api/problem.ts";
import { ERRORS } from "../../domain/errors.ts";
import { STATUS_CODES } from "node:http";
import { Deadline } from "../deadline.ts";
import { ChunkedDecoder, connectionTokens, DEFAULT_HEAD_LIMITS, encodeChunk, type Framing, type HeaderMap, type HeadLimits, headerLines, HttpSyntaxError, keepAlive, LAST_CHUNK, parseRequestHead, type RequestHead, requestFraming } from "./h1.ts";

export interface H1ServerOptions extends Partial<HeadLimits> {
  /** A partial request head must complete within this (408 and close). Default 30 s. */
  headersTimeoutMs?: number;
  /** An idle keep-alive connection is closed after this. Default 30 s. */
  keepAliveTimeoutMs?: number;
}

export interface H1Handlers {
  request(req: H1Request, res: H1Response): void;
  /** A request asking to switch protocols: the socket is the handler's from here on. */
  upgrade(req: H1Request, socket: Socket, head: Buffer): void;
  /** Problems the connection answered itself (malformed requests), for logs and metrics. */
  rejected?(conn: H1Connection, e: HttpSyntaxError): void;
}

/** Unread request bytes held while nothing consumes them; beyond this the socket pauses. */
const HIGH_WATER = 64 * 1024;
/** A body the handler left unread is skipped up to this size; a longer one closes the connection. */
const DISCARD_LIMIT = 256 * 1024;

interface BodySink {
  data(b: Buffer): void;
  end(): void;
  error(e: Error): void;
}

let dateCache = "";
let dateAt = 0;
function httpDate(): string {
  const now = Date.now();
  if (now - dateAt >= 1000) {
    dateAt = now - (now % 1000);
    dateCache = new Date(dateAt).toUTCString();
  }
  return dateCache;
}

export class H1Request {
  readonly method: string;
  /** Origin-form path and query, exactly as sent (absolute-form turned into origin-form). */
  readonly target: string;
  readonly minor: 0 | 1;
  readonly headers: HeaderMap;
  /** Field names as sent and values, alternating. */
  readonly rawHeaders: string[];
  readonly framing: Framing;
  readonly conn: H1Connection;
  /** The authority of an absolute-form target (it replaces Host). */
  readonly authority: string | undefined;

  constructor(head: RequestHead, framing: Framing, conn: H1Connection) {
    this.method = head.method;
    this.target = head.target;
    this.minor = head.minor;
    this.headers = head.headers;
    this.rawHeaders = head.raw;
    this.framing = framing;
    this.conn = conn;
    this.authority = head.authority;
  }

  get remoteAddress(): string | undefined {
    return this.conn.remoteAddress;
  }

  get host(): string {
    return this.authority ?? String(this.headers.host ?? "");
  }

  /**
   * The body, whole, up to `max` bytes (`complete`), or — once it exceeds `max` — what was read
   * so far (`complete: false`; `rest()` streams the remainder). Rejects when the client goes away
   * or the chunked coding is malformed.
   */
  readBody(max: number): Promise<{ body: Buffer; complete: boolean }> {
    return this.conn.readBody(max);
  }

  /** The remainder of the body as a stream (after readBody returned incomplete). */
  rest(): Readable {
    return this.conn.restOfBody();
  }
}

export class H1Response {
  readonly #conn: H1Connection;
  readonly #req: H1Request;
  #headersSent = false;
  #chunked = false;
  #noBody = false;
  #finished = false;
  #closeAfter: boolean;
  /** Called when the client goes away before the response is finished. */
  #onClose: (() => void)[] = [];
  #onClientEnd: (() => void)[] = [];
  #clientEnded = false;
  /**
   * Sees what this response writes to the client, as it is written: `data` is the head's exact
   * bytes (its first `headLength` bytes; 0 when there is no head in it) followed by body bytes
   * (without the chunked coding's framing). For session recording; `data` is only valid during
   * the call.
   */
  tap: ((data: Buffer, headLength: number) => void) | undefined;

  constructor(conn: H1Connection, req: H1Request, keep: boolean) {
    this.#conn = conn;
    this.#req = req;
    this.#closeAfter = !keep;
  }

  get headersSent(): boolean {
    return this.#headersSent;
  }

  /** Run `fn` if the client disconnects before this response is finished. */
  onClose(fn: () => void): void {
    this.#onClose.push(fn);
  }

  /**
   * Run `fn` if the client finishes sending (half-closes) before this response is finished (at
   * once if it already has). Most clients that do are gone (closed, not shut down), but a FIN
   * cannot tell: the engine takes it as gone only where waiting on is costly (a review hold).
   */
  onClientEnd(fn: () => void): void {
    if (this.#clientEnded) fn();
    else this.#onClientEnd.push(fn);
  }

  /** The client half-closed while this response was in progress. */
  clientEnded(): void {
    if (this.#finished || this.#clientEnded) return;
    this.#clientEnded = true;
    for (const f of this.#onClientEnd.splice(0)) f();
  }

  /** The connection closed under this response. */
  aborted(): void {
    if (this.#finished) return;
    this.#finished = true;
    for (const f of this.#onClose.splice(0)) f();
  }

  /** Close the connection once this response is written (e.g. a request body left unread). */
  closeAfter(): void {
    this.#closeAfter = true;
  }

  #head(status: number, headers: Record<string, string | number | string[] | undefined>, length: number | undefined): string {
    this.#headersSent = true;
    this.#noBody = this.#req.method === "HEAD" || status === 204 || status === 304 || status < 200;
    if (this.#conn.unreadBodyForcesClose()) this.#closeAfter = true;
    let framing = "";
    if (!this.#noBody) {
      if (length !== undefined) framing = `content-length: ${length}\r\n`;
      else if (this.#req.minor === 1) {
        framing = "transfer-encoding: chunked\r\n";
        this.#chunked = true;
      } else this.#closeAfter = true; // HTTP/1.0: the end of the body is the end of the connection
    }
    const conn = this.#closeAfter ? "connection: close\r\n" : this.#req.minor === 0 ? "connection: keep-alive\r\n" : "";
    const date = headers.date === undefined ? `date: ${httpDate()}\r\n` : "";
    return `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? "Unknown"}\r\n${headerLines(headers)}${framing}${conn}${date}\r\n`;
  }

  /**
   * Start the response. `length`: the body's exact length, or undefined to stream it (chunked
   * for HTTP/1.1, until close for 1.0). For HEAD, 204 and 304 the headers go as given (a HEAD
   * response's Content-Length included) and no body is written.
   */
  writeHead(status: number, headers: Record<string, string | number | string[] | undefined>, length?: number): void {
    if (this.#headersSent || this.#finished) return;
    const head = Buffer.from(this.#head(status, headers, length), "latin1");
    this.tap?.(head, head.length);
    this.#conn.write(head);
  }

  /** Write a piece of the body; false when the client is slow (wait for `drain()`). */
  write(chunk: Buffer): boolean {
    if (this.#finished || this.#noBody || chunk.length === 0) return true;
    this.tap?.(chunk, 0);
    if (this.#chunked) return this.#conn.write(encodeChunk(chunk));
    return this.#conn.write(chunk);
  }

  /** Resolves when the client has taken what was written (or is gone). */
  drain(): Promise<void> {
    return this.#conn.drain();
  }

  end(chunk?: Buffer): void {
    if (this.#finished) return;
    if (!this.#headersSent) this.writeHead(200, {}, chunk?.length ?? 0);
    if (chunk?.length && !this.#noBody) this.write(chunk);
    if (this.#chunked) this.#conn.write(LAST_CHUNK);
    this.#finish();
    this.#conn.responded(this.#closeAfter);
  }

  /** The whole response in one write: head and body. */
  send(status: number, headers: Record<string, string | number | string[] | undefined>, body: Buffer): void {
    if (this.#headersSent || this.#finished) return;
    const text = this.#head(status, headers, body.length);
    const bodyLength = this.#noBody ? 0 : body.length;
    // One buffer for the socket and the tap: the head is latin1, one byte per character.
    const out = Buffer.allocUnsafe(text.length + bodyLength);
    out.write(text, 0, "latin1");
    if (bodyLength) body.copy(out, text.length);
    this.tap?.(out, text.length);
    this.#conn.write(out);
    this.#finish();
    this.#conn.responded(this.#closeAfter);
  }

  /** Abandon the response (the body cannot be completed): the connection is closed. */
  destroy(): void {
    this.#finish();
    this.#conn.destroy();
  }

  /** Finished: nothing more is written, and a later close is no abort. */
  #finish(): void {
    this.#finished = true;
    this.#onClose.length = 0;
  }
}

const CONTINUE = Buffer.from("HTTP/1.1 100 Continue\r\n\r\n");

enum State {
  Head,
  Body,
  /** The request is read; its response is not finished. */
  Waiting,
  Upgraded,
  Closed,
}

/** One client connection: parses requests one after another and hands each to the handlers. */
export class H1Connection {
  readonly socket: Socket;
  /** The client's address, read once (the socket forgets it when it closes). */
  readonly remoteAddress: string | undefined;
  readonly #h: H1Handlers;
  readonly #limits: HeadLimits;
  readonly #headersTimeoutMs: number;
  readonly #idleTimeoutMs: number;
  #buf: Buffer = Buffer.alloc(0);
  #state = State.Head;
  /** Which timeout runs (idle between requests, head while one arrives), and its deadline. */
  #timerKind: "idle" | "head" | "body" | undefined;
  readonly #timeout = new Deadline(() => this.#onTimeout());
  // the request in progress
  #res: H1Response | undefined;
  #remaining = 0;
  #decoder: ChunkedDecoder | undefined;
  #bodyDone = true;
  #responded = false;
  #sink: BodySink | undefined;
  #expectContinue = false;
  #drainWaiters: (() => void)[] = [];
  /** Callbacks run once when the socket closes (sessions end with their connection). */
  readonly #onClose: (() => void)[] = [];
  #closed = false;
  /** The client half-closed: no more requests after those already sent. */
  #clientEnded = false;

  constructor(socket: Socket, handlers: H1Handlers, opts: H1ServerOptions = {}) {
    this.socket = socket;
    this.remoteAddress = socket.remoteAddress;
    this.#h = handlers;
    this.#limits = { maxHeadBytes: opts.maxHeadBytes ?? DEFAULT_HEAD_LIMITS.maxHeadBytes, maxHeaders: opts.maxHeaders ?? DEFAULT_HEAD_LIMITS.maxHeaders };
    this.#headersTimeoutMs = opts.headersTimeoutMs ?? 30_000;
    this.#idleTimeoutMs = opts.keepAliveTimeoutMs ?? 30_000;
    socket.setNoDelay(true);
    socket.on("data", this.#onData);
    socket.on("drain", this.#onDrain);
    socket.on("error", () => {});
    socket.on("close", this.#onSocketClose);
    socket.on("end", this.#onEnd);
    this.#arm("idle");
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Run `fn` once when this connection closes (at once if it already has). */
  onClose(fn: () => void): void {
    if (this.#closed) fn();
    else this.#onClose.push(fn);
  }

  /** Start the idle or head timeout (unless that one is running). */
  #arm(kind: "idle" | "head"): void {
    if (this.#timerKind === kind) return;
    this.#timerKind = kind;
    this.#timeout.arm(kind === "idle" ? this.#idleTimeoutMs : this.#headersTimeoutMs);
  }

  #disarm(): void {
    this.#timerKind = undefined;
    this.#timeout.disarm();
  }

  /**
   * While a request body is being read and the socket flows, the client must send something
   * every header timeout: a body that stalls does not hold the connection (and the request) for
   * ever. Paused sockets (backpressure from a slow target) are not timed.
   */
  #armBody(): void {
    this.#timerKind = "body";
    this.#timeout.arm(this.#headersTimeoutMs);
  }

  #pauseBody(): void {
    this.socket.pause();
    if (this.#timerKind === "body") this.#disarm();
  }

  #onTimeout(): void {
    const kind = this.#timerKind;
    this.#timerKind = undefined;
    if (this.#closed) return;
    if (kind === "body" && this.#state === State.Body) {
      const sink = this.#sink;
      this.#sink = undefined;
      const why = `the request body stalled: nothing arrived for ${this.#headersTimeoutMs / 1000} s`;
      sink?.error(new Error(why));
      this.#reject(new HttpSyntaxError(408, why));
      return;
    }
    if (this.#state !== State.Head) return;
    if (kind === "head") this.#reject(new HttpSyntaxError(408, `the request head did not arrive within ${this.#headersTimeoutMs / 1000} s`));
    else if (kind === "idle") this.socket.destroy();
  }

  readonly #onData = (chunk: Buffer): void => {
    this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
    if (this.#timerKind === "body") this.#armBody();
    this.#process();
  };

  /**
   * The client finished sending (half-close; the server socket allows it): answer what was asked,
   * then close. A body cut short is an error.
   */
  readonly #onEnd = (): void => {
    this.#clientEnded = true;
    if (this.#state === State.Head && this.#buf.length === 0) this.socket.end();
    else if (this.#state === State.Head) this.#reject(new HttpSyntaxError(400, "the connection ended inside a request head"));
    else if (this.#state === State.Body) {
      const sink = this.#sink;
      this.#sink = undefined;
      sink?.error(new Error("the client ended the connection during the request body"));
      this.#res?.aborted();
      this.socket.destroy();
    } else if (this.#state === State.Waiting) this.#res?.clientEnded();
  };

  readonly #onDrain = (): void => {
    for (const f of this.#drainWaiters.splice(0)) f();
  };

  readonly #onSocketClose = (): void => {
    this.#closed = true;
    const upgraded = this.#state === State.Upgraded;
    this.#state = State.Closed;
    this.#timerKind = undefined;
    this.#timeout.stop();
    if (!upgraded) {
      this.#onDrain();
      const sink = this.#sink;
      this.#sink = undefined;
      if (sink && !this.#bodyDone) sink.error(new Error("the client closed the connection during the request body"));
      this.#res?.aborted();
    }
    for (const f of this.#onClose.splice(0)) f();
  };

  write(b: Buffer): boolean {
    if (this.#closed) return true;
    return this.socket.write(b);
  }

  drain(): Promise<void> {
    if (this.#closed || !this.socket.writableNeedDrain) return Promise.resolve();
    return new Promise((r) => this.#drainWaiters.push(r));
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** Stop: close now if idle, else after the response in progress. */
  shutdown(): void {
    if (this.#state === State.Head && this.#buf.length === 0) {
      this.#state = State.Closed;
      this.socket.end();
    } else this.#clientEnded = true;
  }

  /** Parse and dispatch what the buffer holds, as far as the current state allows. */
  #process(): void {
    for (;;) {
      switch (this.#state) {
        case State.Head: {
          // Empty lines before a request line are ignored (RFC 9112 §2.2: some clients send a
          // CRLF after a POST body).
          while (this.#buf.length >= 2 && this.#buf[0] === 0x0d && this.#buf[1] === 0x0a) this.#buf = this.#buf.subarray(2);
          if (this.#buf.length === 0) return;
          let head: RequestHead | undefined;
          let framing: Framing;
          try {
            head = parseRequestHead(this.#buf, this.#limits);
            if (!head) {
              if (this.#clientEnded) throw new HttpSyntaxError(400, "the connection ended inside a request head");
              this.#arm("head");
              return;
            }
            framing = requestFraming(head);
          } catch (e) {
            this.#reject(e instanceof HttpSyntaxError ? e : new HttpSyntaxError(400, (e as Error).message));
            return;
          }
          this.#disarm();
          this.#buf = this.#buf.subarray(head.length);
          const req = new H1Request(head, framing, this);
          const up = req.headers.upgrade !== undefined && connectionTokens(req.headers).includes("upgrade");
          if (up) {
            if (framing.kind !== "none") {
              this.#reject(new HttpSyntaxError(400, "an upgrade request with a body"));
              return;
            }
            this.#state = State.Upgraded;
            this.socket.off("data", this.#onData);
            this.socket.off("drain", this.#onDrain);
            this.socket.off("end", this.#onEnd);
            const rest = this.#buf;
            this.#buf = Buffer.alloc(0);
            this.#h.upgrade(req, this.socket, rest);
            return;
          }
          const expect = req.headers.expect;
          if (expect !== undefined) {
            if (String(expect).toLowerCase() !== "100-continue") {
              this.#reject(new HttpSyntaxError(417, `Expect: ${String(expect).slice(0, 40)} is not supported`));
              return;
            }
            this.#expectContinue = req.minor === 1 && framing.kind !== "none";
          } else this.#expectContinue = false;
          this.#responded = false;
          this.#sink = undefined;
          this.#remaining = framing.kind === "length" ? framing.length : 0;
          this.#decoder = framing.kind === "chunked" ? new ChunkedDecoder(400) : undefined;
          this.#bodyDone = framing.kind === "none";
          this.#state = this.#bodyDone ? State.Waiting : State.Body;
          const res = new H1Response(this, req, keepAlive(req.minor, req.headers));
          this.#res = res;
          this.#h.request(req, res);
          break;
        }
        case State.Body: {
          if (!this.#sink) {
            if (this.#buf.length > HIGH_WATER) this.socket.pause();
            return;
          }
          if (this.#buf.length === 0) return;
          const sink = this.#sink;
          let used: number;
          try {
            if (this.#decoder) {
              used = this.#decoder.feed(this.#buf, 0, sink.data);
              if (this.#decoder.done) this.#bodyDone = true;
            } else {
              used = Math.min(this.#remaining, this.#buf.length);
              if (used) sink.data(this.#buf.subarray(0, used));
              this.#remaining -= used;
              if (this.#remaining === 0) this.#bodyDone = true;
            }
          } catch (e) {
            this.#sink = undefined;
            sink.error(e as Error);
            this.#reject(e instanceof HttpSyntaxError ? e : new HttpSyntaxError(400, (e as Error).message));
            return;
          }
          this.#buf = used >= this.#buf.length ? Buffer.alloc(0) : this.#buf.subarray(used);
          if (!this.#bodyDone) return;
          this.#sink = undefined;
          this.#state = State.Waiting;
          if (this.#timerKind === "body") this.#disarm();
          sink.end();
          if (this.#responded) this.#next();
          break;
        }
        case State.Waiting:
          // Pipelined requests wait for this response; hold a bounded amount of them.
          if (this.#buf.length > HIGH_WATER) this.socket.pause();
          return;
        default:
          return;
      }
    }
  }

  /** Whether the connection must close after this response: a long request body nobody reads. */
  unreadBodyForcesClose(): boolean {
    if (this.#state !== State.Body || this.#sink) return false;
    // Asked for 100-continue and not sent it: the client may send the body or may not, so where
    // its next request would start is unknown (RFC 9110 §10.1.1).
    if (this.#expectContinue) return true;
    return this.#decoder !== undefined || this.#remaining - Math.min(this.#remaining, this.#buf.length) > DISCARD_LIMIT;
  }

  /** The current response is finished: on to the next request, or close. */
  responded(close: boolean): void {
    this.#responded = true;
    this.#res = undefined;
    if (close) {
      this.#state = State.Closed;
      this.socket.end();
      return;
    }
    if (this.#state === State.Waiting) {
      this.#next();
      this.#process();
      return;
    }
    if (this.#state === State.Body && !this.#sink) {
      // The handler answered without reading the body: skip a short one, else close.
      if (this.unreadBodyForcesClose()) {
        this.#state = State.Closed;
        this.socket.end();
        return;
      }
      this.#sink = { data() {}, end() {}, error() {} };
      this.#armBody();
      this.socket.resume();
      this.#process();
    }
  }

  #next(): void {
    this.#state = State.Head;
    if (this.#clientEnded && this.#buf.length === 0) {
      this.#state = State.Closed;
      this.socket.end();
      return;
    }
    this.#arm("idle");
    if (this.socket.isPaused()) this.socket.resume();
  }

  #startBody(sink: BodySink): void {
    if (this.#expectContinue) {
      this.#expectContinue = false;
      this.write(CONTINUE);
    }
    this.#sink = sink;
    this.#armBody();
    if (this.socket.isPaused()) this.socket.resume();
    this.#process();
  }

  readBody(max: number): Promise<{ body: Buffer; complete: boolean }> {
    if (this.#bodyDone || this.#state !== State.Body) return Promise.resolve({ body: Buffer.alloc(0), complete: true });
    return new Promise((resolve, reject) => {
      const parts: Buffer[] = [];
      let n = 0;
      let settled = false;
      const finish = (ended: boolean) => {
        if (settled) return;
        settled = true;
        if (this.#sink === sink) this.#sink = undefined;
        if (!ended) this.#pauseBody();
        // Complete only if it ended within the limit; past it, `rest()` streams what is left.
        resolve({ body: parts.length === 1 ? parts[0]! : Buffer.concat(parts, n), complete: ended && n <= max });
      };
      const sink: BodySink = {
        data: (b) => {
          // Socket reads are fresh buffers (never reused), so a view can be kept. Past the limit,
          // what this read decoded is still taken (nothing is dropped); the reader stops after it.
          parts.push(b);
          n += b.length;
          if (n > max) queueMicrotask(() => finish(false));
        },
        end: () => finish(true),
        error: (e) => {
          if (settled) return;
          settled = true;
          reject(e);
        },
      };
      this.#startBody(sink);
    });
  }

  restOfBody(): Readable {
    if (this.#bodyDone || this.#state !== State.Body) return Readable.from([]);
    const stream = new Readable({
      read: () => {
        if (this.socket.isPaused() && !this.#closed) {
          if (this.#state === State.Body) this.#armBody();
          this.socket.resume();
        }
      },
      destroy: (e, cb) => {
        if (this.#sink === sink) this.#sink = undefined;
        cb(e);
      },
    });
    const sink: BodySink = {
      data: (b) => {
        if (!stream.push(b)) this.#pauseBody();
      },
      end: () => stream.push(null),
      error: (e) => stream.destroy(e),
    };
    this.#startBody(sink);
    return stream;
  }

  /** A malformed request: answer with problem+json and close. */
  #reject(e: HttpSyntaxError): void {
    this.#state = State.Closed;
    this.#disarm();
    this.#h.rejected?.(this, e);
    if (this.#res && this.#res.headersSent) {
      this.socket.destroy();
      return;
    }
    this.#res?.aborted();
    if (!this.socket.writable) return;
    this.socket.end(closingProblem({ ...problemOf(ERRORS.HTTP_MALFORMED, e.message), status: e.status }));
  }
}

/**
 * A whole problem+json response that closes the connection, written where no H1Response exists
 * (a malformed request, a refused upgrade, plain HTTP on the HTTPS listener).
 */
export function closingProblem(p: { status: number }, extraHeaders = ""): string {
  const body = JSON.stringify(p);
  return `HTTP/1.1 ${p.status} ${STATUS_CODES[p.status] ?? "Error"}\r\ncontent-type: application/problem+json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\ndate: ${httpDate()}\r\n${extraHeaders}\r\n${body}`;
}

// HTTP/1.1 message syntax (RFC 9112), the gateway's own: request and response heads, body
// framing, and the chunked transfer coding. Pure — bytes in, values out, no sockets — so every
// rule here is tested on its own (h1.test.ts).
//
// Strict wherever a lenient reading would let the caller and the target disagree about what a
// message says or where it ends (request smuggling, response splitting): a bare CR or LF, a line
// folded onto the previous one, white space before a header's colon, control characters, two
// different Content-Lengths, Content-Length beside Transfer-Encoding, a transfer coding other
// than `chunked`, a malformed chunk — each is an error with the status to answer, never a guess.
// The gateway never forwards a head it received: it forwards one it wrote from the parsed fields.
//
// Never: accept a message whose end is ambiguous, or let a CR/LF into a head this module writes.

export class HttpSyntaxError extends Error {
  constructor(
    /** The status to answer a client with (400, 431, 501, 505, …). */
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = "HttpSyntaxError";
  }
}

/** Field names in lower case; repeated fields joined (", "; Cookie "; "), Set-Cookie as a list. */
export type HeaderMap = Record<string, string | string[]>;

export interface HeadLimits {
  /** Bytes of the whole head, CRLFCRLF included (431 beyond). */
  maxHeadBytes: number;
  /** Number of header fields (431 beyond). */
  maxHeaders: number;
}

export const DEFAULT_HEAD_LIMITS: HeadLimits = { maxHeadBytes: 16 * 1024, maxHeaders: 200 };

interface HeadFields {
  headers: HeaderMap;
  /** Names as sent and values, alternating (for the recording). */
  raw: string[];
  /** Bytes the head took, its blank line included: the body starts here. */
  length: number;
}

export interface RequestHead extends HeadFields {
  method: string;
  /** Origin-form (`/path?query`), or `*`. An absolute-form target arrives here as origin-form. */
  target: string;
  /** 0 for HTTP/1.0, 1 for HTTP/1.1. */
  minor: 0 | 1;
  /** The authority of an absolute-form target, which replaces Host (RFC 9112 §3.2.2). */
  authority?: string;
}

export interface ResponseHead extends HeadFields {
  status: number;
  reason: string;
  minor: 0 | 1;
}

// tchar (RFC 9110 §5.6.2).
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const TARGET = /^[\x21-\x7e]+$/;
const TARGET_8BIT = /^[\x21-\x7e\x80-\xff]+$/;
/** Longest request target accepted (414 beyond). */
export const MAX_TARGET = 8192;
const CRLFCRLF = Buffer.from("\r\n\r\n");

/** Where the head ends (index just past CRLFCRLF), or -1 when more bytes are needed. */
function headEnd(buf: Buffer, limits: HeadLimits): number {
  const i = buf.indexOf(CRLFCRLF);
  if (i >= 0) {
    if (i + 4 > limits.maxHeadBytes) throw new HttpSyntaxError(431, `the head is larger than ${limits.maxHeadBytes} bytes`);
    return i + 4;
  }
  if (buf.length >= limits.maxHeadBytes) throw new HttpSyntaxError(431, `the head is larger than ${limits.maxHeadBytes} bytes`);
  // Not complete: unless lines end with a bare LF, which would never complete it (answered at
  // once rather than after the head timeout).
  for (let nl = buf.indexOf(0x0a); nl >= 0; nl = buf.indexOf(0x0a, nl + 1)) if (nl === 0 || buf[nl - 1] !== 0x0d) throw new HttpSyntaxError(400, "a bare CR or LF in the head (lines end with CRLF)");
  return -1;
}

/**
 * Lines of a head (without the final blank line). One pass over the bytes checks them first: no
 * control character but HTAB, every CR followed by LF and every LF preceded by CR — so the lines
 * split at CRLF hold neither. (A byte loop: a regular expression over the text cost twice as much,
 * and most of a request head is its bearer token.)
 */
function headLines(buf: Buffer, end: number): string[] {
  const stop = end - 4;
  for (let i = 0; i < stop; i++) {
    const c = buf[i]!;
    if (c >= 0x20) {
      if (c === 0x7f) throw new HttpSyntaxError(400, "a control character in the head");
      continue;
    }
    if (c === 0x0d) {
      if (buf[i + 1] !== 0x0a) throw new HttpSyntaxError(400, "a bare CR or LF in the head (lines end with CRLF)");
      i++;
    } else if (c === 0x0a) throw new HttpSyntaxError(400, "a bare CR or LF in the head (lines end with CRLF)");
    else if (c !== 0x09) throw new HttpSyntaxError(400, "a control character in the head");
  }
  return buf.toString("latin1", 0, stop).split("\r\n");
}

/**
 * Field names as sent → their lower-case form, for names already checked to be tokens. Clients
 * send the same few names in every request, so each is checked and lower-cased once, and the
 * lower-case string kept here is the one used as a key every time (V8 looks it up faster).
 * Bounded: only names up to MAX_CACHED_NAME characters, kept as copies (a slice of the head's
 * text would keep the whole head alive), and the map starts over when full — names a client
 * makes up cannot fill it for good.
 */
const fieldNames = new Map<string, string>();
const MAX_CACHED_NAMES = 512;
const MAX_CACHED_NAME = 64;

function fieldName(name: string): string {
  const cached = fieldNames.get(name);
  if (cached !== undefined) return cached;
  if (!TOKEN.test(name)) throw new HttpSyntaxError(400, `an invalid header field name ${JSON.stringify(name.slice(0, 40))} (no white space before the colon)`);
  if (name.length > MAX_CACHED_NAME) return name.toLowerCase();
  if (fieldNames.size >= MAX_CACHED_NAMES) fieldNames.clear();
  const own = Buffer.from(name, "latin1").toString("latin1");
  const lower = own.toLowerCase();
  fieldNames.set(own, lower);
  return lower;
}

function addField(map: HeaderMap, name: string, value: string): void {
  const prev = map[name];
  if (prev === undefined) {
    map[name] = name === "set-cookie" ? [value] : value;
    return;
  }
  switch (name) {
    case "set-cookie":
      (prev as string[]).push(value);
      return;
    case "cookie":
      map[name] = `${prev}; ${value}`;
      return;
    case "host":
    case "authorization":
    case "proxy-authorization":
      throw new HttpSyntaxError(400, `more than one ${name} field`);
    case "content-length":
      // Identical repeats are one length (RFC 9110 §8.6); different ones make the end ambiguous.
      if (prev !== value) throw new HttpSyntaxError(400, "Content-Length fields disagree");
      return;
    default:
      map[name] = `${prev}, ${value}`;
  }
}

function fields(lines: string[], from: number, limits: HeadLimits): { headers: HeaderMap; raw: string[] } {
  if (lines.length - from > limits.maxHeaders) throw new HttpSyntaxError(431, `more than ${limits.maxHeaders} header fields`);
  const headers: HeaderMap = Object.create(null) as HeaderMap;
  const raw: string[] = [];
  for (let i = from; i < lines.length; i++) {
    const line = lines[i]!;
    const c0 = line.charCodeAt(0);
    if (c0 === 0x20 || c0 === 0x09) throw new HttpSyntaxError(400, "a header field folded onto the previous line (obs-fold)");
    const colon = line.indexOf(":");
    if (colon <= 0) throw new HttpSyntaxError(400, `a header line without a field name and colon: ${JSON.stringify(line.slice(0, 40))}`);
    const name = line.slice(0, colon);
    const lower = fieldName(name);
    let a = colon + 1;
    let b = line.length;
    while (a < b && (line.charCodeAt(a) === 0x20 || line.charCodeAt(a) === 0x09)) a++;
    while (b > a && (line.charCodeAt(b - 1) === 0x20 || line.charCodeAt(b - 1) === 0x09)) b--;
    const value = line.slice(a, b);
    raw.push(name, value);
    addField(headers, lower, value);
  }
  return { headers, raw };
}

function version(v: string, what: string): 0 | 1 {
  if (v === "HTTP/1.1") return 1;
  if (v === "HTTP/1.0") return 0;
  if (/^HTTP\/\d\.\d$/.test(v)) throw new HttpSyntaxError(505, `${what} ${v} is not supported (HTTP/1.1 or 1.0)`);
  throw new HttpSyntaxError(400, `not an HTTP ${what}`);
}

/**
 * A request head from the start of `buf`, or undefined when it is not complete yet. Throws
 * HttpSyntaxError (with the status to answer) for anything malformed.
 */
export function parseRequestHead(buf: Buffer, limits: HeadLimits = DEFAULT_HEAD_LIMITS): RequestHead | undefined {
  const end = headEnd(buf, limits);
  if (end < 0) return undefined;
  const lines = headLines(buf, end);
  const rl = lines[0]!;
  const s1 = rl.indexOf(" ");
  const s2 = rl.indexOf(" ", s1 + 1);
  if (s1 <= 0 || s2 < 0 || rl.indexOf(" ", s2 + 1) >= 0) throw new HttpSyntaxError(400, "the request line is not METHOD SP TARGET SP VERSION");
  const method = rl.slice(0, s1);
  let target = rl.slice(s1 + 1, s2);
  const minor = version(rl.slice(s2 + 1), "request version");
  if (!TOKEN.test(method)) throw new HttpSyntaxError(400, "an invalid method");
  if (target.length > MAX_TARGET) throw new HttpSyntaxError(414, `the request target is longer than ${MAX_TARGET} characters`);
  if (!TARGET.test(target)) {
    // Raw bytes over 0x7F (curl and browsers send UTF-8 paths as they are): taken as their
    // percent-encoding, which the path's normalization then decodes and checks as UTF-8.
    if (!TARGET_8BIT.test(target)) throw new HttpSyntaxError(400, "the request target must be visible ASCII (percent-encode the rest)");
    target = target.replace(/[\x80-\xff]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
    if (target.length > MAX_TARGET) throw new HttpSyntaxError(414, `the request target is longer than ${MAX_TARGET} characters`);
  }
  // A fragment is the client's own; in a request target `#` has no meaning, and parsers disagree
  // on whether it ends the query (RFC 9112 §3.2: origin-form is a path and a query).
  if (target.includes("#")) throw new HttpSyntaxError(400, "a request target carries no fragment (#); percent-encode it as %23");
  const { headers, raw } = fields(lines, 1, limits);
  const head: RequestHead = { method, target, minor, headers, raw, length: end };
  if (method === "CONNECT") throw new HttpSyntaxError(405, "CONNECT is not supported: this is a reverse proxy");
  if (target.charCodeAt(0) !== 0x2f && target !== "*") {
    // absolute-form: http(s)://authority[/path][?query]
    const m = /^https?:\/\/([^/?#]+)([^#]*)$/i.exec(target);
    if (!m) throw new HttpSyntaxError(400, "the request target must be a path (or an absolute http(s) URL)");
    head.authority = m[1]!;
    target = m[2]!;
    head.target = target.startsWith("/") ? target : `/${target}`;
  } else if (target === "*" && method !== "OPTIONS") throw new HttpSyntaxError(400, "the * target is only for OPTIONS");
  if (minor === 1 && headers.host === undefined) throw new HttpSyntaxError(400, "an HTTP/1.1 request without a Host field");
  return head;
}

/** A response head from the start of `buf`, or undefined when it is not complete yet. */
export function parseResponseHead(buf: Buffer, limits: HeadLimits = DEFAULT_HEAD_LIMITS): ResponseHead | undefined {
  const end = headEnd(buf, limits);
  if (end < 0) return undefined;
  const lines = headLines(buf, end);
  const sl = lines[0]!;
  const s1 = sl.indexOf(" ");
  if (s1 < 0) throw new HttpSyntaxError(502, "the status line is not VERSION SP STATUS SP REASON");
  const minor = version(sl.slice(0, s1), "response version");
  const code = sl.slice(s1 + 1, s1 + 4);
  if (!/^[1-9]\d\d$/.test(code) || (sl.length > s1 + 4 && sl.charCodeAt(s1 + 4) !== 0x20)) throw new HttpSyntaxError(502, "the status line has no three-digit status");
  const { headers, raw } = fields(lines, 1, limits);
  return { status: Number(code), reason: sl.slice(s1 + 5), minor, headers, raw, length: end };
}

/** How a message body is delimited (RFC 9112 §6.3). */
export type Framing = { kind: "none" } | { kind: "length"; length: number } | { kind: "chunked" } | { kind: "close" };

const NO_BODY: Framing = { kind: "none" };

function contentLength(v: string | string[] | undefined, status: number): number | undefined {
  if (v === undefined) return undefined;
  const s = String(v);
  if (!/^\d{1,15}$/.test(s)) throw new HttpSyntaxError(status, `Content-Length ${JSON.stringify(s.slice(0, 30))} is not a length`);
  return Number(s);
}

/** Transfer-Encoding: only `chunked`, alone, is accepted (anything else is not ours to decode). */
function isChunked(te: string | string[], status: number): boolean {
  const codings = String(te)
    .split(",")
    .map((c) => c.trim().toLowerCase())
    .filter(Boolean);
  if (codings.length === 1 && codings[0] === "chunked") return true;
  if (codings.at(-1) !== "chunked") throw new HttpSyntaxError(status === 502 ? 502 : 400, "chunked must be the final transfer coding");
  if (codings.indexOf("chunked") !== codings.length - 1) throw new HttpSyntaxError(status === 502 ? 502 : 400, "chunked may be applied only once (RFC 9112 §6.1)");
  throw new HttpSyntaxError(status === 502 ? 502 : 501, `transfer coding ${codings.join(", ")} is not supported (only chunked)`);
}

/** A request's body framing. */
export function requestFraming(h: RequestHead): Framing {
  const te = h.headers["transfer-encoding"];
  if (te !== undefined) {
    if (h.minor === 0) throw new HttpSyntaxError(400, "Transfer-Encoding in an HTTP/1.0 request");
    if (h.headers["content-length"] !== undefined) throw new HttpSyntaxError(400, "both Content-Length and Transfer-Encoding");
    isChunked(te, 400);
    return { kind: "chunked" };
  }
  const n = contentLength(h.headers["content-length"], 400);
  return n ? { kind: "length", length: n } : NO_BODY;
}

/** A response's body framing, given the request method it answers. */
export function responseFraming(h: ResponseHead, requestMethod: string): Framing {
  if (requestMethod === "HEAD" || h.status < 200 || h.status === 204 || h.status === 304) return NO_BODY;
  const te = h.headers["transfer-encoding"];
  if (te !== undefined) {
    if (h.headers["content-length"] !== undefined) throw new HttpSyntaxError(502, "the target sent both Content-Length and Transfer-Encoding");
    if (h.minor === 0) throw new HttpSyntaxError(502, "the target sent Transfer-Encoding in an HTTP/1.0 response");
    isChunked(te, 502);
    return { kind: "chunked" };
  }
  const n = contentLength(h.headers["content-length"], 502);
  if (n !== undefined) return n ? { kind: "length", length: n } : NO_BODY;
  return { kind: "close" };
}

/** Whether a connection stays open after this message (RFC 9112 §9.3). */
export function keepAlive(minor: 0 | 1, headers: HeaderMap): boolean {
  const c = headers.connection;
  if (c === undefined) return minor === 1;
  const tokens = String(c).toLowerCase();
  if (/(^|[\s,])close($|[\s,])/.test(tokens)) return false;
  return minor === 1 || /(^|[\s,])keep-alive($|[\s,])/.test(tokens);
}

/** The tokens of the Connection field, lower case (the fields it names are hop-by-hop). */
export function connectionTokens(headers: HeaderMap): string[] {
  const c = headers.connection;
  if (c === undefined) return [];
  return String(c)
    .split(",")
    .map((x) => x.trim().toLowerCase())
    .filter(Boolean);
}

enum Chunk {
  Size,
  ExtWs,
  Ext,
  SizeLf,
  Data,
  DataCr,
  DataLf,
  Trailer,
  TrailerLf,
  Done,
}

const MAX_CHUNK_LINE = 4096;
const MAX_TRAILER = 16 * 1024;

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  return -1;
}

/**
 * The chunked transfer coding (RFC 9112 §7.1), decoded incrementally: feed it bytes in any
 * split, it hands back the data and says where the message ended. Chunk extensions are checked
 * and dropped; trailer fields are checked and dropped.
 */
export class ChunkedDecoder {
  #state = Chunk.Size;
  #size = 0;
  #digits = 0;
  #line = 0;
  #trailer = 0;
  #trailerLine = 0;
  /** What to answer on a syntax error: 400 for a client, 502 for a target. */
  readonly #status: number;

  constructor(errorStatus = 400) {
    this.#status = errorStatus;
  }

  get done(): boolean {
    return this.#state === Chunk.Done;
  }

  #fail(why: string): never {
    throw new HttpSyntaxError(this.#status, `malformed chunked body: ${why}`);
  }

  /**
   * Decode from `buf[from…]`, calling `data` with each slice of body (views into `buf`). Returns
   * the index just past what was consumed: buf.length, or less once the message ended (the rest
   * belongs to the next message).
   */
  feed(buf: Buffer, from: number, data: (slice: Buffer) => void): number {
    let i = from;
    const n = buf.length;
    while (i < n) {
      const c = buf[i]!;
      switch (this.#state) {
        case Chunk.Size: {
          const h = hexValue(c);
          if (h >= 0) {
            if (++this.#digits > 13) this.#fail("chunk size too large");
            this.#size = this.#size * 16 + h;
            i++;
            break;
          }
          if (this.#digits === 0) this.#fail("a chunk size must start with a hex digit");
          if (c === 0x0d) this.#state = Chunk.SizeLf;
          else if (c === 0x3b) this.#state = Chunk.Ext;
          else if (c === 0x20 || c === 0x09) this.#state = Chunk.ExtWs;
          else this.#fail(`unexpected byte 0x${c.toString(16)} in a chunk size`);
          this.#line = this.#digits;
          i++;
          break;
        }
        case Chunk.ExtWs:
          // Only white space, then `;`, may follow a chunk size before its extension (BWS).
          if (++this.#line > MAX_CHUNK_LINE) this.#fail("chunk extension too long");
          if (c === 0x3b) this.#state = Chunk.Ext;
          else if (c !== 0x20 && c !== 0x09) this.#fail("white space after a chunk size not followed by ;");
          i++;
          break;
        case Chunk.Ext:
          if (++this.#line > MAX_CHUNK_LINE) this.#fail("chunk extension too long");
          if (c === 0x0d) this.#state = Chunk.SizeLf;
          else if (c === 0x0a || (c < 0x20 && c !== 0x09) || c === 0x7f) this.#fail("a control character in a chunk extension");
          i++;
          break;
        case Chunk.SizeLf:
          if (c !== 0x0a) this.#fail("CR without LF after a chunk size");
          i++;
          if (this.#size === 0) {
            this.#state = Chunk.Trailer;
            this.#trailerLine = 0;
          } else this.#state = Chunk.Data;
          break;
        case Chunk.Data: {
          const take = Math.min(this.#size, n - i);
          data(buf.subarray(i, i + take));
          i += take;
          this.#size -= take;
          if (this.#size === 0) this.#state = Chunk.DataCr;
          break;
        }
        case Chunk.DataCr:
          if (c !== 0x0d) this.#fail("chunk data longer than its size");
          this.#state = Chunk.DataLf;
          i++;
          break;
        case Chunk.DataLf:
          if (c !== 0x0a) this.#fail("CR without LF after chunk data");
          this.#state = Chunk.Size;
          this.#digits = 0;
          this.#size = 0;
          i++;
          break;
        case Chunk.Trailer:
          // Trailer fields up to a blank line; each line: no bare LF, no control characters.
          if (++this.#trailer > MAX_TRAILER) this.#fail("trailer section too large");
          if (c === 0x0d) this.#state = Chunk.TrailerLf;
          else if (c === 0x0a || (c < 0x20 && c !== 0x09) || c === 0x7f) this.#fail("a control character in the trailer section");
          else this.#trailerLine++;
          i++;
          break;
        case Chunk.TrailerLf:
          if (c !== 0x0a) this.#fail("CR without LF in the trailer section");
          i++;
          if (this.#trailerLine === 0) {
            this.#state = Chunk.Done;
            return i;
          }
          this.#trailerLine = 0;
          this.#state = Chunk.Trailer;
          break;
        case Chunk.Done:
          return i;
      }
    }
    return i;
  }
}

const CRLF = Buffer.from("\r\n");

/** `data` as one chunk of the chunked coding (never empty: an empty chunk would end the body). */
export function encodeChunk(data: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`${data.length.toString(16)}\r\n`, "latin1"), data, CRLF]);
}

/** The last chunk, with no trailer fields. */
export const LAST_CHUNK = Buffer.from("0\r\n\r\n");

const UNSAFE_VALUE = /[\r\n\0]/;

/**
 * Header lines for a head this gateway writes. Names must be tokens and values free of CR, LF
 * and NUL: a value that is not (a misconfigured secret, say) throws rather than splitting the head.
 */
export function headerLines(headers: Record<string, string | number | string[] | undefined>): string {
  let out = "";
  for (const name in headers) {
    const v = headers[name];
    if (v === undefined) continue;
    if (!TOKEN.test(name)) throw new HttpSyntaxError(500, `invalid header name ${JSON.stringify(name)}`);
    if (Array.isArray(v)) {
      for (const x of v) {
        if (UNSAFE_VALUE.test(x)) throw new HttpSyntaxError(500, `the value of ${name} contains CR, LF or NUL`);
        out += `${name}: ${x}\r\n`;
      }
    } else {
      const s = typeof v === "number" ? String(v) : v;
      if (UNSAFE_VALUE.test(s)) throw new HttpSyntaxError(500, `the value of ${name} contains CR, LF or NUL`);
      out += `${name}: ${s}\r\n`;
    }
  }
  return out;
}

// Incremental decoder for the bytes a PostgreSQL client sends (protocol 3.0 and 3.2). It exists so
// the gateway can cut a client's stream into messages, judge the ones that carry SQL, and forward
// the exact bytes it received (every message keeps its `raw` frame). It is pure: no sockets, no
// timers. It must never throw anything but ProtocolError on bad input, never wait for bytes that
// a length beyond the limits promised, and never read a field differently from how PostgreSQL's
// own backend reads it (same counts, signedness, terminators and length limits) — a gateway that
// parses a message one way while the server parses it another is a bypass. Where PostgreSQL is
// lenient (bytes after the string of CopyFail, in CopyDone or Terminate) this decoder is
// stricter and refuses them; it is never more lenient.
//
// Text (SQL, names, parameters of the startup packet) is decoded as UTF-8. Invalid sequences
// decode lossily to U+FFFD by default: the forwarded bytes are untouched, and a server whose
// client_encoding is UTF8 rejects them itself; the engine should therefore pin client_encoding to
// UTF8. `strictUtf8: true` refuses such messages with PG_INVALID_UTF8 instead.

import { ProtocolError } from "./errors.ts";
import { Cursor, FrameSplitter, typeName } from "./wire.ts";

// ---------------------------------------------------------------------------------------------
// Constants

export const PROTOCOL_3_0 = 196608; // 3 << 16
export const PROTOCOL_3_2 = 196610; // 3 << 16 | 2
export const CANCEL_REQUEST_CODE = 80877102; // 1234 << 16 | 5678
export const SSL_REQUEST_CODE = 80877103; // 1234 << 16 | 5679
export const GSSENC_REQUEST_CODE = 80877104; // 1234 << 16 | 5680

/** PostgreSQL's MAX_STARTUP_PACKET_LENGTH: the largest startup packet body it reads. */
export const MAX_STARTUP_PACKET_LENGTH = 10000;
/** PostgreSQL's PQ_SMALL_MESSAGE_LIMIT, for messages that carry no user data (Sync, Execute…). */
export const SMALL_MESSAGE_LIMIT = 10000;
/** PostgreSQL's PG_MAX_AUTH_TOKEN_LENGTH, for the 'p' family. */
export const AUTH_MESSAGE_LIMIT = 65535;
/** PostgreSQL's PQ_LARGE_MESSAGE_LIMIT (MaxAllocSize - 1): no option may exceed it. */
export const LARGE_MESSAGE_LIMIT = 0x3fffffff - 1;
/** Default limit for messages that carry user data (Query, Parse, Bind, CopyData, FunctionCall). */
export const DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024;
/** Protocol 3.2 allows a cancel key of up to 256 bytes; 3.0 always sends 4. */
export const MAX_CANCEL_KEY_LENGTH = 256;

// ---------------------------------------------------------------------------------------------
// Messages

/** Every message carries `raw`: its whole frame (type byte and length included), to forward unchanged. */
interface Framed {
  raw: Buffer;
}

export interface SSLRequestMessage extends Framed {
  type: "SSLRequest";
}
export interface GSSENCRequestMessage extends Framed {
  type: "GSSENCRequest";
}
export interface CancelRequestMessage extends Framed {
  type: "CancelRequest";
  processId: number;
  /** 4 bytes in protocol 3.0; up to 256 in 3.2. A view of `raw`. */
  secretKey: Buffer;
}
export interface StartupMessage extends Framed {
  type: "StartupMessage";
  /** As sent: major << 16 | minor. Any 3.x is accepted; the engine negotiates the minor version. */
  protocolVersion: number;
  majorVersion: number;
  minorVersion: number;
  /**
   * Parameters in a null-prototype object (`user`, `database`, `options`, `application_name`,
   * `_pq_.*` protocol options…). A repeated name keeps its last value, as PostgreSQL does.
   */
  parameters: Record<string, string>;
}
export interface QueryMessage extends Framed {
  type: "Query";
  query: string;
}
export interface ParseMessage extends Framed {
  type: "Parse";
  /** Prepared statement name; "" is the unnamed statement. */
  name: string;
  query: string;
  /** Parameter type OIDs (0 = unspecified). */
  paramTypes: number[];
}
export interface BindMessage extends Framed {
  type: "Bind";
  portal: string;
  statement: string;
  /** 0 codes: all text; 1 code: applies to every parameter; else one per parameter. See bindParamFormat. */
  paramFormats: number[];
  /** Parameter values as views of `raw`; null is SQL NULL. */
  params: Array<Buffer | null>;
  resultFormats: number[];
}
export interface DescribeMessage extends Framed {
  type: "Describe";
  /** 'S' a prepared statement, 'P' a portal. */
  kind: "S" | "P";
  name: string;
}
export interface ExecuteMessage extends Framed {
  type: "Execute";
  portal: string;
  /** 0 (or negative) means no limit. */
  maxRows: number;
}
export interface SyncMessage extends Framed {
  type: "Sync";
}
export interface FlushMessage extends Framed {
  type: "Flush";
}
export interface CloseMessage extends Framed {
  type: "Close";
  kind: "S" | "P";
  name: string;
}
export interface CopyDataMessage extends Framed {
  type: "CopyData";
  /** A view of `raw`. */
  data: Buffer;
}
export interface CopyDoneMessage extends Framed {
  type: "CopyDone";
}
export interface CopyFailMessage extends Framed {
  type: "CopyFail";
  message: string;
}
export interface TerminateMessage extends Framed {
  type: "Terminate";
}
export interface FunctionCallMessage extends Framed {
  type: "FunctionCall";
  functionOid: number;
  argFormats: number[];
  args: Array<Buffer | null>;
  resultFormat: number;
}
/**
 * The 'p' family: PasswordMessage, SASLInitialResponse, SASLResponse and GSSResponse share one type
 * byte, and only the authentication exchange in progress tells them apart. Read `payload` with
 * parsePassword / parseSASLInitialResponse / parseSASLResponse accordingly.
 */
export interface AuthResponseMessage extends Framed {
  type: "AuthResponse";
  /** The body after the length field; a view of `raw`. */
  payload: Buffer;
}

export type StartupPhaseMessage = SSLRequestMessage | GSSENCRequestMessage | CancelRequestMessage | StartupMessage;

export type TypedFrontendMessage =
  | QueryMessage
  | ParseMessage
  | BindMessage
  | DescribeMessage
  | ExecuteMessage
  | SyncMessage
  | FlushMessage
  | CloseMessage
  | CopyDataMessage
  | CopyDoneMessage
  | CopyFailMessage
  | TerminateMessage
  | FunctionCallMessage
  | AuthResponseMessage;

export type FrontendMessage = StartupPhaseMessage | TypedFrontendMessage;
export type FrontendMessageType = FrontendMessage["type"];

// ---------------------------------------------------------------------------------------------
// Decoder

export interface FrontendDecoderOptions {
  /**
   * Largest accepted value of the length field for messages that carry user data (Query, Parse,
   * Bind, CopyData, FunctionCall). Default 64 MiB; at most PostgreSQL's own limit (1 GiB - 2).
   * A whole message is held in memory before it is judged, so this bounds memory per session.
   */
  maxMessageBytes?: number;
  /** Largest accepted length for 'p' messages (passwords, tokens, SASL). Default 65535, like PostgreSQL. */
  maxAuthMessageBytes?: number;
  /** Refuse strings that are not valid UTF-8 (PG_INVALID_UTF8) instead of decoding them lossily. */
  strictUtf8?: boolean;
}

export type FrontendPhase = "startup" | "typed" | "ended";

const PHASE_STARTUP = 0;
const PHASE_TYPED = 1;
const PHASE_ENDED = 2;

const T_BIND = 0x42; // B
const T_CLOSE = 0x43; // C
const T_DESCRIBE = 0x44; // D
const T_EXECUTE = 0x45; // E
const T_FUNCTION_CALL = 0x46; // F
const T_FLUSH = 0x48; // H
const T_PARSE = 0x50; // P
const T_QUERY = 0x51; // Q
const T_SYNC = 0x53; // S
const T_TERMINATE = 0x58; // X
const T_COPY_DONE = 0x63; // c
const T_COPY_DATA = 0x64; // d
const T_COPY_FAIL = 0x66; // f
const T_AUTH = 0x70; // p

const LIMIT_NONE = 0;
const LIMIT_SMALL = 1;
const LIMIT_LARGE = 2;
const LIMIT_AUTH = 3;

/** Which length limit applies to each message type, as in PostgreSQL's SocketBackend; 0 = unknown type. */
const LIMIT_CLASS = new Uint8Array(256);
const TYPE_NAMES: string[] = [];
for (const [t, cls, name] of [
  [T_QUERY, LIMIT_LARGE, "Query"],
  [T_PARSE, LIMIT_LARGE, "Parse"],
  [T_BIND, LIMIT_LARGE, "Bind"],
  [T_FUNCTION_CALL, LIMIT_LARGE, "FunctionCall"],
  [T_COPY_DATA, LIMIT_LARGE, "CopyData"],
  [T_DESCRIBE, LIMIT_SMALL, "Describe"],
  [T_EXECUTE, LIMIT_SMALL, "Execute"],
  [T_SYNC, LIMIT_SMALL, "Sync"],
  [T_FLUSH, LIMIT_SMALL, "Flush"],
  [T_CLOSE, LIMIT_SMALL, "Close"],
  [T_TERMINATE, LIMIT_SMALL, "Terminate"],
  [T_COPY_DONE, LIMIT_SMALL, "CopyDone"],
  [T_COPY_FAIL, LIMIT_SMALL, "CopyFail"],
  [T_AUTH, LIMIT_AUTH, "AuthResponse"],
] as const) {
  LIMIT_CLASS[t] = cls;
  TYPE_NAMES[t] = name;
}

/**
 * Decodes a client's stream: first the untyped startup packets, then typed messages. The typed
 * phase begins automatically after a StartupMessage, or when the engine calls startupDone().
 * After an SSLRequest or GSSENCRequest the decoder stays in the startup phase (the engine answers
 * 'S'/'N', and feeds the decrypted stream after a TLS handshake). After a ProtocolError the
 * decoder is failed: every later push rethrows the same error.
 */
export class FrontendDecoder extends FrameSplitter<FrontendMessage> {
  private phaseCode = PHASE_STARTUP;
  private readonly maxLarge: number;
  private readonly maxAuth: number;
  private readonly cur = new Cursor();
  private sslRequested = false;
  private gssRequested = false;

  constructor(opts: FrontendDecoderOptions = {}) {
    super();
    const max = opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    if (!Number.isInteger(max) || max < 4 || max > LARGE_MESSAGE_LIMIT) {
      throw new RangeError(`maxMessageBytes must be an integer in 4..${LARGE_MESSAGE_LIMIT}`);
    }
    const maxAuth = opts.maxAuthMessageBytes ?? AUTH_MESSAGE_LIMIT;
    if (!Number.isInteger(maxAuth) || maxAuth < 4 || maxAuth > LARGE_MESSAGE_LIMIT) {
      throw new RangeError(`maxAuthMessageBytes must be an integer in 4..${LARGE_MESSAGE_LIMIT}`);
    }
    this.maxLarge = max;
    this.maxAuth = maxAuth;
    this.cur.strictUtf8 = opts.strictUtf8 ?? false;
  }

  get phase(): FrontendPhase {
    return this.phaseCode === PHASE_STARTUP ? "startup" : this.phaseCode === PHASE_TYPED ? "typed" : "ended";
  }

  /**
   * Decode every complete message in `chunk`, in order. Incomplete trailing bytes are kept for
   * the next push. Messages (and their fields) are views of `chunk` when they lie wholly inside
   * it, so the caller must not reuse or modify a chunk's memory after pushing it (Node's socket
   * 'data' buffers are fresh per read; a pooled read buffer would need a copy first).
   * A push that throws delivers nothing: the stream is corrupt from that point, and fail-closed
   * engines end the session rather than forward the messages before the bad one.
   */
  push(chunk: Buffer): FrontendMessage[] {
    const out: FrontendMessage[] = [];
    this.split(chunk, out);
    return out;
  }

  /** Switch to the typed phase without a StartupMessage (e.g. a decoder attached after startup). */
  startupDone(): void {
    if (this.buffered > 0) throw new Error("FrontendDecoder.startupDone() called with a partial startup packet buffered");
    if (this.phaseCode === PHASE_STARTUP) this.phaseCode = PHASE_TYPED;
  }

  protected headerSize(): number {
    return this.phaseCode === PHASE_TYPED ? 5 : 4;
  }

  protected frameStart(): void {
    if (this.phaseCode === PHASE_ENDED) {
      throw new ProtocolError("PG_DATA_AFTER_END", "client sent data after ending the connection (CancelRequest or Terminate)");
    }
  }

  protected checkFirstByte(b: number): void {
    if (this.phaseCode === PHASE_TYPED && LIMIT_CLASS[b] === LIMIT_NONE) {
      throw new ProtocolError("PG_MESSAGE_TYPE_UNKNOWN", `invalid frontend message type ${typeName(b)}`);
    }
  }

  protected frameLength(buf: Buffer, off: number): number {
    if (this.phaseCode !== PHASE_TYPED) {
      const len = buf.readInt32BE(off);
      if (len < 8 || len - 4 > MAX_STARTUP_PACKET_LENGTH) {
        throw new ProtocolError("PG_STARTUP_LENGTH_INVALID", `invalid length of startup packet: ${len}`);
      }
      return len;
    }
    const type = buf[off]!;
    const len = buf.readInt32BE(off + 1);
    if (len < 4) {
      throw new ProtocolError("PG_MESSAGE_LENGTH_INVALID", `invalid length ${len} in ${TYPE_NAMES[type]} message`);
    }
    const cls = LIMIT_CLASS[type];
    const max = cls === LIMIT_LARGE ? this.maxLarge : cls === LIMIT_AUTH ? this.maxAuth : SMALL_MESSAGE_LIMIT;
    if (len > max) {
      throw new ProtocolError("PG_MESSAGE_TOO_LARGE", `${TYPE_NAMES[type]} message of ${len} bytes exceeds the limit of ${max} bytes`);
    }
    return len + 1;
  }

  protected onFrame(frame: Buffer, out: FrontendMessage[], more: boolean): void {
    if (this.phaseCode === PHASE_TYPED) {
      out.push(this.decodeTyped(frame));
    } else {
      out.push(this.decodeStartup(frame, more));
    }
  }

  private decodeStartup(raw: Buffer, more: boolean): StartupPhaseMessage {
    const code = raw.readUInt32BE(4);
    switch (code) {
      case SSL_REQUEST_CODE:
      case GSSENC_REQUEST_CODE: {
        const ssl = code === SSL_REQUEST_CODE;
        const name = ssl ? "SSLRequest" : "GSSENCRequest";
        if (raw.length !== 8) throw new ProtocolError("PG_STARTUP_LAYOUT_INVALID", `${name} must be 8 bytes, got ${raw.length}`);
        if (ssl ? this.sslRequested : this.gssRequested) {
          throw new ProtocolError("PG_NEGOTIATION_REPEATED", `client sent a second ${name}`);
        }
        // Bytes behind the request were sent before the server answered: in the clear, and
        // possibly injected by a man in the middle. PostgreSQL refuses them; so do we.
        if (more) {
          throw new ProtocolError("PG_DATA_AFTER_ENCRYPTION_REQUEST", `received unencrypted data after ${name}`);
        }
        if (ssl) this.sslRequested = true;
        else this.gssRequested = true;
        return ssl ? { type: "SSLRequest", raw } : { type: "GSSENCRequest", raw };
      }
      case CANCEL_REQUEST_CODE: {
        const keyLen = raw.length - 12;
        if (keyLen < 4 || keyLen > MAX_CANCEL_KEY_LENGTH) {
          throw new ProtocolError("PG_CANCEL_KEY_INVALID", `CancelRequest secret key must be 4..${MAX_CANCEL_KEY_LENGTH} bytes, got ${Math.max(keyLen, 0)}`);
        }
        this.phaseCode = PHASE_ENDED;
        return { type: "CancelRequest", processId: raw.readInt32BE(8), secretKey: raw.subarray(12), raw };
      }
    }
    const major = code >>> 16;
    const minor = code & 0xffff;
    if (major !== 3) {
      throw new ProtocolError("PG_PROTOCOL_UNSUPPORTED", `unsupported frontend protocol ${major}.${minor}: server supports 3.0 to 3.2`);
    }
    const cur = this.cur.reset(raw, 8, "StartupMessage");
    const parameters: Record<string, string> = Object.create(null);
    try {
      // name\0value\0 … \0 — the terminator must be the packet's last byte.
      while (cur.remaining > 0 && raw[cur.pos] !== 0) {
        const name = cur.cstring("parameter name");
        parameters[name] = cur.cstring(`value of parameter "${name}"`);
      }
      if (cur.remaining !== 1) {
        throw new ProtocolError("PG_STARTUP_LAYOUT_INVALID", "invalid startup packet layout: expected terminator as last byte");
      }
    } finally {
      cur.release();
    }
    this.phaseCode = PHASE_TYPED;
    return { type: "StartupMessage", protocolVersion: code, majorVersion: major, minorVersion: minor, parameters, raw };
  }

  private decodeTyped(raw: Buffer): TypedFrontendMessage {
    const type = raw[0]!;
    const cur = this.cur.reset(raw, 5, TYPE_NAMES[type]!);
    let msg: TypedFrontendMessage;
    switch (type) {
      case T_BIND: {
        const portal = cur.cstring("portal name");
        const statement = cur.cstring("statement name");
        const paramFormats = readFormats(cur, "parameter format count", "parameter format");
        const params = readValues(cur, "parameter count", "parameter length", "parameter");
        if (paramFormats.length > 1 && paramFormats.length !== params.length) {
          throw new ProtocolError("PG_FIELD_INVALID", `bind message has ${paramFormats.length} parameter formats but ${params.length} parameters`);
        }
        const resultFormats = readFormats(cur, "result format count", "result format");
        msg = { type: "Bind", portal, statement, paramFormats, params, resultFormats, raw };
        break;
      }
      case T_EXECUTE: {
        const portal = cur.cstring("portal name");
        msg = { type: "Execute", portal, maxRows: cur.i32("row limit"), raw };
        break;
      }
      case T_SYNC:
        msg = { type: "Sync", raw };
        break;
      case T_DESCRIBE:
        msg = { type: "Describe", kind: readKind(cur, "DESCRIBE"), name: cur.cstring("name"), raw };
        break;
      case T_PARSE: {
        const name = cur.cstring("statement name");
        const query = cur.cstring("query string");
        const n = cur.u16("parameter type count");
        cur.needCount(n, 4, "parameter type");
        const paramTypes = new Array<number>(n);
        for (let i = 0; i < n; i++) paramTypes[i] = cur.u32("parameter type");
        msg = { type: "Parse", name, query, paramTypes, raw };
        break;
      }
      case T_QUERY:
        msg = { type: "Query", query: cur.cstring("query string"), raw };
        break;
      case T_CLOSE:
        msg = { type: "Close", kind: readKind(cur, "CLOSE"), name: cur.cstring("name"), raw };
        break;
      case T_FLUSH:
        msg = { type: "Flush", raw };
        break;
      case T_COPY_DATA:
        msg = { type: "CopyData", data: cur.rest(), raw };
        break;
      case T_COPY_DONE:
        msg = { type: "CopyDone", raw };
        break;
      case T_COPY_FAIL:
        msg = { type: "CopyFail", message: cur.cstring("error message"), raw };
        break;
      case T_TERMINATE:
        this.phaseCode = PHASE_ENDED;
        msg = { type: "Terminate", raw };
        break;
      case T_FUNCTION_CALL: {
        const functionOid = cur.u32("function OID");
        const argFormats = readFormats(cur, "argument format count", "argument format");
        const args = readValues(cur, "argument count", "argument length", "argument");
        if (argFormats.length > 1 && argFormats.length !== args.length) {
          throw new ProtocolError("PG_FIELD_INVALID", `function call message has ${argFormats.length} argument formats but ${args.length} arguments`);
        }
        msg = { type: "FunctionCall", functionOid, argFormats, args, resultFormat: cur.i16("result format"), raw };
        break;
      }
      case T_AUTH:
        msg = { type: "AuthResponse", payload: cur.rest(), raw };
        break;
      default:
        // checkFirstByte already refused unknown types; this is unreachable.
        throw new ProtocolError("PG_MESSAGE_TYPE_UNKNOWN", `invalid frontend message type ${typeName(type)}`);
    }
    cur.finish();
    cur.release();
    return msg;
  }
}

function readKind(cur: Cursor, what: string): "S" | "P" {
  const k = cur.u8("kind");
  if (k === 0x53) return "S";
  if (k === 0x50) return "P";
  throw new ProtocolError("PG_FIELD_INVALID", `invalid ${what} message subtype ${typeName(k)}: expected 'S' or 'P'`);
}

// Field names are passed as constants: building them per call would allocate on the hot path.

function readFormats(cur: Cursor, countField: string, field: string): number[] {
  const n = cur.u16(countField);
  cur.needCount(n, 2, field);
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) out[i] = cur.i16(field);
  return out;
}

function readValues(cur: Cursor, countField: string, lengthField: string, field: string): Array<Buffer | null> {
  const n = cur.u16(countField);
  cur.needCount(n, 4, field);
  const out = new Array<Buffer | null>(n);
  for (let i = 0; i < n; i++) {
    const len = cur.i32(lengthField);
    if (len === -1) {
      out[i] = null;
    } else if (len < 0) {
      throw new ProtocolError("PG_FIELD_INVALID", `${cur.what} message is malformed: ${field} ${i + 1} has length ${len}`);
    } else {
      out[i] = cur.bytes(len, field);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Helpers for messages whose meaning depends on state the decoder does not have

/** The format (0 text, 1 binary, or whatever code the client sent) of Bind parameter `i`. */
export function bindParamFormat(msg: Pick<BindMessage, "paramFormats">, i: number): number {
  const f = msg.paramFormats;
  if (f.length === 0) return 0;
  if (f.length === 1) return f[0]!;
  return f[i] ?? 0;
}

const authCursor = new Cursor();

/** A PasswordMessage body: one NUL-terminated string filling the whole payload. */
export function parsePassword(payload: Buffer): string {
  const cur = authCursor.reset(payload, 0, "PasswordMessage");
  try {
    const password = cur.cstring("password");
    cur.finish();
    return password;
  } finally {
    cur.release();
  }
}

export interface SASLInitialResponse {
  mechanism: string;
  /** The client-first message, or null when the client sent none (length -1). A view of the payload. */
  data: Buffer | null;
}

/** A SASLInitialResponse body: mechanism name, Int32 length (-1 = none), initial response. */
export function parseSASLInitialResponse(payload: Buffer): SASLInitialResponse {
  const cur = authCursor.reset(payload, 0, "SASLInitialResponse");
  try {
    const mechanism = cur.cstring("mechanism");
    const len = cur.i32("initial response length");
    let data: Buffer | null = null;
    if (len !== -1) {
      if (len < 0) throw new ProtocolError("PG_FIELD_INVALID", `SASLInitialResponse has initial response length ${len}`);
      data = cur.bytes(len, "initial response");
    }
    cur.finish();
    return { mechanism, data };
  } finally {
    cur.release();
  }
}

/** A SASLResponse (or GSSResponse) body is the mechanism's data, nothing else. */
export function parseSASLResponse(payload: Buffer): Buffer {
  return payload;
}

/**
 * The first bytes of a TLS handshake record (0x16). PostgreSQL 17 clients with
 * sslnegotiation=direct start TLS at once instead of sending SSLRequest; an engine that supports
 * that checks the first byte before feeding the decoder.
 */
export function startsWithTlsHandshake(chunk: Buffer): boolean {
  return chunk.length > 0 && chunk[0] === 0x16;
}

// ---------------------------------------------------------------------------------------------
// The startup `options` parameter

const isSpace = (c: string) => c === " " || c === "\t" || c === "\n" || c === "\r" || c === "\v" || c === "\f";

/** Split a startup `options` value into words the way PostgreSQL's pg_split_opts does (backslash escapes). */
export function splitStartupOptions(options: string): string[] {
  const words: string[] = [];
  let i = 0;
  while (i < options.length) {
    while (i < options.length && isSpace(options[i]!)) i++;
    if (i >= options.length) break;
    let word = "";
    let escaped = false;
    while (i < options.length) {
      const c = options[i]!;
      if (isSpace(c) && !escaped) break;
      if (!escaped && c === "\\") {
        escaped = true;
      } else {
        escaped = false;
        word += c;
      }
      i++;
    }
    words.push(word);
  }
  return words;
}

export interface StartupOptions {
  /** `-c name=value` and `--name=value` settings, in order; `-` in names becomes `_` as in PostgreSQL. */
  settings: Array<[name: string, value: string]>;
  /** Every other word (other switches, `-c` without `=`): an engine that cannot judge them should refuse them. */
  other: string[];
}

/** The run-time settings a client requests through the startup `options` parameter. */
export function parseStartupOptions(options: string): StartupOptions {
  const words = splitStartupOptions(options);
  const settings: Array<[string, string]> = [];
  const other: string[] = [];
  const setting = (s: string, original: string[]) => {
    const eq = s.indexOf("=");
    if (eq <= 0) {
      other.push(...original);
      return;
    }
    settings.push([s.slice(0, eq).replaceAll("-", "_"), s.slice(eq + 1)]);
  };
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!;
    if (w === "-c") {
      const next = words[i + 1];
      if (next === undefined) {
        other.push(w);
      } else {
        setting(next, [w, next]);
        i++;
      }
    } else if (w.startsWith("-c")) {
      setting(w.slice(2), [w]);
    } else if (w.startsWith("--")) {
      setting(w.slice(2), [w]);
    } else {
      other.push(w);
    }
  }
  return { settings, other };
}

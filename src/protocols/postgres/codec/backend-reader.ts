// Splits the bytes a PostgreSQL server sends into frames, and parses the few messages the gateway
// must look at (authentication, session parameters, transaction status, errors, results). It
// exists so the relay can forward server bytes frame by frame without understanding most of them.
// It must stay cheap — a frame inside one chunk is a view, never a copy — and must never hand on
// a frame it could not delimit: an unknown type or impossible length is a ProtocolError, not a
// guess.

import type { NoticeFields, TransactionStatus } from "./backend.ts";
import { NOTICE_FIELD_CODES } from "./backend.ts";
import { ProtocolError } from "./errors.ts";
import { Cursor, FrameSplitter, typeName } from "./wire.ts";

/** Message type bytes a server sends. */
export const BackendType = {
  Authentication: 0x52, // R
  BackendKeyData: 0x4b, // K
  BindComplete: 0x32, // 2
  CloseComplete: 0x33, // 3
  CommandComplete: 0x43, // C
  CopyData: 0x64, // d
  CopyDone: 0x63, // c
  CopyInResponse: 0x47, // G
  CopyOutResponse: 0x48, // H
  CopyBothResponse: 0x57, // W
  DataRow: 0x44, // D
  EmptyQueryResponse: 0x49, // I
  ErrorResponse: 0x45, // E
  FunctionCallResponse: 0x56, // V
  NegotiateProtocolVersion: 0x76, // v
  NoData: 0x6e, // n
  NoticeResponse: 0x4e, // N
  NotificationResponse: 0x41, // A
  ParameterDescription: 0x74, // t
  ParameterStatus: 0x53, // S
  ParseComplete: 0x31, // 1
  PortalSuspended: 0x73, // s
  ReadyForQuery: 0x5a, // Z
  RowDescription: 0x54, // T
} as const;

export type BackendTypeName = keyof typeof BackendType;

const KNOWN = new Uint8Array(256);
const NAMES: string[] = [];
for (const [name, t] of Object.entries(BackendType)) {
  KNOWN[t] = 1;
  NAMES[t] = name;
}

/** The name of a backend message type byte ("DataRow"), or undefined. */
export function backendTypeName(type: number): BackendTypeName | undefined {
  return NAMES[type] as BackendTypeName | undefined;
}

export interface BackendFrame {
  /** The type byte, e.g. BackendType.ReadyForQuery. */
  type: number;
  /** The body after the length field; a view of `raw`. */
  payload: Buffer;
  /** The whole frame, to forward unchanged. */
  raw: Buffer;
}

/** A DataRow may carry several values of up to 1 GiB; this is the default ceiling for one frame. */
export const DEFAULT_MAX_BACKEND_MESSAGE_BYTES = 0x40000000;

export interface BackendFramerOptions {
  /** Largest accepted value of a frame's length field. Default 1 GiB. */
  maxMessageBytes?: number;
}

/** Incremental splitter for server→client bytes. After a ProtocolError every later push rethrows it. */
export class BackendFramer extends FrameSplitter<BackendFrame> {
  private readonly max: number;

  constructor(opts: BackendFramerOptions = {}) {
    super();
    const max = opts.maxMessageBytes ?? DEFAULT_MAX_BACKEND_MESSAGE_BYTES;
    if (!Number.isInteger(max) || max < 4 || max > 0x7fffffff) throw new RangeError("maxMessageBytes must be an integer in 4..2^31-1");
    this.max = max;
  }

  push(chunk: Buffer): BackendFrame[] {
    const out: BackendFrame[] = [];
    this.split(chunk, out);
    return out;
  }

  /**
   * The server's one-byte, unframed answer to our SSLRequest: 'S' (start TLS) or 'N' (stay
   * unencrypted). Call it with the first bytes read after sending the request, before any push.
   * The answer must be the only byte: anything after it was sent before the TLS handshake and
   * may have been injected (CVE-2021-23222), so it is refused. Returns null for an empty chunk.
   */
  readSSLResponse(chunk: Buffer): "S" | "N" | null {
    return this.readEncryptionResponse(chunk, 0x53, "SSLRequest") as "S" | "N" | null;
  }

  /** The same for GSSENCRequest: 'G' (start GSSAPI encryption) or 'N'. */
  readGSSENCResponse(chunk: Buffer): "G" | "N" | null {
    return this.readEncryptionResponse(chunk, 0x47, "GSSENCRequest") as "G" | "N" | null;
  }

  private readEncryptionResponse(chunk: Buffer, yes: number, what: string): string | null {
    if (this.buffered > 0) throw new Error(`BackendFramer: answer to ${what} read with a partial frame buffered`);
    if (chunk.length === 0) return null;
    const b = chunk[0]!;
    if (b !== yes && b !== 0x4e) {
      const hint = b === 0x45 ? " (an ErrorResponse: the server does not support it)" : "";
      throw new ProtocolError("PG_SSL_RESPONSE_INVALID", `unexpected reply ${typeName(b)} to ${what}${hint}`);
    }
    if (chunk.length > 1) {
      throw new ProtocolError("PG_SSL_RESPONSE_INVALID", `server sent unencrypted data after its answer to ${what}`);
    }
    return String.fromCharCode(b);
  }

  protected headerSize(): number {
    return 5;
  }

  protected frameStart(): void {}

  protected checkFirstByte(b: number): void {
    if (KNOWN[b] === 0) throw new ProtocolError("PG_MESSAGE_TYPE_UNKNOWN", `invalid backend message type ${typeName(b)}`);
  }

  protected frameLength(buf: Buffer, off: number): number {
    const len = buf.readInt32BE(off + 1);
    if (len < 4) throw new ProtocolError("PG_MESSAGE_LENGTH_INVALID", `invalid length ${len} in ${NAMES[buf[off]!]} message`);
    if (len > this.max) {
      throw new ProtocolError("PG_MESSAGE_TOO_LARGE", `${NAMES[buf[off]!]} message of ${len} bytes exceeds the limit of ${this.max} bytes`);
    }
    return len + 1;
  }

  protected onFrame(frame: Buffer, out: BackendFrame[]): void {
    out.push({ type: frame[0]!, payload: frame.subarray(5), raw: frame });
  }
}

// ---------------------------------------------------------------------------------------------
// Parsers. Each takes a frame's payload and reads it strictly: a short field, a missing
// terminator or leftover bytes is a ProtocolError.

const cursor = new Cursor();

function parse<T>(payload: Buffer, what: string, read: (cur: Cursor) => T): T {
  const cur = cursor.reset(payload, 0, what);
  try {
    const v = read(cur);
    cur.finish();
    return v;
  } finally {
    cur.release();
  }
}

export type Authentication =
  | { kind: "Ok" }
  | { kind: "KerberosV5" }
  | { kind: "CleartextPassword" }
  | { kind: "MD5Password"; salt: Buffer }
  | { kind: "GSS" }
  | { kind: "GSSContinue"; data: Buffer }
  | { kind: "SSPI" }
  | { kind: "SASL"; mechanisms: string[] }
  | { kind: "SASLContinue"; data: Buffer }
  | { kind: "SASLFinal"; data: Buffer };

/** An Authentication ('R') payload. Binary data fields are views of the payload. */
export function parseAuthentication(payload: Buffer): Authentication {
  return parse(payload, "Authentication", (cur): Authentication => {
    const code = cur.i32("authentication code");
    switch (code) {
      case 0:
        return { kind: "Ok" };
      case 2:
        return { kind: "KerberosV5" };
      case 3:
        return { kind: "CleartextPassword" };
      case 5:
        return { kind: "MD5Password", salt: cur.bytes(4, "salt") };
      case 7:
        return { kind: "GSS" };
      case 8:
        return { kind: "GSSContinue", data: cur.rest() };
      case 9:
        return { kind: "SSPI" };
      case 10: {
        const mechanisms: string[] = [];
        for (;;) {
          const m = cur.cstring("mechanism");
          if (m === "") break;
          mechanisms.push(m);
        }
        return { kind: "SASL", mechanisms };
      }
      case 11:
        return { kind: "SASLContinue", data: cur.rest() };
      case 12:
        return { kind: "SASLFinal", data: cur.rest() };
      default:
        throw new ProtocolError("PG_FIELD_INVALID", `unknown authentication request code ${code}`);
    }
  });
}

export function parseParameterStatus(payload: Buffer): { name: string; value: string } {
  return parse(payload, "ParameterStatus", (cur) => ({ name: cur.cstring("name"), value: cur.cstring("value") }));
}

/** BackendKeyData: the process id and the secret key (4 bytes in 3.0, up to 256 in 3.2), as a copy to keep. */
export function parseBackendKeyData(payload: Buffer): { processId: number; secretKey: Buffer } {
  return parse(payload, "BackendKeyData", (cur) => {
    const processId = cur.i32("process id");
    const n = cur.remaining;
    if (n < 4 || n > 256) throw new ProtocolError("PG_FIELD_INVALID", `BackendKeyData secret key must be 4..256 bytes, got ${n}`);
    return { processId, secretKey: Buffer.from(cur.rest()) };
  });
}

export function parseReadyForQuery(payload: Buffer): TransactionStatus {
  return parse(payload, "ReadyForQuery", (cur) => {
    const s = cur.u8("transaction status");
    if (s === 0x49) return "I";
    if (s === 0x54) return "T";
    if (s === 0x45) return "E";
    throw new ProtocolError("PG_FIELD_INVALID", `invalid transaction status ${typeName(s)}`);
  });
}

const FIELD_BY_CODE = new Map<number, keyof typeof NOTICE_FIELD_CODES>(
  Object.entries(NOTICE_FIELD_CODES).map(([k, c]) => [c.charCodeAt(0), k as keyof typeof NOTICE_FIELD_CODES]),
);

/**
 * The fields of an ErrorResponse or NoticeResponse. Missing S, C or M (never omitted by
 * PostgreSQL) read as "". A repeated field keeps its last value.
 */
export function parseNoticeFields(payload: Buffer): NoticeFields {
  return parse(payload, "ErrorResponse/NoticeResponse", (cur) => {
    const f: NoticeFields = { severity: "", code: "", message: "" };
    for (;;) {
      const code = cur.u8("field type");
      if (code === 0) break;
      const value = cur.cstring("field value");
      const key = FIELD_BY_CODE.get(code);
      if (key !== undefined) {
        f[key] = value;
      } else {
        f.other ??= Object.create(null) as Record<string, string>;
        f.other[String.fromCharCode(code)] = value;
      }
    }
    return f;
  });
}

/** CommandComplete: the command tag, e.g. "INSERT 0 1". */
export function parseCommandComplete(payload: Buffer): string {
  return parse(payload, "CommandComplete", (cur) => cur.cstring("command tag"));
}

/** The row count at the end of a command tag ("UPDATE 3" → 3), or null for tags without one. */
export function commandTagRows(tag: string): number | null {
  const m = /^(?:INSERT \d+|SELECT|UPDATE|DELETE|MERGE|FETCH|MOVE|COPY) (\d+)$/.exec(tag);
  return m ? Number(m[1]) : null;
}

export interface RowField {
  name: string;
  tableOid: number;
  columnAttr: number;
  typeOid: number;
  typeSize: number;
  typeModifier: number;
  format: number;
}

export function parseRowDescription(payload: Buffer): RowField[] {
  return parse(payload, "RowDescription", (cur) => {
    const n = cur.u16("field count");
    cur.needCount(n, 19, "field");
    const fields = new Array<RowField>(n);
    for (let i = 0; i < n; i++) {
      fields[i] = {
        name: cur.cstring("column name"),
        tableOid: cur.u32("table OID"),
        columnAttr: cur.i16("column attribute number"),
        typeOid: cur.u32("type OID"),
        typeSize: cur.i16("type size"),
        typeModifier: cur.i32("type modifier"),
        format: cur.i16("format code"),
      };
    }
    return fields;
  });
}

/** DataRow: each column's bytes (a view of the payload), or null for SQL NULL. */
export function parseDataRow(payload: Buffer): Array<Buffer | null> {
  return parse(payload, "DataRow", (cur) => {
    const n = cur.u16("column count");
    cur.needCount(n, 4, "column");
    const values = new Array<Buffer | null>(n);
    for (let i = 0; i < n; i++) {
      const len = cur.i32("column length");
      if (len === -1) values[i] = null;
      else if (len < 0) throw new ProtocolError("PG_FIELD_INVALID", `DataRow column ${i + 1} has length ${len}`);
      else values[i] = cur.bytes(len, `column ${i + 1}`);
    }
    return values;
  });
}

export function parseParameterDescription(payload: Buffer): number[] {
  return parse(payload, "ParameterDescription", (cur) => {
    const n = cur.u16("parameter count");
    cur.needCount(n, 4, "parameter");
    const oids = new Array<number>(n);
    for (let i = 0; i < n; i++) oids[i] = cur.u32("parameter type");
    return oids;
  });
}

export function parseNegotiateProtocolVersion(payload: Buffer): { newestMinor: number; unrecognizedOptions: string[] } {
  return parse(payload, "NegotiateProtocolVersion", (cur) => {
    const newestMinor = cur.i32("newest minor version");
    const n = cur.i32("option count");
    if (n < 0) throw new ProtocolError("PG_FIELD_INVALID", `NegotiateProtocolVersion has option count ${n}`);
    cur.needCount(n, 1, "option");
    const unrecognizedOptions: string[] = [];
    for (let i = 0; i < n; i++) unrecognizedOptions.push(cur.cstring("option name"));
    return { newestMinor, unrecognizedOptions };
  });
}

/** CopyInResponse / CopyOutResponse / CopyBothResponse. */
export function parseCopyResponse(payload: Buffer): { format: number; columnFormats: number[] } {
  return parse(payload, "CopyResponse", (cur) => {
    const format = cur.u8("copy format");
    const n = cur.u16("column count");
    cur.needCount(n, 2, "column format");
    const columnFormats = new Array<number>(n);
    for (let i = 0; i < n; i++) columnFormats[i] = cur.i16("column format");
    return { format, columnFormats };
  });
}

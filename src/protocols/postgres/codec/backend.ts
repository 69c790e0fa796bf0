// Writers for the messages a PostgreSQL server sends to a client. The gateway plays the server
// towards its callers (authentication, its own ErrorResponses for denied or held statements), so
// it needs these bytes exactly right. Each writer returns one complete frame, sized exactly.
// A writer must never emit a frame a client would misparse: strings with an embedded NUL (which
// would end a field early and let the rest be read as further fields) are refused with
// PG_WRITE_INVALID — except in Error/Notice texts, which are human text that must always be
// deliverable, so there a NUL is replaced with U+FFFD.

import { writeInvalid, checkInt, checkInt16Count, cstrLen, Out } from "./wire.ts";

// ---------------------------------------------------------------------------------------------
// Authentication ('R')

const AUTH_OK = 0;
const AUTH_CLEARTEXT = 3;
const AUTH_MD5 = 5;
const AUTH_SASL = 10;
const AUTH_SASL_CONTINUE = 11;
const AUTH_SASL_FINAL = 12;

function authCode(code: number): Buffer {
  return Out.typed(0x52, 4).i32(code).done();
}

function authData(code: number, data: Buffer | string): Buffer {
  const bytes = typeof data === "string" ? Buffer.from(data, "utf8") : data;
  return Out.typed(0x52, 4 + bytes.length).i32(code).bytes(bytes).done();
}

export function authenticationOk(): Buffer {
  return authCode(AUTH_OK);
}

export function authenticationCleartextPassword(): Buffer {
  return authCode(AUTH_CLEARTEXT);
}

export function authenticationMD5Password(salt: Buffer): Buffer {
  if (salt.length !== 4) throw writeInvalid(`MD5 salt must be 4 bytes, got ${salt.length}`);
  return authData(AUTH_MD5, salt);
}

/** The SASL mechanisms the server offers, e.g. ["SCRAM-SHA-256"]. */
export function authenticationSASL(mechanisms: readonly string[]): Buffer {
  if (mechanisms.length === 0) throw writeInvalid("AuthenticationSASL needs at least one mechanism");
  let len = 4 + 1;
  for (const m of mechanisms) {
    if (m === "") throw writeInvalid("SASL mechanism names must not be empty");
    len += cstrLen(m, "SASL mechanism");
  }
  const out = Out.typed(0x52, len).i32(AUTH_SASL);
  for (const m of mechanisms) out.cstr(m);
  return out.u8(0).done();
}

export function authenticationSASLContinue(data: Buffer | string): Buffer {
  return authData(AUTH_SASL_CONTINUE, data);
}

export function authenticationSASLFinal(data: Buffer | string): Buffer {
  return authData(AUTH_SASL_FINAL, data);
}

// ---------------------------------------------------------------------------------------------
// Session setup

export function parameterStatus(name: string, value: string): Buffer {
  const len = cstrLen(name, "parameter name") + cstrLen(value, "parameter value");
  return Out.typed(0x53, len).cstr(name).cstr(value).done();
}

/**
 * BackendKeyData. A number is written as the 4-byte key of protocol 3.0; a Buffer is written as is
 * (protocol 3.2 allows 4..256 bytes).
 */
export function backendKeyData(processId: number, secretKey: number | Buffer): Buffer {
  checkInt(processId, -0x80000000, 0xffffffff, "process id");
  if (typeof secretKey === "number") {
    checkInt(secretKey, -0x80000000, 0xffffffff, "secret key");
    return Out.typed(0x4b, 8).u32(processId >>> 0).u32(secretKey >>> 0).done();
  }
  if (secretKey.length < 4 || secretKey.length > 256) throw writeInvalid(`secret key must be 4..256 bytes, got ${secretKey.length}`);
  return Out.typed(0x4b, 4 + secretKey.length).u32(processId >>> 0).bytes(secretKey).done();
}

export type TransactionStatus = "I" | "T" | "E";

export function readyForQuery(status: TransactionStatus): Buffer {
  if (status !== "I" && status !== "T" && status !== "E") throw writeInvalid(`transaction status must be I, T or E, got ${String(status)}`);
  return Out.typed(0x5a, 1).u8(status.charCodeAt(0)).done();
}

/** NegotiateProtocolVersion: the newest minor version the server supports, and the `_pq_.` options it does not know. */
export function negotiateProtocolVersion(newestMinor: number, unrecognizedOptions: readonly string[] = []): Buffer {
  checkInt(newestMinor, 0, 0xffff, "newest minor version");
  let len = 8;
  for (const o of unrecognizedOptions) len += cstrLen(o, "protocol option");
  const out = Out.typed(0x76, len).i32(newestMinor).i32(unrecognizedOptions.length);
  for (const o of unrecognizedOptions) out.cstr(o);
  return out.done();
}

// ---------------------------------------------------------------------------------------------
// ErrorResponse / NoticeResponse

/** The fields of an ErrorResponse or NoticeResponse, by their protocol names. */
export interface NoticeFields {
  /** S: localized severity (ERROR, FATAL, PANIC, WARNING, NOTICE, DEBUG, INFO, LOG). */
  severity: string;
  /** V: non-localized severity; the writer repeats `severity` when it is omitted, as PostgreSQL always sends it. */
  severityNonLocalized?: string;
  /** C: SQLSTATE. */
  code: string;
  /** M: primary message. */
  message: string;
  detail?: string; // D
  hint?: string; // H
  /** P: 1-based character position in the query string. */
  position?: string;
  internalPosition?: string; // p
  internalQuery?: string; // q
  where?: string; // W
  schema?: string; // s
  table?: string; // t
  column?: string; // c
  dataType?: string; // d
  constraint?: string; // n
  file?: string; // F
  line?: string; // L
  routine?: string; // R
  /** Fields this type does not name (future PostgreSQL versions), by their one-character code. */
  other?: Record<string, string>;
}

/** Field code for each named field, in the order PostgreSQL itself sends them. */
export const NOTICE_FIELD_CODES = {
  severity: "S",
  severityNonLocalized: "V",
  code: "C",
  message: "M",
  detail: "D",
  hint: "H",
  position: "P",
  internalPosition: "p",
  internalQuery: "q",
  where: "W",
  schema: "s",
  table: "t",
  column: "c",
  dataType: "d",
  constraint: "n",
  file: "F",
  line: "L",
  routine: "R",
} as const satisfies Record<Exclude<keyof NoticeFields, "other">, string>;

const NAMED_CODES = new Set<string>(Object.values(NOTICE_FIELD_CODES));

function noticeFrame(type: number, f: NoticeFields): Buffer {
  const entries: Array<[number, string]> = [];
  const add = (code: string, v: string | undefined) => {
    if (v !== undefined) entries.push([code.charCodeAt(0), v.includes("\0") ? v.replaceAll("\0", "\uFFFD") : v]);
  };
  add("S", f.severity);
  add("V", f.severityNonLocalized ?? f.severity);
  add("C", f.code);
  add("M", f.message);
  for (const [key, code] of Object.entries(NOTICE_FIELD_CODES)) {
    if (key === "severity" || key === "severityNonLocalized" || key === "code" || key === "message") continue;
    add(code, f[key as keyof typeof NOTICE_FIELD_CODES]);
  }
  if (f.other) {
    for (const [code, v] of Object.entries(f.other)) {
      if (code.length !== 1 || code === "\0" || code.charCodeAt(0) > 0x7f) throw writeInvalid(`notice field code must be one ASCII character, got ${JSON.stringify(code)}`);
      if (NAMED_CODES.has(code)) throw writeInvalid(`notice field ${code} must be given by its name, not in other`);
      add(code, v);
    }
  }
  let len = 1;
  for (const [, v] of entries) len += 1 + Buffer.byteLength(v, "utf8") + 1;
  const out = Out.typed(type, len);
  for (const [code, v] of entries) out.u8(code).cstr(v);
  return out.u8(0).done();
}

export function errorResponse(fields: NoticeFields): Buffer {
  return noticeFrame(0x45, fields);
}

export function noticeResponse(fields: NoticeFields): Buffer {
  return noticeFrame(0x4e, fields);
}

// ---------------------------------------------------------------------------------------------
// Query results

/** CommandComplete with a command tag such as "SELECT 1" or "INSERT 0 1". */
export function commandComplete(tag: string): Buffer {
  return Out.typed(0x43, cstrLen(tag, "command tag")).cstr(tag).done();
}

export function emptyQueryResponse(): Buffer {
  return Out.typed(0x49, 0).done();
}

export interface RowFieldInput {
  name: string;
  /** OID of the table, or 0. */
  tableOid?: number;
  /** Attribute number of the column in that table, or 0. */
  columnAttr?: number;
  typeOid: number;
  /** pg_type.typlen; -1 for variable length (the default). */
  typeSize?: number;
  /** pg_attribute.atttypmod; -1 when not applicable (the default). */
  typeModifier?: number;
  /** 0 text (the default), 1 binary. */
  format?: number;
}

export function rowDescription(fields: readonly RowFieldInput[]): Buffer {
  checkInt16Count(fields.length, "RowDescription fields");
  let len = 2;
  for (const f of fields) len += cstrLen(f.name, "column name") + 18;
  const out = Out.typed(0x54, len).u16(fields.length);
  for (const f of fields) {
    const tableOid = f.tableOid ?? 0;
    const columnAttr = f.columnAttr ?? 0;
    const typeSize = f.typeSize ?? -1;
    const typeModifier = f.typeModifier ?? -1;
    const format = f.format ?? 0;
    checkInt(tableOid, 0, 0xffffffff, "table OID");
    checkInt(columnAttr, -0x8000, 0x7fff, "column attribute number");
    checkInt(f.typeOid, 0, 0xffffffff, "type OID");
    checkInt(typeSize, -0x8000, 0x7fff, "type size");
    checkInt(typeModifier, -0x80000000, 0x7fffffff, "type modifier");
    checkInt(format, -0x8000, 0x7fff, "format code");
    out.cstr(f.name).u32(tableOid).i16(columnAttr).u32(f.typeOid).i16(typeSize).i32(typeModifier).i16(format);
  }
  return out.done();
}

/** DataRow; strings are written as UTF-8 text, null as SQL NULL. */
export function dataRow(values: ReadonlyArray<Buffer | string | null>): Buffer {
  checkInt16Count(values.length, "DataRow columns");
  let len = 2;
  const bufs: Array<Buffer | null> = new Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    const b = v === null || v === undefined ? null : typeof v === "string" ? Buffer.from(v, "utf8") : v;
    bufs[i] = b;
    len += 4 + (b === null ? 0 : b.length);
  }
  const out = Out.typed(0x44, len).u16(values.length);
  for (const b of bufs) {
    if (b === null) out.i32(-1);
    else out.i32(b.length).bytes(b);
  }
  return out.done();
}

export function parseComplete(): Buffer {
  return Out.typed(0x31, 0).done();
}

export function bindComplete(): Buffer {
  return Out.typed(0x32, 0).done();
}

export function closeComplete(): Buffer {
  return Out.typed(0x33, 0).done();
}

export function noData(): Buffer {
  return Out.typed(0x6e, 0).done();
}

export function portalSuspended(): Buffer {
  return Out.typed(0x73, 0).done();
}

/** ParameterDescription: the type OID of each parameter of a prepared statement. */
export function parameterDescription(typeOids: readonly number[]): Buffer {
  checkInt16Count(typeOids.length, "ParameterDescription parameters");
  const out = Out.typed(0x74, 2 + 4 * typeOids.length).u16(typeOids.length);
  for (const oid of typeOids) {
    checkInt(oid, 0, 0xffffffff, "type OID");
    out.u32(oid);
  }
  return out.done();
}

// ---------------------------------------------------------------------------------------------
// COPY

function copyResponse(type: number, format: number, columnFormats: readonly number[]): Buffer {
  checkInt(format, 0, 1, "copy format");
  checkInt16Count(columnFormats.length, "copy columns");
  const out = Out.typed(type, 3 + 2 * columnFormats.length).u8(format).u16(columnFormats.length);
  for (const f of columnFormats) {
    checkInt(f, 0, 1, "column format");
    out.i16(f);
  }
  return out.done();
}

/** CopyInResponse: overall format (0 text, 1 binary) and one format per column. */
export function copyInResponse(format: number, columnFormats: readonly number[]): Buffer {
  return copyResponse(0x47, format, columnFormats);
}

export function copyOutResponse(format: number, columnFormats: readonly number[]): Buffer {
  return copyResponse(0x48, format, columnFormats);
}

export function copyBothResponse(format: number, columnFormats: readonly number[]): Buffer {
  return copyResponse(0x57, format, columnFormats);
}

/** CopyData (either direction). */
export function copyData(data: Uint8Array): Buffer {
  return Out.typed(0x64, data.length).bytes(data).done();
}

/** CopyDone (either direction). */
export function copyDone(): Buffer {
  return Out.typed(0x63, 0).done();
}

// ---------------------------------------------------------------------------------------------
// Unframed replies to SSLRequest / GSSENCRequest

const S = Buffer.from("S");
const N = Buffer.from("N");
const G = Buffer.from("G");

/** The one-byte answer to SSLRequest: 'S' (go ahead with TLS) or 'N' (continue unencrypted). */
export function sslResponse(accept: boolean): Buffer {
  return Buffer.from(accept ? S : N);
}

/** The one-byte answer to GSSENCRequest: 'G' (go ahead with GSSAPI encryption) or 'N'. */
export function gssencResponse(accept: boolean): Buffer {
  return Buffer.from(accept ? G : N);
}

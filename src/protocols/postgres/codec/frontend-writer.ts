// Writers for the few client→server messages the gateway itself originates when it (through its
// agent) opens a session to a real PostgreSQL server: startup, authentication answers, a simple
// query, cancellation, termination. Client traffic is relayed as the client's own bytes and never
// rebuilt here. A writer must never emit a frame the server would read differently from what the
// caller meant: embedded NULs, empty parameter names and out-of-range numbers are refused with
// PG_WRITE_INVALID.

import { CANCEL_REQUEST_CODE, GSSENC_REQUEST_CODE, MAX_STARTUP_PACKET_LENGTH, PROTOCOL_3_0, SSL_REQUEST_CODE } from "./frontend.ts";
import { writeInvalid, checkInt, checkInt16Count, cstrLen, Out } from "./wire.ts";

export interface StartupMessageOptions {
  /** major << 16 | minor; default 3.0 (196608). Use PROTOCOL_3_2 for 3.2. */
  protocolVersion?: number;
}

/** StartupMessage with the given parameters (`user` is required by servers; `database`, `options`… optional). */
export function startupMessage(
  parameters: Record<string, string> | Iterable<readonly [string, string]>,
  opts: StartupMessageOptions = {},
): Buffer {
  const version = opts.protocolVersion ?? PROTOCOL_3_0;
  checkInt(version, 0x30000, 0x3ffff, "protocol version");
  const pairs: Array<readonly [string, string]> =
    Symbol.iterator in parameters ? [...(parameters as Iterable<readonly [string, string]>)] : Object.entries(parameters);
  let len = 4 + 1;
  for (const [k, v] of pairs) {
    if (k === "") throw writeInvalid("startup parameter names must not be empty");
    len += cstrLen(k, "startup parameter name") + cstrLen(v, `startup parameter "${k}"`);
  }
  if (len > MAX_STARTUP_PACKET_LENGTH) throw writeInvalid(`startup packet of ${len} bytes exceeds the server's limit of ${MAX_STARTUP_PACKET_LENGTH}`);
  const out = Out.untyped(len).i32(version);
  for (const [k, v] of pairs) out.cstr(k).cstr(v);
  return out.u8(0).done();
}

export function sslRequest(): Buffer {
  return Out.untyped(4).i32(SSL_REQUEST_CODE).done();
}

export function gssencRequest(): Buffer {
  return Out.untyped(4).i32(GSSENC_REQUEST_CODE).done();
}

/**
 * CancelRequest. A number is the 4-byte key of protocol 3.0; a Buffer is sent as is (3.2: 4..256
 * bytes, exactly as received in BackendKeyData).
 */
export function cancelRequest(processId: number, secretKey: number | Buffer): Buffer {
  checkInt(processId, -0x80000000, 0xffffffff, "process id");
  if (typeof secretKey === "number") {
    checkInt(secretKey, -0x80000000, 0xffffffff, "secret key");
    return Out.untyped(12).i32(CANCEL_REQUEST_CODE).u32(processId >>> 0).u32(secretKey >>> 0).done();
  }
  if (secretKey.length < 4 || secretKey.length > 256) throw writeInvalid(`secret key must be 4..256 bytes, got ${secretKey.length}`);
  return Out.untyped(8 + secretKey.length).i32(CANCEL_REQUEST_CODE).u32(processId >>> 0).bytes(secretKey).done();
}

/** PasswordMessage: a cleartext password or an "md5…" hash (see md5Password in scram.ts). */
export function passwordMessage(password: string): Buffer {
  return Out.typed(0x70, cstrLen(password, "password")).cstr(password).done();
}

/** SASLInitialResponse: mechanism name and the client-first message (null sends length -1). */
export function saslInitialResponse(mechanism: string, data: Buffer | string | null): Buffer {
  const bytes = typeof data === "string" ? Buffer.from(data, "utf8") : data;
  const out = Out.typed(0x70, cstrLen(mechanism, "SASL mechanism") + 4 + (bytes?.length ?? 0)).cstr(mechanism);
  if (bytes === null) out.i32(-1);
  else out.i32(bytes.length).bytes(bytes);
  return out.done();
}

/** SASLResponse: the mechanism's next message (for SCRAM, the client-final message). */
export function saslResponse(data: Buffer | string): Buffer {
  const bytes = typeof data === "string" ? Buffer.from(data, "utf8") : data;
  return Out.typed(0x70, bytes.length).bytes(bytes).done();
}

/** Simple-protocol Query. */
export function query(sql: string): Buffer {
  return Out.typed(0x51, cstrLen(sql, "query")).cstr(sql).done();
}

/**
 * Extended-protocol Parse. The gateway sends its own Parse only in place of a client's: a
 * reviewer's replacement text, or a marker that must fail (see server-stream.ts).
 */
export function parse(name: string, sql: string, paramTypes: readonly number[] = []): Buffer {
  checkInt16Count(paramTypes.length, "Parse parameter types");
  for (const t of paramTypes) checkInt(t, 0, 0xffffffff, "parameter type oid");
  const len = cstrLen(name, "statement name") + cstrLen(sql, "query") + 2 + 4 * paramTypes.length;
  const out = Out.typed(0x50, len).cstr(name).cstr(sql).i16(paramTypes.length);
  for (const t of paramTypes) out.u32(t);
  return out.done();
}

export function sync(): Buffer {
  return Out.typed(0x53, 0).done();
}

export function flush(): Buffer {
  return Out.typed(0x48, 0).done();
}

export function terminate(): Buffer {
  return Out.typed(0x58, 0).done();
}

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import * as w from "./backend.ts";
import type { BackendFrame } from "./backend-reader.ts";
import {
  BackendFramer,
  BackendType,
  backendTypeName,
  commandTagRows,
  parseAuthentication,
  parseBackendKeyData,
  parseCommandComplete,
  parseCopyResponse,
  parseDataRow,
  parseNegotiateProtocolVersion,
  parseNoticeFields,
  parseParameterDescription,
  parseParameterStatus,
  parseReadyForQuery,
  parseRowDescription,
} from "./backend-reader.ts";
import type { ProtocolErrorCode } from "./errors.ts";
import { ProtocolError } from "./errors.ts";
import { bytes, cstr, i16, i32, plain, splitAt, typed, u16, u32 } from "./test-support.ts";

function frames(chunks: Buffer[], f = new BackendFramer()): BackendFrame[] {
  const out: BackendFrame[] = [];
  for (const c of chunks) out.push(...f.push(c));
  return out;
}

const simple = (fs: BackendFrame[]) => fs.map((f) => [String.fromCharCode(f.type), f.payload.toString("hex"), f.raw.toString("hex")]);

function expectError(code: ProtocolErrorCode, fn: () => unknown): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof ProtocolError, `expected ProtocolError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    return true;
  });
}

// A server's answer to a simple query, written out by hand.
const REPLY = bytes(
  typed("R", i32(0)),
  typed("S", cstr("server_version"), cstr("17.2")),
  typed("K", i32(1234), i32(5678)),
  typed("Z", "I"),
  typed("T", i16(1), cstr("n"), u32(0), i16(0), u32(23), i16(4), i32(-1), i16(0)),
  typed("D", i16(1), i32(1), "1"),
  typed("C", cstr("SELECT 1")),
  typed("Z", "I"),
);

describe("BackendFramer", () => {
  test("splits a stream into frames; payload is the body, raw the whole frame", () => {
    const fs = frames([REPLY]);
    assert.equal(fs.length, 8);
    assert.deepEqual(
      fs.map((f) => backendTypeName(f.type)),
      ["Authentication", "ParameterStatus", "BackendKeyData", "ReadyForQuery", "RowDescription", "DataRow", "CommandComplete", "ReadyForQuery"],
    );
    assert.deepEqual(fs[3]!.payload, Buffer.from("I"));
    assert.deepEqual(fs[3]!.raw, typed("Z", "I"));
    assert.deepEqual(Buffer.concat(fs.map((f) => f.raw)), REPLY);
  });

  test("frames inside one chunk are views of it (no copy)", () => {
    const fs = frames([REPLY]);
    for (const f of fs) assert.equal(f.raw.buffer, REPLY.buffer);
  });

  test("split at every byte boundary, and byte by byte, gives the same frames", () => {
    const whole = simple(frames([REPLY]));
    for (let i = 1; i < REPLY.length; i++) assert.deepEqual(simple(frames(splitAt(REPLY, [i]))), whole, `split at ${i}`);
    assert.deepEqual(simple(frames([...REPLY].map((b) => Buffer.from([b])))), whole);
  });

  test("split in the middle of the length field", () => {
    const f = new BackendFramer();
    const z = typed("Z", "T");
    assert.deepEqual(f.push(z.subarray(0, 2)), []);
    assert.deepEqual(f.push(z.subarray(2, 4)), []);
    assert.equal(f.buffered, 4);
    const [m] = f.push(z.subarray(4));
    assert.equal(m && parseReadyForQuery(m.payload), "T");
  });

  test("random splits of a random frame stream give the same frames", () => {
    const types = Object.values(BackendType).map((t) => String.fromCharCode(t));
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.constantFrom(...types), fc.uint8Array({ maxLength: 40 })), { maxLength: 10 }), fc.array(fc.nat(), { maxLength: 10 }), (fs, cuts) => {
        const buf = Buffer.concat(fs.map(([t, b]) => typed(t, b)));
        const got = frames(splitAt(buf, cuts.map((c) => c % (buf.length + 1))));
        assert.deepEqual(
          got.map((f) => [String.fromCharCode(f.type), f.payload.toString("hex")]),
          fs.map(([t, b]) => [t, Buffer.from(b).toString("hex")]),
        );
      }),
      { numRuns: 500 },
    );
  });

  test("random bytes throw nothing but ProtocolError", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.array(fc.nat(), { maxLength: 6 }), (arr, cuts) => {
        try {
          frames(splitAt(Buffer.from(arr), cuts));
        } catch (e) {
          if (!(e instanceof ProtocolError)) throw e;
        }
      }),
      { numRuns: 2000 },
    );
  });

  test("malformed frames", () => {
    expectError("PG_MESSAGE_TYPE_UNKNOWN", () => frames([Buffer.from("x")]));
    expectError("PG_MESSAGE_LENGTH_INVALID", () => frames([bytes("Z", i32(2))]));
    expectError("PG_MESSAGE_TOO_LARGE", () => frames([bytes("D", i32(2000))], new BackendFramer({ maxMessageBytes: 1000 })));
    expectError("PG_MESSAGE_TOO_LARGE", () => frames([bytes("D", i32(0x40000001))]));
    const f = new BackendFramer();
    expectError("PG_MESSAGE_TYPE_UNKNOWN", () => f.push(bytes(typed("Z", "I"), "?")));
    expectError("PG_MESSAGE_TYPE_UNKNOWN", () => f.push(typed("Z", "I")));
  });

  test("the one-byte answer to SSLRequest / GSSENCRequest", () => {
    const f = new BackendFramer();
    assert.equal(f.readSSLResponse(Buffer.from("S")), "S");
    assert.equal(f.readSSLResponse(Buffer.from("N")), "N");
    assert.equal(f.readSSLResponse(Buffer.alloc(0)), null);
    assert.equal(f.readGSSENCResponse(Buffer.from("G")), "G");
    assert.equal(f.readGSSENCResponse(Buffer.from("N")), "N");
    expectError("PG_SSL_RESPONSE_INVALID", () => f.readSSLResponse(Buffer.from("SX")));
    expectError("PG_SSL_RESPONSE_INVALID", () => f.readSSLResponse(Buffer.from("G")));
    expectError("PG_SSL_RESPONSE_INVALID", () => f.readSSLResponse(typed("E", "S", cstr("FATAL"), [0])));
    // after 'N' the same framer reads the plaintext session
    assert.equal(f.push(typed("R", i32(3)))[0]?.type, BackendType.Authentication);
  });
});

describe("backend parsers on hand-built payloads", () => {
  test("Authentication, every request code", () => {
    assert.deepEqual(parseAuthentication(i32(0)), { kind: "Ok" });
    assert.deepEqual(parseAuthentication(i32(2)), { kind: "KerberosV5" });
    assert.deepEqual(parseAuthentication(i32(3)), { kind: "CleartextPassword" });
    assert.deepEqual(plain(parseAuthentication(bytes(i32(5), [9, 8, 7, 6]))), { kind: "MD5Password", salt: "hex:09080706" });
    assert.deepEqual(parseAuthentication(i32(7)), { kind: "GSS" });
    assert.deepEqual(plain(parseAuthentication(bytes(i32(8), [1]))), { kind: "GSSContinue", data: "hex:01" });
    assert.deepEqual(parseAuthentication(i32(9)), { kind: "SSPI" });
    assert.deepEqual(parseAuthentication(bytes(i32(10), cstr("SCRAM-SHA-256-PLUS"), cstr("SCRAM-SHA-256"), [0])), { kind: "SASL", mechanisms: ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"] });
    const cont = parseAuthentication(bytes(i32(11), "r=a,s=b,i=1"));
    assert.ok(cont.kind === "SASLContinue");
    assert.equal(cont.data.toString(), "r=a,s=b,i=1");
    const fin = parseAuthentication(bytes(i32(12), "v=x"));
    assert.ok(fin.kind === "SASLFinal");
    assert.equal(fin.data.toString(), "v=x");
  });

  test("ParameterStatus, BackendKeyData (3.0 and 3.2), ReadyForQuery", () => {
    assert.deepEqual(parseParameterStatus(bytes(cstr("TimeZone"), cstr("UTC"))), { name: "TimeZone", value: "UTC" });
    assert.deepEqual(plain(parseBackendKeyData(bytes(i32(77), i32(-1)))), { processId: 77, secretKey: "hex:ffffffff" });
    const long = Buffer.alloc(32, 0x5a);
    const k = parseBackendKeyData(bytes(i32(78), long));
    assert.deepEqual(k.secretKey, long);
    const payload = bytes(i32(78), long);
    const kept = parseBackendKeyData(payload).secretKey;
    payload.fill(0);
    assert.deepEqual(kept, long, "the key is a copy, safe to keep");
    assert.equal(parseReadyForQuery(Buffer.from("E")), "E");
  });

  test("ErrorResponse / NoticeResponse fields, named and unnamed", () => {
    const f = parseNoticeFields(bytes("S", cstr("ERROR"), "V", cstr("ERROR"), "C", cstr("23505"), "M", cstr("dup"), "D", cstr("Key (id)=(1) exists."), "s", cstr("public"), "t", cstr("t"), "n", cstr("t_pkey"), "F", cstr("nbtinsert.c"), "L", cstr("666"), "R", cstr("_bt_check_unique"), "Y", cstr("?"), [0]));
    assert.deepEqual(plain(f), {
      severity: "ERROR",
      severityNonLocalized: "ERROR",
      code: "23505",
      message: "dup",
      detail: "Key (id)=(1) exists.",
      schema: "public",
      table: "t",
      constraint: "t_pkey",
      file: "nbtinsert.c",
      line: "666",
      routine: "_bt_check_unique",
      other: { Y: "?" },
    });
    assert.deepEqual(parseNoticeFields(Buffer.from([0])), { severity: "", code: "", message: "" });
  });

  test("CommandComplete and its row count", () => {
    assert.equal(parseCommandComplete(cstr("INSERT 0 5")), "INSERT 0 5");
    assert.equal(commandTagRows("INSERT 0 5"), 5);
    assert.equal(commandTagRows("UPDATE 12"), 12);
    assert.equal(commandTagRows("SELECT 0"), 0);
    assert.equal(commandTagRows("CREATE TABLE"), null);
  });

  test("RowDescription and DataRow", () => {
    const rd = frames([REPLY]).find((f) => f.type === BackendType.RowDescription)!;
    assert.deepEqual(parseRowDescription(rd.payload), [{ name: "n", tableOid: 0, columnAttr: 0, typeOid: 23, typeSize: 4, typeModifier: -1, format: 0 }]);
    assert.deepEqual(parseRowDescription(bytes(i16(2), cstr("a"), u32(16384), i16(1), u32(25), i16(-1), i32(-1), i16(0), cstr("b"), u32(0), i16(0), u32(1700), i16(-1), i32(655366), i16(1))), [
      { name: "a", tableOid: 16384, columnAttr: 1, typeOid: 25, typeSize: -1, typeModifier: -1, format: 0 },
      { name: "b", tableOid: 0, columnAttr: 0, typeOid: 1700, typeSize: -1, typeModifier: 655366, format: 1 },
    ]);
    assert.deepEqual(plain(parseDataRow(bytes(i16(3), i32(2), "hi", i32(-1), i32(0)))), ["hex:6869", null, "hex:"]);
  });

  test("ParameterDescription, NegotiateProtocolVersion, CopyResponse", () => {
    assert.deepEqual(parseParameterDescription(bytes(i16(2), u32(23), u32(4294967295))), [23, 4294967295]);
    assert.deepEqual(parseNegotiateProtocolVersion(bytes(i32(0), i32(1), cstr("_pq_.x"))), { newestMinor: 0, unrecognizedOptions: ["_pq_.x"] });
    assert.deepEqual(parseCopyResponse(bytes([1], i16(2), i16(1), i16(1))), { format: 1, columnFormats: [1, 1] });
  });

  test("malformed payloads", () => {
    expectError("PG_MESSAGE_TRUNCATED", () => parseAuthentication(Buffer.from([0, 0])));
    expectError("PG_MESSAGE_TRUNCATED", () => parseAuthentication(bytes(i32(5), [1, 2])));
    expectError("PG_MESSAGE_TRAILING_BYTES", () => parseAuthentication(bytes(i32(0), [0])));
    expectError("PG_FIELD_INVALID", () => parseAuthentication(i32(99)));
    expectError("PG_STRING_UNTERMINATED", () => parseAuthentication(bytes(i32(10), "SCRAM")));
    expectError("PG_STRING_UNTERMINATED", () => parseParameterStatus(bytes(cstr("a"), "b")));
    expectError("PG_FIELD_INVALID", () => parseBackendKeyData(bytes(i32(1), [1, 2])));
    expectError("PG_FIELD_INVALID", () => parseReadyForQuery(Buffer.from("Q")));
    expectError("PG_MESSAGE_TRUNCATED", () => parseReadyForQuery(Buffer.alloc(0)));
    expectError("PG_MESSAGE_TRUNCATED", () => parseNoticeFields(bytes("S", cstr("ERROR"))));
    expectError("PG_MESSAGE_TRUNCATED", () => parseRowDescription(bytes(u16(500), cstr("a"))));
    expectError("PG_MESSAGE_TRUNCATED", () => parseDataRow(bytes(i16(1), i32(10), "abc")));
    expectError("PG_FIELD_INVALID", () => parseDataRow(bytes(i16(1), i32(-3))));
    expectError("PG_MESSAGE_TRAILING_BYTES", () => parseDataRow(bytes(i16(0), [1])));
    expectError("PG_MESSAGE_TRUNCATED", () => parseParameterDescription(bytes(i16(2), u32(1))));
    expectError("PG_FIELD_INVALID", () => parseNegotiateProtocolVersion(bytes(i32(0), i32(-1))));
    expectError("PG_MESSAGE_TRUNCATED", () => parseNegotiateProtocolVersion(bytes(i32(0), i32(1000000))));
  });

  test("random payloads throw nothing but ProtocolError", () => {
    const parsers = [
      parseAuthentication,
      parseParameterStatus,
      parseBackendKeyData,
      parseReadyForQuery,
      parseNoticeFields,
      parseCommandComplete,
      parseRowDescription,
      parseDataRow,
      parseParameterDescription,
      parseNegotiateProtocolVersion,
      parseCopyResponse,
    ];
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), (arr) => {
        for (const p of parsers) {
          try {
            p(Buffer.from(arr));
          } catch (e) {
            if (!(e instanceof ProtocolError)) throw e;
          }
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe("round trip: backend writers → BackendFramer → parsers", () => {
  test("every writer with a parser", () => {
    const stream = Buffer.concat([
      w.authenticationSASL(["SCRAM-SHA-256"]),
      w.authenticationSASLContinue("r=abc"),
      w.authenticationSASLFinal("v=xyz"),
      w.authenticationMD5Password(Buffer.from([1, 2, 3, 4])),
      w.authenticationCleartextPassword(),
      w.authenticationOk(),
      w.parameterStatus("application_name", "gatehouse"),
      w.backendKeyData(99, Buffer.alloc(32, 3)),
      w.negotiateProtocolVersion(2, ["_pq_.a"]),
      w.readyForQuery("I"),
      w.parameterDescription([23]),
      w.rowDescription([{ name: "x", typeOid: 25, format: 1 }]),
      w.dataRow(["é", null]),
      w.commandComplete("SELECT 1"),
      w.noticeResponse({ severity: "NOTICE", code: "00000", message: "n", where: "w", other: { Q: "q" } }),
      w.errorResponse({ severity: "FATAL", code: "28P01", message: "bad", hint: "h", position: "3" }),
      w.copyBothResponse(0, [0]),
    ]);
    const fs = frames(splitAt(stream, [3, 50, 51, 52, 200]));
    const p = fs.map((f) => f.payload);
    assert.deepEqual(parseAuthentication(p[0]!), { kind: "SASL", mechanisms: ["SCRAM-SHA-256"] });
    assert.deepEqual(plain(parseAuthentication(p[1]!)), { kind: "SASLContinue", data: `hex:${Buffer.from("r=abc").toString("hex")}` });
    assert.deepEqual(plain(parseAuthentication(p[2]!)), { kind: "SASLFinal", data: `hex:${Buffer.from("v=xyz").toString("hex")}` });
    assert.deepEqual(plain(parseAuthentication(p[3]!)), { kind: "MD5Password", salt: "hex:01020304" });
    assert.deepEqual(parseAuthentication(p[4]!), { kind: "CleartextPassword" });
    assert.deepEqual(parseAuthentication(p[5]!), { kind: "Ok" });
    assert.deepEqual(parseParameterStatus(p[6]!), { name: "application_name", value: "gatehouse" });
    assert.deepEqual(parseBackendKeyData(p[7]!), { processId: 99, secretKey: Buffer.alloc(32, 3) });
    assert.deepEqual(parseNegotiateProtocolVersion(p[8]!), { newestMinor: 2, unrecognizedOptions: ["_pq_.a"] });
    assert.equal(parseReadyForQuery(p[9]!), "I");
    assert.deepEqual(parseParameterDescription(p[10]!), [23]);
    assert.deepEqual(parseRowDescription(p[11]!), [{ name: "x", tableOid: 0, columnAttr: 0, typeOid: 25, typeSize: -1, typeModifier: -1, format: 1 }]);
    assert.deepEqual(plain(parseDataRow(p[12]!)), [`hex:${Buffer.from("é").toString("hex")}`, null]);
    assert.equal(parseCommandComplete(p[13]!), "SELECT 1");
    assert.deepEqual(plain(parseNoticeFields(p[14]!)), { severity: "NOTICE", severityNonLocalized: "NOTICE", code: "00000", message: "n", where: "w", other: { Q: "q" } });
    assert.deepEqual(plain(parseNoticeFields(p[15]!)), { severity: "FATAL", severityNonLocalized: "FATAL", code: "28P01", message: "bad", hint: "h", position: "3" });
    assert.equal(fs[16]!.type, BackendType.CopyBothResponse);
    assert.deepEqual(parseCopyResponse(p[16]!), { format: 0, columnFormats: [0] });
  });

  test("property: ErrorResponse fields survive the round trip", () => {
    const s = fc.string({ unit: "grapheme", maxLength: 30 }).filter((x) => !x.includes("\0"));
    fc.assert(
      fc.property(fc.record({ severity: s, code: s, message: s, detail: fc.option(s, { nil: undefined }), routine: fc.option(s, { nil: undefined }) }, { requiredKeys: ["severity", "code", "message"] }), (f) => {
        const [frame] = frames([w.errorResponse(f)]);
        const expected = Object.fromEntries(Object.entries({ ...f, severityNonLocalized: f.severity }).filter(([, v]) => v !== undefined));
        assert.deepEqual(plain(parseNoticeFields(frame!.payload)), expected);
      }),
      { numRuns: 300 },
    );
  });
});

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { Parser } from "pg-protocol/dist/parser.js";
import * as w from "./backend.ts";
import { ProtocolError } from "./errors.ts";
import { bytes, cstr, i16, i32, typed, u16, u32 } from "./test-support.ts";

// Backend writers: exact bytes for hand-built expectations, and property (c): whatever they
// write, pg-protocol's Parser (node-postgres' independent reader) reads back as the same values.

/** Parse one or more frames with pg-protocol's Parser; returns the messages as plain objects. */
function pgParse(buf: Buffer): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  new Parser().parse(buf, (m) => out.push(m as unknown as Record<string, unknown>));
  return out;
}

function pgParseOne(buf: Buffer): Record<string, unknown> {
  const out = pgParse(buf);
  assert.equal(out.length, 1, "exactly one message");
  return out[0]!;
}

const isWriteInvalid = (e: unknown) => e instanceof ProtocolError && e.code === "PG_WRITE_INVALID";

describe("backend writers: exact bytes", () => {
  const cases: Array<[string, Buffer, Buffer]> = [
    ["AuthenticationOk", w.authenticationOk(), typed("R", i32(0))],
    ["AuthenticationCleartextPassword", w.authenticationCleartextPassword(), typed("R", i32(3))],
    ["AuthenticationMD5Password", w.authenticationMD5Password(Buffer.from([1, 2, 3, 4])), typed("R", i32(5), [1, 2, 3, 4])],
    ["AuthenticationSASL", w.authenticationSASL(["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]), typed("R", i32(10), cstr("SCRAM-SHA-256-PLUS"), cstr("SCRAM-SHA-256"), [0])],
    ["AuthenticationSASLContinue", w.authenticationSASLContinue("r=abc,s=c2FsdA==,i=4096"), typed("R", i32(11), "r=abc,s=c2FsdA==,i=4096")],
    ["AuthenticationSASLFinal", w.authenticationSASLFinal(Buffer.from("v=xyz")), typed("R", i32(12), "v=xyz")],
    ["ParameterStatus", w.parameterStatus("server_version", "17.2"), typed("S", cstr("server_version"), cstr("17.2"))],
    ["BackendKeyData 3.0", w.backendKeyData(4242, 0xdeadbeef), typed("K", i32(4242), u32(0xdeadbeef))],
    ["BackendKeyData 3.2", w.backendKeyData(7, Buffer.alloc(32, 9)), typed("K", i32(7), Buffer.alloc(32, 9))],
    ["ReadyForQuery", w.readyForQuery("T"), typed("Z", "T")],
    ["CommandComplete", w.commandComplete("INSERT 0 1"), typed("C", cstr("INSERT 0 1"))],
    ["EmptyQueryResponse", w.emptyQueryResponse(), typed("I")],
    ["ParseComplete", w.parseComplete(), typed("1")],
    ["BindComplete", w.bindComplete(), typed("2")],
    ["CloseComplete", w.closeComplete(), typed("3")],
    ["NoData", w.noData(), typed("n")],
    ["PortalSuspended", w.portalSuspended(), typed("s")],
    ["ParameterDescription", w.parameterDescription([23, 25, 0xfffffffe]), typed("t", i16(3), u32(23), u32(25), u32(0xfffffffe))],
    ["NegotiateProtocolVersion", w.negotiateProtocolVersion(0, ["_pq_.foo", "_pq_.bar"]), typed("v", i32(0), i32(2), cstr("_pq_.foo"), cstr("_pq_.bar"))],
    ["CopyInResponse", w.copyInResponse(0, [0, 0]), typed("G", [0], i16(2), i16(0), i16(0))],
    ["CopyOutResponse", w.copyOutResponse(1, [1]), typed("H", [1], i16(1), i16(1))],
    ["CopyBothResponse", w.copyBothResponse(0, []), typed("W", [0], i16(0))],
    ["CopyData", w.copyData(Buffer.from("1\n")), typed("d", "1\n")],
    ["CopyDone", w.copyDone(), typed("c")],
    ["DataRow", w.dataRow(["1", null, Buffer.from([0xff]), ""]), typed("D", i16(4), i32(1), "1", i32(-1), i32(1), [0xff], i32(0))],
    [
      "RowDescription",
      w.rowDescription([{ name: "id", tableOid: 16384, columnAttr: 1, typeOid: 23, typeSize: 4, typeModifier: -1, format: 0 }, { name: "x", typeOid: 25 }]),
      typed("T", i16(2), cstr("id"), u32(16384), i16(1), u32(23), i16(4), i32(-1), i16(0), cstr("x"), u32(0), i16(0), u32(25), i16(-1), i32(-1), i16(0)),
    ],
    [
      "ErrorResponse",
      w.errorResponse({ severity: "ERROR", code: "42501", message: "denied", detail: "rule r1", hint: "ask", position: "8" }),
      typed("E", "S", cstr("ERROR"), "V", cstr("ERROR"), "C", cstr("42501"), "M", cstr("denied"), "D", cstr("rule r1"), "H", cstr("ask"), "P", cstr("8"), [0]),
    ],
    [
      "NoticeResponse with V and an unnamed field",
      w.noticeResponse({ severity: "AVIS", severityNonLocalized: "NOTICE", code: "00000", message: "m", other: { Z: "future" } }),
      typed("N", "S", cstr("AVIS"), "V", cstr("NOTICE"), "C", cstr("00000"), "M", cstr("m"), "Z", cstr("future"), [0]),
    ],
  ];
  for (const [name, got, want] of cases) {
    test(name, () => assert.deepEqual(got, want));
  }

  test("SSL and GSSENC replies are single unframed bytes", () => {
    assert.deepEqual(w.sslResponse(true), Buffer.from("S"));
    assert.deepEqual(w.sslResponse(false), Buffer.from("N"));
    assert.deepEqual(w.gssencResponse(true), Buffer.from("G"));
    assert.deepEqual(w.gssencResponse(false), Buffer.from("N"));
    // each call returns a fresh buffer: a caller mutating one cannot corrupt the next reply
    w.sslResponse(true)[0] = 0;
    assert.deepEqual(w.sslResponse(true), Buffer.from("S"));
  });

  test("a NUL in an error text is replaced, never a field boundary", () => {
    const buf = w.errorResponse({ severity: "ERROR", code: "XX000", message: "a\0Mforged" });
    assert.deepEqual(buf, typed("E", "S", cstr("ERROR"), "V", cstr("ERROR"), "C", cstr("XX000"), "M", cstr("a\uFFFDMforged"), [0]));
  });

  test("refuses input that would corrupt framing", () => {
    assert.throws(() => w.parameterStatus("a\0b", "x"), isWriteInvalid);
    assert.throws(() => w.commandComplete("SELECT\x001"), isWriteInvalid);
    assert.throws(() => w.authenticationSASL([]), isWriteInvalid);
    assert.throws(() => w.authenticationSASL([""]), isWriteInvalid);
    assert.throws(() => w.authenticationMD5Password(Buffer.alloc(3)), isWriteInvalid);
    assert.throws(() => w.backendKeyData(1, Buffer.alloc(3)), isWriteInvalid);
    assert.throws(() => w.backendKeyData(1.5, 1), isWriteInvalid);
    assert.throws(() => w.readyForQuery("X" as "I"), isWriteInvalid);
    assert.throws(() => w.rowDescription([{ name: "a", typeOid: -1 }]), isWriteInvalid);
    assert.throws(() => w.dataRow(new Array(70000).fill(null)), isWriteInvalid);
    assert.throws(() => w.copyInResponse(2, []), isWriteInvalid);
    assert.throws(() => w.noticeResponse({ severity: "NOTICE", code: "0", message: "m", other: { M: "dup" } }), isWriteInvalid);
    assert.throws(() => w.noticeResponse({ severity: "NOTICE", code: "0", message: "m", other: { ab: "x" } }), isWriteInvalid);
  });
});

describe("backend writers: property (c), pg-protocol's Parser reads back the same values", () => {
  const noNul = (s: string) => !s.includes("\0");
  const str = fc.string({ unit: "grapheme", maxLength: 40 }).filter(noNul);
  const nonEmpty = str.filter((s) => s !== "");
  const opt = fc.option(str, { nil: undefined });
  const runs = { numRuns: 300 };

  test("authentication requests", () => {
    assert.equal(pgParseOne(w.authenticationOk()).name, "authenticationOk");
    assert.equal(pgParseOne(w.authenticationCleartextPassword()).name, "authenticationCleartextPassword");
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 4, maxLength: 4 }), (salt) => {
        const m = pgParseOne(w.authenticationMD5Password(Buffer.from(salt)));
        assert.equal(m.name, "authenticationMD5Password");
        assert.deepEqual(m.salt, Buffer.from(salt));
      }),
      runs,
    );
    fc.assert(
      fc.property(fc.array(nonEmpty, { minLength: 1, maxLength: 4 }), str, str, (mechs, cont, fin) => {
        assert.deepEqual(pgParseOne(w.authenticationSASL(mechs)).mechanisms, mechs);
        const c = pgParseOne(w.authenticationSASLContinue(cont));
        assert.equal(c.name, "authenticationSASLContinue");
        assert.equal(c.data, cont);
        const f = pgParseOne(w.authenticationSASLFinal(fin));
        assert.equal(f.name, "authenticationSASLFinal");
        assert.equal(f.data, fin);
      }),
      runs,
    );
  });

  test("session setup messages", () => {
    fc.assert(
      fc.property(str, str, fc.integer({ min: 0, max: 0x7fffffff }), fc.integer({ min: 0, max: 0xffffffff }), fc.constantFrom("I" as const, "T" as const, "E" as const), (name, value, pid, key, status) => {
        const ps = pgParseOne(w.parameterStatus(name, value));
        assert.deepEqual([ps.parameterName, ps.parameterValue], [name, value]);
        const k = pgParseOne(w.backendKeyData(pid, key));
        assert.deepEqual([k.processID, k.secretKey], [pid, key | 0]);
        assert.equal(pgParseOne(w.readyForQuery(status)).status, status);
      }),
      runs,
    );
  });

  test("ErrorResponse and NoticeResponse", () => {
    const fields = fc.record(
      {
        severity: fc.constantFrom("ERROR", "FATAL", "WARNING", "NOTICE"),
        code: fc.stringMatching(/^[0-9A-Z]{5}$/),
        message: str,
        detail: opt,
        hint: opt,
        position: opt,
        internalPosition: opt,
        internalQuery: opt,
        where: opt,
        schema: opt,
        table: opt,
        column: opt,
        dataType: opt,
        constraint: opt,
        file: opt,
        line: opt,
        routine: opt,
      },
      { requiredKeys: ["severity", "code", "message"] },
    );
    fc.assert(
      fc.property(fields, fc.boolean(), (f, isError) => {
        const m = pgParseOne(isError ? w.errorResponse(f) : w.noticeResponse(f));
        assert.equal(m.name, isError ? "error" : "notice");
        assert.equal(m.message, f.message);
        for (const k of Object.keys(f) as Array<keyof typeof f>) {
          if (k !== "message") assert.equal(m[k], f[k], k);
        }
      }),
      runs,
    );
  });

  test("query results", () => {
    const field = fc.record({
      name: str,
      tableOid: fc.integer({ min: 0, max: 0xffffffff }),
      columnAttr: fc.integer({ min: -0x8000, max: 0x7fff }),
      typeOid: fc.integer({ min: 0, max: 0xffffffff }),
      typeSize: fc.integer({ min: -0x8000, max: 0x7fff }),
      typeModifier: fc.integer({ min: -0x80000000, max: 0x7fffffff }),
      format: fc.constantFrom(0, 1),
    });
    fc.assert(
      fc.property(fc.array(field, { maxLength: 5 }), fc.array(fc.option(str, { nil: null }), { maxLength: 6 }), str, (fields, row, tag) => {
        const rd = pgParseOne(w.rowDescription(fields));
        assert.deepEqual(
          (rd.fields as Array<Record<string, unknown>>).map((f) => ({ ...f })),
          fields.map((f) => ({
            name: f.name,
            tableID: f.tableOid,
            columnID: f.columnAttr,
            dataTypeID: f.typeOid,
            dataTypeSize: f.typeSize,
            dataTypeModifier: f.typeModifier,
            format: f.format === 0 ? "text" : "binary",
          })),
        );
        assert.deepEqual(pgParseOne(w.dataRow(row)).fields, row);
        assert.equal(pgParseOne(w.commandComplete(tag)).text, tag);
      }),
      runs,
    );
    assert.equal(pgParseOne(w.emptyQueryResponse()).name, "emptyQuery");
  });

  test("extended-protocol acknowledgements and ParameterDescription", () => {
    assert.equal(pgParseOne(w.parseComplete()).name, "parseComplete");
    assert.equal(pgParseOne(w.bindComplete()).name, "bindComplete");
    assert.equal(pgParseOne(w.closeComplete()).name, "closeComplete");
    assert.equal(pgParseOne(w.noData()).name, "noData");
    assert.equal(pgParseOne(w.portalSuspended()).name, "portalSuspended");
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 0xffffffff }), { maxLength: 10 }), (oids) => {
        assert.deepEqual(pgParseOne(w.parameterDescription(oids)).dataTypeIDs, oids);
      }),
      runs,
    );
  });

  test("COPY messages", () => {
    fc.assert(
      fc.property(fc.constantFrom(0, 1), fc.array(fc.constantFrom(0, 1), { maxLength: 6 }), fc.uint8Array({ maxLength: 100 }), (format, cols, data) => {
        for (const [writer, name] of [
          [w.copyInResponse, "copyInResponse"],
          [w.copyOutResponse, "copyOutResponse"],
        ] as const) {
          const m = pgParseOne(writer(format, cols));
          assert.equal(m.name, name);
          assert.equal(m.binary, format === 1);
          assert.deepEqual(m.columnTypes, cols);
        }
        assert.deepEqual(pgParseOne(w.copyData(data)).chunk, Buffer.from(data));
        assert.equal(pgParseOne(w.copyDone()).name, "copyDone");
      }),
      runs,
    );
  });

  test("a concatenated stream of writer output parses frame for frame", () => {
    const frames = [
      w.authenticationOk(),
      w.parameterStatus("client_encoding", "UTF8"),
      w.backendKeyData(1, 2),
      w.readyForQuery("I"),
      w.rowDescription([{ name: "n", typeOid: 23 }]),
      w.dataRow(["1"]),
      w.commandComplete("SELECT 1"),
      w.errorResponse({ severity: "ERROR", code: "42P01", message: "no such table" }),
      w.readyForQuery("E"),
    ];
    const names = pgParse(Buffer.concat(frames)).map((m) => m.name);
    assert.deepEqual(names, ["authenticationOk", "parameterStatus", "backendKeyData", "readyForQuery", "rowDescription", "dataRow", "commandComplete", "error", "readyForQuery"]);
  });

  test("u16 counts: 65535 columns is the most a DataRow can say", () => {
    const buf = w.dataRow(new Array(0xffff).fill(null));
    assert.deepEqual(buf.subarray(5, 7), u16(0xffff));
    assert.deepEqual(buf.subarray(0, 5), bytes("D", i32(4 + 2 + 0xffff * 4)));
  });
});

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { serialize } from "pg-protocol";
import { ProtocolError } from "./errors.ts";
import type { FrontendMessage } from "./frontend.ts";
import { FrontendDecoder, PROTOCOL_3_2, parsePassword, parseSASLInitialResponse } from "./frontend.ts";
import * as fw from "./frontend-writer.ts";
import { bytes, cstr, i32, plain, typed, untyped } from "./test-support.ts";

const isWriteInvalid = (e: unknown) => e instanceof ProtocolError && e.code === "PG_WRITE_INVALID";

function decode(buf: Buffer, typedPhase: boolean): FrontendMessage[] {
  const d = new FrontendDecoder();
  if (typedPhase) d.startupDone();
  return d.push(buf);
}

describe("frontend writers: exact bytes", () => {
  const cases: Array<[string, Buffer, Buffer]> = [
    ["StartupMessage 3.0", fw.startupMessage({ user: "alice", database: "app" }), untyped(i32(196608), cstr("user"), cstr("alice"), cstr("database"), cstr("app"), [0])],
    ["StartupMessage 3.2 from pairs", fw.startupMessage([["user", "bob"]], { protocolVersion: PROTOCOL_3_2 }), untyped(i32(196610), cstr("user"), cstr("bob"), [0])],
    ["SSLRequest", fw.sslRequest(), Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])],
    ["GSSENCRequest", fw.gssencRequest(), Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30])],
    ["CancelRequest 3.0", fw.cancelRequest(4242, 0xdeadbeef), untyped(i32(80877102), i32(4242), [0xde, 0xad, 0xbe, 0xef])],
    ["CancelRequest 3.2", fw.cancelRequest(1, Buffer.alloc(32, 7)), untyped(i32(80877102), i32(1), Buffer.alloc(32, 7))],
    ["PasswordMessage", fw.passwordMessage("s3cret"), typed("p", cstr("s3cret"))],
    ["SASLInitialResponse", fw.saslInitialResponse("SCRAM-SHA-256", "n,,n=,r=abc"), typed("p", cstr("SCRAM-SHA-256"), i32(11), "n,,n=,r=abc")],
    ["SASLInitialResponse without data", fw.saslInitialResponse("SCRAM-SHA-256", null), typed("p", cstr("SCRAM-SHA-256"), i32(-1))],
    ["SASLResponse", fw.saslResponse(Buffer.from("c=biws")), typed("p", "c=biws")],
    ["Query", fw.query("SELECT 1"), typed("Q", cstr("SELECT 1"))],
    ["Sync", fw.sync(), typed("S")],
    ["Flush", fw.flush(), typed("H")],
    ["Terminate", fw.terminate(), typed("X")],
  ];
  for (const [name, got, want] of cases) test(name, () => assert.deepEqual(got, want));

  test("refuses input that would corrupt framing", () => {
    assert.throws(() => fw.query("SELECT 1\0; DROP TABLE t"), isWriteInvalid);
    assert.throws(() => fw.passwordMessage("a\0b"), isWriteInvalid);
    assert.throws(() => fw.startupMessage({ "": "x" }), isWriteInvalid);
    assert.throws(() => fw.startupMessage({ user: "a\0" }), isWriteInvalid);
    assert.throws(() => fw.startupMessage({ user: "x".repeat(10000) }), isWriteInvalid);
    assert.throws(() => fw.startupMessage({ user: "x" }, { protocolVersion: 131072 }), isWriteInvalid);
    assert.throws(() => fw.cancelRequest(1, Buffer.alloc(2)), isWriteInvalid);
    assert.throws(() => fw.cancelRequest(2 ** 40, 1), isWriteInvalid);
  });
});

describe("frontend writers agree with pg-protocol's serializer", () => {
  test("byte for byte where both write the same message", () => {
    assert.deepEqual(fw.sslRequest(), serialize.requestSsl());
    assert.deepEqual(fw.cancelRequest(99, 12345), serialize.cancel(99, 12345));
    assert.deepEqual(fw.passwordMessage("pw"), serialize.password("pw"));
    assert.deepEqual(fw.query("SELECT 'é'"), serialize.query("SELECT 'é'"));
    assert.deepEqual(fw.sync(), serialize.sync());
    assert.deepEqual(fw.flush(), serialize.flush());
    assert.deepEqual(fw.terminate(), serialize.end());
    assert.deepEqual(fw.saslInitialResponse("SCRAM-SHA-256", "n,,n=*,r=x"), serialize.sendSASLInitialResponseMessage("SCRAM-SHA-256", "n,,n=*,r=x"));
    assert.deepEqual(fw.saslResponse("c=biws,r=x,p=y"), serialize.sendSCRAMClientFinalMessage("c=biws,r=x,p=y"));
    // pg-protocol always appends client_encoding=UTF8
    assert.deepEqual(fw.startupMessage({ user: "u", database: "d", client_encoding: "UTF8" }), serialize.startup({ user: "u", database: "d" }));
  });

  test("property: queries and passwords", () => {
    const s = fc.string({ unit: "grapheme", maxLength: 80 }).filter((x) => !x.includes("\0"));
    fc.assert(
      fc.property(s, (x) => {
        assert.deepEqual(fw.query(x), serialize.query(x));
        assert.deepEqual(fw.passwordMessage(x), serialize.password(x));
      }),
      { numRuns: 300 },
    );
  });
});

describe("round trip: frontend writers → FrontendDecoder", () => {
  test("startup-phase packets", () => {
    const [s] = decode(fw.startupMessage({ user: "alice", options: "-c a=b" }, { protocolVersion: PROTOCOL_3_2 }), false);
    assert.ok(s?.type === "StartupMessage");
    assert.deepEqual({ ...s.parameters }, { user: "alice", options: "-c a=b" });
    assert.equal(s.minorVersion, 2);
    const [c] = decode(fw.cancelRequest(5, Buffer.alloc(64, 1)), false);
    assert.deepEqual(plain(c && { ...c, raw: null }), { type: "CancelRequest", processId: 5, secretKey: `hex:${"01".repeat(64)}`, raw: null });
    assert.equal(decode(fw.sslRequest(), false)[0]?.type, "SSLRequest");
    assert.equal(decode(fw.gssencRequest(), false)[0]?.type, "GSSENCRequest");
  });

  test("typed messages", () => {
    const msgs = decode(
      bytes(fw.passwordMessage("tok"), fw.saslInitialResponse("SCRAM-SHA-256", "n,,n=,r=q"), fw.saslResponse("c=biws"), fw.query("SELECT 1"), fw.flush(), fw.sync(), fw.terminate()),
      true,
    );
    assert.deepEqual(
      msgs.map((m) => m.type),
      ["AuthResponse", "AuthResponse", "AuthResponse", "Query", "Flush", "Sync", "Terminate"],
    );
    const [p, i, r, q] = msgs;
    assert.ok(p?.type === "AuthResponse" && i?.type === "AuthResponse" && r?.type === "AuthResponse" && q?.type === "Query");
    assert.equal(parsePassword(p.payload), "tok");
    assert.deepEqual(plain(parseSASLInitialResponse(i.payload)), { mechanism: "SCRAM-SHA-256", data: `hex:${Buffer.from("n,,n=,r=q").toString("hex")}` });
    assert.equal(r.payload.toString(), "c=biws");
    assert.equal(q.query, "SELECT 1");
  });

  test("property: StartupMessage parameters survive the round trip", () => {
    const s = fc.string({ unit: "grapheme", maxLength: 30 }).filter((x) => !x.includes("\0"));
    fc.assert(
      fc.property(fc.dictionary(s.filter((x) => x !== ""), s, { maxKeys: 6 }), (params) => {
        const [m] = decode(fw.startupMessage(params), false);
        assert.ok(m?.type === "StartupMessage");
        assert.deepEqual({ ...m.parameters }, { ...params });
      }),
      { numRuns: 300 },
    );
  });
});

test("parse(): byte-identical to pg-protocol's serializer, and read back by the decoder", () => {
  const frame = fw.parse("s1", "SELECT $1::int", [23, 0]);
  assert.deepEqual(frame, serialize.parse({ name: "s1", text: "SELECT $1::int", types: [23, 0] }));
  const d = new FrontendDecoder();
  d.push(fw.startupMessage({ user: "u" }));
  const [m] = d.push(frame);
  assert.equal(m?.type, "Parse");
  if (m?.type === "Parse") assert.deepEqual([m.name, m.query, m.paramTypes], ["s1", "SELECT $1::int", [23, 0]]);
  assert.throws(() => fw.parse("a\u0000b", "x"), ProtocolError);
});

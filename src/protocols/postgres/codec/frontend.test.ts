import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { serialize } from "pg-protocol";
import type { ProtocolErrorCode } from "./errors.ts";
import { ProtocolError } from "./errors.ts";
import type { FrontendMessage } from "./frontend.ts";
import {
  bindParamFormat,
  FrontendDecoder,
  parsePassword,
  parseSASLInitialResponse,
  parseStartupOptions,
  splitStartupOptions,
  startsWithTlsHandshake,
} from "./frontend.ts";
import { bytes, cstr, i16, i32, plain, splitAt, typed, u16, u32, untyped } from "./test-support.ts";

// ---------------------------------------------------------------------------------------------
// Hand-built frames and what they decode to

const STARTUP = untyped(i32(196608), cstr("user"), cstr("alice"), cstr("database"), cstr("app"), cstr("options"), cstr("-c search_path=s1"), [0]);
const STARTUP_EXPECTED = {
  type: "StartupMessage",
  protocolVersion: 196608,
  majorVersion: 3,
  minorVersion: 0,
  parameters: { user: "alice", database: "app", options: "-c search_path=s1" },
};

const TYPED: Array<[string, Buffer, Record<string, unknown>]> = [
  ["Query", typed("Q", cstr("SELECT 1")), { type: "Query", query: "SELECT 1" }],
  ["Parse", typed("P", cstr("s1"), cstr("SELECT $1::int, $2"), i16(2), u32(23), u32(0xfffffffe)), { type: "Parse", name: "s1", query: "SELECT $1::int, $2", paramTypes: [23, 0xfffffffe] }],
  ["Parse unnamed, no types", typed("P", cstr(""), cstr("SELECT 1"), i16(0)), { type: "Parse", name: "", query: "SELECT 1", paramTypes: [] }],
  [
    "Bind",
    typed("B", cstr("p1"), cstr("s1"), i16(3), i16(0), i16(1), i16(0), i16(3), i32(2), "42", i32(-1), i32(0), i16(1), i16(1)),
    { type: "Bind", portal: "p1", statement: "s1", paramFormats: [0, 1, 0], params: [Buffer.from("42"), null, Buffer.alloc(0)], resultFormats: [1] },
  ],
  ["Bind no params", typed("B", cstr(""), cstr(""), i16(0), i16(0), i16(0)), { type: "Bind", portal: "", statement: "", paramFormats: [], params: [], resultFormats: [] }],
  ["Describe statement", typed("D", "S", cstr("s1")), { type: "Describe", kind: "S", name: "s1" }],
  ["Describe portal", typed("D", "P", cstr("")), { type: "Describe", kind: "P", name: "" }],
  ["Execute", typed("E", cstr("p1"), i32(100)), { type: "Execute", portal: "p1", maxRows: 100 }],
  ["Sync", typed("S"), { type: "Sync" }],
  ["Flush", typed("H"), { type: "Flush" }],
  ["Close statement", typed("C", "S", cstr("s1")), { type: "Close", kind: "S", name: "s1" }],
  ["Close portal", typed("C", "P", cstr("p1")), { type: "Close", kind: "P", name: "p1" }],
  ["CopyData", typed("d", "1\tx\n"), { type: "CopyData", data: Buffer.from("1\tx\n") }],
  ["CopyDone", typed("c"), { type: "CopyDone" }],
  ["CopyFail", typed("f", cstr("aborted by user")), { type: "CopyFail", message: "aborted by user" }],
  [
    "FunctionCall",
    typed("F", u32(1598), i16(1), i16(0), i16(2), i32(1), "7", i32(-1), i16(1)),
    { type: "FunctionCall", functionOid: 1598, argFormats: [0], args: [Buffer.from("7"), null], resultFormat: 1 },
  ],
  ["AuthResponse", typed("p", cstr("secret")), { type: "AuthResponse", payload: cstr("secret") }],
  ["Terminate", typed("X"), { type: "Terminate" }],
];

function strip(m: FrontendMessage): unknown {
  const { raw: _raw, ...rest } = m;
  return plain(rest);
}

function decodeAll(chunks: Buffer[], typedPhase = false): FrontendMessage[] {
  const d = new FrontendDecoder();
  if (typedPhase) d.startupDone();
  const out: FrontendMessage[] = [];
  for (const c of chunks) out.push(...d.push(c));
  return out;
}

function expectError(code: ProtocolErrorCode, fn: () => unknown): ProtocolError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof ProtocolError, `expected ProtocolError ${code}, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  return caught;
}

function typedDecoder(opts?: ConstructorParameters<typeof FrontendDecoder>[0]): FrontendDecoder {
  const d = new FrontendDecoder(opts);
  d.startupDone();
  return d;
}

// ---------------------------------------------------------------------------------------------

describe("FrontendDecoder: startup phase", () => {
  test("SSLRequest is the 8 bytes libpq sends", () => {
    const raw = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
    const d = new FrontendDecoder();
    const [m, ...rest] = d.push(raw);
    assert.equal(rest.length, 0);
    assert.deepEqual(plain(m), { type: "SSLRequest", raw: `hex:${raw.toString("hex")}` });
    assert.equal(d.phase, "startup");
  });

  test("GSSENCRequest, then SSLRequest, then StartupMessage", () => {
    const d = new FrontendDecoder();
    assert.equal(d.push(Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30]))[0]?.type, "GSSENCRequest");
    assert.equal(d.push(untyped(i32(80877103)))[0]?.type, "SSLRequest");
    const [m] = d.push(STARTUP);
    assert.deepEqual(strip(m!), STARTUP_EXPECTED);
    assert.equal(d.phase, "typed");
  });

  test("StartupMessage 3.0 and 3.2, parameters in a null-prototype record", () => {
    const [m] = decodeAll([STARTUP]);
    assert.equal(m?.type, "StartupMessage");
    if (m?.type !== "StartupMessage") return;
    assert.equal(Object.getPrototypeOf(m.parameters), null);
    assert.deepEqual(m.raw, STARTUP);
    const v32 = untyped(i32(196610), cstr("user"), cstr("bob"), cstr("_pq_.test"), cstr("1"), [0]);
    const [n] = decodeAll([v32]);
    assert.deepEqual(strip(n!), { type: "StartupMessage", protocolVersion: 196610, majorVersion: 3, minorVersion: 2, parameters: { user: "bob", "_pq_.test": "1" } });
  });

  test("StartupMessage: repeated parameter keeps the last value; __proto__ is just a name", () => {
    const raw = untyped(i32(196608), cstr("user"), cstr("a"), cstr("__proto__"), cstr("x"), cstr("user"), cstr("b"), [0]);
    const [m] = decodeAll([raw]);
    assert.ok(m?.type === "StartupMessage");
    assert.equal(m.parameters["user"], "b");
    assert.deepEqual(Object.entries(m.parameters), [
      ["user", "b"],
      ["__proto__", "x"],
    ]);
  });

  test("StartupMessage with no parameters at all", () => {
    const [m] = decodeAll([untyped(i32(196608), [0])]);
    assert.ok(m?.type === "StartupMessage");
    assert.deepEqual({ ...m.parameters }, {});
  });

  test("CancelRequest with a 4-byte key (3.0) and longer keys (3.2)", () => {
    const [a] = decodeAll([untyped(i32(80877102), i32(4242), i32(-559038737))]);
    assert.deepEqual(strip(a!), { type: "CancelRequest", processId: 4242, secretKey: "hex:deadbeef" });
    const key = Buffer.alloc(32, 0xab);
    const [b] = decodeAll([untyped(i32(80877102), i32(7), key)]);
    assert.deepEqual(strip(b!), { type: "CancelRequest", processId: 7, secretKey: `hex:${key.toString("hex")}` });
    const [c] = decodeAll([untyped(i32(80877102), i32(7), Buffer.alloc(256, 1))]);
    assert.equal(c?.type === "CancelRequest" && c.secretKey.length, 256);
  });

  test("startup then typed phase in one chunk", () => {
    const chunk = bytes(STARTUP, typed("Q", cstr("SELECT 1")), typed("X"));
    const msgs = decodeAll([chunk]);
    assert.deepEqual(
      msgs.map((m) => m.type),
      ["StartupMessage", "Query", "Terminate"],
    );
  });

  test("startupDone() switches to the typed phase without a StartupMessage", () => {
    const d = new FrontendDecoder();
    d.startupDone();
    assert.equal(d.phase, "typed");
    assert.equal(d.push(typed("S"))[0]?.type, "Sync");
  });
});

describe("FrontendDecoder: typed messages", () => {
  for (const [name, frame, expected] of TYPED) {
    test(`${name} decodes, raw is the whole frame`, () => {
      const msgs = decodeAll([frame], true);
      assert.equal(msgs.length, 1);
      assert.deepEqual(strip(msgs[0]!), plain(expected));
      assert.deepEqual(msgs[0]!.raw, frame);
    });
  }

  test("many messages in one chunk keep their order", () => {
    const chunk = Buffer.concat(TYPED.map(([, f]) => f));
    const msgs = decodeAll([chunk], true);
    assert.deepEqual(msgs.map(strip), TYPED.map(([, , e]) => plain(e)));
  });

  test("a message wholly inside a chunk is a view of it (no copy), fields too", () => {
    const bind = TYPED.find(([n]) => n === "Bind")![1];
    const chunk = bytes(typed("S"), bind, typed("S"));
    const [, m] = decodeAll([chunk], true);
    assert.ok(m?.type === "Bind");
    assert.equal(m.raw.buffer, chunk.buffer);
    assert.equal(m.raw.byteOffset, chunk.byteOffset + 5);
    assert.equal(m.params[0]!.buffer, chunk.buffer);
  });

  test("a message spanning chunks is assembled into its own buffer", () => {
    const frame = typed("Q", cstr("SELECT 42"));
    const [m] = decodeAll([frame.subarray(0, 7), frame.subarray(7)], true);
    assert.ok(m?.type === "Query");
    assert.equal(m.query, "SELECT 42");
    assert.deepEqual(m.raw, frame);
  });

  test("bindParamFormat applies 0, 1 or n format codes", () => {
    assert.equal(bindParamFormat({ paramFormats: [] }, 3), 0);
    assert.equal(bindParamFormat({ paramFormats: [1] }, 3), 1);
    assert.equal(bindParamFormat({ paramFormats: [0, 1] }, 1), 1);
  });

  test("invalid UTF-8 decodes lossily by default; strictUtf8 refuses it", () => {
    const frame = typed("Q", bytes("SELECT '", [0xff, 0xfe], "'", [0]));
    const [m] = decodeAll([frame], true);
    assert.ok(m?.type === "Query");
    assert.equal(m.query, "SELECT '\uFFFD\uFFFD'");
    assert.deepEqual(m.raw, frame, "raw bytes are forwarded untouched");
    expectError("PG_INVALID_UTF8", () => typedDecoder({ strictUtf8: true }).push(frame));
    const ok = typed("Q", cstr("SELECT 'é✓'"));
    const [n] = typedDecoder({ strictUtf8: true }).push(ok);
    assert.ok(n?.type === "Query");
    assert.equal(n.query, "SELECT 'é✓'");
  });
});

describe("FrontendDecoder: split reads", () => {
  const stream = bytes(
    STARTUP,
    typed("P", cstr(""), cstr("SELECT abalance FROM pgbench_accounts WHERE aid = $1"), i16(0)),
    typed("B", cstr(""), cstr(""), i16(0), i16(1), i32(5), "12345", i16(0)),
    typed("D", "P", cstr("")),
    typed("E", cstr(""), i32(0)),
    typed("S"),
    typed("Q", cstr("SELECT 'ünïcödé'")),
    typed("X"),
  );
  const whole = decodeAll([stream]).map(strip);

  test("the reference stream decodes to 8 messages", () => {
    assert.equal(whole.length, 8);
  });

  test("split at every byte boundary decodes identically", () => {
    for (let i = 1; i < stream.length; i++) {
      assert.deepEqual(decodeAll(splitAt(stream, [i])).map(strip), whole, `split at ${i}`);
    }
  });

  test("one byte at a time decodes identically", () => {
    const chunks = [...stream].map((b) => Buffer.from([b]));
    assert.deepEqual(decodeAll(chunks).map(strip), whole);
  });

  test("split in the middle of the length field (typed and startup)", () => {
    const q = typed("Q", cstr("SELECT 1"));
    const d = typedDecoder();
    assert.deepEqual(d.push(q.subarray(0, 3)), []);
    assert.equal(d.buffered, 3);
    assert.deepEqual(d.push(q.subarray(3, 4)), []);
    const [m] = d.push(q.subarray(4));
    assert.ok(m?.type === "Query");
    assert.equal(m.query, "SELECT 1");
    assert.equal(d.buffered, 0);
    const s = new FrontendDecoder();
    assert.deepEqual(s.push(STARTUP.subarray(0, 2)), []);
    assert.equal(s.push(STARTUP.subarray(2))[0]?.type, "StartupMessage");
  });

  test("empty chunks are harmless", () => {
    const d = typedDecoder();
    assert.deepEqual(d.push(Buffer.alloc(0)), []);
    const q = typed("S");
    d.push(q.subarray(0, 2));
    assert.deepEqual(d.push(Buffer.alloc(0)), []);
    assert.equal(d.push(q.subarray(2))[0]?.type, "Sync");
  });
});

describe("FrontendDecoder: malformed input", () => {
  const cases: Array<[string, ProtocolErrorCode, Buffer[], boolean]> = [
    // [name, code, chunks, typed phase]
    ["startup length below 8", "PG_STARTUP_LENGTH_INVALID", [bytes(i32(4), i32(196608))], false],
    ["startup length negative", "PG_STARTUP_LENGTH_INVALID", [bytes(i32(-1))], false],
    ["startup length above 10004 fails on the length alone", "PG_STARTUP_LENGTH_INVALID", [i32(10005)], false],
    ["SSLRequest of 12 bytes", "PG_STARTUP_LAYOUT_INVALID", [untyped(i32(80877103), i32(0))], false],
    ["startup without the final terminator", "PG_STARTUP_LAYOUT_INVALID", [untyped(i32(196608), cstr("user"), cstr("a"))], false],
    ["startup with a byte after the terminator", "PG_STARTUP_LAYOUT_INVALID", [untyped(i32(196608), cstr("user"), cstr("a"), [0, 0])], false],
    ["startup with a parameter name and no value", "PG_STRING_UNTERMINATED", [untyped(i32(196608), cstr("user"), "a")], false],
    ["startup parameter name without NUL", "PG_STRING_UNTERMINATED", [untyped(i32(196608), "user")], false],
    ["protocol 2.0", "PG_PROTOCOL_UNSUPPORTED", [untyped(i32(131072), [0])], false],
    ["unknown request code", "PG_PROTOCOL_UNSUPPORTED", [untyped(i32(80877199))], false],
    ["CancelRequest with a 2-byte key", "PG_CANCEL_KEY_INVALID", [untyped(i32(80877102), i32(1), [1, 2])], false],
    ["CancelRequest without a key", "PG_CANCEL_KEY_INVALID", [untyped(i32(80877102), i32(1))], false],
    ["CancelRequest with a 257-byte key", "PG_CANCEL_KEY_INVALID", [untyped(i32(80877102), i32(1), Buffer.alloc(257))], false],
    ["two SSLRequests", "PG_NEGOTIATION_REPEATED", [untyped(i32(80877103)), untyped(i32(80877103))], false],
    ["data pipelined after SSLRequest", "PG_DATA_AFTER_ENCRYPTION_REQUEST", [bytes(untyped(i32(80877103)), STARTUP)], false],
    ["one byte after GSSENCRequest", "PG_DATA_AFTER_ENCRYPTION_REQUEST", [bytes(untyped(i32(80877104)), [0])], false],
    ["data after CancelRequest", "PG_DATA_AFTER_END", [untyped(i32(80877102), i32(1), i32(2)), [0]].map((p) => bytes(p)), false],
    ["data after Terminate", "PG_DATA_AFTER_END", [bytes(typed("X"), typed("S"))], true],
    ["unknown type fails on its first byte", "PG_MESSAGE_TYPE_UNKNOWN", [bytes("Z")], true],
    ["a server's message type from a client", "PG_MESSAGE_TYPE_UNKNOWN", [typed("R", i32(0))], true],
    ["length 3", "PG_MESSAGE_LENGTH_INVALID", [bytes("Q", i32(3))], true],
    ["negative length", "PG_MESSAGE_LENGTH_INVALID", [bytes("Q", i32(-5))], true],
    ["Sync longer than PostgreSQL allows, on the header alone", "PG_MESSAGE_TOO_LARGE", [bytes("S", i32(10001))], true],
    ["password longer than 65535, on the header alone", "PG_MESSAGE_TOO_LARGE", [bytes("p", i32(65536))], true],
    ["Query above the 64 MiB default, on the header alone", "PG_MESSAGE_TOO_LARGE", [bytes("Q", i32(64 * 1024 * 1024 + 1))], true],
    ["Query without NUL", "PG_STRING_UNTERMINATED", [typed("Q", "SELECT 1")], true],
    ["Query with bytes after its NUL", "PG_MESSAGE_TRAILING_BYTES", [typed("Q", cstr("SELECT 1"), "x")], true],
    ["Query with an embedded NUL", "PG_MESSAGE_TRAILING_BYTES", [typed("Q", cstr("SELECT 1"), cstr("; DROP TABLE t"))], true],
    ["Sync with a body", "PG_MESSAGE_TRAILING_BYTES", [typed("S", [0])], true],
    ["Parse whose type count overruns", "PG_MESSAGE_TRUNCATED", [typed("P", cstr(""), cstr("q"), i16(3), u32(23))], true],
    ["Parse without its type count", "PG_MESSAGE_TRUNCATED", [typed("P", cstr(""), cstr("q"))], true],
    ["Bind whose parameter overruns", "PG_MESSAGE_TRUNCATED", [typed("B", cstr(""), cstr(""), i16(0), i16(1), i32(100), "ab", i16(0))], true],
    ["Bind whose parameter count overruns", "PG_MESSAGE_TRUNCATED", [typed("B", cstr(""), cstr(""), i16(0), u16(0xffff), i32(-1))], true],
    ["Bind without result formats", "PG_MESSAGE_TRUNCATED", [typed("B", cstr(""), cstr(""), i16(0), i16(0))], true],
    ["Bind with parameter length -2", "PG_FIELD_INVALID", [typed("B", cstr(""), cstr(""), i16(0), i16(1), i32(-2), i16(0))], true],
    ["Bind with 2 formats for 3 parameters", "PG_FIELD_INVALID", [typed("B", cstr(""), cstr(""), i16(2), i16(0), i16(0), i16(3), i32(-1), i32(-1), i32(-1), i16(0))], true],
    ["Describe of kind 'X'", "PG_FIELD_INVALID", [typed("D", "X", cstr(""))], true],
    ["Close without a kind", "PG_MESSAGE_TRUNCATED", [typed("C")], true],
    ["Execute without a row limit", "PG_MESSAGE_TRUNCATED", [typed("E", cstr(""), [0, 0])], true],
    ["FunctionCall with 2 formats for 1 argument", "PG_FIELD_INVALID", [typed("F", u32(1), i16(2), i16(0), i16(0), i16(1), i32(-1), i16(0))], true],
  ];
  for (const [name, code, chunks, typedPhase] of cases) {
    test(`${name} → ${code}`, () => {
      const d = typedPhase ? typedDecoder() : new FrontendDecoder();
      expectError(code, () => {
        for (const c of chunks) d.push(c);
      });
    });
  }

  test("maxMessageBytes lowers the limit for Query/Parse/Bind/CopyData", () => {
    const d = typedDecoder({ maxMessageBytes: 100 });
    d.push(typed("Q", cstr("x".repeat(90))));
    expectError("PG_MESSAGE_TOO_LARGE", () => d.push(bytes("d", i32(101))));
  });

  test("after a ProtocolError every later push rethrows the same error", () => {
    const d = typedDecoder();
    const e = expectError("PG_MESSAGE_TYPE_UNKNOWN", () => d.push(bytes(typed("S"), "Z")));
    assert.throws(() => d.push(typed("S")), (x) => x === e);
  });

  test("option validation", () => {
    assert.throws(() => new FrontendDecoder({ maxMessageBytes: 2 ** 31 }), RangeError);
    assert.throws(() => new FrontendDecoder({ maxAuthMessageBytes: 1 }), RangeError);
  });
});

describe("password-family helpers", () => {
  test("parsePassword reads one C string filling the payload", () => {
    assert.equal(parsePassword(cstr("eyJhbGciOi.token")), "eyJhbGciOi.token");
    assert.equal(parsePassword(cstr("")), "");
    expectError("PG_STRING_UNTERMINATED", () => parsePassword(Buffer.from("abc")));
    expectError("PG_MESSAGE_TRAILING_BYTES", () => parsePassword(bytes(cstr("abc"), "d")));
  });

  test("parseSASLInitialResponse reads mechanism, length and data", () => {
    const data = "n,,n=,r=rOprNGfwEbeRWgbNEkqO";
    assert.deepEqual(plain(parseSASLInitialResponse(bytes(cstr("SCRAM-SHA-256"), i32(data.length), data))), {
      mechanism: "SCRAM-SHA-256",
      data: `hex:${Buffer.from(data).toString("hex")}`,
    });
    assert.deepEqual(parseSASLInitialResponse(bytes(cstr("SCRAM-SHA-256"), i32(-1))), { mechanism: "SCRAM-SHA-256", data: null });
    expectError("PG_MESSAGE_TRUNCATED", () => parseSASLInitialResponse(bytes(cstr("SCRAM-SHA-256"), i32(10), "abc")));
    expectError("PG_MESSAGE_TRAILING_BYTES", () => parseSASLInitialResponse(bytes(cstr("SCRAM-SHA-256"), i32(1), "ab")));
    expectError("PG_FIELD_INVALID", () => parseSASLInitialResponse(bytes(cstr("SCRAM-SHA-256"), i32(-2))));
    expectError("PG_MESSAGE_TRUNCATED", () => parseSASLInitialResponse(cstr("SCRAM-SHA-256")));
  });

  test("the 'p' frame's payload is what the helpers read", () => {
    const data = "n,,n=,r=abc";
    const [m] = decodeAll([typed("p", cstr("SCRAM-SHA-256"), i32(data.length), data)], true);
    assert.ok(m?.type === "AuthResponse");
    assert.equal(parseSASLInitialResponse(m.payload).data?.toString(), data);
  });
});

describe("startup options", () => {
  test("splitStartupOptions follows pg_split_opts (whitespace, backslash escapes)", () => {
    assert.deepEqual(splitStartupOptions("  -c a=b   -c\tx=y\\ z  "), ["-c", "a=b", "-c", "x=y z"]);
    assert.deepEqual(splitStartupOptions("--search-path=a\\\\b"), ["--search-path=a\\b"]);
    assert.deepEqual(splitStartupOptions(""), []);
  });

  test("parseStartupOptions extracts settings and reports everything else", () => {
    assert.deepEqual(parseStartupOptions("-c search_path=x -cstatement_timeout=5 --work-mem=64MB -e -c oops"), {
      settings: [
        ["search_path", "x"],
        ["statement_timeout", "5"],
        ["work_mem", "64MB"],
      ],
      other: ["-e", "-c", "oops"],
    });
  });

  test("startsWithTlsHandshake spots a direct-TLS ClientHello", () => {
    assert.equal(startsWithTlsHandshake(Buffer.from([0x16, 0x03, 0x01])), true);
    assert.equal(startsWithTlsHandshake(STARTUP), false);
    assert.equal(startsWithTlsHandshake(Buffer.alloc(0)), false);
  });
});

describe("cross-check: pg-protocol's serializer (an independent writer) decodes as expected", () => {
  test("extended-protocol messages", () => {
    const chunk = Buffer.concat([
      serialize.parse({ name: "st", text: "SELECT $1, $2", types: [23, 25] }),
      serialize.bind({ portal: "po", statement: "st", values: ["1", null, Buffer.from([1, 2])], binary: true }),
      serialize.describe({ type: "P", name: "po" }),
      serialize.execute({ portal: "po", rows: 10 }),
      serialize.close({ type: "S", name: "st" }),
      serialize.flush(),
      serialize.sync(),
      serialize.query("SELECT 'x'"),
      serialize.copyData(Buffer.from("a\tb\n")),
      serialize.copyDone(),
      serialize.copyFail("nope"),
      serialize.password("pw"),
      serialize.end(),
    ]);
    assert.deepEqual(decodeAll([chunk], true).map(strip), [
      { type: "Parse", name: "st", query: "SELECT $1, $2", paramTypes: [23, 25] },
      { type: "Bind", portal: "po", statement: "st", paramFormats: [0, 0, 1], params: ["hex:31", null, "hex:0102"], resultFormats: [1] },
      { type: "Describe", kind: "P", name: "po" },
      { type: "Execute", portal: "po", maxRows: 10 },
      { type: "Close", kind: "S", name: "st" },
      { type: "Flush" },
      { type: "Sync" },
      { type: "Query", query: "SELECT 'x'" },
      { type: "CopyData", data: "hex:6109620a" },
      { type: "CopyDone" },
      { type: "CopyFail", message: "nope" },
      { type: "AuthResponse", payload: "hex:707700" },
      { type: "Terminate" },
    ]);
  });

  test("startup-phase packets", () => {
    assert.equal(decodeAll([serialize.requestSsl()])[0]?.type, "SSLRequest");
    assert.deepEqual(strip(decodeAll([serialize.cancel(99, 12345)])[0]!), { type: "CancelRequest", processId: 99, secretKey: "hex:00003039" });
    assert.deepEqual(strip(decodeAll([serialize.startup({ user: "u", database: "d" })])[0]!), {
      type: "StartupMessage",
      protocolVersion: 196608,
      majorVersion: 3,
      minorVersion: 0,
      parameters: { user: "u", database: "d", client_encoding: "UTF8" },
    });
  });

  test("SASL messages", () => {
    const [a, b] = decodeAll([serialize.sendSASLInitialResponseMessage("SCRAM-SHA-256", "n,,n=*,r=abc"), serialize.sendSCRAMClientFinalMessage("c=biws,r=abcdef,p=xyz")], true);
    assert.ok(a?.type === "AuthResponse" && b?.type === "AuthResponse");
    const init = parseSASLInitialResponse(a.payload);
    assert.equal(init.mechanism, "SCRAM-SHA-256");
    assert.equal(init.data?.toString(), "n,,n=*,r=abc");
    assert.equal(b.payload.toString(), "c=biws,r=abcdef,p=xyz");
  });
});

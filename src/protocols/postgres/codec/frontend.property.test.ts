import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { ProtocolError } from "./errors.ts";
import type { FrontendMessage } from "./frontend.ts";
import { FrontendDecoder, parsePassword, parseSASLInitialResponse } from "./frontend.ts";
import { bytes, cstr, i16, i32, plain, splitAt, typed, u16, u32, untyped } from "./test-support.ts";

// Arbitrary messages, each built by hand with the test byte builders alongside the value it must
// decode to.

interface Sample {
  bytes: Buffer;
  expected: Record<string, unknown>;
}

const noNul = (s: string) => !s.includes("\0");
const name = fc.string({ unit: "grapheme", maxLength: 12 }).filter(noNul);
const text = fc.string({ unit: "grapheme", maxLength: 120 }).filter(noNul);
const blob = fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a));
const value = fc.option(blob, { nil: null });
const int16 = fc.integer({ min: -0x8000, max: 0x7fff });
const int32 = fc.integer({ min: -0x80000000, max: 0x7fffffff });
const oid = fc.integer({ min: 0, max: 0xffffffff });
const kind = fc.constantFrom("S" as const, "P" as const);

/** Values plus a format list of length 0, 1 or n, as the protocol allows. */
const valuesWithFormats = fc.array(value, { maxLength: 6 }).chain((values) =>
  fc
    .oneof(fc.constant([] as number[]), fc.array(int16, { minLength: 1, maxLength: 1 }), fc.array(int16, { minLength: values.length, maxLength: values.length }))
    .map((formats) => ({ values, formats })),
);

function valuesBytes(values: Array<Buffer | null>): Buffer {
  return bytes(u16(values.length), ...values.map((v) => (v === null ? i32(-1) : bytes(i32(v.length), v))));
}

function formatsBytes(formats: number[]): Buffer {
  return bytes(u16(formats.length), ...formats.map(i16));
}

const message: fc.Arbitrary<Sample> = fc.oneof(
  text.map((query) => ({ bytes: typed("Q", cstr(query)), expected: { type: "Query", query } })),
  fc.tuple(name, text, fc.array(oid, { maxLength: 5 })).map(([n, query, paramTypes]) => ({
    bytes: typed("P", cstr(n), cstr(query), u16(paramTypes.length), ...paramTypes.map(u32)),
    expected: { type: "Parse", name: n, query, paramTypes },
  })),
  fc.tuple(name, name, valuesWithFormats, fc.array(int16, { maxLength: 4 })).map(([portal, statement, { values, formats }, resultFormats]) => ({
    bytes: typed("B", cstr(portal), cstr(statement), formatsBytes(formats), valuesBytes(values), formatsBytes(resultFormats)),
    expected: { type: "Bind", portal, statement, paramFormats: formats, params: values, resultFormats },
  })),
  fc.tuple(kind, name).map(([k, n]) => ({ bytes: typed("D", k, cstr(n)), expected: { type: "Describe", kind: k, name: n } })),
  fc.tuple(kind, name).map(([k, n]) => ({ bytes: typed("C", k, cstr(n)), expected: { type: "Close", kind: k, name: n } })),
  fc.tuple(name, int32).map(([portal, maxRows]) => ({ bytes: typed("E", cstr(portal), i32(maxRows)), expected: { type: "Execute", portal, maxRows } })),
  fc.constant({ bytes: typed("S"), expected: { type: "Sync" } }),
  fc.constant({ bytes: typed("H"), expected: { type: "Flush" } }),
  blob.map((data) => ({ bytes: typed("d", data), expected: { type: "CopyData", data } })),
  fc.constant({ bytes: typed("c"), expected: { type: "CopyDone" } }),
  text.map((m) => ({ bytes: typed("f", cstr(m)), expected: { type: "CopyFail", message: m } })),
  fc.tuple(oid, valuesWithFormats, int16).map(([functionOid, { values, formats }, resultFormat]) => ({
    bytes: typed("F", u32(functionOid), formatsBytes(formats), valuesBytes(values), i16(resultFormat)),
    expected: { type: "FunctionCall", functionOid, argFormats: formats, args: values, resultFormat },
  })),
  blob.map((payload) => ({ bytes: typed("p", payload), expected: { type: "AuthResponse", payload } })),
);

const startup: fc.Arbitrary<Sample> = fc
  .tuple(fc.constantFrom(196608, 196610), fc.uniqueArray(fc.tuple(name.filter((s) => s !== ""), text), { maxLength: 4, selector: ([k]) => k }))
  .map(([version, params]) => ({
    bytes: untyped(i32(version), ...params.flatMap(([k, v]) => [cstr(k), cstr(v)]), [0]),
    expected: {
      type: "StartupMessage",
      protocolVersion: version,
      majorVersion: 3,
      minorVersion: version & 0xffff,
      parameters: Object.fromEntries(params),
    },
  }));

const stream = fc.tuple(startup, fc.array(message, { maxLength: 12 }), fc.boolean()).map(([s, msgs, end]) => {
  const all = [s, ...msgs, ...(end ? [{ bytes: typed("X"), expected: { type: "Terminate" } }] : [])];
  return { bytes: Buffer.concat(all.map((m) => m.bytes)), expected: all.map((m) => plain(m.expected)) };
});

function decode(chunks: Buffer[], d = new FrontendDecoder()): FrontendMessage[] {
  const out: FrontendMessage[] = [];
  for (const c of chunks) out.push(...d.push(c));
  return out;
}

const strip = (m: FrontendMessage) => {
  const { raw: _raw, ...rest } = m;
  return plain(rest);
};

/** Run fn; anything thrown must be a ProtocolError. */
function onlyProtocolErrors(fn: () => void): void {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof ProtocolError)) throw e;
  }
}

describe("FrontendDecoder properties", () => {
  test("(a) a valid stream decodes to the values it was built from, however it is split", () => {
    fc.assert(
      fc.property(stream, fc.array(fc.nat(), { maxLength: 20 }), (s, cuts) => {
        const whole = decode([s.bytes]);
        assert.deepEqual(whole.map(strip), s.expected);
        const chunks = splitAt(
          s.bytes,
          cuts.map((c) => c % (s.bytes.length + 1)),
        );
        const parts = decode(chunks);
        assert.deepEqual(parts.map(strip), s.expected);
        assert.deepEqual(
          parts.map((m) => m.raw),
          whole.map((m) => m.raw),
        );
        // raw frames tile the stream exactly
        assert.deepEqual(Buffer.concat(parts.map((m) => m.raw)), s.bytes);
      }),
      { numRuns: 500 },
    );
  });

  test("(b) random bytes throw nothing but ProtocolError, in either phase, however split", { timeout: 60_000 }, () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), fc.array(fc.nat(), { maxLength: 8 }), fc.boolean(), (arr, cuts, typedPhase) => {
        const buf = Buffer.from(arr);
        const d = new FrontendDecoder();
        if (typedPhase) d.startupDone();
        onlyProtocolErrors(() => decode(splitAt(buf, cuts), d));
      }),
      { numRuns: 2000 },
    );
  });

  test("(b) random bodies inside valid framing throw nothing but ProtocolError", { timeout: 60_000 }, () => {
    const types = [..."QPBDESHCdcfXFp"];
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.constantFrom(...types), fc.uint8Array({ maxLength: 60 })), { maxLength: 6 }), (frames) => {
        const buf = Buffer.concat(frames.map(([t, body]) => typed(t, body)));
        const d = new FrontendDecoder();
        d.startupDone();
        onlyProtocolErrors(() => decode([buf], d));
      }),
      { numRuns: 3000 },
    );
  });

  test("(b) random startup packet bodies throw nothing but ProtocolError", () => {
    const codes = [196608, 196610, 80877102, 80877103, 80877104, 131072];
    fc.assert(
      fc.property(fc.constantFrom(...codes), fc.uint8Array({ maxLength: 80 }), (code, body) => {
        onlyProtocolErrors(() => decode([untyped(i32(code), body)]));
      }),
      { numRuns: 2000 },
    );
  });

  test("(b) a valid stream with corrupted bytes throws nothing but ProtocolError", { timeout: 60_000 }, () => {
    fc.assert(
      fc.property(stream, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }), fc.nat(), (s, flips, cut) => {
        const buf = Buffer.from(s.bytes);
        for (const [at, b] of flips) buf[at % buf.length] = b;
        onlyProtocolErrors(() => decode(splitAt(buf, [cut % (buf.length + 1)])));
      }),
      { numRuns: 1000 },
    );
  });

  test("(b) password-family helpers on random payloads throw nothing but ProtocolError", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 60 }), (arr) => {
        const buf = Buffer.from(arr);
        onlyProtocolErrors(() => parsePassword(buf));
        onlyProtocolErrors(() => parseSASLInitialResponse(buf));
      }),
      { numRuns: 2000 },
    );
  });

  test("a length beyond the limit fails on the header, before its body arrives", () => {
    fc.assert(
      fc.property(fc.constantFrom(..."QPBdF"), fc.integer({ min: 64 * 1024 * 1024 + 1, max: 0x7fffffff }), (t, len) => {
        const d = new FrontendDecoder();
        d.startupDone();
        assert.throws(
          () => d.push(bytes(t, i32(len))),
          (e: unknown) => e instanceof ProtocolError && e.code === "PG_MESSAGE_TOO_LARGE",
        );
      }),
    );
  });
});

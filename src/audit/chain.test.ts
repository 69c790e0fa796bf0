// The chain format must never change: canonicalJson and hashEvent are checked byte for byte
// against the original implementation (kept below verbatim as the reference) on generated inputs —
// every JSON shape, hostile strings (quotes, control characters, lone surrogates), undefined
// properties, sparse arrays, Dates, Maps, boxed values — and against fixed vectors, so that a
// change to both implementations at once is caught too.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, test } from "node:test";
import fc from "fast-check";
import { type AuditRecord, canonicalJson, GENESIS_HASH, hashEvent, sha256Hex } from "./chain.ts";

// ---- the reference: chain.ts as it was when the first chains were written ----

function refCanonicalJson(v: unknown): string {
  if (v === null || typeof v !== "object") return JSON.stringify(v) ?? "null";
  if (Array.isArray(v)) return `[${v.map(refCanonicalJson).join(",")}]`;
  const entries = Object.entries(v as Record<string, unknown>)
    .filter(([, x]) => x !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, x]) => `${JSON.stringify(k)}:${refCanonicalJson(x)}`).join(",")}}`;
}

function refHashEvent(e: Omit<AuditRecord, "hash">): string {
  const body = refCanonicalJson({
    seq: e.seq,
    id: e.id,
    at: e.at,
    type: e.type,
    principal_subject: e.principal_subject,
    principal_name: e.principal_name,
    connection: e.connection,
    session_id: e.session_id,
    decision: e.decision,
    rule: e.rule,
    data: e.data,
  });
  return createHash("sha256").update(e.prev_hash).update("\n").update(body).digest("hex");
}

// ---- generators ----

/** Strings made of the characters JSON escaping cares about, and some it must leave alone. */
const hostile = fc.string({ unit: fc.constantFrom('"', "\\", "/", "\u0000", "\b", "\n", "\u001f", "\u007f", "\u2028", "\ud800", "\udbff", "\udc00", "\ud83d\ude00", "é", "a", "Z", "0", " "), maxLength: 12 });
const anyString = fc.oneof(fc.string(), fc.string({ unit: "binary" }), hostile);
const key = fc.oneof(anyString, fc.constantFrom("__proto__", "constructor", "toString", "", "0", "1", "10", "2", "a", "B", "aa", "é", "\ud800"));
const anything = fc.anything({
  key,
  values: [fc.boolean(), fc.integer(), fc.double(), anyString, fc.constant(null), fc.constant(undefined), fc.constant(-0), fc.constant(Number.NaN)],
  maxDepth: 4,
  withBoxedValues: true,
  withMap: true,
  withSet: true,
  withObjectString: true,
  withNullPrototype: true,
  withDate: true,
  withTypedArray: true,
  withSparseArray: true,
  withBigInt: true,
});

/** The same result, or both throw the same kind of error. */
function same<T>(actual: () => T, expected: () => T): void {
  let want: { ok: true; v: T } | { ok: false; e: unknown };
  try {
    want = { ok: true, v: expected() };
  } catch (e) {
    want = { ok: false, e };
  }
  if (want.ok) assert.equal(actual(), want.v);
  else assert.throws(actual, (e: Error) => e.constructor === (want as { e: Error }).e.constructor);
}

const field = fc.oneof(anyString, fc.constant(null), fc.constant(undefined));
const row = fc.record({
  seq: fc.oneof(fc.integer({ min: 0 }), fc.double(), fc.constant(undefined)),
  id: fc.oneof(fc.uuid(), field),
  at: fc.oneof(fc.integer({ min: 0, max: 2 ** 50 }), fc.constant(undefined)),
  type: fc.oneof(fc.constantFrom("operation.decided", "session.started"), anyString),
  principal_subject: field,
  principal_name: field,
  connection: field,
  session_id: field,
  decision: fc.oneof(fc.constantFrom("allow", "deny", "review"), field),
  rule: field,
  data: fc.oneof(fc.json({ maxDepth: 3 }).map((t) => refCanonicalJson(JSON.parse(t))), anyString),
  prev_hash: fc.oneof(fc.stringMatching(/^[0-9a-f]{64}$/), anyString),
}) as fc.Arbitrary<Omit<AuditRecord, "hash">>;

describe("canonical JSON and the event hash are byte-identical to the original", () => {
  test("canonicalJson on generated values of every shape", () => {
    fc.assert(
      fc.property(anything, (v) => same(() => canonicalJson(v), () => refCanonicalJson(v))),
      { numRuns: 5000 },
    );
  });

  test("canonicalJson on JSON values (what event data is)", () => {
    fc.assert(
      fc.property(fc.json({ maxDepth: 5 }), (text) => {
        const v = JSON.parse(text) as unknown;
        assert.equal(canonicalJson(v), refCanonicalJson(v));
      }),
      { numRuns: 3000 },
    );
  });

  test("hashEvent on generated rows, with fields missing, null or odd", () => {
    fc.assert(
      fc.property(row, (r) => same(() => hashEvent(r), () => refHashEvent(r))),
      { numRuns: 5000 },
    );
  });

  test("hashEvent on complete rows (every column present: the common path), escapes included", () => {
    const text = fc.oneof(anyString, fc.constant(null));
    const complete = fc.record({
      seq: fc.oneof(fc.integer({ min: 0 }), fc.double()),
      id: fc.oneof(fc.uuid(), anyString),
      at: fc.oneof(fc.integer({ min: 0, max: 2 ** 50 }), fc.double()),
      type: fc.oneof(fc.constantFrom("operation.decided", "session.started"), anyString),
      principal_subject: text,
      principal_name: text,
      connection: text,
      session_id: text,
      decision: text,
      rule: text,
      data: fc.oneof(fc.json({ maxDepth: 3 }).map((t) => refCanonicalJson(JSON.parse(t))), anyString),
      prev_hash: fc.oneof(fc.stringMatching(/^[0-9a-f]{64}$/), anyString),
    }) as fc.Arbitrary<Omit<AuditRecord, "hash">>;
    fc.assert(
      fc.property(complete, (r) => same(() => hashEvent(r), () => refHashEvent(r))),
      { numRuns: 5000 },
    );
  });

  test("hashEvent ignores anything but its fields (the hash column, extra columns)", () => {
    fc.assert(
      fc.property(row, anyString, (r, extra) => {
        fc.pre(typeof r.prev_hash === "string");
        assert.equal(hashEvent({ ...r, hash: extra, extra } as Omit<AuditRecord, "hash">), refHashEvent(r));
      }),
    );
  });

  test("edge cases by hand: holes, undefined, -0, NaN, Dates, toJSON, boxed values, key order", () => {
    const cases: unknown[] = [
      // biome-ignore lint/suspicious/noSparseArray: holes are part of the format being pinned
      [1, , 3],
      [undefined, null, () => 1, Symbol("s")],
      { b: 1, a: undefined, c: [undefined] },
      { "10": 1, "2": 2, a: 3, A: 4, é: 5, "\ud800": 6, "": 7 },
      -0,
      Number.NaN,
      Number.POSITIVE_INFINITY,
      new Date(0),
      { toJSON: () => "x", a: 1 },
      new String("ab"),
      new Number(3),
      Buffer.from("hi"),
      new Map([[1, 2]]),
      Object.create(null),
      "\u2028\u007f\ud83d\ude00\udc00",
      {},
      [],
    ];
    for (const c of cases) same(() => canonicalJson(c), () => refCanonicalJson(c));
    assert.throws(() => canonicalJson({ n: 1n }), TypeError);
  });

  test("fixed vectors (hashes of existing chains)", () => {
    const r = {
      seq: 42,
      id: "0190f5c4-1c2d-7a3b-8c4d-5e6f708192a3",
      at: 1767225600000,
      type: "operation.decided",
      principal_subject: "urn:gatehouse:dev#agent",
      principal_name: 'Agent "Smith" é😀',
      connection: "warehouse",
      session_id: "5f0c0b7e-0000-4000-8000-000000000001",
      decision: "allow",
      rule: "agents-read",
      data: canonicalJson({ text: "SELECT 1;\n", protocol: "postgres", n: [1, null, { b: 2, a: 1 }] }),
      prev_hash: "ab".repeat(32),
    };
    assert.equal(r.data, '{"n":[1,null,{"a":1,"b":2}],"protocol":"postgres","text":"SELECT 1;\\n"}');
    assert.equal(hashEvent(r), "bcd2d50754f52d8cfd5390a50eacea111572113f05bb9f738ab785d89673f1fa");
    const bare = { ...r, seq: 1, principal_subject: null, principal_name: null, connection: null, session_id: null, decision: null, rule: null, data: "{}", prev_hash: GENESIS_HASH };
    assert.equal(hashEvent(bare), "fe36833b67f38fd207a5d9b2c18f1726616a7e6faa19cdb4653d9ef1c7363de4");
    assert.equal(sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  });
});

// How `json` rule conditions see a body: JSON whatever its label or encoding, certainly-not-JSON,
// or unknown (not judgeable: a target may read it in a way the gate cannot know).

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { duplicateKey, JSON_PARSE_LIMIT, readJsonBody } from "./json-body.ts";

const doc = { spec: { env: "prod", tags: ["a", "b"] }, n: 1 };
const text = JSON.stringify(doc);

describe("JSON bodies for rule conditions", () => {
  test("JSON in any encoding or label a target may accept is parsed", () => {
    const cases: Array<[string, Buffer, string | undefined]> = [
      ["declared", Buffer.from(text), "application/json"],
      ["a +json type", Buffer.from(text), "application/merge-patch+json; charset=utf-8"],
      ["unlabelled", Buffer.from(text), undefined],
      ["text/plain", Buffer.from(` \n${text}`), "text/plain"],
      ["UTF-8 mark", Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(text)]), "application/json"],
      ["UTF-16LE mark", Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, "utf16le")]), "application/json"],
      ["UTF-16BE mark", Buffer.concat([Buffer.from([0xfe, 0xff]), Buffer.from(text, "utf16le").swap16()]), undefined],
      ["UTF-16LE without a mark", Buffer.from(text, "utf16le"), "application/json"],
      ["UTF-16BE by charset", Buffer.from(text, "utf16le").swap16(), "application/json; charset=UTF-16"],
    ];
    for (const [why, body, type] of cases) assert.deepEqual(readJsonBody(body, true, type), { kind: "json", doc }, why);
  });

  test("what certainly is not JSON is not-json; what may be but cannot be judged is unknown", () => {
    assert.equal(readJsonBody(Buffer.from("a=1&b=2"), true, "application/x-www-form-urlencoded").kind, "not-json");
    assert.equal(readJsonBody(Buffer.from([0x89, 0x50, 0x4e, 0x47]), false, "image/png").kind, "not-json", "a binary start, even unread");
    assert.equal(readJsonBody(Buffer.alloc(0), true, "application/json").kind, "not-json", "no body");
    const unknown = (body: Buffer, complete: boolean, type: string | undefined, why: RegExp) => {
      const r = readJsonBody(body, complete, type);
      assert.equal(r.kind, "unknown", why.source);
      assert.match((r as { why: string }).why, why);
    };
    unknown(Buffer.from('{"a":1'), false, undefined, /not read whole/);
    unknown(Buffer.alloc(0), false, "application/json", /not read/);
    unknown(Buffer.from("{'a': 1}"), true, undefined, /not strict JSON/);
    unknown(Buffer.from("[1, 2,]"), true, "application/octet-stream", /not strict JSON/);
    unknown(Buffer.from('{"a":1,"a":2}'), true, "text/plain", /the key "a" appears twice/);
    unknown(Buffer.from([0xff, 0xfe, 0, 0, 0x7b, 0, 0, 0]), true, undefined, /UTF-32/);
    unknown(Buffer.from([0, 0, 0, 0x20, 0, 0, 0, 0x5b]), true, "application/octet-stream", /UTF-32/);
    // Binary formats that start with zero bytes (MP4, ICO) or a brace, and are no text: not JSON.
    assert.equal(readJsonBody(Buffer.from("\u0000\u0000\u0000\u0018ftypmp42isom", "latin1"), true, "video/mp4").kind, "not-json");
    assert.equal(readJsonBody(Buffer.from([0, 0, 1, 0, 1, 0, 16, 16]), true, "image/x-icon").kind, "not-json");
    assert.equal(readJsonBody(Buffer.from([0x7b, 0xff, 0xfe, 0x00, 0x9c]), true, "application/octet-stream").kind, "not-json");
    assert.equal(readJsonBody(Buffer.from([0xef, 0xbb, 0xbf, 0x7b, 0xff, 0x7d]), true, undefined).kind, "not-json", "invalid UTF-8 that is no JSON either");
    // JSON once its invalid bytes are replaced, as lenient parsers do: it cannot be judged.
    unknown(Buffer.concat([Buffer.from('{"action":"delete","x":"'), Buffer.from([0xff]), Buffer.from('"}')]), true, "application/json", /invalid utf-8 replaced/);
    const big = Buffer.from(`{"pad":"${"x".repeat(JSON_PARSE_LIMIT)}"}`);
    unknown(big, true, "application/json", /over \d+ bytes/);
  });

  test("a top-level JSON scalar labelled JSON is parsed; unlabelled it is not-json", () => {
    assert.deepEqual(readJsonBody(Buffer.from('"x"'), true, "application/json"), { kind: "json", doc: "x" });
    assert.equal(readJsonBody(Buffer.from('"x"'), true, "text/plain").kind, "not-json");
  });
});

describe("duplicate keys", () => {
  test("found at any depth, through escapes; equal keys in different objects are not duplicates", () => {
    assert.equal(duplicateKey('{"a":{"b":1,"b":2}}'), "b");
    assert.equal(duplicateKey('{"a\\u0062":1,"ab":2}'), "ab");
    assert.equal(duplicateKey('[{"a":1},{"a":2}]'), undefined);
    assert.equal(duplicateKey('{"a":"a","b":["a","a"],"c":{"a":1}}'), undefined);
    assert.equal(duplicateKey('{"x":"\\"a\\":1","a":2}'), undefined, "a key-like text inside a string is no key");
  });

  test("agrees with a reference on generated documents (property)", () => {
    const key = fc.constantFrom("a", "b", 'q"', "\\", "é", "a\n");
    const value = fc.letrec((tie) => ({
      v: fc.oneof({ depthSize: "small" }, fc.string(), fc.integer(), fc.array(tie("v"), { maxLength: 3 }), tie("o")),
      o: fc.array(fc.tuple(key, tie("v")), { maxLength: 4 }),
    }));
    // Objects written by hand so keys may repeat; the reference finds repeats on the structure.
    type Gen = string | number | Gen[] | [string, Gen][];
    const isObject = (g: Gen): g is [string, Gen][] => Array.isArray(g) && (g as unknown[]).every((e) => Array.isArray(e) && e.length === 2 && typeof e[0] === "string") && (g as unknown[]).length > 0;
    const write = (g: Gen, obj: boolean): string => {
      if (obj) return `{${(g as [string, Gen][]).map(([k, v]) => `${JSON.stringify(k)}:${write(v, isObject(v))}`).join(",")}}`;
      if (Array.isArray(g)) return `[${g.map((x) => write(x, isObject(x))).join(",")}]`;
      return JSON.stringify(g);
    };
    const reference = (g: Gen, obj: boolean): string | undefined => {
      if (obj) {
        const seen = new Set<string>();
        for (const [k, v] of g as [string, Gen][]) {
          if (seen.has(k)) return k;
          seen.add(k);
          const inner = reference(v, isObject(v));
          if (inner !== undefined) return inner;
        }
        return undefined;
      }
      if (Array.isArray(g)) for (const x of g) {
        const inner = reference(x, isObject(x));
        if (inner !== undefined) return inner;
      }
      return undefined;
    };
    fc.assert(
      fc.property(value.o, (o) => {
        const g = o as [string, Gen][];
        const t = write(g, true);
        JSON.parse(t); // valid JSON
        assert.equal(duplicateKey(t) !== undefined, reference(g, true) !== undefined, t);
      }),
      { numRuns: 500 },
    );
  });
});

// The server→client stream's observations, however the bytes are split: the settings the server
// reports (ParameterStatus), how many errors it sent, and each ReadyForQuery — while every byte
// still passes through unchanged.

import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { backend } from "./codec/index.ts";
import { newMarker, ServerStream } from "./server-stream.ts";

const frames = [
  backend.parameterStatus("standard_conforming_strings", "off"),
  backend.errorResponse({ severity: "ERROR", code: "22012", message: "division by zero" }),
  backend.readyForQuery("I"),
  backend.parameterStatus("client_encoding", "SJIS"),
  backend.errorResponse({ severity: "ERROR", code: "42601", message: "syntax error" }),
  backend.readyForQuery("E"),
  backend.readyForQuery("I"),
];
const all = Buffer.concat(frames);

function observe(chunks: Buffer[], withMarker: boolean) {
  const s = new ServerStream();
  if (withMarker) s.expectMarker(newMarker(), backend.errorResponse({ severity: "ERROR", code: "XX000", message: "x" }), 99);
  const seen: string[] = [];
  s.onParameter = (name, value) => seen.push(`${name}=${value} errors=${s.errorCount}`);
  s.onReady = (n, error) => seen.push(`Z${n} errors=${s.errorCount}${error ? " (error in this cycle)" : ""}`);
  const out = Buffer.concat(chunks.flatMap((c) => s.push(c)));
  return { out, seen };
}

const expected = ["standard_conforming_strings=off errors=0", "Z1 errors=1 (error in this cycle)", "client_encoding=SJIS errors=1", "Z2 errors=2 (error in this cycle)", "Z3 errors=2"];

test("settings, errors and ReadyForQuery are seen in order, and the bytes pass unchanged, at any split (property)", () => {
  fc.assert(
    fc.property(fc.uniqueArray(fc.integer({ min: 1, max: all.length - 1 }), { maxLength: 12 }), fc.boolean(), (cuts, withMarker) => {
      const points = [0, ...cuts.sort((a, b) => a - b), all.length];
      const chunks = points.slice(1).map((end, i) => all.subarray(points[i], end));
      const { out, seen } = observe(chunks, withMarker);
      assert.ok(out.equals(all));
      assert.deepEqual(seen, expected);
    }),
    { numRuns: 300 },
  );
  // One byte at a time.
  const { out, seen } = observe([...all].map((b) => Buffer.from([b])), false);
  assert.ok(out.equals(all));
  assert.deepEqual(seen, expected);
});

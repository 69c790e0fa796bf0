// The HTTP engine's pure pieces: the recording's http.exchange event text.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { exchangeJson } from "./engine.ts";

describe("http.exchange recording event", () => {
  test("the text built by hand is exactly JSON.stringify of the event object (property)", () => {
    const text = fc.oneof(fc.string(), fc.string({ unit: "binary" }), fc.constantFrom('"', "\\", "\u2028", "\ud800", "/a b/\u0000", "/ok"));
    fc.assert(
      fc.property(fc.constantFrom("GET", "POST", "DELETE", "PROPFIND"), text, fc.oneof(fc.nat(599), fc.constantFrom(Number.NaN, Number.POSITIVE_INFINITY, -0)), fc.nat(10 ** 9), fc.nat(10 ** 9), fc.nat(10 ** 9), fc.option(fc.nat(1 << 20), { nil: undefined }), fc.option(text, { nil: undefined }), (method, path, status, durationMs, requestBytes, responseBytes, recorded, rule) => {
        const e: Record<string, unknown> = { type: "http.exchange", method, path, status, durationMs, requestBytes, responseBytes };
        if (recorded !== undefined) e.responseBytesRecorded = recorded;
        if (rule !== undefined) {
          e.decision = "allow";
          e.rule = rule;
        }
        assert.equal(exchangeJson(method, path, status, durationMs, requestBytes, responseBytes, recorded, rule), JSON.stringify(e));
      }),
      { numRuns: 500 },
    );
  });
});

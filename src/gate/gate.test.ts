// The gate's audit payload: the hand-built JSON of an HTTP operation is exactly the general form.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { canonicalJson } from "../audit/chain.ts";
import type { Operation } from "../domain/operation.ts";
import { auditOperation, auditOperationJson } from "./gate.ts";

const text = fc.oneof(fc.string(), fc.string({ unit: "binary" }), fc.constantFrom('"', "\\", "\u2028", "\ud800", "/a b/\u0000", "GET /ok"));

describe("auditOperationJson", () => {
  test("equals canonicalJson(auditOperation(op)) for HTTP operations of every shape (property)", () => {
    const op = fc.record(
      {
        protocol: fc.constantFrom("http", "postgres"),
        text: fc.oneof(text, fc.constant("x".repeat(8193))),
        parameters: fc.option(fc.array(fc.string(), { maxLength: 2 }), { nil: undefined }),
        http: fc.record(
          {
            method: fc.oneof(fc.constantFrom("GET", "POST", "DELETE"), text),
            path: text,
            query: fc.constant({}),
            headers: fc.constant({}),
            bodyBytes: fc.oneof(fc.nat(), fc.constantFrom(-1, -0, Number.NaN, Number.POSITIVE_INFINITY, 1e21, 0.5)),
            bodySha256: fc.oneof(fc.stringMatching(/^[0-9a-f]{64}$/), fc.constant(""), text),
            git: fc.option(fc.record({ service: fc.constantFrom("upload-pack", "receive-pack"), phase: fc.constantFrom("advertise", "rpc") }), { nil: undefined }),
          },
          { requiredKeys: ["method", "path", "query", "headers", "bodyBytes", "bodySha256"] },
        ),
      },
      { requiredKeys: ["protocol", "text", "http"] },
    );
    fc.assert(
      fc.property(op, (o) => {
        const operation = o as unknown as Operation;
        assert.equal(auditOperationJson(operation), canonicalJson(auditOperation(operation)));
      }),
      { numRuns: 1000 },
    );
  });

  test("other operations take the general form", () => {
    const sqlOp = { protocol: "postgres", text: "SELECT 1", parameters: ["1"], sql: { statements: [{ kind: "read", kinds: ["read"], tables: [], flags: [], nodeType: "SelectStmt" }] } } as unknown as Operation;
    assert.equal(auditOperationJson(sqlOp), canonicalJson(auditOperation(sqlOp)));
  });
});

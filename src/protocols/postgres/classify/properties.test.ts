// Properties over generated input: the classifier never throws, is deterministic, and its
// results are internally consistent (kind is the most dangerous of kinds, flags are known).

import assert from "node:assert/strict";
import { before, describe, test } from "node:test";
import fc from "fast-check";
import { RISK_FLAGS, SQL_KINDS } from "../../../domain/operation.ts";
import { classifySql, classifySqlUncached, initClassifier, mostDangerousKind } from "./index.ts";
import type { SqlDescription } from "../../../domain/operation.ts";

before(async () => {
  await initClassifier();
});

/** Invariants every description must satisfy, whatever the input. */
function checkInvariants(d: SqlDescription): void {
  if (d.parseError !== undefined) {
    assert.equal(typeof d.parseError, "string");
    assert.deepEqual(d.statements, []);
    return;
  }
  for (const s of d.statements) {
    assert.ok(s.kinds.length > 0, "every statement has a kind");
    assert.ok(s.kinds.includes(s.kind), "kind is one of kinds");
    assert.equal(s.kind, mostDangerousKind(s.kinds), "kind is the most dangerous");
    for (const k of s.kinds) assert.ok((SQL_KINDS as readonly string[]).includes(k));
    for (const f of s.flags) assert.ok((RISK_FLAGS as readonly string[]).includes(f));
    assert.equal(s.flags.includes("multi-statement"), d.statements.length > 1);
  }
}

// Fragments of SQL, so random texts often parse and reach the tree walk.
const fragment = fc.constantFrom(
  "SELECT", "INSERT INTO", "UPDATE", "DELETE FROM", "WITH", "AS", "(", ")", ";", ",", "*", "t", "s.t",
  "FROM", "WHERE", "SET", "x = 1", "VALUES (1)", "RETURNING *", "DROP TABLE", "TRUNCATE", "EXPLAIN",
  "ANALYZE", "PREPARE p AS", "EXECUTE p", "DO $$ BEGIN NULL; END $$", "'str'", "$$dollar$$", "--c\n",
  "/* c */", "my_func()", "count(*)", "pg_read_file('x')", "COPY", "TO STDOUT", "FROM STDIN", "FOR UPDATE",
  "UNION", "JOIN u ON true", "SET ROLE x", "GRANT ALL ON t TO u", "BEGIN", "COMMIT", "é", "😀", "\"Q\"",
);
const sqlish = fc.array(fragment, { maxLength: 12 }).map((xs) => xs.join(" "));

describe("properties", () => {
  test("never throws on arbitrary strings; invariants hold", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary", maxLength: 200 }), (s) => {
        checkInvariants(classifySqlUncached(s));
      }),
      { numRuns: 2000 },
    );
  });

  test("never throws on SQL-like strings; invariants hold", () => {
    fc.assert(
      fc.property(sqlish, (s) => {
        checkInvariants(classifySqlUncached(s));
      }),
      { numRuns: 3000 },
    );
  });

  test("deterministic: the same text always gives the same description", () => {
    fc.assert(
      fc.property(fc.oneof(sqlish, fc.string({ maxLength: 80 })), (s) => {
        const a = classifySqlUncached(s);
        const b = classifySqlUncached(s);
        assert.deepEqual(a, b);
        assert.deepEqual(classifySql(s), a);
      }),
      { numRuns: 1000 },
    );
  });

  test("whitespace and comments between tokens do not change the classification", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(
          "DELETE FROM t",
          "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
          "SELECT * FROM t FOR UPDATE",
          "COPY t TO '/tmp/x'",
          "EXPLAIN ANALYZE UPDATE t SET a = 1",
        ),
        fc.constantFrom(" ", "\n", "\t", " /* x */ ", " -- y\n"),
        (sql, sep) => {
          const spaced = sql.split(" ").join(sep);
          const a = classifySql(sql).statements[0]!;
          const b = classifySql(spaced).statements[0]!;
          assert.deepEqual([b.kinds, b.flags, b.tables], [a.kinds, a.flags, a.tables]);
        },
      ),
    );
  });

  test("prefixing a statement with another never lowers its risk", () => {
    fc.assert(
      fc.property(sqlish, (s) => {
        const alone = classifySqlUncached(s);
        if (alone.parseError !== undefined || alone.statements.length !== 1) return;
        const joined = classifySqlUncached(`SELECT 1; ${s}`);
        if (joined.parseError !== undefined) return;
        const last = joined.statements[joined.statements.length - 1]!;
        assert.equal(last.kind, alone.statements[0]!.kind);
      }),
      { numRuns: 1000 },
    );
  });
});

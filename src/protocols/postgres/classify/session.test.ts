// Prepared statements across a session: describe is pure, commit applies PREPARE/DEALLOCATE,
// and EXECUTE is judged by what was prepared, never by its own harmless-looking text.

import assert from "node:assert/strict";
import { before, describe, test } from "node:test";
import { classifySql, initClassifier, PreparedStatementRegistry, describeInSession, commitInSession } from "./index.ts";

before(async () => {
  await initClassifier();
});

const sorted = <T>(xs: readonly T[]): T[] => [...xs].sort();

describe("PreparedStatementRegistry", () => {
  test("describe is pure: a PREPARE is registered only by commit", () => {
    const reg = new PreparedStatementRegistry();
    const prep = reg.describe("PREPARE p AS DELETE FROM t");
    assert.deepEqual(prep.preparedEffects, [{ op: "prepare", name: "p" }]);
    assert.equal(reg.has("p"), false);

    // Not committed (say, the gate denied it): EXECUTE p is unknown.
    const before = reg.describe("EXECUTE p");
    assert.equal(before.statements[0]!.kind, "unknown");
    assert.deepEqual(sorted(before.statements[0]!.flags), ["execute-prepared", "unknown-prepared"]);

    reg.commit(prep);
    assert.equal(reg.has("p"), true);
    const after = describeInSession("EXECUTE p", reg);
    const s = after.statements[0]!;
    assert.equal(s.kind, "write");
    assert.deepEqual(s.kinds, ["write"]);
    assert.deepEqual(s.tables, ["t"]);
    assert.deepEqual(sorted(s.flags), ["delete-without-where", "execute-prepared"]);
    assert.deepEqual(sorted(s.nodeTypes), ["DeleteStmt", "ExecuteStmt"]);
  });

  test("EXECUTE with parameters merges the parameters' own function calls", () => {
    const reg = new PreparedStatementRegistry();
    reg.commit(reg.describe("PREPARE q(int) AS SELECT * FROM t WHERE id = $1"));
    const s = reg.describe("EXECUTE q(my_func())").statements[0]!;
    assert.deepEqual(s.kinds, ["unknown", "read"]);
    assert.deepEqual(sorted(s.flags), ["execute-prepared", "function-call"]);
    assert.deepEqual(s.functions, ["my_func"]);
  });

  test("DEALLOCATE name and DEALLOCATE ALL remove entries once committed", () => {
    const reg = new PreparedStatementRegistry();
    reg.commit(reg.describe("PREPARE a AS SELECT 1; PREPARE b AS SELECT 2; PREPARE c AS SELECT 3"));
    assert.deepEqual(sorted(reg.names()), ["a", "b", "c"]);

    const dealloc = reg.describe("DEALLOCATE a");
    assert.equal(reg.has("a"), true, "describe changes nothing");
    commitInSession(dealloc, reg);
    assert.deepEqual(sorted(reg.names()), ["b", "c"]);

    reg.commit(reg.describe("DEALLOCATE ALL"));
    assert.equal(reg.size, 0);
  });

  test("DISCARD ALL drops every prepared statement", () => {
    const reg = new PreparedStatementRegistry();
    reg.commit(reg.describe("PREPARE a AS SELECT 1"));
    reg.commit(reg.describe("DISCARD ALL"));
    assert.equal(reg.size, 0);
  });

  test("a text is resolved in order: its own PREPARE and DEALLOCATE before the registry", () => {
    const reg = new PreparedStatementRegistry();
    reg.commit(reg.describe("PREPARE p AS SELECT 1"));
    const d = reg.describe("DEALLOCATE p; EXECUTE p");
    assert.equal(d.statements[1]!.kind, "unknown");
    assert.ok(d.statements[1]!.flags.includes("unknown-prepared"));

    const d2 = reg.describe("DEALLOCATE ALL; PREPARE p AS DROP TABLE x; EXECUTE p");
    // DROP TABLE cannot be prepared: this is a parse error, nothing is registered.
    assert.ok(d2.parseError);
    assert.deepEqual(d2.preparedEffects, []);
  });

  test("EXECUTE of a name prepared earlier in the same text, then committed", () => {
    const reg = new PreparedStatementRegistry();
    const d = reg.describe("PREPARE p AS UPDATE t SET a = 1; EXECUTE p");
    assert.equal(d.statements[1]!.kind, "write");
    assert.ok(d.statements[1]!.flags.includes("update-without-where"));
    reg.commit(d);
    assert.equal(reg.describe("EXECUTE p").statements[0]!.kind, "write");
  });

  test("re-preparing a taken name keeps both possibilities (the server keeps the old one)", () => {
    const reg = new PreparedStatementRegistry();
    reg.commit(reg.describe("PREPARE p AS DELETE FROM t"));
    reg.commit(reg.describe("PREPARE p AS SELECT 1"));
    const s = reg.describe("EXECUTE p").statements[0]!;
    assert.equal(s.kind, "write");
    assert.deepEqual(s.kinds, ["write", "read"]);
    assert.ok(s.flags.includes("delete-without-where"));
  });

  test("commit refuses a description it did not produce, and a second commit", () => {
    const reg = new PreparedStatementRegistry();
    const other = new PreparedStatementRegistry();
    const d = other.describe("PREPARE p AS SELECT 1");
    assert.throws(() => reg.commit(d), /not produced by this registry/);
    other.commit(d);
    assert.throws(() => other.commit(d), /already committed/);
    // Descriptions without effects commit as a no-op.
    reg.commit(reg.describe("SELECT 1"));
  });

  test("the prepared body is what the PREPARE statement looked like", () => {
    const reg = new PreparedStatementRegistry();
    reg.commit(reg.describe("PREPARE p AS DELETE FROM t WHERE a = 1"));
    const body = reg.get("p")!;
    assert.equal(body.text, "PREPARE p AS DELETE FROM t WHERE a = 1");
    assert.equal(body.kind, "write");
    assert.ok(!body.flags.includes("prepare"));
    assert.ok(Object.isFrozen(body));
  });

  test("a fallback lookup resolves protocol-level statements", () => {
    const protocolLevel = classifySql("DELETE FROM secrets").statements[0]!;
    const reg = new PreparedStatementRegistry({ fallback: (name) => (name === "s1" ? protocolLevel : undefined) });
    const s = reg.describe("EXECUTE s1").statements[0]!;
    assert.equal(s.kind, "write");
    assert.deepEqual(s.tables, ["secrets"]);
    assert.equal(reg.describe("EXECUTE s2").statements[0]!.kind, "unknown");
  });

  test("EXPLAIN ANALYZE EXECUTE and CREATE TABLE AS EXECUTE run the prepared body", () => {
    const reg = new PreparedStatementRegistry();
    reg.commit(reg.describe("PREPARE p AS DELETE FROM t WHERE a = 1 RETURNING *"));
    const explain = reg.describe("EXPLAIN ANALYZE EXECUTE p").statements[0]!;
    assert.equal(explain.kind, "write");
    assert.ok(explain.flags.includes("explain-analyze-write"));
    const plain = reg.describe("EXPLAIN EXECUTE p").statements[0]!;
    assert.deepEqual(plain.kinds, ["read"]);
    const ctas = reg.describe("CREATE TABLE x AS EXECUTE p").statements[0]!;
    assert.deepEqual(ctas.kinds, ["ddl", "write"]);
    assert.deepEqual(sorted(ctas.tables), ["t", "x"]);
  });

  test("session descriptions are frozen", () => {
    const reg = new PreparedStatementRegistry();
    const d = reg.describe("PREPARE p AS SELECT 1; EXECUTE p");
    assert.ok(Object.isFrozen(d));
    assert.ok(Object.isFrozen(d.statements[1]!.kinds));
    assert.ok(Object.isFrozen(d.preparedEffects));
  });

  test("parse errors carry through with no effects", () => {
    const reg = new PreparedStatementRegistry();
    const d = reg.describe("PREPARE p AS SELEC 1");
    assert.ok(d.parseError);
    assert.deepEqual(d.statements, []);
    assert.deepEqual(d.preparedEffects, []);
  });
});

// Initialisation: the parser is WebAssembly and loads asynchronously; classifying before it is
// loaded must fail loudly (a programming error), never return an empty, "safe" description.

import assert from "node:assert/strict";
import { test } from "node:test";
import { classifySql, initClassifier, isClassifierReady, PreparedStatementRegistry } from "./index.ts";

test("classifySql before initClassifier throws a clear error; afterwards it works", async () => {
  assert.equal(isClassifierReady(), false);
  assert.throws(() => classifySql("SELECT 1"), /await initClassifier\(\)/);
  assert.throws(() => new PreparedStatementRegistry().describe("SELECT 1"), /await initClassifier\(\)/);
  await Promise.all([initClassifier(), initClassifier()]);
  await initClassifier();
  assert.equal(isClassifierReady(), true);
  assert.equal(classifySql("SELECT 1").statements[0]?.kind, "read");
});

// The LRU cache and the classifier's use of it: hits return the same frozen object without
// reparsing; nothing a caller does to a result can change what the next caller gets.

import assert from "node:assert/strict";
import { afterEach, before, describe, test } from "node:test";
import {
  classifierStats,
  classifySql,
  classifySqlUncached,
  configureClassifierCache,
  initClassifier,
  LruCache,
} from "./index.ts";

before(async () => {
  await initClassifier();
});

afterEach(() => {
  configureClassifierCache({});
});

describe("LruCache", () => {
  test("evicts the least recently used entry", () => {
    const c = new LruCache<number>({ maxEntries: 2 });
    c.set("a", 1);
    c.set("b", 2);
    assert.equal(c.get("a"), 1); // a is now the most recent
    c.set("c", 3);
    assert.equal(c.has("b"), false);
    assert.equal(c.get("a"), 1);
    assert.equal(c.get("c"), 3);
    assert.deepEqual(c.stats(), { hits: 3, misses: 0, evictions: 1, size: 2 });
  });

  test("does not store keys longer than maxKeyLength", () => {
    const c = new LruCache<number>({ maxKeyLength: 4 });
    c.set("abcd", 1);
    c.set("abcde", 2);
    assert.equal(c.get("abcd"), 1);
    assert.equal(c.get("abcde"), undefined);
  });

  test("keys are exact: no trimming or case folding", () => {
    const c = new LruCache<number>();
    c.set("SELECT 1", 1);
    assert.equal(c.get("select 1"), undefined);
    assert.equal(c.get("SELECT 1 "), undefined);
  });

  test("maxEntries 0 disables caching; bad sizes are refused", () => {
    const c = new LruCache<number>({ maxEntries: 0 });
    c.set("a", 1);
    assert.equal(c.size, 0);
    assert.throws(() => new LruCache({ maxEntries: -1 }), RangeError);
    assert.throws(() => new LruCache({ maxKeyLength: 1.5 }), RangeError);
  });
});

describe("classification cache", () => {
  test("a second call returns the identical object without reparsing", () => {
    configureClassifierCache({ maxEntries: 100 });
    const sql = "SELECT * FROM cache_test WHERE id = $1";
    const first = classifySql(sql);
    const parses = classifierStats().parses;
    const second = classifySql(sql);
    assert.equal(second, first);
    assert.equal(classifierStats().parses, parses, "no parse on a hit");
    assert.equal(classifierStats().cacheHits, 1);
  });

  test("cached results are deeply frozen", () => {
    const d = classifySql("DELETE FROM frozen_test");
    assert.ok(Object.isFrozen(d));
    assert.ok(Object.isFrozen(d.statements));
    assert.ok(Object.isFrozen(d.statements[0]));
    assert.ok(Object.isFrozen(d.statements[0]!.flags));
    assert.throws(() => {
      (d.statements[0]!.flags as string[]).length = 0;
    }, TypeError);
    assert.throws(() => {
      (d.statements[0] as { kind: string }).kind = "read";
    }, TypeError);
    assert.equal(classifySql("DELETE FROM frozen_test").statements[0]!.kind, "write");
  });

  test("texts over the size limit are classified but not cached", () => {
    configureClassifierCache({ maxEntries: 100, maxKeyLength: 64 });
    const long = `SELECT ${"1, ".repeat(40)}1`;
    const before = classifierStats().parses;
    const a = classifySql(long);
    const b = classifySql(long);
    assert.notEqual(a, b);
    assert.deepEqual(a, b);
    assert.equal(classifierStats().parses, before + 2);
    assert.equal(classifierStats().cacheSize, 0);
  });

  test("parse errors are cached too", () => {
    configureClassifierCache({ maxEntries: 100 });
    const a = classifySql("SELEC broken");
    assert.equal(classifySql("SELEC broken"), a);
  });

  test("the cache holds at most maxEntries texts", () => {
    configureClassifierCache({ maxEntries: 10 });
    for (let i = 0; i < 50; i++) classifySql(`SELECT ${i}`);
    assert.equal(classifierStats().cacheSize, 10);
    assert.equal(classifierStats().cacheEvictions, 40);
  });

  test("uncached classification equals cached classification", () => {
    const sql = "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d";
    assert.deepEqual(classifySqlUncached(sql), classifySql(sql));
  });
});

// The docs that are generated from code must be current, and every error code used anywhere in
// src/ must be in the registry and documented (fastify's error-docs test does the same).

import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { configReferenceMarkdown, errorsMarkdown, withReference } from "../scripts/gen-docs.ts";
import { ERRORS } from "../src/domain/errors.ts";

function sources(dir: string, out: string[] = []): string[] {
  for (const n of readdirSync(dir)) {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) sources(p, out);
    else if (p.endsWith(".ts")) out.push(p);
  }
  return out;
}

test("docs/errors.md is generated from the registry and current (run `npm run docs`)", () => {
  assert.equal(readFileSync("docs/errors.md", "utf8"), errorsMarkdown());
});

test("docs/configuration.md's key reference is current (run `npm run docs`)", () => {
  const doc = readFileSync("docs/configuration.md", "utf8");
  assert.equal(doc, withReference(doc));
  assert.ok(configReferenceMarkdown().includes("`policies[].decision`"));
});

test("every GH-… code used in src/ is registered and documented; codes are unique", () => {
  const registered = new Set(Object.values(ERRORS).map((e) => e.code));
  assert.equal(registered.size, Object.keys(ERRORS).length, "duplicate code in the registry");
  const docs = readFileSync("docs/errors.md", "utf8");
  for (const file of sources("src")) {
    for (const m of readFileSync(file, "utf8").matchAll(/GH-[A-Z]+-\d{3}/g)) {
      assert.ok(registered.has(m[0]), `${file} uses ${m[0]}, which is not in src/domain/errors.ts`);
      assert.ok(docs.includes(m[0]), `${m[0]} is not in docs/errors.md`);
    }
  }
  for (const code of registered) assert.ok(docs.includes(`\`${code}\``), `${code} is undocumented`);
});

test("every error says what to do", () => {
  for (const [k, e] of Object.entries(ERRORS)) {
    assert.match(e.code, /^GH-[A-Z]+-\d{3}$/, k);
    assert.ok(e.hint.length > 20, `${e.code} needs a hint that tells the user what to do`);
    assert.match(e.sqlstate, /^[0-9A-Z]{5}$/, `${e.code} SQLSTATE`);
  }
});

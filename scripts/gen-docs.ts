// Regenerates the reference parts of the docs from the code: docs/errors.md from the error
// registry, and the key table in docs/configuration.md from the config schema.
// `npm run docs`; test/docs.test.ts fails when the committed docs are stale.

import { readFileSync, writeFileSync } from "node:fs";
import { configJsonSchema } from "../src/config/schema.ts";
import { ERRORS } from "../src/domain/errors.ts";

export function errorsMarkdown(): string {
  const rows = Object.values(ERRORS).map((e) => `| \`${e.code}\` | ${e.title} | ${e.status} | \`${e.sqlstate}\` | ${e.hint.replace(/\|/g, "\\|")} |`);
  return [
    "# Error codes",
    "",
    "Every user-facing error carries a stable code. Over HTTP it arrives as `application/problem+json`",
    "(`code`, `title`, `detail`, `hint`); a PostgreSQL client sees an ErrorResponse whose message starts",
    "with the code and whose SQLSTATE is the one listed; the CLI prints `error CODE: …` and exits 2.",
    "",
    "This file is generated from `src/domain/errors.ts` by `npm run docs`; a test fails when it is stale.",
    "",
    "| code | meaning | HTTP | SQLSTATE | what to do |",
    "| --- | --- | --- | --- | --- |",
    ...rows,
    "",
  ].join("\n");
}

type JsonSchema = { type?: string | string[]; description?: string; default?: unknown; properties?: Record<string, JsonSchema>; items?: JsonSchema; enum?: unknown[]; anyOf?: JsonSchema[]; additionalProperties?: JsonSchema | boolean; required?: string[] };

function typeOf(s: JsonSchema): string {
  if (s.enum) return s.enum.map((v) => `\`${String(v)}\``).join(" \\| ");
  if (s.anyOf) return s.anyOf.map(typeOf).join(" or ");
  if (s.type === "array") return `list of ${s.items ? typeOf(s.items) : "any"}`;
  if (s.type === "object" && s.additionalProperties && typeof s.additionalProperties === "object" && !s.properties) return `map of ${typeOf(s.additionalProperties)}`;
  return Array.isArray(s.type) ? s.type.join(" or ") : (s.type ?? "any");
}

function walk(s: JsonSchema, path: string, rows: string[]): void {
  const props = s.properties ?? {};
  for (const [k, v] of Object.entries(props)) {
    const p = path ? `${path}.${k}` : k;
    const target = v.type === "array" && v.items?.properties ? v.items : v;
    const dflt = v.default === undefined ? "" : `\`${JSON.stringify(v.default)}\``;
    const req = s.required?.includes(k) && v.default === undefined ? " (required)" : "";
    rows.push(`| \`${p}\`${req} | ${typeOf(v)} | ${dflt} | ${(v.description ?? "").replace(/\|/g, "\\|").replace(/\n/g, " ")} |`);
    if (target.properties) walk(target, v.type === "array" ? `${p}[]` : p, rows);
  }
}

export function configReferenceMarkdown(): string {
  const rows: string[] = [];
  walk(configJsonSchema() as JsonSchema, "", rows);
  return ["| key | type | default | meaning |", "| --- | --- | --- | --- |", ...rows].join("\n");
}

const BEGIN = "<!-- BEGIN GENERATED REFERENCE -->";
const END = "<!-- END GENERATED REFERENCE -->";

export function withReference(doc: string): string {
  const a = doc.indexOf(BEGIN);
  const b = doc.indexOf(END);
  if (a < 0 || b < a) throw new Error("docs/configuration.md lacks the generated-reference markers");
  return `${doc.slice(0, a + BEGIN.length)}\n${configReferenceMarkdown()}\n${doc.slice(b)}`;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  writeFileSync("docs/errors.md", errorsMarkdown());
  writeFileSync("docs/configuration.md", withReference(readFileSync("docs/configuration.md", "utf8")));
  process.stdout.write("docs/errors.md and docs/configuration.md regenerated\n");
}

// The hash chain's primitives, shared by the writer (log.ts), the verifier (verify.ts) and the
// pruner (prune.ts): canonical JSON, the per-event hash, and the genesis hash that event #1 links to.
//
// Both functions sit on the append hot path (every judged operation), so they build their text
// directly instead of through intermediate entry arrays and objects. Their output is the chain's
// format: chain.test.ts checks it byte for byte against the original implementation.
//
// Never: change what canonicalJson or hashEvent produce for any input — stored chains would stop
// verifying.

import * as crypto from "node:crypto";
import type { AuditEventsTable } from "../store/schema.ts";

export const GENESIS_HASH = "0".repeat(64);

export type AuditRecord = AuditEventsTable;

/** What JSON.stringify escapes in a string (and surrogates, paired or not, to be safe). */
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/;

/** A string as a JSON literal: JSON.stringify's result, without its call for plain text. */
export function jsonString(s: string): string {
  return NEEDS_ESCAPE.test(s) ? JSON.stringify(s) : `"${s}"`;
}

/** `"key":` per object key seen, bounded: event data reuses a small set of keys. */
const keyPrefixes = new Map<string, string>();
const MAX_CACHED_KEYS = 1000;

function keyPrefix(k: string): string {
  let p = keyPrefixes.get(k);
  if (p === undefined) {
    p = `${jsonString(k)}:`;
    if (keyPrefixes.size < MAX_CACHED_KEYS) keyPrefixes.set(k, p);
  }
  return p;
}

/**
 * Canonical JSON: object keys sorted (by UTF-16 code units, as `<` compares strings), properties
 * whose value is undefined left out, so the hash does not depend on insertion order. Quirks kept
 * on purpose (they are the format): array holes print as nothing, undefined array elements and
 * other non-JSON values as null, and objects are walked by their own enumerable keys (toJSON is
 * not called).
 */
export function canonicalJson(v: unknown): string {
  if (typeof v === "string") return jsonString(v);
  if (v === null || typeof v !== "object") return JSON.stringify(v) ?? "null";
  if (Array.isArray(v)) {
    let out = "[";
    for (let i = 0; i < v.length; i++) {
      if (i) out += ",";
      if (i in v) out += canonicalJson(v[i]); // a hole adds nothing, as [].map + join did
    }
    return `${out}]`;
  }
  const keys = Object.keys(v);
  // Sorted by UTF-16 code units, exactly as the comparator `a < b` did. Small objects (nearly all
  // event data) by insertion in place: Array.prototype.sort allocates a work array per call,
  // ~700 bytes per object sorted, which made it the audit path's largest allocation.
  if (keys.length > 16) keys.sort();
  else
    for (let i = 1; i < keys.length; i++) {
      const k = keys[i]!;
      let j = i - 1;
      while (j >= 0 && keys[j]! > k) {
        keys[j + 1] = keys[j]!;
        j--;
      }
      keys[j + 1] = k;
    }
  let out = "";
  for (const k of keys) {
    const x = (v as Record<string, unknown>)[k];
    if (x === undefined) continue;
    out += `${out ? "," : "{"}${keyPrefix(k)}${canonicalJson(x)}`;
  }
  return out ? `${out}}` : "{}";
}

/** The fields an event's hash covers, in canonical (sorted) order, with their JSON keys. */
const HASHED: ReadonlyArray<readonly [keyof AuditRecord, string]> = (
  ["at", "connection", "data", "decision", "id", "principal_name", "principal_subject", "rule", "seq", "session_id", "type"] as const
).map((k) => [k, keyPrefix(k)] as const);

function textOrNull(v: unknown): v is string | null {
  return v === null || typeof v === "string";
}

/** A string known to need no escaping, as JSON; null as null. */
function quoted(v: string | null): string {
  return v === null ? "null" : `"${v}"`;
}

// One-shot hashing (Node ≥ 20.12) skips the Hash object; older 20.x falls back to createHash.
const sha256 = typeof crypto.hash === "function" ? (s: string) => crypto.hash("sha256", s, "hex") : (s: string) => crypto.createHash("sha256").update(s).digest("hex");

/**
 * SHA-256 (hex) of `prev_hash`, a newline, and the canonical JSON of the event's fields (all but
 * prev_hash and hash): the same bytes as canonicalJson over an object of those fields. The common
 * event (every column of its usual type) is written by one template — the audit writer thread
 * hashes every event; the rest field by field.
 */
export function hashEvent(e: Omit<AuditRecord, "hash">): string {
  const { at, connection, data, decision, id, principal_name, principal_subject, rule, seq, session_id, type, prev_hash } = e;
  // The common event, every column of its usual type: one escape check over the short text
  // columns together and one template, instead of eleven members each checked and appended.
  if (
    typeof prev_hash === "string" &&
    typeof data === "string" &&
    typeof id === "string" &&
    typeof type === "string" &&
    typeof at === "number" &&
    typeof seq === "number" &&
    Number.isFinite(at) &&
    Number.isFinite(seq) &&
    textOrNull(connection) &&
    textOrNull(decision) &&
    textOrNull(principal_name) &&
    textOrNull(principal_subject) &&
    textOrNull(rule) &&
    textOrNull(session_id) &&
    !NEEDS_ESCAPE.test(`${id}${type}${connection ?? ""}${decision ?? ""}${principal_name ?? ""}${principal_subject ?? ""}${rule ?? ""}${session_id ?? ""}`)
  ) {
    return sha256(
      `${prev_hash}\n{"at":${at},"connection":${quoted(connection)},"data":${jsonString(data)},"decision":${quoted(decision)},"id":"${id}","principal_name":${quoted(principal_name)},"principal_subject":${quoted(principal_subject)},"rule":${quoted(rule)},"seq":${seq},"session_id":${quoted(session_id)},"type":"${type}"}`,
    );
  }
  // Anything else (a field missing or of another type): field by field, as canonicalJson does.
  let body = "";
  for (const [k, prefix] of HASHED) {
    const v = e[k as keyof typeof e];
    if (v === undefined) continue;
    body += `${body ? "," : "{"}${prefix}${canonicalJson(v)}`;
  }
  body = body ? `${body}}` : "{}";
  // One string hashes to the same bytes as the three updates did (UTF-8 of a concatenation is the
  // concatenation of the UTF-8 when no surrogate pair is split at a seam, and "\n" is none). A
  // non-string prev_hash keeps the old path, so it still throws as it did.
  if (typeof e.prev_hash === "string") return sha256(`${e.prev_hash}\n${body}`);
  return crypto.createHash("sha256").update(e.prev_hash).update("\n").update(body).digest("hex");
}

export function sha256Hex(s: string): string {
  return sha256(s);
}

// The hash chain's primitives, shared by the writer (log.ts), the verifier (verify.ts) and the
// pruner (prune.ts): canonical JSON, the per-event hash, and the genesis hash that event #1 links to.

import { createHash } from "node:crypto";
import type { AuditEventsTable } from "../store/schema.ts";

export const GENESIS_HASH = "0".repeat(64);

export type AuditRecord = AuditEventsTable;

/** Canonical JSON: object keys sorted, so the hash does not depend on insertion order. */
export function canonicalJson(v: unknown): string {
  if (v === null || typeof v !== "object") return JSON.stringify(v) ?? "null";
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(",")}]`;
  const entries = Object.entries(v as Record<string, unknown>)
    .filter(([, x]) => x !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, x]) => `${JSON.stringify(k)}:${canonicalJson(x)}`).join(",")}}`;
}

export function hashEvent(e: Omit<AuditRecord, "hash">): string {
  const body = canonicalJson({
    seq: e.seq,
    id: e.id,
    at: e.at,
    type: e.type,
    principal_subject: e.principal_subject,
    principal_name: e.principal_name,
    connection: e.connection,
    session_id: e.session_id,
    decision: e.decision,
    rule: e.rule,
    data: e.data,
  });
  return createHash("sha256").update(e.prev_hash).update("\n").update(body).digest("hex");
}

export function sha256Hex(s: string): string {
  return createHash("sha256").update(s).digest("hex");
}

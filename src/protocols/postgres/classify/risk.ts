// The one place that says which SQL kind is "worse" than another. A multi-kind statement
// (WITH d AS (DELETE …) SELECT …) is judged by its most dangerous kind, and policy reads
// `SqlStatement.kind` from here. This module must never depend on parsing: it is a total
// order over SQL_KINDS and nothing else.

import { SQL_KINDS, type SqlKind } from "../../../domain/operation.ts";

/**
 * SQL kinds, most dangerous first. Reasoning:
 * - admin: effects beyond this database and session — server config, other backends,
 *   the server's filesystem and programs, whole databases, superuser-only objects.
 * - dcl: changes who may do what; outlives the session and can escalate privileges.
 * - ddl: changes (or destroys) schema; DROP loses data irrecoverably.
 * - procedural: opaque code (DO, CALL) running with the caller's full power; it can do any
 *   write/ddl/dcl the role may do, but what it contains is analysed where possible, so a
 *   known ddl/dcl inside still ranks above it.
 * - write: changes data.
 * - session: changes session state (SET ROLE, search_path, …): bounded to this connection,
 *   but can change how later statements behave.
 * - unknown: a function or prepared statement we cannot see into; ranked above the
 *   harmless kinds so a read-only policy never passes it, but below the kinds that are
 *   known facts (a statement that certainly writes is judged as a write).
 * - utility: maintenance (VACUUM, ANALYZE, REINDEX): no data change, may cost I/O and locks.
 * - transaction: BEGIN/COMMIT/ROLLBACK/SAVEPOINT: no effect of its own.
 * - read: returns data, changes nothing.
 */
export const SQL_KIND_RISK: readonly SqlKind[] = Object.freeze([
  "admin",
  "dcl",
  "ddl",
  "procedural",
  "write",
  "session",
  "unknown",
  "utility",
  "transaction",
  "read",
] as const satisfies readonly SqlKind[]);

const RANK: ReadonlyMap<SqlKind, number> = new Map(SQL_KIND_RISK.map((k, i) => [k, SQL_KIND_RISK.length - i]));

// A missing kind in SQL_KIND_RISK would silently rank as "safest": refuse to load instead.
for (const k of SQL_KINDS) {
  if (!RANK.has(k)) throw new Error(`SQL_KIND_RISK does not rank SQL kind "${k}"`);
}

/** Higher is more dangerous. */
export function kindRisk(kind: SqlKind): number {
  return RANK.get(kind) ?? Number.MAX_SAFE_INTEGER;
}

/** The most dangerous kind of a non-empty list; "unknown" for an empty one (fail closed). */
export function mostDangerousKind(kinds: Iterable<SqlKind>): SqlKind {
  let best: SqlKind | undefined;
  for (const k of kinds) {
    if (best === undefined || kindRisk(k) > kindRisk(best)) best = k;
  }
  return best ?? "unknown";
}

/** Kinds sorted most dangerous first (so `sorted[0]` is the statement's `kind`). */
export function sortKindsByRisk(kinds: Iterable<SqlKind>): SqlKind[] {
  return [...new Set(kinds)].sort((a, b) => kindRisk(b) - kindRisk(a));
}

// Search over the audit trail: who (principal), what (type, connection, session, text), when (time
// range) and which decision/rule, with keyset paging on the sequence number so pages stay stable
// while events are appended.

import { type ExpressionBuilder, sql } from "kysely";
import { GatehouseError } from "../domain/errors.ts";
import type { Database } from "../store/schema.ts";
import type { Store } from "../store/store.ts";
import type { AuditRecord } from "./chain.ts";

export interface AuditFilter {
  /** Exact principal subject, or a case-insensitive substring of the display name. */
  principal?: string | undefined;
  /** Exact event type, or a prefix when it ends with `.` or `*` (`review.`, `review.*`). */
  type?: string | undefined;
  connection?: string | undefined;
  sessionId?: string | undefined;
  decision?: string | undefined;
  rule?: string | undefined;
  /** Inclusive lower bound, Unix ms. */
  from?: number | undefined;
  /** Exclusive upper bound, Unix ms. */
  to?: number | undefined;
  /** Case-insensitive substring of the event's data (its JSON text). */
  text?: string | undefined;
  /** Only events up to this seq (exports stop at the head they started from). */
  untilSeq?: number | undefined;
}

export const MAX_PAGE = 1000;

export interface AuditEventView {
  seq: number;
  id: string;
  at: string;
  type: string;
  principal: { subject: string; name: string | null } | null;
  connection: string | null;
  sessionId: string | null;
  decision: string | null;
  rule: string | null;
  data: unknown;
  prevHash: string;
  hash: string;
}

/** A time as ISO 8601 or Unix milliseconds. */
export function parseTime(v: string, what: string): number {
  const t = /^\d+$/.test(v.trim()) ? Number(v) : Date.parse(v);
  if (!Number.isFinite(t)) throw new GatehouseError("API_BAD_REQUEST", `${what}: "${v}" is not an ISO 8601 time or Unix milliseconds`);
  return t;
}

export function parseData(data: string): unknown {
  try {
    return JSON.parse(data);
  } catch {
    return data;
  }
}

export function eventView(r: AuditRecord): AuditEventView {
  return {
    seq: Number(r.seq),
    id: r.id,
    at: new Date(Number(r.at)).toISOString(),
    type: r.type,
    principal: r.principal_subject ? { subject: r.principal_subject, name: r.principal_name } : null,
    connection: r.connection,
    sessionId: r.session_id,
    decision: r.decision,
    rule: r.rule,
    data: parseData(r.data),
    prevHash: r.prev_hash,
    hash: r.hash,
  };
}

const likeEscape = (s: string) => s.replace(/[\\%_]/g, (c) => `\\${c}`);
const containsPattern = (s: string) => `%${likeEscape(s.toLowerCase())}%`;

function conditions(f: AuditFilter) {
  return (eb: ExpressionBuilder<Database, "audit_events">) => {
    const c = [];
    if (f.principal) c.push(eb.or([eb("principal_subject", "=", f.principal), sql<boolean>`lower(${sql.ref("principal_name")}) like ${containsPattern(f.principal)} escape '\\'`]));
    if (f.type) {
      const prefix = /[.*]$/.test(f.type) ? f.type.replace(/\*$/, "") : undefined;
      c.push(prefix ? sql<boolean>`${sql.ref("type")} like ${`${likeEscape(prefix)}%`} escape '\\'` : eb("type", "=", f.type));
    }
    if (f.connection) c.push(eb("connection", "=", f.connection));
    if (f.sessionId) c.push(eb("session_id", "=", f.sessionId));
    if (f.decision) c.push(eb("decision", "=", f.decision));
    if (f.rule) c.push(eb("rule", "=", f.rule));
    if (f.from !== undefined) c.push(eb("at", ">=", f.from));
    if (f.to !== undefined) c.push(eb("at", "<", f.to));
    if (f.text) c.push(sql<boolean>`lower(${sql.ref("data")}) like ${containsPattern(f.text)} escape '\\'`);
    if (f.untilSeq !== undefined) c.push(eb("seq", "<=", f.untilSeq));
    return eb.and(c);
  };
}

/**
 * One page of matching events. `cursor` is the `next` of the previous page; `desc` (newest first)
 * is the default for searches, `asc` for exports.
 */
export async function searchAudit(store: Store, filter: AuditFilter, page: { cursor?: string | undefined; limit?: number | undefined; order?: "asc" | "desc" | undefined } = {}): Promise<{ rows: AuditRecord[]; next: string | null }> {
  const limit = Math.min(Math.max(page.limit ?? 100, 1), MAX_PAGE);
  const order = page.order ?? "desc";
  let q = store.db.selectFrom("audit_events").selectAll().where(conditions(filter));
  if (page.cursor !== undefined) {
    if (!/^\d+$/.test(page.cursor)) throw new GatehouseError("API_BAD_REQUEST", `cursor: "${page.cursor}" is not a cursor from a previous page`);
    q = q.where("seq", order === "desc" ? "<" : ">", Number(page.cursor));
  }
  const rows = await q.orderBy("seq", order).limit(limit + 1).execute();
  const more = rows.length > limit;
  if (more) rows.length = limit;
  return { rows, next: more ? String(rows[rows.length - 1]!.seq) : null };
}

/** Every matching event, oldest first, a page at a time (for exports). */
export async function* auditPages(store: Store, filter: AuditFilter, pageSize = MAX_PAGE): AsyncGenerator<AuditRecord[]> {
  let cursor: string | undefined;
  for (;;) {
    const { rows, next } = await searchAudit(store, filter, { cursor, limit: pageSize, order: "asc" });
    if (rows.length) yield rows;
    if (!next) return;
    cursor = next;
  }
}

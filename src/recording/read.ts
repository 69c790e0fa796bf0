// Reading sessions and their recordings back: listing with filters and keyset paging, one
// session's operations (from the audit trail), and its recorded frames in order.

import { GatehouseError } from "../domain/errors.ts";
import type { Selectable } from "kysely";
import type { SessionsTable } from "../store/schema.ts";
import type { Store } from "../store/store.ts";
import { decodeChunk, type RecordedFrame, RecordingFormatError } from "./format.ts";
import { PostgresReplay, type ReplayItem, type ReplayOptions } from "./postgres-replay.ts";
import type { RecordingSink } from "./sinks.ts";

export interface SessionFilter {
  /** Exact subject (`tid/oid`), or a substring of the display name. */
  principal?: string | undefined;
  connection?: string | undefined;
  /** Unix ms bounds on the start time. */
  from?: number | undefined;
  to?: number | undefined;
  status?: string | undefined;
  /** Only sessions with at least one operation given this decision. */
  decision?: "allow" | "deny" | "review" | undefined;
  limit?: number | undefined;
  /** Opaque cursor from a previous page. */
  cursor?: string | undefined;
}

export interface SessionView {
  id: string;
  principal: { subject: string; name: string };
  connection: string;
  protocol: string;
  client: string | null;
  gatewayId: string;
  startedAt: string;
  endedAt: string | null;
  status: string;
  endReason: string | null;
  recording: { status: string; bytes: number; storage: string | null };
}

export function sessionView(r: Selectable<SessionsTable>): SessionView {
  return {
    id: r.id,
    principal: { subject: r.principal_subject, name: r.principal_name },
    connection: r.connection,
    protocol: r.protocol,
    client: r.client_addr,
    gatewayId: r.gateway_id,
    startedAt: new Date(Number(r.started_at)).toISOString(),
    endedAt: r.ended_at === null ? null : new Date(Number(r.ended_at)).toISOString(),
    status: r.status,
    endReason: r.end_reason,
    recording: { status: r.rec_status, bytes: Number(r.rec_bytes), storage: r.rec_storage },
  };
}

function encodeCursor(startedAt: number, id: string): string {
  return Buffer.from(`${startedAt}:${id}`).toString("base64url");
}

function decodeCursor(c: string): { startedAt: number; id: string } {
  const [t, id] = Buffer.from(c, "base64url").toString("utf8").split(":");
  const startedAt = Number(t);
  if (!Number.isSafeInteger(startedAt) || !id) throw new GatehouseError("API_BAD_REQUEST", "cursor is not one this API returned");
  return { startedAt, id };
}

export async function listSessions(store: Store, f: SessionFilter): Promise<{ items: SessionView[]; next: string | null }> {
  const limit = Math.min(Math.max(f.limit ?? 50, 1), 1000);
  let q = store.db.selectFrom("sessions").selectAll();
  if (f.principal) {
    const p = f.principal;
    q = q.where((eb) => eb.or([eb("principal_subject", "=", p), eb("principal_name", "like", `%${p.replace(/[\\%_]/g, (c) => `\\${c}`)}%`)]));
  }
  if (f.connection) q = q.where("connection", "=", f.connection);
  if (f.from !== undefined) q = q.where("started_at", ">=", f.from);
  if (f.to !== undefined) q = q.where("started_at", "<", f.to);
  if (f.status) q = q.where("status", "=", f.status);
  if (f.decision) {
    const decision = f.decision;
    q = q.where((eb) => eb.exists(eb.selectFrom("audit_events").select("seq").whereRef("audit_events.session_id", "=", "sessions.id").where("audit_events.type", "=", "operation.decided").where("audit_events.decision", "=", decision)));
  }
  if (f.cursor) {
    const c = decodeCursor(f.cursor);
    q = q.where((eb) => eb.or([eb("started_at", "<", c.startedAt), eb.and([eb("started_at", "=", c.startedAt), eb("id", "<", c.id)])]));
  }
  const rows = await q.orderBy("started_at", "desc").orderBy("id", "desc").limit(limit + 1).execute();
  const page = rows.slice(0, limit);
  const last = page.at(-1);
  return { items: page.map(sessionView), next: rows.length > limit && last ? encodeCursor(Number(last.started_at), last.id) : null };
}

export async function getSession(store: Store, id: string): Promise<SessionView> {
  const r = await store.db.selectFrom("sessions").selectAll().where("id", "=", id).executeTakeFirst();
  if (!r) throw new GatehouseError("SESSION_NOT_FOUND", id);
  return sessionView(r);
}

export interface SessionOperation {
  seq: number;
  at: string;
  type: string;
  decision: string | null;
  rule: string | null;
  data: Record<string, unknown>;
}

/** The session's audit events (decisions, reviews, start and end), in order. */
export async function sessionOperations(store: Store, id: string): Promise<SessionOperation[]> {
  const rows = await store.db.selectFrom("audit_events").select(["seq", "at", "type", "decision", "rule", "data"]).where("session_id", "=", id).orderBy("seq").execute();
  return rows.map((r) => ({ seq: Number(r.seq), at: new Date(Number(r.at)).toISOString(), type: r.type, decision: r.decision, rule: r.rule, data: JSON.parse(r.data) as Record<string, unknown> }));
}

/** The recording's frames in order. Throws GH-REC-003 for a pruned recording. */
export async function* readFrames(sink: RecordingSink, session: SessionView): AsyncGenerator<RecordedFrame> {
  if (session.recording.status === "pruned") throw new GatehouseError("RECORDING_PRUNED", session.id);
  for await (const chunk of sink.read(session.id)) {
    let frames: RecordedFrame[];
    try {
      frames = decodeChunk(chunk.data);
    } catch (e) {
      if (e instanceof RecordingFormatError) throw new GatehouseError("RECORDING_UNREADABLE", `session ${session.id} chunk ${chunk.seq}: ${e.message}`);
      throw e;
    }
    yield* frames;
  }
}

/** The conversation decoded per protocol (PostgreSQL: query cycles with rows and decisions). */
export async function* replay(sink: RecordingSink, session: SessionView, opts: ReplayOptions = {}): AsyncGenerator<ReplayItem> {
  if (session.protocol !== "postgres") {
    for await (const f of readFrames(sink, session)) if (f.kind === "event") yield { type: "event", at: f.at, event: f.event };
    return;
  }
  const decoder = new PostgresReplay(opts);
  try {
    for await (const f of readFrames(sink, session)) yield* decoder.push(f);
  } catch (e) {
    if (e instanceof GatehouseError) throw e;
    // The bytes themselves do not decode (a recording cut inside a message is fine; garbage is not).
    throw new GatehouseError("RECORDING_UNREADABLE", `session ${session.id}: ${(e as Error).message}`);
  }
  yield* decoder.end();
}

// /api/v1/sessions: list sessions, show one with its operations, replay it decoded, export its
// recording (JSON Lines or asciicast v2). Only members of audit.auditorGroups may read sessions,
// and every replay, export or view is itself an audit event, written before any data leaves.

import { Readable } from "node:stream";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { z } from "zod";
import type { AuditLog } from "../audit/log.ts";
import { GatehouseError } from "../domain/errors.ts";
import type { Principal } from "../domain/principal.ts";
import { asciicast, jsonLines } from "../recording/export.ts";
import { getSession, listSessions, readFrames, replay, sessionOperations, type SessionView } from "../recording/read.ts";
import type { RecordingSink } from "../recording/sinks.ts";
import type { Store } from "../store/store.ts";
import { requireGroup } from "./auth.ts";
import { problemFromError } from "./problem.ts";
import { type ApiContext, parseBody } from "./server.ts";

const time = z
  .string()
  .transform((v, ctx) => {
    const n = /^\d+$/.test(v) ? Number(v) : Date.parse(v);
    if (!Number.isFinite(n)) {
      ctx.addIssue({ code: "custom", message: `"${v}" is not a time; use ISO 8601 (2026-11-25T10:00:00Z) or Unix milliseconds` });
      return z.NEVER;
    }
    return n;
  })
  .optional();

const listQuery = z
  .object({
    principal: z.string().max(500).optional(),
    connection: z.string().max(200).optional(),
    from: time,
    to: time,
    status: z.enum(["active", "closed", "interrupted"]).optional(),
    decision: z.enum(["allow", "deny", "review"]).optional(),
    limit: z.coerce.number().int().min(1).max(1000).optional(),
    cursor: z.string().max(500).optional(),
  })
  .strict();
const replayQuery = z.object({ maxRows: z.coerce.number().int().min(0).max(1_000_000).optional() }).strict();
const exportQuery = z.object({ format: z.enum(["jsonl", "asciicast"]).default("jsonl") }).strict();

export interface SessionRoutesDeps {
  store: Store;
  audit: AuditLog;
  sink: RecordingSink;
  auditorGroups: readonly string[];
}

/**
 * Send an async sequence of lines as a streamed body. The first line is read before the status
 * is sent, so "not found" or "pruned" still leave as problem+json; a failure later in the stream
 * ends it with one JSON line `{"error": …}` (the status is already 200 by then).
 */
async function streamLines(reply: FastifyReply, contentType: string, lines: AsyncGenerator<string>, filename: string): Promise<FastifyReply> {
  const first = await lines.next();
  async function* body() {
    if (!first.done) yield first.value;
    try {
      for await (const l of lines) yield l;
    } catch (e) {
      const p = problemFromError(e);
      yield `${JSON.stringify({ error: { code: p.code, title: p.title, detail: p.detail ?? null } })}\n`;
    }
  }
  return reply.type(contentType).header("content-disposition", `inline; filename="${filename}"`).send(Readable.from(body()));
}

export function sessionRoutes(d: SessionRoutesDeps) {
  // Reads see every audit event appended before them (journal mode: once ingested into the store).
  const auditor = async (p: Principal, what: string) => {
    requireGroup(p, d.auditorGroups, what);
    await d.audit.drain();
  };
  const audited = async (p: Principal, type: string, s: SessionView, data: Record<string, unknown> = {}) => {
    // Fail closed: a read that cannot be audited does not happen.
    await d.audit.append({ type, principal: p, connection: s.connection, sessionId: s.id, data: { sessionPrincipal: s.principal.subject, ...data } });
  };
  return (app: FastifyInstance, ctx: ApiContext) => {
    app.get("/api/v1/sessions", async (req) => {
      await auditor(await ctx.principal(req), "listing sessions");
      const q = parseBody(listQuery, req.query);
      return listSessions(d.store, q);
    });

    app.get<{ Params: { id: string } }>("/api/v1/sessions/:id", async (req) => {
      const p = await ctx.principal(req);
      await auditor(p, "reading a session");
      const s = await getSession(d.store, req.params.id);
      await audited(p, "session.viewed", s);
      return { session: s, operations: await sessionOperations(d.store, s.id) };
    });

    /** An auditor's read of a session's recording: checked, then audited before any byte leaves. */
    const recordingRead = async (req: FastifyRequest<{ Params: { id: string } }>, what: string, event: string, data: Record<string, unknown> = {}): Promise<SessionView> => {
      const p = await ctx.principal(req);
      await auditor(p, what);
      const s = await getSession(d.store, req.params.id);
      if (s.recording.status === "none") throw new GatehouseError("RECORDING_PRUNED", `session ${s.id} was not recorded (recording was off)`);
      if (s.recording.status === "pruned") throw new GatehouseError("RECORDING_PRUNED", s.id);
      await audited(p, event, s, data);
      return s;
    };

    app.get<{ Params: { id: string } }>("/api/v1/sessions/:id/replay", async (req, reply) => {
      const q = parseBody(replayQuery, req.query);
      const s = await recordingRead(req, "replaying a recording", "recording.replayed");
      async function* lines() {
        yield `${JSON.stringify({ type: "session", session: s })}\n`;
        for await (const item of replay(d.sink, s, q.maxRows !== undefined ? { maxRows: q.maxRows } : {})) yield `${JSON.stringify(item)}\n`;
      }
      return streamLines(reply, "application/x-ndjson; charset=utf-8", lines(), `${s.id}.replay.jsonl`);
    });

    app.get<{ Params: { id: string } }>("/api/v1/sessions/:id/export", async (req, reply) => {
      const q = parseBody(exportQuery, req.query);
      const s = await recordingRead(req, "exporting a recording", "recording.exported", { format: q.format });
      if (q.format === "asciicast") return streamLines(reply, "application/x-asciicast; charset=utf-8", asciicast(s, replay(d.sink, s)), `${s.id}.cast`);
      return streamLines(reply, "application/x-ndjson; charset=utf-8", jsonLines(s, readFrames(d.sink, s)), `${s.id}.jsonl`);
    });
  };
}

// /api/v1/audit: search, export (JSON Lines / CSV, streamed), verify, checkpoints. Only members
// of audit.auditorGroups may use it, and every read is itself audited (audit.searched,
// audit.exported, audit.verified) before its result leaves — a read that cannot be audited fails.

import { Readable } from "node:stream";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { z } from "zod";
import { type Checkpointer, checkpointFile, listCheckpoints, parseCheckpoints, parsePublicKey } from "../audit/checkpoints.ts";
import { EXPORT_CONTENT_TYPE, exportChunks } from "../audit/export.ts";
import { type AuditFilter, auditPages, eventView, MAX_PAGE, parseTime, searchAudit } from "../audit/query.ts";
import { verifyChain } from "../audit/verify.ts";
import { GatehouseError } from "../domain/errors.ts";
import type { Principal } from "../domain/principal.ts";
import { requireGroup } from "./auth.ts";
import { type ApiContext, parseBody } from "./server.ts";

const text = z.string().min(1).max(1000).optional();
const filterFields = { principal: text, type: text, connection: text, session: text, decision: text, rule: text, from: text, to: text, text };
const searchQuery = z.object({ ...filterFields, cursor: text, limit: z.coerce.number().int().min(1).max(MAX_PAGE).optional(), order: z.enum(["asc", "desc"]).optional() }).strict();
const exportQuery = z.object({ ...filterFields, format: z.enum(["jsonl", "csv"]).default("jsonl") }).strict();
const verifyBody = z
  .object({
    checkpoint: z.unknown().optional().describe("A checkpoint file's JSON: one checkpoint or a list."),
    publicKeys: z.array(z.string().max(20_000)).max(20).optional(),
    requireSigned: z.boolean().optional(),
  })
  .strict();
const checkpointsQuery = z.object({ limit: z.coerce.number().int().min(1).max(MAX_PAGE).optional() }).strict();

type FilterQuery = { [K in keyof typeof filterFields]?: string | undefined };

function toFilter(q: FilterQuery): AuditFilter {
  return {
    principal: q.principal,
    type: q.type,
    connection: q.connection,
    sessionId: q.session,
    decision: q.decision,
    rule: q.rule,
    from: q.from === undefined ? undefined : parseTime(q.from, "from"),
    to: q.to === undefined ? undefined : parseTime(q.to, "to"),
    text: q.text,
  };
}

/** The filters as given, for the audit event that records the read. */
function filtersOf(q: FilterQuery): Record<string, string> {
  return Object.fromEntries(Object.keys(filterFields).flatMap((k) => (q[k as keyof FilterQuery] === undefined ? [] : [[k, q[k as keyof FilterQuery]!]])));
}

export function auditRoutes(deps: { checkpointer: Checkpointer }) {
  return (app: FastifyInstance, ctx: ApiContext) => {
    const { store, audit, config } = ctx.deps;
    const auditor = async (req: FastifyRequest): Promise<Principal> => {
      const p = await ctx.principal(req);
      const groups = config.audit.auditorGroups;
      if (!groups.length) throw new GatehouseError("API_FORBIDDEN", "reading the audit trail needs membership in an auditor group, and none is configured (set audit.auditorGroups)");
      requireGroup(p, groups, "reading the audit trail");
      // Reads see every event appended before them (journal mode: once ingested into the store).
      await audit.drain();
      return p;
    };

    app.get("/api/v1/audit/events", async (req) => {
      const principal = await auditor(req);
      const q = parseBody(searchQuery, req.query);
      const page = await searchAudit(store, toFilter(q), { cursor: q.cursor, limit: q.limit ?? 100, order: q.order });
      await audit.append({ type: "audit.searched", principal, data: { filters: filtersOf(q), cursor: q.cursor ?? null, returned: page.rows.length } });
      return { items: page.rows.map(eventView), next: page.next };
    });

    app.get("/api/v1/audit/export", async (req, reply) => {
      const principal = await auditor(req);
      const q = parseBody(exportQuery, req.query);
      const filter = toFilter(q);
      // The export covers everything before its own audit event, even while events keep coming.
      const rec = await audit.appendLinked({ type: "audit.exported", principal, data: { filters: filtersOf(q), format: q.format } });
      filter.untilSeq = Number(rec.seq) - 1;
      const name = `gatehouse-audit-${new Date().toISOString().replace(/[:.]/g, "-")}.${q.format}`;
      reply.type(EXPORT_CONTENT_TYPE[q.format]).header("content-disposition", `attachment; filename="${name}"`);
      return reply.send(Readable.from(exportChunks(auditPages(store, filter), q.format)));
    });

    app.post("/api/v1/audit/verify", async (req) => {
      const principal = await auditor(req);
      const body = parseBody(verifyBody, req.body ?? {});
      const checkpoints = body.checkpoint === undefined ? [] : parseCheckpoints(body.checkpoint);
      const given = (body.publicKeys ?? []).map((pem, i) => parsePublicKey(pem, `publicKeys[${i}]`));
      const v = await verifyChain(store, { trustedKeys: [...deps.checkpointer.trustedKeys, ...given], checkpoints, requireSigned: body.requireSigned ?? false });
      await audit.append({ type: "audit.verified", principal, data: { ok: v.ok, checked: v.checked, head: v.head ?? null, brokenAt: v.brokenAt ?? null, givenCheckpoints: checkpoints.length, givenPublicKeys: given.length, requireSigned: body.requireSigned ?? false } });
      return v;
    });

    app.get("/api/v1/audit/checkpoints", async (req) => {
      await auditor(req);
      const q = parseBody(checkpointsQuery, req.query);
      return { items: (await listCheckpoints(store, q.limit ?? 100)).map((c) => checkpointFile(c, deps.checkpointer.signer)) };
    });

    // Idempotent: while the head has not moved, the existing checkpoint of it is returned.
    app.post("/api/v1/audit/checkpoints", async (req) => {
      await auditor(req);
      const row = await deps.checkpointer.checkpoint();
      if (!row) throw new GatehouseError("API_BAD_REQUEST", "the audit trail is empty: there is no head to checkpoint");
      return checkpointFile(row, deps.checkpointer.signer);
    });
  };
}

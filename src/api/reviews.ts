// /api/v1/reviews: list, show, approve, deny. Reviewers authenticate with their own token; the
// ReviewService enforces who may vote (never the requester, never an AI agent).

import type { FastifyInstance } from "fastify";
import { z } from "zod";
import { GatehouseError } from "../domain/errors.ts";
import type { Review } from "../domain/review.ts";
import type { ReviewService } from "../reviews/service.ts";
import { type ApiContext, parseBody } from "./server.ts";

const listQuery = z.object({
  status: z.enum(["pending", "approved", "denied", "expired", "cancelled"]).optional(),
  connection: z.string().optional(),
  limit: z.coerce.number().int().min(1).max(1000).optional(),
});
const voteBody = z.object({ comment: z.string().max(4000).optional() }).strict();
const denyBody = z.object({ reason: z.string().max(4000).optional(), comment: z.string().max(4000).optional() }).strict();
const modifyBody = z.object({ sql: z.string().min(1).max(1_000_000), comment: z.string().max(4000).optional() }).strict();

/** How often an idle event stream gets a comment line, so proxies keep it open. */
export const SSE_HEARTBEAT_MS = 15_000;

/** The API shape: a review as reviewers need to see it. */
export function reviewView(r: Review): Record<string, unknown> {
  return { ...r, createdAt: new Date(r.createdAt).toISOString(), expiresAt: new Date(r.expiresAt).toISOString(), decidedAt: r.decidedAt ? new Date(r.decidedAt).toISOString() : null, usedAt: r.usedAt ? new Date(r.usedAt).toISOString() : null };
}

export function reviewRoutes(reviews: ReviewService) {
  return (app: FastifyInstance, ctx: ApiContext) => {
    app.get("/api/v1/reviews", async (req) => {
      await ctx.principal(req);
      const q = parseBody(listQuery, req.query);
      return { items: (await reviews.list(q)).map(reviewView) };
    });
    app.get<{ Params: { id: string } }>("/api/v1/reviews/:id", async (req) => {
      await ctx.principal(req);
      const r = await reviews.get(req.params.id);
      if (!r) throw new GatehouseError("REVIEW_NOT_FOUND", req.params.id);
      return reviewView(r);
    });
    app.post<{ Params: { id: string } }>("/api/v1/reviews/:id/approve", async (req) => {
      const reviewer = await ctx.principal(req);
      const body = parseBody(voteBody, req.body ?? {});
      return reviewView(await reviews.vote(req.params.id, reviewer, "approve", body.comment));
    });
    app.post<{ Params: { id: string } }>("/api/v1/reviews/:id/modify", async (req) => {
      const reviewer = await ctx.principal(req);
      const body = parseBody(modifyBody, req.body ?? {});
      return reviewView(await reviews.modify(req.params.id, reviewer, body.sql, body.comment));
    });
    // Server-Sent Events: every review event as it happens (for UIs and chat bots).
    app.get("/api/v1/reviews/events", async (req, reply) => {
      await ctx.principal(req);
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", connection: "keep-alive", "x-accel-buffering": "no" });
      res.write(": gatehouse review events\n\n");
      let seq = 0;
      const unsubscribe = reviews.subscribe((e) => {
        res.write(`id: ${++seq}\nevent: ${e.type}\ndata: ${JSON.stringify(reviewView(e.review))}\n\n`);
      });
      const ping = setInterval(() => res.write(": ping\n\n"), SSE_HEARTBEAT_MS);
      ping.unref();
      const done = () => {
        clearInterval(ping);
        unsubscribe();
      };
      req.raw.once("close", done);
      res.once("close", done);
    });
    app.post<{ Params: { id: string } }>("/api/v1/reviews/:id/deny", async (req) => {
      const reviewer = await ctx.principal(req);
      const body = parseBody(denyBody, req.body ?? {});
      return reviewView(await reviews.vote(req.params.id, reviewer, "deny", body.reason ?? body.comment));
    });
  };
}

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
    app.post<{ Params: { id: string } }>("/api/v1/reviews/:id/deny", async (req) => {
      const reviewer = await ctx.principal(req);
      const body = parseBody(denyBody, req.body ?? {});
      return reviewView(await reviews.vote(req.params.id, reviewer, "deny", body.reason ?? body.comment));
    });
  };
}

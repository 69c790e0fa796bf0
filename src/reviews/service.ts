// Reviews: the state machine (pending → approved | denied | expired | cancelled), who may vote,
// and the waiters that hold operations. A decision releases a held operation through an
// in-process event at once (no polling).
//
// Rules that must never bend: the requester cannot approve their own operation (not through any
// group); a `service` principal (an AI agent) cannot approve; each person counts once toward the
// quorum; any single denial denies; an approval is spent once, only within its validity window.

import { EventEmitter } from "node:events";
import { randomUUID } from "node:crypto";
import type { AuditLog } from "../audit/log.ts";
import type { Connection } from "../domain/connection.ts";
import type { Decision } from "../domain/decision.ts";
import { GatehouseError } from "../domain/errors.ts";
import type { Operation } from "../domain/operation.ts";
import type { Principal } from "../domain/principal.ts";
import type { Review, ReviewStatus, ReviewVote } from "../domain/review.ts";
import type { Selectable } from "kysely";
import type { ReviewsTable } from "../store/schema.ts";
import type { Store } from "../store/store.ts";
import { bindingHash } from "./binding.ts";

export const TERMINAL: ReadonlySet<ReviewStatus> = new Set(["approved", "denied", "expired", "cancelled"]);

function fromRow(r: Selectable<ReviewsTable>): Review {
  const requester = JSON.parse(r.principal_json) as Review["requester"];
  return {
    id: r.id,
    status: r.status as ReviewStatus,
    createdAt: Number(r.created_at),
    expiresAt: Number(r.expires_at),
    decidedAt: r.decided_at === null ? null : Number(r.decided_at),
    sessionId: r.session_id,
    connection: r.connection,
    requester,
    operation: JSON.parse(r.operation_json) as Operation,
    bindingHash: r.binding_hash,
    rule: r.rule,
    message: r.message,
    approvers: JSON.parse(r.approvers_json) as string[],
    quorum: r.quorum,
    mode: r.mode as Review["mode"],
    votes: JSON.parse(r.decisions_json) as ReviewVote[],
    usedAt: r.used_at === null ? null : Number(r.used_at),
  };
}

export interface ReviewServiceOptions {
  now?: () => number;
  /** Allow members of these groups to approve anything, even alone (audited loudly). Off by default. */
  breakGlassGroups?: string[];
}

export interface CreateReviewInput {
  principal: Principal;
  connection: Connection;
  operation: Operation;
  decision: Decision;
  sessionId?: string | undefined;
}

export class ReviewService {
  readonly #store: Store;
  readonly #audit: AuditLog;
  readonly #now: () => number;
  readonly #events = new EventEmitter();
  readonly #timers = new Map<string, NodeJS.Timeout>();
  readonly #breakGlass: string[];

  constructor(store: Store, audit: AuditLog, opts: ReviewServiceOptions = {}) {
    this.#store = store;
    this.#audit = audit;
    this.#now = opts.now ?? Date.now;
    this.#breakGlass = opts.breakGlassGroups ?? [];
    this.#events.setMaxListeners(0);
  }

  async create(input: CreateReviewInput): Promise<Review> {
    const req = input.decision.review;
    if (input.decision.action !== "review" || !req) throw new Error("a review needs a review decision");
    const now = this.#now();
    const review: Review = {
      id: randomUUID(),
      status: "pending",
      createdAt: now,
      expiresAt: now + Math.round(req.expiresSeconds * 1000),
      decidedAt: null,
      sessionId: input.sessionId ?? null,
      connection: input.connection.name,
      requester: { subject: input.principal.subject, displayName: input.principal.displayName, kind: input.principal.kind, groups: input.principal.groups },
      operation: input.operation,
      bindingHash: bindingHash(input.connection.name, input.principal.subject, input.operation),
      rule: input.decision.rule,
      message: input.decision.message ?? null,
      approvers: req.approvers,
      quorum: req.quorum,
      mode: req.mode,
      votes: [],
      usedAt: null,
    };
    await this.#store.db
      .insertInto("reviews")
      .values({
        id: review.id,
        status: review.status,
        created_at: review.createdAt,
        expires_at: review.expiresAt,
        decided_at: null,
        session_id: review.sessionId,
        connection: review.connection,
        principal_subject: review.requester.subject,
        principal_json: JSON.stringify(review.requester),
        operation_json: JSON.stringify(review.operation),
        binding_hash: review.bindingHash,
        rule: review.rule,
        message: review.message,
        approvers_json: JSON.stringify(review.approvers),
        quorum: review.quorum,
        mode: review.mode,
        decisions_json: "[]",
        used_at: null,
      })
      .execute();
    await this.#audit.append({ type: "review.created", principal: input.principal, connection: review.connection, sessionId: review.sessionId ?? undefined, decision: "review", rule: review.rule, data: { reviewId: review.id, text: review.operation.text, approvers: review.approvers, quorum: review.quorum, mode: review.mode, expiresAt: review.expiresAt } });
    this.#armExpiry(review);
    return review;
  }

  async get(id: string): Promise<Review | undefined> {
    const row = await this.#store.db.selectFrom("reviews").selectAll().where("id", "=", id).executeTakeFirst();
    if (!row) return undefined;
    const r = fromRow(row);
    if (r.status === "pending" && r.expiresAt <= this.#now()) return (await this.#transition(r, "expired", [])) ?? (await this.get(id));
    return r;
  }

  async list(filter: { status?: ReviewStatus; connection?: string; limit?: number } = {}): Promise<Review[]> {
    let q = this.#store.db.selectFrom("reviews").selectAll().orderBy("created_at", "desc").limit(Math.min(filter.limit ?? 100, 1000));
    if (filter.status) q = q.where("status", "=", filter.status);
    if (filter.connection) q = q.where("connection", "=", filter.connection);
    return (await q.execute()).map(fromRow);
  }

  /** Who may vote on a review: the group that entitles them, or an error that says why not. */
  entitlement(review: Review, reviewer: Principal): string {
    if (reviewer.kind === "service") throw new GatehouseError("REVIEW_NOT_ALLOWED", "service principals (AI agents, app-only tokens) cannot decide reviews");
    if (reviewer.subject === review.requester.subject) throw new GatehouseError("REVIEW_NOT_ALLOWED", "you requested this operation; someone else must review it");
    const group = review.approvers.find((g) => reviewer.groups.includes(g));
    if (group) return group;
    const bg = this.#breakGlass.find((g) => reviewer.groups.includes(g));
    if (bg) return "break-glass";
    throw new GatehouseError("REVIEW_NOT_ALLOWED", `approvers for this review are members of: ${review.approvers.join(", ") || "(none configured)"}`);
  }

  async vote(id: string, reviewer: Principal, verdict: "approve" | "deny", comment?: string): Promise<Review> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const review = await this.get(id);
      if (!review) throw new GatehouseError("REVIEW_NOT_FOUND", id);
      if (review.status !== "pending") throw new GatehouseError("REVIEW_NOT_PENDING", `review ${id} is ${review.status}`);
      const via = this.entitlement(review, reviewer);
      if (review.votes.some((v) => v.subject === reviewer.subject)) throw new GatehouseError("REVIEW_ALREADY_VOTED", `${reviewer.displayName} already voted on review ${id}`);
      const vote: ReviewVote = { verdict, subject: reviewer.subject, displayName: reviewer.displayName, via, at: this.#now() };
      if (comment) vote.comment = comment;
      const votes = [...review.votes, vote];
      const approvals = votes.filter((v) => v.verdict === "approve").length;
      const next: ReviewStatus = verdict === "deny" ? "denied" : via === "break-glass" || approvals >= review.quorum ? "approved" : "pending";
      const updated = await this.#transition(review, next, votes);
      if (!updated) continue; // lost a race with another vote or the expiry; read again
      await this.#audit.append({
        type: verdict === "approve" ? (via === "break-glass" ? "review.break_glass" : "review.approved") : "review.denied",
        principal: reviewer,
        connection: review.connection,
        sessionId: review.sessionId ?? undefined,
        decision: next,
        rule: review.rule,
        data: { reviewId: id, requester: review.requester.subject, via, comment: comment ?? null, approvals, quorum: review.quorum },
      });
      return updated;
    }
    throw new GatehouseError("REVIEW_NOT_PENDING", `review ${id} changed while voting; retry`);
  }

  /** The client went away or the session ended: a pending hold is cancelled. */
  async cancel(id: string, reason: string): Promise<void> {
    const review = await this.get(id);
    if (!review || review.status !== "pending") return;
    if (await this.#transition(review, "cancelled", review.votes)) {
      await this.#audit.append({ type: "review.cancelled", connection: review.connection, sessionId: review.sessionId ?? undefined, data: { reviewId: id, reason } });
    }
  }

  /**
   * Spend an approved, unused, unexpired review with this binding (async mode: the identical
   * operation sent again). Returns the review, or undefined when there is none to spend.
   */
  async consumeApproved(hash: string): Promise<Review | undefined> {
    const now = this.#now();
    const rows = await this.#store.db.selectFrom("reviews").selectAll().where("binding_hash", "=", hash).where("status", "=", "approved").where("used_at", "is", null).where("expires_at", ">", now).orderBy("created_at").execute();
    for (const row of rows) {
      const res = await this.#store.db.updateTable("reviews").set({ used_at: now, version: row.version + 1 }).where("id", "=", row.id).where("version", "=", row.version).where("used_at", "is", null).executeTakeFirst();
      if (Number(res.numUpdatedRows) === 1) return { ...fromRow(row), usedAt: now };
    }
    return undefined;
  }

  /** Mark an approved review spent (hold mode: the held operation is about to run). */
  async markUsed(review: Review): Promise<boolean> {
    const res = await this.#store.db.updateTable("reviews").set({ used_at: this.#now() }).where("id", "=", review.id).where("status", "=", "approved").where("used_at", "is", null).executeTakeFirst();
    return Number(res.numUpdatedRows) === 1;
  }

  /** Resolve when the review leaves `pending` (or the signal aborts). */
  waitForDecision(id: string, signal?: AbortSignal): Promise<Review> {
    return new Promise<Review>((resolve, reject) => {
      const onDecided = (r: Review) => {
        cleanup();
        resolve(r);
      };
      const onAbort = () => {
        cleanup();
        reject(signal?.reason ?? new Error("aborted"));
      };
      const cleanup = () => {
        this.#events.off(id, onDecided);
        signal?.removeEventListener("abort", onAbort);
      };
      this.#events.on(id, onDecided);
      signal?.addEventListener("abort", onAbort, { once: true });
      // The decision may have landed before we subscribed.
      this.get(id).then(
        (r) => {
          if (r && r.status !== "pending") onDecided(r);
        },
        () => {},
      );
    });
  }

  close(): void {
    for (const t of this.#timers.values()) clearTimeout(t);
    this.#timers.clear();
  }

  #armExpiry(review: Review): void {
    const delay = Math.max(0, review.expiresAt - this.#now());
    const t = setTimeout(() => {
      this.#timers.delete(review.id);
      this.get(review.id).catch(() => {});
    }, Math.min(delay + 5, 2 ** 31 - 1));
    t.unref();
    this.#timers.set(review.id, t);
  }

  /** Compare-and-set on the version column; emits the new state to waiters. */
  async #transition(review: Review, status: ReviewStatus, votes: ReviewVote[]): Promise<Review | undefined> {
    const row = await this.#store.db.selectFrom("reviews").select(["version", "status"]).where("id", "=", review.id).executeTakeFirst();
    if (!row || row.status !== "pending") return undefined;
    const now = this.#now();
    const decidedAt = status === "pending" ? null : now;
    const res = await this.#store.db
      .updateTable("reviews")
      .set({ status, decisions_json: JSON.stringify(votes), decided_at: decidedAt, version: row.version + 1 })
      .where("id", "=", review.id)
      .where("version", "=", row.version)
      .executeTakeFirst();
    if (Number(res.numUpdatedRows) !== 1) return undefined;
    const updated: Review = { ...review, status, votes, decidedAt };
    if (status === "expired") {
      await this.#audit.append({ type: "review.expired", connection: review.connection, sessionId: review.sessionId ?? undefined, data: { reviewId: review.id } }).catch(() => {});
    }
    if (status !== "pending") {
      const t = this.#timers.get(review.id);
      if (t) clearTimeout(t);
      this.#timers.delete(review.id);
      this.#events.emit(review.id, updated);
    }
    return updated;
  }
}

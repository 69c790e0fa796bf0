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
import type { ReviewEvent, ReviewEventType } from "./notify.ts";

export const TERMINAL: ReadonlySet<ReviewStatus> = new Set(["approved", "denied", "expired", "cancelled"]);

function fromRow(r: Selectable<ReviewsTable>): Review {
  const p = JSON.parse(r.principal_json) as Principal;
  const requester = { subject: p.subject, displayName: p.displayName, kind: p.kind, groups: p.groups };
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
    notify: JSON.parse(r.notify_json) as string[],
    modified: r.modified_json ? (JSON.parse(r.modified_json) as Operation) : null,
  };
}

/** The requester as stored (the full Principal, so a modification can be policy-checked as them). */
function requesterOf(r: Selectable<ReviewsTable>): Principal {
  return JSON.parse(r.principal_json) as Principal;
}

export interface ReviewServiceOptions {
  now?: () => number;
  /** Allow members of these groups to approve anything, even alone (audited loudly). Off by default. */
  breakGlassGroups?: string[];
  /** Classify and judge a reviewer's replacement as if the requester had sent it. */
  recheck?: (requester: Principal, connection: string, text: string) => { operation: Operation; decision: Decision };
}

export type ReviewListener = (e: ReviewEvent) => void;

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
  readonly #recheck: ReviewServiceOptions["recheck"];
  readonly #listeners = new Set<ReviewListener>();
  /** Wakes waiters held by other gateway replicas (PostgreSQL store); set by `crossReplica`. */
  #publish: ((id: string) => void) | undefined;

  constructor(store: Store, audit: AuditLog, opts: ReviewServiceOptions = {}) {
    this.#store = store;
    this.#audit = audit;
    this.#now = opts.now ?? Date.now;
    this.#breakGlass = opts.breakGlassGroups ?? [];
    this.#recheck = opts.recheck;
    this.#events.setMaxListeners(0);
  }

  /** Subscribe to review events (SSE, notifications). Returns the unsubscribe function. */
  subscribe(l: ReviewListener): () => void {
    this.#listeners.add(l);
    return () => this.#listeners.delete(l);
  }

  #emit(type: ReviewEventType, review: Review): void {
    for (const l of this.#listeners) {
      try {
        l({ type, review });
      } catch {
        /* a listener's failure is its own */
      }
    }
  }

  /**
   * Several replicas on one PostgreSQL store: a decision taken through one must release an
   * operation held by another. `publish` announces a changed review id; `wake` is called by the
   * transport (LISTEN/NOTIFY) for ids announced elsewhere.
   */
  crossReplica(publish: (id: string) => void): (id: string) => void {
    this.#publish = publish;
    return (id: string) => {
      if (this.#events.listenerCount(id) === 0) return;
      this.get(id).then(
        (r) => {
          if (r && r.status !== "pending") this.#events.emit(id, r);
        },
        () => {},
      );
    };
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
      notify: req.notify,
      modified: null,
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
        principal_json: JSON.stringify(input.principal),
        operation_json: JSON.stringify(review.operation),
        binding_hash: review.bindingHash,
        rule: review.rule,
        message: review.message,
        approvers_json: JSON.stringify(review.approvers),
        quorum: review.quorum,
        mode: review.mode,
        decisions_json: "[]",
        used_at: null,
        notify_json: JSON.stringify(review.notify),
        modified_json: null,
      })
      .execute();
    await this.#audit.append({ type: "review.created", principal: input.principal, connection: review.connection, sessionId: review.sessionId ?? undefined, decision: "review", rule: review.rule, data: { reviewId: review.id, text: review.operation.text, approvers: review.approvers, quorum: review.quorum, mode: review.mode, expiresAt: review.expiresAt } });
    this.#armExpiry(review);
    this.#emit("review.created", review);
    return review;
  }

  /**
   * The newest pending, unexpired review of exactly this operation by this principal on this
   * connection (its binding hash), if any: an identical retry waits on it instead of asking the
   * reviewers again.
   */
  async pendingFor(binding: string): Promise<Review | undefined> {
    const row = await this.#store.db.selectFrom("reviews").selectAll().where("binding_hash", "=", binding).where("status", "=", "pending").where("expires_at", ">", this.#now()).orderBy("created_at", "desc").limit(1).executeTakeFirst();
    return row ? fromRow(row) : undefined;
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
      const approvals = votes.filter((v) => v.verdict !== "deny").length;
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

  /**
   * A reviewer replaces the operation (add a WHERE, a LIMIT, wrap it…). The replacement is
   * classified and judged as if the requester had sent it: a reviewer cannot slip through what
   * policy denies. Modifying counts as the modifier's approval of the replacement; other
   * approvals given to the original no longer count. Both texts are audited.
   */
  async modify(id: string, reviewer: Principal, text: string, comment?: string): Promise<Review> {
    if (!this.#recheck) throw new Error("modify needs a recheck function");
    const row = await this.#store.db.selectFrom("reviews").selectAll().where("id", "=", id).executeTakeFirst();
    if (!row) throw new GatehouseError("REVIEW_NOT_FOUND", id);
    const review = await this.get(id);
    if (!review || review.status !== "pending") throw new GatehouseError("REVIEW_NOT_PENDING", `review ${id} is ${review?.status ?? "gone"}`);
    const via = this.entitlement(review, reviewer);
    if (review.operation.parameters !== undefined) {
      throw new GatehouseError("REVIEW_MODIFY_UNSUPPORTED", "this statement came through the extended protocol with bound parameters; approve or deny it, and let the client send the changed statement");
    }
    if (!text.trim()) throw new GatehouseError("API_BAD_REQUEST", "the modified operation is empty");
    const { operation, decision } = this.#recheck(requesterOf(row), review.connection, text);
    if (decision.action === "deny") throw new GatehouseError("REVIEW_MODIFY_DENIED", `rule ${decision.rule}${decision.message ? `: ${decision.message}` : ""}`);
    const vote: ReviewVote = { verdict: "modify", subject: reviewer.subject, displayName: reviewer.displayName, via, at: this.#now() };
    if (comment) vote.comment = comment;
    const votes = [vote];
    const next: ReviewStatus = via === "break-glass" || review.quorum <= 1 ? "approved" : "pending";
    const cur = await this.#store.db.selectFrom("reviews").select(["version", "status"]).where("id", "=", id).executeTakeFirst();
    if (!cur || cur.status !== "pending") throw new GatehouseError("REVIEW_NOT_PENDING", `review ${id} changed; retry`);
    const res = await this.#store.db
      .updateTable("reviews")
      .set({ modified_json: JSON.stringify(operation), decisions_json: JSON.stringify(votes), version: cur.version + 1 })
      .where("id", "=", id)
      .where("version", "=", cur.version)
      .executeTakeFirst();
    if (Number(res.numUpdatedRows) !== 1) throw new GatehouseError("REVIEW_NOT_PENDING", `review ${id} changed while modifying; retry`);
    await this.#audit.append({
      type: "review.modified",
      principal: reviewer,
      connection: review.connection,
      sessionId: review.sessionId ?? undefined,
      decision: next,
      rule: review.rule,
      data: { reviewId: id, requester: review.requester.subject, via, comment: comment ?? null, original: review.operation.text, modified: operation.text, modifiedDecision: decision.action, modifiedRule: decision.rule },
    });
    const modified: Review = { ...review, modified: operation, votes };
    this.#emit("review.modified", modified);
    if (next === "approved") {
      const done = await this.#transition(modified, "approved", votes);
      if (done) return done;
    }
    return (await this.get(id)) ?? modified;
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
      // Aborted before the wait began (the client went away while the review was being opened):
      // no wait at all — an aborted signal never fires "abort" again.
      if (signal?.aborted) {
        reject(signal.reason ?? new Error("aborted"));
        return;
      }
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

  /**
   * After a restart: hold-mode reviews whose waiting session is gone can never release anything,
   * so they are cancelled (not lost); async-mode reviews stay valid. Pending reviews that are
   * still live get their expiry timers again.
   */
  async recover(): Promise<{ cancelled: number; rearmed: number }> {
    let cancelled = 0;
    let rearmed = 0;
    for (const r of await this.list({ status: "pending", limit: 1000 })) {
      const session = r.sessionId === null ? undefined : await this.#store.db.selectFrom("sessions").select("status").where("id", "=", r.sessionId).executeTakeFirst();
      if (r.mode === "hold" && session?.status !== "active") {
        await this.cancel(r.id, "the gateway restarted while the client was waiting");
        cancelled++;
      } else {
        this.#armExpiry(r);
        rearmed++;
      }
    }
    return { cancelled, rearmed };
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
    if (status === "approved" && !review.modified) {
      const m = await this.#store.db.selectFrom("reviews").select("modified_json").where("id", "=", review.id).executeTakeFirst();
      if (m?.modified_json) updated.modified = JSON.parse(m.modified_json) as Operation;
    }
    if (status === "expired") {
      await this.#audit.append({ type: "review.expired", connection: review.connection, sessionId: review.sessionId ?? undefined, data: { reviewId: review.id } }).catch(() => {});
    }
    if (status !== "pending") {
      const t = this.#timers.get(review.id);
      if (t) clearTimeout(t);
      this.#timers.delete(review.id);
      this.#events.emit(review.id, updated);
      this.#publish?.(review.id);
      this.#emit(`review.${status}` as ReviewEventType, updated);
    }
    return updated;
  }
}

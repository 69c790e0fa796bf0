// The one gate every protocol goes through: decide → audit → (review / hold) → verdict.
// An engine calls `judge` at exactly one place per Operation and forwards only on `forward`.
//
// Never: return `forward: true` before the decision is durable in the audit trail, or for an
// operation whose evaluation, audit or review failed (fail closed).

import { createHash } from "node:crypto";
import { canonicalJson, jsonString } from "../audit/chain.ts";
import type { AuditLog } from "../audit/log.ts";
import type { CancelSignal } from "../domain/cancel.ts";
import type { Connection } from "../domain/connection.ts";
import type { Decision } from "../domain/decision.ts";
import { GatehouseError } from "../domain/errors.ts";
import type { Operation } from "../domain/operation.ts";
import type { Principal } from "../domain/principal.ts";
import type { Review } from "../domain/review.ts";
import type { Logger } from "../observability/logger.ts";
import type { RecordingEvent } from "../recording/format.ts";
import { type GatewayMetrics, labels } from "../observability/metrics.ts";
import type { PolicyEngine } from "../policy/engine.ts";
import { bindingHash } from "../reviews/binding.ts";
import type { ReviewService } from "../reviews/service.ts";

export interface GateSession {
  id: string;
  principal: Principal;
  connection: Connection;
}

export type Verdict =
  /** `replacement`: a reviewer modified the operation; forward this one instead. */
  | { forward: true; decision: Decision; review?: Review; replacement?: Operation }
  | { forward: false; decision: Decision; error: GatehouseError; review?: Review };

export interface JudgeHooks {
  /** Hold mode: the review exists and the operation waits; tell the client (e.g. a NoticeResponse). */
  onHeld?(review: Review): void;
  /** Aborted when the client goes away while held. */
  signal?: CancelSignal;
  /**
   * Hold at most this long: then the caller is answered as in async mode (the review stays
   * pending; the identical operation sent again after approval runs once).
   */
  holdTimeoutMs?: number;
}

export interface GateDeps {
  policy: PolicyEngine;
  audit: AuditLog;
  reviews: ReviewService;
  metrics: GatewayMetrics;
  logger: Logger;
  /** Base URL of the API/UI, for links to reviews. */
  publicUrl?: string | undefined;
}

/** Most audit payloads keep the text; beyond this size they keep a prefix and the full hash. */
const AUDIT_TEXT_LIMIT = 8192;

export function auditOperation(op: Operation): Record<string, unknown> {
  const long = op.text.length > AUDIT_TEXT_LIMIT;
  const out: Record<string, unknown> = {
    protocol: op.protocol,
    text: long ? op.text.slice(0, AUDIT_TEXT_LIMIT) : op.text,
  };
  if (long) {
    out.textTruncated = true;
    out.textSha256 = createHash("sha256").update(op.text).digest("hex");
  }
  if (op.http) {
    // The body's hash is an HTTP operation's one parameter (what an approval binds).
    const h = op.http;
    out.http = { method: h.method, path: h.path, bodyBytes: h.bodyBytes, bodySha256: h.bodySha256, ...(h.git ? { git: h.git } : {}) };
  } else if (op.parameters) {
    out.parameterCount = op.parameters.length;
    out.parametersSha256 = createHash("sha256").update(JSON.stringify(op.parameters)).digest("hex");
  }
  if (op.sql) {
    out.statements = op.sql.statements.map((s) => ({ kind: s.kind, kinds: s.kinds, tables: s.tables, flags: s.flags, nodeType: s.nodeType }));
    if (op.sql.parseError !== undefined) out.parseError = op.sql.parseError;
  }
  return out;
}

/**
 * canonicalJson(auditOperation(op)), built directly for the common HTTP operation (no git, text
 * within the limit): the gate writes it for every request, and the general form's object and key
 * sorting were most of the audit's cost on the event loop. gate.test.ts checks it against the
 * general form.
 */
export function auditOperationJson(op: Operation): string {
  const h = op.http;
  if (!h || h.git || op.sql || typeof op.text !== "string" || typeof op.protocol !== "string" || op.text.length > AUDIT_TEXT_LIMIT || typeof h.bodyBytes !== "number" || typeof h.bodySha256 !== "string" || typeof h.method !== "string" || typeof h.path !== "string") return canonicalJson(auditOperation(op));
  const bytes = Number.isFinite(h.bodyBytes) ? `${h.bodyBytes}` : "null";
  return `{"http":{"bodyBytes":${bytes},"bodySha256":${jsonString(h.bodySha256)},"method":${jsonString(h.method)},"path":${jsonString(h.path)}},"protocol":${jsonString(op.protocol)},"text":${jsonString(op.text)}}`;
}

/** The recording event for a verdict: which message, what was decided, and what happened. */
export function verdictEvent(msg: number, op: Operation, v: Verdict): RecordingEvent {
  const e: RecordingEvent = { type: "decision", msg, decision: v.decision.action, rule: v.decision.rule, forwarded: v.forward };
  if (op.sql) e.kinds = op.sql.statements.map((x) => x.kind);
  if (op.parameters) e.parameterCount = op.parameters.length;
  if (v.review) {
    e.reviewId = v.review.id;
    e.reviewStatus = v.review.status;
    const last = v.review.votes.at(-1);
    if (last) e.decidedBy = last.displayName;
  }
  if (v.forward && v.replacement) e.replacement = v.replacement.text;
  if (!v.forward) e.error = { code: v.error.code, message: v.error.message };
  return e;
}

/** Metric label sets kept per connection, decision and rule: at most this many, then started over. */
const MAX_LABEL_SETS = 10_000;

type GateLabels = { connection: Readonly<{ connection: string }>; decision: Readonly<{ connection: string; decision: string; rule: string }> };

export class Gate {
  readonly #d: GateDeps;
  readonly #labels = new Map<string, GateLabels>();
  constructor(deps: GateDeps) {
    this.#d = deps;
  }

  /** The metric label sets of a decision on a connection, made once (metrics.ts labels()). */
  #labelsFor(connection: string, action: string, rule: string): GateLabels {
    const key = `${connection}\u0000${action}\u0000${rule}`;
    let l = this.#labels.get(key);
    if (!l) {
      if (this.#labels.size >= MAX_LABEL_SETS) this.#labels.clear();
      l = { connection: labels({ connection }), decision: labels({ connection, decision: action, rule }) };
      this.#labels.set(key, l);
    }
    return l;
  }

  reviewUrl(id: string): string | undefined {
    return this.#d.publicUrl ? `${this.#d.publicUrl.replace(/\/$/, "")}/reviews/${id}` : undefined;
  }

  /**
   * Policy alone, without audit or review: lets an engine see early that a review will be needed.
   * Pass the result on to `judge` so the statement is not evaluated twice.
   */
  decide(s: GateSession, op: Operation): Decision {
    return this.#d.policy.decide({ principal: s.principal, connection: s.connection, operation: op });
  }

  /**
   * Decide, audit, and (for review) hold. Not an async function: on the common path (allow or
   * deny) the audit append's promise is the only one, and every HTTP request passes here.
   */
  judge(s: GateSession, op: Operation, hooks: JudgeHooks = {}, decided?: Decision): Promise<Verdict> {
    const started = performance.now();
    const decision = decided ?? this.decide(s, op);
    const metricLabels = this.#labelsFor(s.connection.name, decision.action, decision.rule);
    this.#d.metrics.decisions.inc(metricLabels.decision);
    // Built only when it will be written: at info this line is the gate's most expensive step.
    if (this.#d.logger.isLevelEnabled("info")) {
      this.#d.logger.info({ event: "decision", session: s.id, principal: s.principal.subject, connection: s.connection.name, decision: decision.action, rule: decision.rule, kinds: op.sql?.statements.map((x) => x.kind), statementIndex: decision.statementIndex }, "decision");
    }
    let appended: Promise<unknown>;
    try {
      appended = this.#d.audit.append({ type: "operation.decided", principal: s.principal, connection: s.connection.name, sessionId: s.id, decision: decision.action, rule: decision.rule, dataJson: auditOperationJson(op) });
    } catch (e) {
      appended = Promise.reject(e);
    }
    return appended.then(
      (): Verdict | Promise<Verdict> => {
        this.#d.metrics.gateSeconds.observe(metricLabels.connection, (performance.now() - started) / 1000);
        switch (decision.action) {
          case "allow":
            return { forward: true, decision };
          case "deny":
            return { forward: false, decision, error: denial(decision) };
          case "review":
            return this.#review(s, op, decision, hooks);
        }
      },
      (e: unknown): Verdict => {
        this.#d.metrics.auditFailures.inc({ connection: s.connection.name });
        this.#d.logger.error({ session: s.id, err: (e as Error).message }, "audit write failed; operation refused");
        this.#d.metrics.gateSeconds.observe(metricLabels.connection, (performance.now() - started) / 1000);
        return { forward: false, decision, error: e instanceof GatehouseError ? e : new GatehouseError("STORE_UNAVAILABLE", (e as Error).message) };
      },
    );
  }

  async #review(s: GateSession, op: Operation, decision: Decision, hooks: JudgeHooks): Promise<Verdict> {
    const reviews = this.#d.reviews;
    try {
      // The identical operation, already approved and not yet spent (async mode's retry).
      const binding = bindingHash(s.connection.name, s.principal.subject, op);
      const spent = await reviews.consumeApproved(binding);
      if (spent) {
        await this.#d.audit.append({ type: "review.used", principal: s.principal, connection: s.connection.name, sessionId: s.id, decision: "allow", rule: decision.rule, data: { reviewId: spent.id } });
        return spent.modified ? { forward: true, decision, review: spent, replacement: spent.modified } : { forward: true, decision, review: spent };
      }
      // The identical operation still waiting for its reviewers (an async caller polling, or a
      // retry after a hold timed out): the same review, not a new one for them to decide.
      const waiting = await reviews.pendingFor(binding);
      const review = waiting?.rule === decision.rule ? waiting : await reviews.create({ principal: s.principal, connection: s.connection, operation: op, decision, sessionId: s.id });
      if (decision.review?.mode === "async") {
        return { forward: false, decision, review, error: new GatehouseError("POLICY_REVIEW_REQUIRED", `review ${review.id} (rule ${decision.rule}${decision.message ? `: ${decision.message}` : ""}); send the identical operation again once it is approved`, { reviewId: review.id, reviewUrl: this.reviewUrl(review.id) }) };
      }
      hooks.onHeld?.(review);
      let outcome: Review;
      const held = new AbortController();
      const onClientGone = () => held.abort(new Error("client gone"));
      hooks.signal?.addEventListener("abort", onClientGone, { once: true });
      if (hooks.signal?.aborted) onClientGone();
      const timer = hooks.holdTimeoutMs !== undefined ? setTimeout(() => held.abort(HOLD_TIMEOUT), hooks.holdTimeoutMs) : undefined;
      try {
        outcome = await reviews.waitForDecision(review.id, held.signal);
      } catch {
        if (held.signal.reason === HOLD_TIMEOUT) {
          return { forward: false, decision, review, error: new GatehouseError("POLICY_REVIEW_REQUIRED", `review ${review.id} is still pending after ${Math.round(hooks.holdTimeoutMs! / 1000)} s (rule ${decision.rule}); send the identical request again once it is approved`, { reviewId: review.id, reviewUrl: this.reviewUrl(review.id) }) };
        }
        // The signal's reason says why (a client's cancel request), else the client went away.
        const reason = hooks.signal?.reason;
        await reviews.cancel(review.id, reason instanceof HoldWithdrawn ? reason.message : "the client disconnected while waiting");
        return { forward: false, decision, review, error: new GatehouseError("REVIEW_CANCELLED", `review ${review.id}`) };
      } finally {
        if (timer) clearTimeout(timer);
        hooks.signal?.removeEventListener("abort", onClientGone);
      }
      if (outcome.status === "approved" && (await reviews.markUsed(outcome))) {
        await this.#d.audit.append({ type: "review.used", principal: s.principal, connection: s.connection.name, sessionId: s.id, decision: "allow", rule: decision.rule, data: { reviewId: review.id, ran: (outcome.modified ?? op).text } });
        return outcome.modified ? { forward: true, decision, review: outcome, replacement: outcome.modified } : { forward: true, decision, review: outcome };
      }
      return { forward: false, decision, review: outcome, error: reviewError(outcome) };
    } catch (e) {
      if (e instanceof GatehouseError) return { forward: false, decision, error: e };
      this.#d.logger.error({ session: s.id, err: (e as Error).message }, "review failed; operation refused");
      return { forward: false, decision, error: new GatehouseError("STORE_UNAVAILABLE", `review could not be recorded: ${(e as Error).message}`) };
    }
  }
}

const HOLD_TIMEOUT = new Error("hold timeout");

/** Abort reason for a hold the client itself called off (a PostgreSQL CancelRequest): the review is cancelled with this message. */
export class HoldWithdrawn extends Error {}

export function denial(d: Decision): GatehouseError {
  return new GatehouseError("POLICY_DENIED", `rule ${d.rule}${d.message ? `: ${d.message}` : ""}`, { rule: d.rule });
}

function reviewError(r: Review): GatehouseError {
  const last = r.votes.at(-1);
  switch (r.status) {
    case "denied":
      return new GatehouseError("REVIEW_DENIED", `review ${r.id} denied by ${last?.displayName ?? "a reviewer"}${last?.comment ? `: ${last.comment}` : ""}`, { reviewId: r.id });
    case "expired":
      return new GatehouseError("REVIEW_EXPIRED", `review ${r.id}`, { reviewId: r.id });
    default:
      return new GatehouseError("REVIEW_CANCELLED", `review ${r.id} is ${r.status}`, { reviewId: r.id });
  }
}

// The review state machine, exhaustively: every state × every action, who may vote, quorum,
// expiry, single use of approvals, modification re-checked by policy, and restart recovery.

import assert from "node:assert/strict";
import { after, before, beforeEach, describe, test } from "node:test";
import { AuditLog } from "../audit/log.ts";
import type { Connection } from "../domain/connection.ts";
import type { Decision } from "../domain/decision.ts";
import type { Operation } from "../domain/operation.ts";
import type { Principal } from "../domain/principal.ts";
import type { Review, ReviewStatus } from "../domain/review.ts";
import { openStore, type Store } from "../store/store.ts";
import { bindingHash } from "./binding.ts";
import { ReviewService } from "./service.ts";

const person = (name: string, groups: string[], kind: "human" | "service" = "human"): Principal => ({ subject: `t/${name}`, objectId: name, issuer: "i", displayName: name, kind, groups, roles: [], scopes: [], expiresAt: 0 });
const agent = person("agent", ["ai-agents", "dba"], "service");
const alice = person("alice", ["dba"]);
const bob = person("bob", ["dba"]);
const carol = person("carol", ["dev"]);
const root = person("root", ["breakglass"]);
const conn: Connection = { name: "pg", protocol: "postgres", agent: "embedded", agents: ["embedded"], labels: {}, policy: { default: "deny", unparseable: "review", reviewMode: "hold", approvers: ["dba"], reviewExpiresSeconds: 60, notify: [] } };
const op = (text: string, parameters?: (string | null)[]): Operation => ({ protocol: "postgres", text, ...(parameters ? { parameters } : {}) });
const decision = (quorum = 1, mode: "hold" | "async" = "hold", expiresSeconds = 60): Decision => ({ action: "review", rule: "r", review: { approvers: ["dba"], quorum, expiresSeconds, mode, notify: [] } });

let store: Store;
let audit: AuditLog;
let now = 1_000_000;
let svc: ReviewService;

before(async () => {
  store = await openStore("sqlite::memory:");
  audit = new AuditLog(store, { now: () => now });
});
after(async () => {
  svc?.close();
  await store.close();
});
beforeEach(() => {
  svc?.close();
  svc = new ReviewService(store, audit, {
    now: () => now,
    breakGlassGroups: ["breakglass"],
    recheck: (_p, _c, text) => {
      const deny = /drop/i.test(text);
      return { operation: op(text), decision: deny ? { action: "deny", rule: "no-drop", message: "never" } : { action: "allow", rule: "ok" } };
    },
  });
});

const create = (o = op("ALTER TABLE t ADD c int"), d = decision()) => svc.create({ principal: agent, connection: conn, operation: o, decision: d, sessionId: "sess-1" });
const code = (p: Promise<unknown>) => p.then(() => "ok", (e: { code?: string }) => e.code ?? String(e));

async function inState(status: ReviewStatus): Promise<Review> {
  const r = await create();
  if (status === "approved") await svc.vote(r.id, alice, "approve");
  if (status === "denied") await svc.vote(r.id, alice, "deny", "no");
  if (status === "cancelled") await svc.cancel(r.id, "client left");
  if (status === "expired") {
    now += 61_000;
    assert.equal((await svc.get(r.id))?.status, "expired");
  }
  return (await svc.get(r.id))!;
}

describe("review state machine", () => {
  const states: ReviewStatus[] = ["pending", "approved", "denied", "expired", "cancelled"];
  const expected: Record<ReviewStatus, Record<string, string>> = {
    pending: { approve: "approved", deny: "denied", modify: "approved", cancel: "cancelled" },
    approved: { approve: "GH-REVIEW-003", deny: "GH-REVIEW-003", modify: "GH-REVIEW-003", cancel: "approved" },
    denied: { approve: "GH-REVIEW-003", deny: "GH-REVIEW-003", modify: "GH-REVIEW-003", cancel: "denied" },
    expired: { approve: "GH-REVIEW-003", deny: "GH-REVIEW-003", modify: "GH-REVIEW-003", cancel: "expired" },
    cancelled: { approve: "GH-REVIEW-003", deny: "GH-REVIEW-003", modify: "GH-REVIEW-003", cancel: "cancelled" },
  };
  for (const s of states) {
    for (const a of ["approve", "deny", "modify", "cancel"] as const) {
      test(`${s} + ${a} → ${expected[s][a]}`, async () => {
        const r = await inState(s);
        const run = a === "approve" ? svc.vote(r.id, bob, "approve") : a === "deny" ? svc.vote(r.id, bob, "deny") : a === "modify" ? svc.modify(r.id, bob, "ALTER TABLE t ADD d int") : svc.cancel(r.id, "x");
        const c = await code(run);
        const want = expected[s][a]!;
        if (want.startsWith("GH-")) assert.equal(c, want);
        else assert.equal((await svc.get(r.id))?.status, want);
      });
    }
  }
});

describe("who may decide", () => {
  test("not the requester — not even through an approver group it belongs to", async () => {
    const r = await create();
    const self = { ...alice, subject: agent.subject, kind: "human" as const };
    assert.equal(await code(svc.vote(r.id, self, "approve")), "GH-REVIEW-002");
  });
  test("not a service principal, not a non-member", async () => {
    const r = await create();
    assert.equal(await code(svc.vote(r.id, person("bot", ["dba"], "service"), "approve")), "GH-REVIEW-002");
    assert.equal(await code(svc.vote(r.id, carol, "approve")), "GH-REVIEW-002");
    assert.equal((await svc.get(r.id))?.status, "pending");
  });
  test("quorum 2: one person counts once; a second approver completes it", async () => {
    const r = await create(undefined, decision(2));
    assert.equal((await svc.vote(r.id, alice, "approve")).status, "pending");
    assert.equal(await code(svc.vote(r.id, alice, "approve")), "GH-REVIEW-004");
    assert.equal((await svc.vote(r.id, bob, "approve")).status, "approved");
  });
  test("any single denial denies, even after approvals", async () => {
    const r = await create(undefined, decision(3));
    await svc.vote(r.id, alice, "approve");
    assert.equal((await svc.vote(r.id, bob, "deny", "not now")).status, "denied");
  });
  test("break-glass approves alone and is audited as such", async () => {
    const r = await create(undefined, decision(3));
    const out = await svc.vote(r.id, root, "approve");
    assert.equal(out.status, "approved");
    assert.equal(out.votes[0]?.via, "break-glass");
    await audit.drain();
    const ev = await store.db.selectFrom("audit_events").selectAll().where("type", "=", "review.break_glass").execute();
    assert.ok(ev.some((e) => JSON.parse(e.data).reviewId === r.id));
  });
});

describe("binding and single use", () => {
  test("an approval is spent once, only for the same bytes, principal and connection, before expiry", async () => {
    const o = op("DELETE FROM t WHERE id = $1", ["1"]);
    const r = await create(o, decision(1, "async"));
    await svc.vote(r.id, alice, "approve");
    assert.equal(await svc.consumeApproved(bindingHash("pg", agent.subject, op("DELETE FROM t WHERE id = $1", ["2"]))), undefined, "other parameters");
    assert.equal(await svc.consumeApproved(bindingHash("pg", alice.subject, o)), undefined, "another principal");
    assert.equal(await svc.consumeApproved(bindingHash("other", agent.subject, o)), undefined, "another connection");
    assert.equal(await svc.consumeApproved(bindingHash("pg", agent.subject, op("DELETE FROM t WHERE id = $1 ", ["1"]))), undefined, "one more byte");
    assert.equal((await svc.consumeApproved(bindingHash("pg", agent.subject, o)))?.id, r.id);
    assert.equal(await svc.consumeApproved(bindingHash("pg", agent.subject, o)), undefined, "used once");
  });
  test("the pending review of an identical operation is found for a retry; not once decided, expired, or for other bytes", async () => {
    const o = op("DROP TABLE retry_me");
    const h = bindingHash("pg", agent.subject, o);
    assert.equal(await svc.pendingFor(h), undefined);
    const r = await create(o, decision(1, "async", 30));
    assert.equal((await svc.pendingFor(h))?.id, r.id);
    assert.equal(await svc.pendingFor(bindingHash("pg", agent.subject, op("DROP TABLE retry_me2"))), undefined);
    assert.equal(await svc.pendingFor(bindingHash("pg", alice.subject, o)), undefined, "another principal's");
    now += 31_000;
    assert.equal(await svc.pendingFor(h), undefined, "expired");
    const r2 = await create(o, decision(1, "async", 30));
    assert.equal((await svc.pendingFor(h))?.id, r2.id);
    await svc.vote(r2.id, alice, "deny");
    assert.equal(await svc.pendingFor(h), undefined, "decided");
  });
  test("an approval past its validity window cannot be spent", async () => {
    const o = op("TRUNCATE t");
    const r = await create(o, decision(1, "async", 30));
    await svc.vote(r.id, alice, "approve");
    now += 31_000;
    assert.equal(await svc.consumeApproved(bindingHash("pg", agent.subject, o)), undefined);
  });
  test("parameters cannot be confused by concatenation", () => {
    assert.notEqual(bindingHash("pg", "s", op("x", ["ab", "c"])), bindingHash("pg", "s", op("x", ["a", "bc"])));
    assert.notEqual(bindingHash("pg", "s", op("x", [null])), bindingHash("pg", "s", op("x", ["\u0000null"])));
    assert.equal(bindingHash("pg", "s", op("x", [])), bindingHash("pg", "s", op("x")), "no parameters is no parameters, whichever protocol");
    assert.notEqual(bindingHash("pg", "s", op("x", [""])), bindingHash("pg", "s", op("x", [])));
  });
});

describe("modify", () => {
  test("the replacement is approved and kept; both texts are audited", async () => {
    const r = await create(op("DELETE FROM t"));
    const out = await svc.modify(r.id, alice, "DELETE FROM t WHERE id < 10", "bounded it");
    assert.equal(out.status, "approved");
    assert.equal(out.modified?.text, "DELETE FROM t WHERE id < 10");
    await audit.drain();
    const ev = (await store.db.selectFrom("audit_events").selectAll().where("type", "=", "review.modified").execute()).map((e) => JSON.parse(e.data)).find((d) => d.reviewId === r.id);
    assert.deepEqual([ev.original, ev.modified], ["DELETE FROM t", "DELETE FROM t WHERE id < 10"]);
  });
  test("a replacement policy denies is refused and the review stays pending", async () => {
    const r = await create();
    assert.equal(await code(svc.modify(r.id, alice, "DROP TABLE t")), "GH-REVIEW-008");
    assert.equal((await svc.get(r.id))?.status, "pending");
  });
  test("with quorum 2 the modification needs a second approval; statements with bound parameters cannot be modified", async () => {
    const r = await create(undefined, decision(2));
    assert.equal((await svc.modify(r.id, alice, "ALTER TABLE t ADD z int")).status, "pending");
    const done = await svc.vote(r.id, bob, "approve");
    assert.equal(done.status, "approved");
    assert.equal(done.modified?.text, "ALTER TABLE t ADD z int");
    const p = await create(op("UPDATE t SET a = $1", ["x"]));
    assert.equal(await code(svc.modify(p.id, alice, "UPDATE t SET a = 1 WHERE false")), "GH-REVIEW-009");
  });
  test("only entitled reviewers modify", async () => {
    const r = await create();
    assert.equal(await code(svc.modify(r.id, carol, "ALTER TABLE t ADD q int")), "GH-REVIEW-002");
  });
});

describe("waiting and recovery", () => {
  test("a decision releases a waiter promptly (no polling)", async () => {
    const r = await create();
    const waiting = svc.waitForDecision(r.id);
    const t0 = performance.now();
    await svc.vote(r.id, alice, "approve");
    const out = await waiting;
    assert.equal(out.status, "approved");
    assert.ok(performance.now() - t0 < 50, `released after ${performance.now() - t0} ms`);
  });
  test("an aborted wait rejects", async () => {
    const r = await create();
    const ac = new AbortController();
    const w = svc.waitForDecision(r.id, ac.signal);
    ac.abort(new Error("client gone"));
    await assert.rejects(w, /client gone/);
    // Aborted before the wait began: rejected at once, not left waiting for a decision.
    const gone = new AbortController();
    gone.abort(new Error("gone before"));
    await assert.rejects(svc.waitForDecision((await create()).id, gone.signal), /gone before/);
  });
  test("events are emitted to subscribers", async () => {
    const seen: string[] = [];
    const off = svc.subscribe((e) => seen.push(e.type));
    const r = await create();
    await svc.vote(r.id, alice, "deny");
    off();
    assert.deepEqual(seen, ["review.created", "review.denied"]);
  });
  test("after a restart, hold reviews whose session is gone are cancelled; async ones stay", async () => {
    await store.db.deleteFrom("reviews").execute();
    const hold = await create();
    const asyncR = await create(op("TRUNCATE x"), decision(1, "async"));
    const res = await svc.recover();
    assert.equal(res.cancelled, 1);
    assert.equal((await svc.get(hold.id))?.status, "cancelled");
    assert.equal((await svc.get(asyncR.id))?.status, "pending");
  });
});

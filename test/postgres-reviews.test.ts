// Issue 3, "Done when": the review flow in hold mode, end to end. A statement that needs review
// waits in the gateway while the client waits on its socket; a human approves or denies it through
// the REST API with their own token, and only then does the statement reach the database (or
// not). The database, seen from a direct connection, is the witness for "ran once" and "never ran".

import assert from "node:assert/strict";
import { after, before, beforeEach, test } from "node:test";
import type pg from "pg";
import { approveReview, connectDirect, connectGateway, denyReview, getReview, pendingReviewFor, sendCancelRequest, targetSessions, waitFor, waitNoTargetSessions } from "./helpers/clients.ts";
import { startTestGateway, type TestGateway } from "./helpers/gateway.ts";

let t: TestGateway;
let agent: string;
let dba: string;
let direct: pg.Client;

const counters = async () => (await direct.query("SELECT id, n FROM counters ORDER BY id")).rows;
const INITIAL = [
  { id: 1, n: 0 },
  { id: 2, n: 0 },
];

/** A client through the gateway that records the NoticeResponses it gets. */
async function noticingClient(token: string, appName: string): Promise<{ c: pg.Client; notices: string[] }> {
  const notices: string[] = [];
  const c = await connectGateway(t, token, { application_name: appName });
  c.on("notice", (n) => notices.push(`${n.message ?? ""} ${n.detail ?? ""} ${n.hint ?? ""}`));
  return { c, notices };
}

before(async () => {
  t = await startTestGateway();
  [agent, dba] = await Promise.all([t.agentToken(), t.humanToken(["dba"], "dana")]);
  direct = await connectDirect(t);
});

beforeEach(async () => {
  await direct.query("DROP TABLE IF EXISTS counters; CREATE TABLE counters (id int PRIMARY KEY, n int NOT NULL); INSERT INTO counters VALUES (1, 0), (2, 0)");
});

after(async () => {
  await direct?.end().catch(() => {});
  await t?.close();
});

test("a held extended-protocol statement shows its parameters, runs once on approval, and is released promptly", { timeout: 15_000 }, async (ctx) => {
  const { c, notices } = await noticingClient(agent, "held-params");
  try {
    const sql = "UPDATE counters SET n = n + $1";
    let resolvedAt = 0;
    const pending = c.query(sql, [5]).then((r) => {
      resolvedAt = performance.now();
      return r;
    });
    const review = await pendingReviewFor(t, sql);
    assert.equal(review.rule, "destructive");
    const shown = await getReview(t, review.id, dba);
    assert.equal(shown.status, 200);
    assert.deepEqual(shown.body.operation.parameters, ["5"], "the reviewer sees the bound value");
    assert.equal(shown.body.mode, "hold");
    await waitFor(() => notices.some((n) => n.includes(review.id)), "the waiting notice");
    assert.match(notices.join("\n"), /waiting for review .* \(rule destructive\)/);
    assert.deepEqual(await counters(), INITIAL, "nothing ran while held");

    const requestedAt = performance.now();
    const ok = await approveReview(t, review.id, dba, "go");
    const answeredAt = performance.now();
    assert.equal(ok.status, 200);
    assert.equal(ok.body.status, "approved");
    const r = await pending;
    const releaseMs = resolvedAt - answeredAt;
    // The decision wakes the held statement through an in-process event; the client's result
    // arrives within milliseconds of the API answer (often before the HTTP response is read).
    ctx.diagnostic(`approve request → result ${(resolvedAt - requestedAt).toFixed(1)} ms; approve response → result ${releaseMs.toFixed(1)} ms`);
    // Typically 2–25 ms here; the bounds are generous so a loaded CI machine does not flake, yet
    // a release by polling (or by the review's expiry) would still fail them.
    assert.ok(resolvedAt - requestedAt < 1500, `released ${Math.round(resolvedAt - requestedAt)} ms after the approve request`);
    assert.ok(releaseMs < 500, `released ${Math.round(releaseMs)} ms after the approve response`);
    assert.equal(r.rowCount, 2);
    assert.deepEqual(await counters(), [
      { id: 1, n: 5 },
      { id: 2, n: 5 },
    ], "ran exactly once");
    const after = await getReview(t, review.id, dba);
    assert.ok(after.body.usedAt, "the approval is spent");
    // The same statement again is a new operation: it waits for a new review.
    const again = c.query(sql, [5]).catch((e: Error) => e);
    const second = await pendingReviewFor(t, sql);
    assert.notEqual(second.id, review.id);
    assert.equal((await denyReview(t, second.id, dba, "once is enough")).status, 200);
    const err = await again;
    assert.ok(err instanceof Error);
    assert.deepEqual((await counters())[0], { id: 1, n: 5 }, "the second one did not run");
  } finally {
    await c.end();
  }
});

for (const mode of ["simple", "extended"] as const) {
  test(`${mode}: a denied statement fails with GH-REVIEW-005 and the session stays usable`, { timeout: 15_000 }, async () => {
    const { c } = await noticingClient(agent, `denied-${mode}`);
    try {
      const sql = mode === "simple" ? "DELETE FROM counters" : "UPDATE counters SET n = $1";
      const held = (mode === "simple" ? c.query(sql) : c.query(sql, [1])).then(
        () => assert.fail("a denied statement ran"),
        (e: Error & { code?: string }) => e,
      );
      const review = await pendingReviewFor(t, sql);
      const denied = await denyReview(t, review.id, dba, "not on a Friday");
      assert.equal(denied.status, 200);
      assert.equal(denied.body.status, "denied");
      const err = await held;
      assert.equal(err.code, "42501");
      assert.match(err.message, new RegExp(`^GH-REVIEW-005: .*review ${review.id} denied by dana: not on a Friday`));
      assert.deepEqual(await counters(), INITIAL, "the denied statement never ran");
      const next = await c.query("SELECT count(*)::int AS n FROM counters");
      assert.equal(next.rows[0].n, 2, "the session keeps working");
      const p = await c.query("SELECT $1::int + 1 AS n", [41]);
      assert.equal(p.rows[0].n, 42);
    } finally {
      await c.end();
    }
  });
}

test("the requester cannot approve their own review, even as a member of the approver group", { timeout: 15_000 }, async () => {
  // A person (delegated token) who is both an agent user and a DBA sends the statement.
  const hank = await t.humanToken(["aiAgents", "dba"], "hank");
  const { c } = await noticingClient(hank, "self-approve");
  try {
    const sql = "TRUNCATE counters";
    const held = c.query(sql).catch((e: Error) => e);
    const review = await pendingReviewFor(t, sql);
    const self = await approveReview(t, review.id, hank);
    assert.equal(self.status, 403);
    assert.equal(self.body.code, "GH-REVIEW-002");
    assert.match(String(self.body.detail), /you requested this operation/);
    assert.equal((await getReview(t, review.id, dba)).body.status, "pending", "still pending");
    assert.equal((await approveReview(t, review.id, dba)).status, 200, "another DBA may");
    assert.ok(!((await held) instanceof Error));
    assert.deepEqual(await counters(), []);
  } finally {
    await c.end();
  }
});

test("a service principal (app-only token) cannot approve, even in the approver group", { timeout: 15_000 }, async () => {
  const { c } = await noticingClient(agent, "service-approve");
  try {
    const sql = "UPDATE counters SET n = 7";
    const held = c.query(sql).catch((e: Error) => e);
    const review = await pendingReviewFor(t, sql);
    const robotDba = await t.agentToken(["dba"], "robot-dba");
    const res = await approveReview(t, review.id, robotDba);
    assert.equal(res.status, 403);
    assert.equal(res.body.code, "GH-REVIEW-002");
    assert.match(String(res.body.detail), /service principals/);
    const outsider = await approveReview(t, review.id, await t.humanToken([], "olga"));
    assert.equal(outsider.status, 403, "a human outside the approver groups cannot either");
    assert.equal(outsider.body.code, "GH-REVIEW-002");
    assert.deepEqual(await counters(), INITIAL, "nothing ran");
    assert.equal((await getReview(t, review.id, dba)).body.status, "pending");
    await denyReview(t, review.id, dba);
    assert.ok((await held) instanceof Error);
  } finally {
    await c.end();
  }
});

test("a client that disconnects while held cancels its review and leaves no target session", { timeout: 15_000 }, async () => {
  const { c } = await noticingClient(agent, "walks-away");
  const sql = "DELETE FROM counters";
  const held = c.query(sql).catch((e: Error) => e);
  const review = await pendingReviewFor(t, sql);
  assert.equal((await targetSessions(t.db.name)).filter((s) => s.application_name === "walks-away").length, 1, "one target session while held");
  // Drop the TCP connection without a Terminate message.
  (c as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
  await held;
  const cancelled = await waitFor(async () => {
    const r = await getReview(t, review.id, dba);
    return r.body.status === "cancelled" ? r.body : undefined;
  }, "the review to be cancelled");
  assert.equal(cancelled.status, "cancelled");
  const late = await approveReview(t, review.id, dba);
  assert.equal(late.status, 409, "a cancelled review cannot be approved any more");
  assert.equal(late.body.code, "GH-REVIEW-003");
  await waitNoTargetSessions(t.db.name);
  assert.deepEqual(await counters(), INITIAL);
});

test("a cancel request withdraws a statement held for review: its review is cancelled, the session goes on", { timeout: 15_000 }, async () => {
  const { c } = await noticingClient(agent, "cancels");
  const sql = "DELETE FROM counters -- called off";
  const held = c.query(sql).catch((e: Error) => e);
  const review = await pendingReviewFor(t, sql);
  const key = c as unknown as { processID: number; secretKey: number };
  await sendCancelRequest(t.host, t.port, key.processID, key.secretKey);
  const err = await held;
  assert.ok(err instanceof Error);
  assert.match(err.message, /GH-REVIEW-007/);
  const r = await getReview(t, review.id, dba);
  assert.equal(r.body.status, "cancelled");
  assert.equal((await approveReview(t, review.id, dba)).status, 409, "nothing left to approve");
  assert.deepEqual(await counters(), INITIAL);
  assert.equal((await c.query("SELECT 1 AS one")).rows[0].one, 1, "the session goes on");
  await c.end();
});

test("extended protocol: unparseable text is held at Parse and never reaches the server", { timeout: 15_000 }, async () => {
  // Regression: the engine used to forward a Parse of unparseable text to the target and defer
  // the review to the Bind, which the server then skipped — the client got a syntax error while
  // the session stayed wedged behind a review for something that could never run.
  const { c, notices } = await noticingClient(agent, "typo");
  const sql = "SELEC n FROM counters";
  const held = c.query({ text: sql, queryMode: "extended" } as pg.QueryConfig).catch((e: Error) => e);
  const review = await pendingReviewFor(t, sql);
  assert.equal(review.rule, "unparseable");
  await waitFor(() => notices.some((n) => n.includes(review.id)), "the waiting notice");
  const [session] = (await targetSessions(t.db.name)).filter((s) => s.application_name === "typo");
  assert.ok(session, "the target session exists");
  assert.doesNotMatch(session.query, /SELEC n/, "the server never saw the text");
  (c as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
  await held;
  await waitFor(async () => (await getReview(t, review.id, dba)).body.status === "cancelled", "the review to be cancelled");
});

test("a review denied inside a transaction aborts it like a server error would", { timeout: 15_000 }, async () => {
  const { c } = await noticingClient(agent, "tx-denied");
  try {
    await c.query("BEGIN");
    await c.query("UPDATE counters SET n = 1 WHERE id = 1");
    const held = c.query("UPDATE counters SET n = 2").catch((e: Error & { code?: string }) => e);
    const review = await pendingReviewFor(t, "UPDATE counters SET n = 2");
    await denyReview(t, review.id, dba, "no");
    const err = await held;
    assert.ok(err instanceof Error);
    assert.match(err.message, /^GH-REVIEW-005/);
    const aborted = await c.query("SELECT 1").catch((e: Error & { code?: string }) => e);
    assert.ok(aborted instanceof Error);
    assert.equal((aborted as Error & { code?: string }).code, "25P02", "in failed transaction");
    const commit = await c.query("COMMIT");
    assert.equal(commit.command, "ROLLBACK", "COMMIT of a failed transaction rolls back");
    assert.deepEqual(await counters(), INITIAL, "the earlier UPDATE of the transaction did not persist");
    assert.equal((await c.query("SELECT 1 AS one")).rows[0].one, 1);
  } finally {
    await c.end();
  }
});

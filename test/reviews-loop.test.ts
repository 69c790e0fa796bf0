// The approval loop's remaining promises, end to end with node-postgres and the real server:
// a reviewer's modification runs instead (both texts audited) and cannot smuggle a forbidden
// statement; expiry gives a clean error; live events (SSE) and a signed webhook report it all.

import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { api, connectDirect, connectGateway, pendingReviewFor, waitFor } from "./helpers/clients.ts";
import { DEFAULT_POLICIES, startTestGateway, type TestGateway } from "./helpers/gateway.ts";

let t: TestGateway;
let hook: Server;
const hooks: Array<{ headers: Record<string, string | string[] | undefined>; body: string }> = [];

before(async () => {
  hook = createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      hooks.push({ headers: req.headers, body });
      res.end();
    });
  });
  await new Promise<void>((r) => hook.listen(0, "127.0.0.1", r));
  process.env.GH_LOOP_HOOK_SECRET = "loop-secret";
  t = await startTestGateway({
    policies: [...DEFAULT_POLICIES, { name: "quick-expiry", operations: { tables: ["expiring"] }, decision: "review", review: { approvers: ["dba"], expires: "1s" } }],
    connectionPolicy: { approvers: ["dba"], notify: ["hook"] },
    extraConfig: (c) => {
      c.notifiers = [{ name: "hook", type: "webhook", url: `http://127.0.0.1:${(hook.address() as AddressInfo).port}/gatehouse`, secret: "env:GH_LOOP_HOOK_SECRET" }];
    },
  });
  const d = await connectDirect(t);
  await d.query("CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items SELECT generate_series(1, 10); CREATE TABLE expiring (id int)");
  await d.end();
});
after(async () => {
  await t?.close();
  hook?.close();
});

describe("modify", () => {
  test("the reviewer's bounded DELETE runs instead of the unbounded one; the client is told; both texts are audited", async () => {
    const c = await connectGateway(t, await t.agentToken());
    const notices: string[] = [];
    c.on("notice", (n) => notices.push(`${n.message} ${n.detail ?? ""}`));
    const result = c.query("DELETE FROM items");
    const review = await pendingReviewFor(t, "DELETE FROM items");
    const dba = await t.humanToken(["dba"], "dana");
    const res = await api(t, "POST", `/api/v1/reviews/${review.id}/modify`, dba, { sql: "DELETE FROM items WHERE id > 8", comment: "only the test rows" });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.status, "approved");
    const r = await result;
    assert.equal(r.rowCount, 2);
    assert.ok(notices.some((n) => n.includes("a reviewer modified this statement") && n.includes("DELETE FROM items WHERE id > 8")));
    const d = await connectDirect(t);
    assert.equal((await d.query("select count(*)::int as n from items")).rows[0].n, 8);
    await d.end();
    await t.gw.audit.drain();
    const ev = await t.gw.store.db.selectFrom("audit_events").selectAll().where("type", "=", "review.modified").execute();
    const data = ev.map((e) => JSON.parse(e.data)).find((x) => x.reviewId === review.id);
    assert.deepEqual([data.original, data.modified, data.comment], ["DELETE FROM items", "DELETE FROM items WHERE id > 8", "only the test rows"]);
    await c.end();
  });

  test("a modification into a statement policy denies is refused; the review stays pending", async () => {
    const c = await connectGateway(t, await t.agentToken());
    const result = c.query("TRUNCATE items").catch((e: Error & { code?: string }) => e);
    const review = await pendingReviewFor(t, "TRUNCATE items");
    const dba = await t.humanToken(["dba"], "dana");
    const res = await api(t, "POST", `/api/v1/reviews/${review.id}/modify`, dba, { sql: "DROP DATABASE postgres" });
    assert.equal(res.status, 403);
    assert.equal(res.body.code, "GH-REVIEW-008");
    assert.equal((await t.gw.reviews.get(review.id))?.status, "pending");
    await api(t, "POST", `/api/v1/reviews/${review.id}/deny`, dba, { reason: "no" });
    const err = (await result) as Error & { code?: string };
    assert.equal(err.code, "42501");
    await c.end();
  });
});

test("expiry: the held statement fails cleanly with GH-REVIEW-006 and changes nothing", async () => {
  const c = await connectGateway(t, await t.agentToken());
  const t0 = Date.now();
  const err = (await c.query("INSERT INTO expiring VALUES (1)").catch((e) => e)) as Error & { code?: string };
  assert.equal(err.code, "42501");
  assert.match(err.message, /GH-REVIEW-006/);
  assert.ok(Date.now() - t0 < 5000);
  assert.equal((await c.query("select 1 as ok")).rows[0].ok, 1);
  const d = await connectDirect(t);
  assert.equal((await d.query("select count(*)::int as n from expiring")).rows[0].n, 0);
  await d.end();
  await c.end();
});

test("live events (SSE) and a signed webhook report the review's life", async () => {
  const dba = await t.humanToken(["dba"], "dana");
  const ac = new AbortController();
  const res = await fetch(`${t.gw.apiUrl}/api/v1/reviews/events`, { headers: { authorization: `Bearer ${dba}` }, signal: ac.signal });
  assert.equal(res.headers.get("content-type"), "text/event-stream; charset=utf-8");
  const reader = res.body!.getReader();
  let stream = "";
  const pump = (async () => {
    for (;;) {
      const { value, done } = await reader.read().catch(() => ({ value: undefined, done: true }));
      if (done) break;
      stream += Buffer.from(value!).toString();
    }
  })();
  const c = await connectGateway(t, await t.agentToken());
  const q = c.query("CREATE TABLE sse_table (id int)");
  const review = await pendingReviewFor(t, "CREATE TABLE sse_table (id int)");
  await api(t, "POST", `/api/v1/reviews/${review.id}/approve`, dba, {});
  await q;
  await waitFor(() => stream.includes("event: review.approved"), "the approved event on the stream");
  assert.match(stream, new RegExp(`event: review.created\\ndata: \\{"id":"${review.id}"`));
  ac.abort();
  await pump;
  const got = await waitFor(() => hooks.filter((h) => h.body.includes(review.id)).length >= 2 && hooks.filter((h) => h.body.includes(review.id)), "two webhook deliveries");
  for (const h of got) {
    const ts = String(h.headers["x-gatehouse-timestamp"]);
    assert.equal(h.headers["x-gatehouse-signature"], `v1=${createHmac("sha256", "loop-secret").update(`${ts}.${h.body}`).digest("hex")}`);
  }
  assert.deepEqual(got.map((h) => JSON.parse(h.body).event).sort(), ["review.approved", "review.created"]);
  await c.end();
});

test("a held extended-protocol PREPARE approved twice: the second run gets the server's own error, the session lives", async () => {
  const c = await connectGateway(t, await t.agentToken());
  const dba = await t.humanToken(["dba"], "dana");
  const text = "PREPARE wipe AS DELETE FROM items";
  const approveNext = async () => {
    const review = await pendingReviewFor(t, text);
    assert.equal((await api(t, "POST", `/api/v1/reviews/${review.id}/approve`, dba, {})).status, 200);
  };
  const first = c.query({ name: "held-prepare", text });
  await approveNext();
  await first;
  const second = c.query({ name: "held-prepare", text }).catch((e: Error & { code?: string }) => e);
  await approveNext();
  const err = (await second) as Error & { code?: string };
  assert.equal(err.code, "42P05", "the server says the prepared statement already exists");
  assert.equal((await c.query("select 1 as ok")).rows[0].ok, 1);
  await c.end();
});

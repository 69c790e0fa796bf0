// Notifications against real local HTTP receivers: signed webhook, Slack and Teams payloads,
// retries with backoff, and a dead receiver that never delays the caller.

import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, describe, test } from "node:test";
import { SecretResolver } from "../agent/secrets.ts";
import { notifierSchema } from "../config/schema.ts";
import type { Review } from "../domain/review.ts";
import { createLogger } from "../observability/logger.ts";
import { NotificationDispatcher, type ReviewEvent, signWebhook } from "./notify.ts";

interface Received {
  headers: IncomingMessage["headers"];
  body: string;
}

async function receiver(statuses: number[] = []): Promise<{ url: string; got: Received[]; server: Server }> {
  const got: Received[] = [];
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      got.push({ headers: req.headers, body });
      res.statusCode = statuses.shift() ?? 200;
      res.end("ok");
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, got, server };
}

const review: Review = {
  id: "r-1",
  status: "pending",
  createdAt: 1,
  expiresAt: 2,
  decidedAt: null,
  sessionId: "s-1",
  connection: "pg-prod",
  requester: { subject: "t/agent", displayName: "build-agent", kind: "service", groups: ["ai-agents"] },
  operation: { protocol: "postgres", text: "ALTER TABLE users ADD COLUMN age int", sql: { statements: [{ text: "x", kinds: ["ddl"], kind: "ddl", nodeType: "AlterTableStmt", nodeTypes: ["AlterTableStmt"], tables: ["users"], functions: [], flags: [] }] } },
  bindingHash: "h",
  rule: "schema-changes",
  message: "needs a DBA",
  approvers: ["dba"],
  quorum: 1,
  mode: "hold",
  votes: [],
  usedAt: null,
  notify: ["hook"],
  modified: null,
};
const event: ReviewEvent = { type: "review.created", review, url: "https://gatehouse.example/reviews/r-1" };
const servers: Server[] = [];
after(() => {
  for (const s of servers) s.close();
});

const logger = createLogger("silent");
const until = async (f: () => boolean, ms = 3000) => {
  const end = Date.now() + ms;
  while (!f() && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
  assert.ok(f(), "condition not reached in time");
};

describe("review notifications", () => {
  test("webhook: the exact operation, and an HMAC signature the receiver can verify", async () => {
    const r = await receiver();
    servers.push(r.server);
    process.env.GH_TEST_HOOK_SECRET = "s3cret";
    const d = new NotificationDispatcher([notifierSchema.parse({ name: "hook", type: "webhook", url: r.url, secret: "env:GH_TEST_HOOK_SECRET" })], new SecretResolver(), logger);
    d.notify(["hook"], event);
    await until(() => r.got.length === 1);
    const got = r.got[0]!;
    const ts = Number(got.headers["x-gatehouse-timestamp"]);
    const expected = `v1=${createHmac("sha256", "s3cret").update(`${ts}.${got.body}`).digest("hex")}`;
    assert.equal(got.headers["x-gatehouse-signature"], expected);
    assert.equal(signWebhook("s3cret", ts, got.body), expected);
    assert.ok(Math.abs(ts - Date.now() / 1000) < 5);
    const body = JSON.parse(got.body);
    assert.equal(body.event, "review.created");
    assert.equal(body.review.operation.text, "ALTER TABLE users ADD COLUMN age int");
    assert.equal(body.review.requester.displayName, "build-agent");
    assert.equal(body.url, "https://gatehouse.example/reviews/r-1");
    d.close();
  });

  test("slack and teams payloads carry operation, requester, connection, classification and link", async () => {
    const r = await receiver();
    servers.push(r.server);
    const d = new NotificationDispatcher([notifierSchema.parse({ name: "slack", type: "slack", url: r.url }), notifierSchema.parse({ name: "teams", type: "teams", url: r.url })], new SecretResolver(), logger);
    d.notify(["slack", "teams"], event);
    await until(() => r.got.length === 2);
    const all = r.got.map((g) => g.body).join("\n");
    for (const s of ["ALTER TABLE users ADD COLUMN age int", "build-agent", "pg-prod", "ddl", "https://gatehouse.example/reviews/r-1"]) assert.ok(all.includes(s), s);
    const slack = JSON.parse(r.got.find((g) => g.body.includes('"blocks"'))!.body);
    assert.equal(slack.blocks[0].type, "header");
    const teams = JSON.parse(r.got.find((g) => g.body.includes("AdaptiveCard"))!.body);
    assert.equal(teams.attachments[0].contentType, "application/vnd.microsoft.card.adaptive");
    assert.equal(r.got[0]!.headers["x-gatehouse-signature"], undefined, "chat payloads are not signed");
    d.close();
  });

  test("failures are retried with backoff until they succeed", async () => {
    const r = await receiver([500, 503]);
    servers.push(r.server);
    const d = new NotificationDispatcher([notifierSchema.parse({ name: "hook", type: "webhook", url: r.url, retries: 3 })], new SecretResolver(), logger);
    d.baseDelayMs = 20;
    d.notify(["hook"], event);
    await until(() => d.stats.delivered === 1);
    assert.equal(r.got.length, 3);
    d.close();
  });

  test("a dead receiver never delays the caller, and gives up after its retries", async () => {
    const d = new NotificationDispatcher([notifierSchema.parse({ name: "hook", type: "webhook", url: "http://127.0.0.1:1/x", retries: 2, timeout: 1 })], new SecretResolver(), logger);
    d.baseDelayMs = 10;
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < 100; i++) d.notify(["hook"], event);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    assert.ok(ms < 50, `enqueueing 100 notifications took ${ms} ms`);
    await until(() => d.stats.failed === 100, 10_000);
    d.close();
  });

  test("events filter and unknown names are ignored", async () => {
    const r = await receiver();
    servers.push(r.server);
    const d = new NotificationDispatcher([notifierSchema.parse({ name: "hook", type: "webhook", url: r.url, events: ["decided"] })], new SecretResolver(), logger);
    d.notify(["hook", "nope"], event);
    d.notify(["hook"], { ...event, type: "review.approved" });
    await until(() => r.got.length === 1);
    assert.equal(JSON.parse(r.got[0]!.body).event, "review.approved");
    d.close();
  });
});

// Config fingerprints: secret values never reach the trail (not even through a hash of them alone),
// and the diff names what changed — sections, rules, rule order, connections.

import assert from "node:assert/strict";
import { test } from "node:test";
import { parseConfig } from "../config/load.ts";
import type { ConfigInput } from "../config/schema.ts";
import { diffConfig, fingerprintConfig, REDACTED, redactConfig } from "./config-events.ts";

const base = (): ConfigInput => ({
  store: { url: "postgres://gh:s3cret-store@db.internal:5432/gatehouse?sslpassword=s3cret-q" },
  connections: [
    { name: "pg-a", protocol: "postgres", postgres: { host: "a", database: "a", user: "u", password: "hunter2-literal" } },
    { name: "pg-b", protocol: "postgres", postgres: { host: "b", database: "b", user: "u", password: "env:PG_B_PASSWORD" } },
  ],
  notifiers: [{ name: "slack", type: "slack", url: "https://hooks.slack.com/services/T000/B000/s3cret-hook" }, { name: "hook", type: "webhook", url: "https://hooks.example/x", secret: "s3cret-hmac" }],
  policies: [
    { name: "r1", operations: { kinds: ["read"] }, decision: "allow" },
    { name: "r2", operations: { kinds: ["ddl"] }, decision: "review", review: { approvers: ["dba"] } },
  ],
  audit: { signingKey: "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIs3cret\n-----END PRIVATE KEY-----" },
});

test("redaction: literal secrets and webhook URLs go; references, hosts and names stay", () => {
  const red = JSON.stringify(redactConfig(parseConfig(base())));
  for (const secret of ["s3cret", "hunter2"]) assert.ok(!red.includes(secret), `${secret} leaked: ${red}`);
  assert.ok(red.includes("env:PG_B_PASSWORD"));
  assert.ok(red.includes("postgres://gh@db.internal:5432/gatehouse"));
  assert.ok(red.includes(`https://hooks.slack.com/${REDACTED}`));
  const fp = fingerprintConfig(parseConfig(base()));
  assert.ok(!JSON.stringify(fp).includes("s3cret"));
  assert.deepEqual(Object.keys(fp.connections), ["pg-a", "pg-b"]);
  assert.deepEqual(fp.ruleOrder, ["r1", "r2"]);
});

test("the fingerprint is stable, and a changed literal secret does not change it", () => {
  const a = fingerprintConfig(parseConfig(base()));
  assert.equal(fingerprintConfig(parseConfig(base())).fingerprint, a.fingerprint);
  const c = base();
  c.connections![0]!.postgres!.password = "another-literal";
  assert.equal(fingerprintConfig(parseConfig(c)).fingerprint, a.fingerprint);
  assert.equal(diffConfig(a, a), undefined);
});

test("the diff names added, removed and changed rules and connections, reorders and sections", () => {
  const a = fingerprintConfig(parseConfig(base()));
  const c = base();
  c.policies = [{ name: "r3", operations: { kinds: ["write"] }, decision: "deny" }, { ...c.policies![1]!, message: "now with a message" }, c.policies![0]!];
  c.connections = [c.connections![1]!, { ...c.connections![0]!, labels: { env: "prod" } }];
  c.logging = { level: "warn" };
  const d = diffConfig(a, fingerprintConfig(parseConfig(c)));
  assert.deepEqual(d?.rules, { added: ["r3"], removed: [], changed: ["r2"] });
  assert.equal(d?.rulesReordered, true);
  assert.deepEqual(d?.connections, { added: [], removed: [], changed: ["pg-a"] });
  assert.deepEqual(d?.sections, ["connections", "logging", "policies"]);

  const reorderedConnections = base();
  reorderedConnections.connections!.reverse();
  assert.equal(fingerprintConfig(parseConfig(reorderedConnections)).fingerprint, a.fingerprint, "connection order means nothing");
  const removed = base();
  removed.policies!.pop();
  const d2 = diffConfig(a, fingerprintConfig(parseConfig(removed)));
  assert.deepEqual([d2?.rules.removed, d2?.rulesReordered], [["r2"], false]);
});

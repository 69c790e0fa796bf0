// Policy on HTTP and git operations, through the real classifier: methods, normalized paths (no
// trick dodges a rule), query/header/JSON conditions, per-ref git pushes, and the rule that one
// protocol's conditions never match another's operations.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ruleSchema } from "../config/schema.ts";
import type { Connection } from "../domain/connection.ts";
import type { Principal } from "../domain/principal.ts";
import { bodyText, describeHttp } from "../protocols/http/classify.ts";
import { PathRejected } from "../protocols/http/normalize.ts";
import { classifySql, initClassifier } from "../protocols/postgres/classify/index.ts";
import { PolicyEngine, pathReadings } from "./engine.ts";

const agent: Principal = { subject: "t/agent", objectId: "agent", issuer: "i", displayName: "agent", kind: "service", groups: ["ai-agents"], roles: [], scopes: [], expiresAt: 0 };
const human: Principal = { ...agent, subject: "t/alice", displayName: "alice", kind: "human", groups: ["dev"] };
const ci: Connection = { name: "ci", protocol: "http", agent: "embedded", agents: ["embedded"], labels: {}, policy: { default: "deny", unparseable: "review", reviewMode: "hold", approvers: ["ops"], reviewExpiresSeconds: 60, notify: [] } };
const repo: Connection = { ...ci, name: "repo" };

const engine = new PolicyEngine(
  [
    { name: "no-deletes", operations: { methods: ["DELETE"] }, decision: "deny" },
    { name: "builds", operations: { methods: ["POST"], paths: ["/job/*/build"] }, decision: "review" },
    { name: "deploys", operations: { methods: ["POST"], paths: ["/deploy", "/deploy/**"] }, decision: "review" },
    { name: "agent-rotations", principals: { kind: "service" }, operations: { methods: ["POST"], paths: ["/api/secrets/*/rotate"] }, decision: "review" },
    { name: "prod-json", operations: { methods: ["POST", "PUT"], json: { "/spec/env": "prod*" } }, decision: "review" },
    { name: "dry-run-header", operations: { headers: { "X-Dry-Run": "false" }, methods: ["POST"], paths: ["/plan"] }, decision: "review" },
    { name: "force-query", operations: { query: { force: "true" } }, decision: "deny" },
    { name: "read-anything", principals: { groups: ["ai-agents"] }, operations: { methods: ["GET", "HEAD"], paths: ["/**"] }, decision: "allow" },
    { name: "public-posts", operations: { methods: ["POST"], paths: ["/public/**"] }, decision: "allow" },
    { name: "agents-post", principals: { groups: ["ai-agents"] }, operations: { protocols: ["http"], methods: ["POST"] }, decision: "allow" },
    { name: "git-fetch", operations: { git: { actions: ["fetch"] } }, decision: "allow" },
    { name: "git-push", principals: { groups: ["ai-agents"] }, operations: { git: { actions: ["push"] } }, decision: "allow" },
    { name: "protected-branches", operations: { git: { actions: ["push"], refs: ["main", "release/*"] } }, decision: "review" },
    { name: "no-force-or-delete", operations: { git: { actions: ["force", "delete"] } }, decision: "deny" },
    { name: "sql-reads", operations: { kinds: ["read"] }, decision: "allow" },
    { name: "sql-tables", operations: { tables: ["secrets"] }, decision: "allow" },
  ].map((r) => ruleSchema.parse(r)),
);

function decide(method: string, target: string, opts: { principal?: Principal; body?: string; headers?: Record<string, string>; git?: boolean; connection?: Connection; fastForward?: boolean } = {}) {
  const op = describeHttp({ method, target, headers: opts.headers ?? {}, body: Buffer.from(opts.body ?? ""), git: opts.git ?? false });
  if (opts.fastForward !== undefined) for (const u of op.http.git?.updates ?? []) u.fastForward = opts.fastForward;
  return engine.decide({ principal: opts.principal ?? agent, connection: opts.connection ?? ci, operation: op });
}

describe("HTTP rules", () => {
  test("methods and paths", () => {
    assert.deepEqual([decide("GET", "/job/x").action, decide("GET", "/job/x").rule], ["allow", "read-anything"]);
    assert.equal(decide("DELETE", "/anything").rule, "no-deletes");
    assert.equal(decide("POST", "/job/web/build").rule, "builds");
    assert.equal(decide("POST", "/job/web/other").action, "allow");
    assert.equal(decide("POST", "/api/secrets/db/rotate").rule, "agent-rotations");
    assert.equal(decide("POST", "/api/secrets/db/rotate", { principal: human }).action, "deny", "humans: no allow rule for them, default deny");
    assert.equal(decide("GET", "/x", { principal: human }).rule, "default");
  });

  test("path tricks cannot dodge a rule", () => {
    for (const t of ["/deploy", "/a/../deploy", "/x/%2e%2e/deploy", "//deploy", "/./deploy", "/DEPLOY", "/Deploy/", "/%64eploy", "/deploy/prod/now", "/deploy?x=1"]) {
      assert.deepEqual([decide("POST", t).action, decide("POST", t).rule], ["review", "deploys"], t);
    }
    for (const t of ["/%2564eploy", "/de%2Fploy", "/a\\..\\deploy", "/..%2fdeploy"]) assert.throws(() => decide("POST", t), PathRejected, t);
  });

  test("path parameters and trailing dots: deny and review catch every reading a target may take; allow must cover them all", () => {
    // Tomcat, Jetty and Spring drop `;…` from segments (and then resolve `..`); IIS drops trailing dots and spaces.
    for (const t of ["/deploy;jsessionid=1", "/x/..;/deploy", "/deploy.", "/deploy%20", "/Deploy.;v=2/", "/deploy;/prod"]) {
      assert.deepEqual([decide("POST", t).action, decide("POST", t).rule], ["review", "deploys"], t);
    }
    assert.deepEqual(pathReadings("/x/..;/deploy"), ["/x/..;/deploy", "/deploy"]);
    assert.deepEqual(pathReadings("/a;b/c."), ["/a;b/c.", "/a/c.", "/a;b/c", "/a/c"]);
    assert.deepEqual(pathReadings("/plain/path.json"), ["/plain/path.json"], "most paths have one reading");
    // An allow rule covers a path only if it covers every reading: `/public/..;/admin` is
    // `/admin` to a Tomcat target.
    assert.equal(decide("POST", "/public/a;v=1", { principal: human }).rule, "public-posts");
    assert.equal(decide("POST", "/public/..;/admin", { principal: human }).action, "deny");
    assert.equal(decide("POST", "/public/x.", { principal: human }).rule, "public-posts");
  });

  test("query values, header names and values: deny and review read them as loosely as a target may", () => {
    for (const q of ["/job/x?force=TRUE", "/job/x?Force=true", "/job/x?a=1&force=True"]) assert.equal(decide("GET", q).rule, "force-query", q);
    for (const headers of [{ "x-dry-run": "FALSE" }, { x_dry_run: "false" }, { "x-dry-run": "false, true" }, { "x-dry-run": "true,false" }] as Record<string, string>[]) {
      assert.equal(decide("POST", "/plan", { headers }).rule, "dry-run-header", JSON.stringify(headers));
    }
    const allowHeader = new PolicyEngine([ruleSchema.parse({ name: "ok", operations: { headers: { "x-mode": "safe" }, query: { v: "1" } }, decision: "allow" })]);
    const d = (target: string, headers: Record<string, string>) => allowHeader.decide({ principal: agent, connection: ci, operation: describeHttp({ method: "GET", target, headers, body: Buffer.alloc(0), git: false }) }).rule;
    assert.equal(d("/?v=1", { "x-mode": "safe" }), "ok");
    assert.equal(d("/?v=1", { "x-mode": "SAFE" }), "default", "allow compares exactly");
    assert.equal(d("/?v=1", { x_mode: "safe" }), "default");
    assert.equal(d("/?V=1", { "x-mode": "safe" }), "default");
    // Allow must cover every value a target may take: a second value, another spelling of the
    // name, or another element of a list.
    assert.equal(d("/?v=1&v=2", { "x-mode": "safe" }), "default");
    assert.equal(d("/?v=1&V=2", { "x-mode": "safe" }), "default");
    assert.equal(d("/?v=1", { "x-mode": "safe", x_mode: "unsafe" }), "default");
    assert.equal(d("/?v=1", { "x-mode": "safe, unsafe" }), "default");
  });

  test("allow rules match paths exactly (a case variant is not covered)", () => {
    assert.equal(decide("POST", "/public/x", { principal: human }).rule, "public-posts");
    assert.equal(decide("POST", "/PUBLIC/x", { principal: human }).action, "deny");
  });

  test("query, header and JSON body conditions", () => {
    assert.equal(decide("GET", "/job/x?force=true").rule, "force-query");
    assert.equal(decide("GET", "/job/x?force=false").action, "allow");
    assert.equal(decide("POST", "/plan", { headers: { "x-dry-run": "false" } }).rule, "dry-run-header");
    assert.equal(decide("POST", "/plan", { headers: { "x-dry-run": "true" } }).action, "allow");
    const json = { "content-type": "application/json" };
    assert.equal(decide("POST", "/apps", { headers: json, body: JSON.stringify({ spec: { env: "production" } }) }).rule, "prod-json");
    assert.equal(decide("POST", "/apps", { headers: json, body: JSON.stringify({ spec: { env: "staging" } }) }).action, "allow");
    // Whatever it is labelled, in whatever form a target may still read as JSON, or not judgeable: caught.
    const prod = JSON.stringify({ spec: { env: "production" } });
    const variants: Array<[string, Record<string, string>, Buffer]> = [
      ["text/plain", { "content-type": "text/plain" }, Buffer.from(prod)],
      ["no content type", {}, Buffer.from(prod)],
      ["a UTF-8 byte-order mark", json, Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(prod)])],
      ["UTF-16LE with its mark", json, Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(prod, "utf16le")])],
      ["UTF-16 by charset", { "content-type": "application/json; charset=utf-16le" }, Buffer.from(prod, "utf16le")],
      ["a key twice (the target may keep either)", json, Buffer.from('{"spec":{"env":"production","env":"dev"}}')],
      ["the other order", json, Buffer.from('{"spec":{"env":"dev","env":"production"}}')],
      ["not strict JSON (a comment)", json, Buffer.from('{"spec":{"env":"dev"}} // prod')],
      ["UTF-32 (not read by the gate)", json, Buffer.concat([Buffer.from([0xff, 0xfe, 0, 0]), ...[...prod].map((c) => Buffer.from([c.charCodeAt(0), 0, 0, 0]))])],
    ];
    for (const [why, headers, body] of variants) {
      const op = describeHttp({ method: "POST", target: "/apps", headers, body, git: false });
      assert.equal(engine.decide({ principal: agent, connection: ci, operation: op }).rule, "prod-json", why);
    }
    // What is certainly not JSON is not judged as JSON: a binary upload, a form.
    assert.equal(decide("POST", "/apps", { headers: { "content-type": "application/octet-stream" }, body: "\u0001\u0002binary" }).action, "allow");
    assert.equal(decide("POST", "/apps", { headers: { "content-type": "application/x-www-form-urlencoded" }, body: "spec.env=production" }).action, "allow");
  });

  test("a streamed (unread) body: content rules match for deny/review, never cover for allow", () => {
    const op = describeHttp({ method: "POST", target: "/apps", headers: { "content-type": "application/json" }, body: Buffer.alloc(0), git: false, streamed: { declaredBytes: 50_000_000 } });
    assert.equal(op.http.bodyStreamed, true);
    assert.equal(op.http.bodyBytes, 50_000_000);
    assert.deepEqual(op.parameters, ["streamed", "content-type: application/json"]);
    assert.equal(engine.decide({ principal: agent, connection: ci, operation: op }).rule, "prod-json");
    const allowJson = new PolicyEngine([ruleSchema.parse({ name: "ok-json", operations: { methods: ["POST"], json: { "/spec/env": "dev" } }, decision: "allow" })]);
    assert.equal(allowJson.decide({ principal: agent, connection: ci, operation: op }).rule, "default");
    // Unless its start shows it is not JSON at all (a large binary upload is not caught by JSON rules).
    const binary = describeHttp({ method: "POST", target: "/apps", headers: { "content-type": "application/octet-stream" }, body: Buffer.from([0x89, 0x50, 0x4e, 0x47]), git: false, streamed: { declaredBytes: 40_000_000 } });
    assert.equal(binary.http.jsonUnknown, undefined);
    assert.equal(engine.decide({ principal: agent, connection: ci, operation: binary }).action, "allow");
    const gz = describeHttp({ method: "POST", target: "/apps", headers: { "content-encoding": "gzip" }, body: Buffer.from([0x1f, 0x8b]), git: false, streamed: { declaredBytes: 40_000_000 } });
    assert.equal(engine.decide({ principal: agent, connection: ci, operation: gz }).rule, "prod-json", "a compressed start cannot tell");
    assert.throws(() => describeHttp({ method: "POST", target: "/r.git/git-receive-pack", headers: {}, body: Buffer.alloc(0), git: true, streamed: { declaredBytes: undefined } }), /GH-HTTP-003|must fit/);
  });

  test("the body is bound: a different body, or the same read as another type or coding, is a different operation", () => {
    const post = (body: string, headers: Record<string, string> = {}) => describeHttp({ method: "POST", target: "/deploy", headers, body: Buffer.from(body), git: false });
    const a = post("v1");
    const b = post("v2");
    assert.equal(a.text, b.text);
    assert.notDeepEqual(a.parameters, b.parameters);
    assert.notDeepEqual(post("v1", { "content-type": "application/json" }).parameters, post("v1", { "content-type": "text/plain" }).parameters);
    assert.notDeepEqual(post("v1").parameters, post("v1", { "content-encoding": "gzip" }).parameters);
    assert.deepEqual(post("v1", { "x-trace": "1" }).parameters, a.parameters, "other headers are not bound");
    // What a reviewer reads: short UTF-8 text bodies, not binary ones.
    assert.equal(bodyText(Buffer.from('{"service":"web"}')), '{"service":"web"}');
    assert.equal(bodyText(Buffer.from([0xff, 0x00, 0x01])), undefined);
    assert.equal(bodyText(Buffer.from("x".repeat(5000)))?.length, 4097);
  });

  test("a method override header: deny and review rules see either method, allow must cover both, and the text says so", () => {
    for (const name of ["X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"]) {
      const headers = { [name.toLowerCase()]: "delete" };
      assert.equal(decide("POST", "/public/x", { headers }).rule, "no-deletes", name);
      assert.equal(decide("GET", "/job/x", { headers }).rule, "no-deletes", name);
    }
    const op = describeHttp({ method: "POST", target: "/x", headers: { "x-http-method-override": "PUT" }, body: Buffer.alloc(0), git: false });
    assert.equal(op.text, "POST /x (X-HTTP-Method-Override: PUT)");
    // public-posts allows POST only: a POST that asks to run as PUT is not covered.
    assert.equal(decide("POST", "/public/x", { principal: human, headers: { "x-http-method-override": "PUT" } }).action, "deny");
    assert.equal(decide("POST", "/public/x", { principal: human, headers: { "x-http-method-override": "post" } }).rule, "public-posts");
  });

  test("credentials never become part of the operation", () => {
    const op = describeHttp({ method: "GET", target: "/x", headers: { authorization: "Bearer secret", cookie: "s=1", "x-trace": "t" }, body: Buffer.alloc(0), git: false });
    assert.deepEqual(op.http.headers, { "x-trace": "t" });
  });
});

const Z = "0".repeat(40);
const A = "a".repeat(40);
const B = "b".repeat(40);
function push(...cmds: string[]): string {
  const lines = cmds.map((c, i) => {
    const l = `${c}${i === 0 ? "\0report-status side-band-64k" : ""}\n`;
    return `${(Buffer.byteLength(l) + 4).toString(16).padStart(4, "0")}${l}`;
  });
  return `${lines.join("")}0000PACK`;
}

describe("git rules", () => {
  const git = (method: string, target: string, o: Parameters<typeof decide>[2] = {}) => decide(method, target, { git: true, connection: repo, ...o });
  test("fetches are allowed; a push to a feature branch passes; protected branches need review", () => {
    assert.equal(git("GET", "/app.git/info/refs?service=git-upload-pack", { principal: human }).rule, "git-fetch");
    assert.equal(git("POST", "/app.git/git-upload-pack", { principal: human }).rule, "git-fetch");
    assert.equal(git("GET", "/app.git/info/refs?service=git-receive-pack").action, "allow");
    assert.equal(git("GET", "/app.git/info/refs?service=git-receive-pack", { principal: human }).rule, "default", "humans may not push here");
    assert.equal(git("POST", "/app.git/git-receive-pack", { body: push(`${A} ${B} refs/heads/feature/x`), fastForward: true }).action, "allow");
    assert.equal(git("POST", "/app.git/git-receive-pack", { body: push(`${Z} ${B} refs/heads/feature/new`) }).action, "allow");
    assert.equal(git("POST", "/app.git/git-receive-pack", { body: push(`${Z} ${B} refs/heads/feature/new`), principal: human }).action, "deny", "humans may not push here");
    assert.equal(git("POST", "/app.git/git-receive-pack", { body: push(`${A} ${B} refs/heads/main`), fastForward: true }).rule, "protected-branches");
    assert.equal(git("POST", "/app.git/git-receive-pack", { body: push(`${A} ${B} refs/heads/release/1.2`), fastForward: true }).rule, "protected-branches");
  });
  test("force pushes (or pushes not proven fast-forward) and deletions are denied", () => {
    assert.equal(git("POST", "/app.git/git-receive-pack", { body: push(`${A} ${B} refs/heads/feature/x`), fastForward: false }).rule, "no-force-or-delete");
    assert.equal(git("POST", "/app.git/git-receive-pack", { body: push(`${A} ${B} refs/heads/feature/x`) }).rule, "no-force-or-delete");
    assert.equal(git("POST", "/app.git/git-receive-pack", { body: push(`${A} ${Z} refs/heads/feature/x`) }).rule, "no-force-or-delete");
  });
  test("ref patterns: deny and review compare case-insensitively, allow exactly", () => {
    assert.equal(git("POST", "/app.git/git-receive-pack", { body: push(`${A} ${B} refs/heads/MAIN`), fastForward: true }).rule, "protected-branches");
    assert.equal(git("POST", "/app.git/git-receive-pack", { body: push(`${A} ${B} refs/heads/Release/1`), fastForward: true }).rule, "protected-branches");
  });
  test("a push is judged per ref: one protected ref in it makes the whole push need review", () => {
    const d = git("POST", "/app.git/git-receive-pack", { body: push(`${A} ${B} refs/heads/feature/x`, `${A} ${B} refs/heads/main`), fastForward: true });
    assert.deepEqual([d.action, d.rule, d.statementIndex], ["review", "protected-branches", 1]);
  });
  test("git's flush-only probe before a large push is a push to the repository with no ref", () => {
    const probe = describeHttp({ method: "POST", target: "/app.git/git-receive-pack", headers: {}, body: Buffer.from("0000"), git: true });
    assert.deepEqual(probe.http.git, { service: "receive-pack", phase: "rpc", updates: [] });
    assert.equal(git("POST", "/app.git/git-receive-pack", { body: "0000" }).action, "allow");
    assert.equal(git("POST", "/app.git/git-receive-pack", { body: "0000", principal: human }).action, "deny", "no push rule for this principal: the probe is refused too");
  });
  test("malformed pushes are refused", () => {
    for (const body of ["00", "zzzz", "0000PACK", push(`${A} ${B} main`), push(`${A} ${B} refs/heads/a..b`), push(`${Z} ${Z} refs/heads/x`), push("garbage"), `${push(`${A} ${B} refs/heads/x`).slice(0, 20)}`]) {
      assert.throws(() => git("POST", "/app.git/git-receive-pack", { body }), /push|pkt-line|ref|ids/);
    }
  });
});

describe("protocols do not cross", () => {
  test("SQL conditions never match HTTP operations, and HTTP conditions never match SQL", async () => {
    assert.equal(decide("GET", "/x", { principal: human }).rule, "default", "sql-tables (allow) does not vacuously cover an HTTP request");
    await initClassifier();
    const pg: Connection = { ...ci, protocol: "postgres", name: "db" };
    const d = engine.decide({ principal: agent, connection: pg, operation: { protocol: "postgres", text: "DELETE FROM t", sql: classifySql("DELETE FROM t") } });
    assert.notEqual(d.rule, "no-deletes");
  });
});

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import type { Connection } from "../domain/connection.ts";
import { ACTION_RANK } from "../domain/decision.ts";
import type { Operation, SqlKind, SqlStatement, RiskFlag } from "../domain/operation.ts";
import type { Principal } from "../domain/principal.ts";
import { ruleSchema, type RuleConfig } from "../config/schema.ts";
import { PolicyEngine } from "./engine.ts";

const agent: Principal = { subject: "t/agent", objectId: "agent", issuer: "i", displayName: "agent", kind: "service", groups: ["ai-agents", "g-1"], roles: ["Reader"], scopes: [], expiresAt: 0 };
const human: Principal = { ...agent, subject: "t/alice", objectId: "alice", displayName: "alice", kind: "human", groups: ["dba"], roles: [] };

function conn(over: Partial<Connection> = {}): Connection {
  return { name: "pg-prod", protocol: "postgres", agent: "embedded", agents: ["embedded"], labels: { env: "prod" }, policy: { default: "deny", unparseable: "review", reviewMode: "hold", approvers: ["dba"], reviewExpiresSeconds: 3600, notify: [] }, ...over };
}

function stmt(kinds: SqlKind[], extra: Partial<SqlStatement> = {}): SqlStatement {
  return { text: "x", kinds, kind: kinds[0] ?? "unknown", nodeType: "SelectStmt", nodeTypes: ["SelectStmt"], tables: [], functions: [], flags: [], ...extra };
}

function sqlOp(...statements: SqlStatement[]): Operation {
  return { protocol: "postgres", text: "x", sql: { statements } };
}

const rules = (rs: unknown[]): RuleConfig[] => rs.map((r) => ruleSchema.parse(r));

const sample = rules([
  { name: "agents-read", principals: { groups: ["ai-agents"] }, operations: { kinds: ["read", "transaction", "session"] }, decision: "allow" },
  { name: "agents-write", principals: { groups: ["ai-agents"] }, connections: { labels: { env: "dev" } }, operations: { kinds: ["write"] }, decision: "allow" },
  { name: "schema-changes", principals: { groups: ["ai-agents"] }, operations: { kinds: ["ddl", "dcl"] }, decision: "review", message: "schema changes need a DBA", review: { approvers: ["dba"], quorum: 2, expires: "30m" } },
  { name: "no-drop-database", operations: { flags: ["drop-database"] }, decision: "deny", message: "never drop a database" },
  { name: "destructive", operations: { flags: ["delete-without-where", "update-without-where", "truncate"] }, decision: "review" },
  { name: "secrets", operations: { tables: ["vault.*", "secrets"] }, decision: "deny", message: "secret tables are off limits" },
]);
const engine = new PolicyEngine(sample);

describe("policy engine", () => {
  test("reads by ai-agents are allowed by the read rule", () => {
    const d = engine.decide({ principal: agent, connection: conn(), operation: sqlOp(stmt(["read"], { tables: ["public.users"] })) });
    assert.deepEqual(d, { action: "allow", rule: "agents-read" });
  });

  test("no matching rule falls to the connection default and says so", () => {
    const d = engine.decide({ principal: human, connection: conn(), operation: sqlOp(stmt(["read"])) });
    assert.equal(d.action, "deny");
    assert.equal(d.rule, "default");
    assert.match(d.message ?? "", /default for connection pg-prod is deny/);
    const d2 = engine.decide({ principal: human, connection: conn({ policy: { ...conn().policy, default: "allow" } }), operation: sqlOp(stmt(["read"])) });
    assert.deepEqual(d2, { action: "allow", rule: "default" });
  });

  test("ddl needs review with the rule's approvers, quorum, expiry and the connection's mode", () => {
    const d = engine.decide({ principal: agent, connection: conn(), operation: sqlOp(stmt(["ddl"])) });
    assert.deepEqual(d, { action: "review", rule: "schema-changes", message: "schema changes need a DBA", review: { approvers: ["dba"], quorum: 2, expiresSeconds: 1800, mode: "hold", notify: [] } });
  });

  test("review without settings uses connection defaults", () => {
    const d = engine.decide({ principal: agent, connection: conn({ policy: { ...conn().policy, reviewMode: "async", approvers: ["ops"] } }), operation: sqlOp(stmt(["write"], { flags: ["truncate"] })) });
    assert.equal(d.action, "review");
    assert.equal(d.rule, "destructive");
    assert.deepEqual(d.review, { approvers: ["ops"], quorum: 1, expiresSeconds: 3600, mode: "async", notify: [] });
  });

  test("most restrictive wins: deny beats an allow and a review that also match", () => {
    const d = engine.decide({ principal: agent, connection: conn(), operation: sqlOp(stmt(["admin", "ddl"], { flags: ["drop", "drop-database"] })) });
    assert.equal(d.action, "deny");
    assert.equal(d.rule, "no-drop-database");
    assert.equal(d.message, "never drop a database");
  });

  test("ties go to the earlier rule", () => {
    const e = new PolicyEngine(rules([
      { name: "first", operations: { kinds: ["ddl"] }, decision: "review", message: "one" },
      { name: "second", operations: { kinds: ["ddl"] }, decision: "review", message: "two" },
    ]));
    assert.equal(e.decide({ principal: agent, connection: conn(), operation: sqlOp(stmt(["ddl"])) }).rule, "first");
  });

  test("allow rules need every kind covered: a hidden write is not a read", () => {
    // WITH d AS (DELETE …) SELECT … has kinds read + write
    const d = engine.decide({ principal: agent, connection: conn(), operation: sqlOp(stmt(["read", "write"])) });
    assert.equal(d.action, "deny");
    assert.equal(d.rule, "default");
  });

  test("deny rules catch any listed table; qualified patterns catch unqualified tables", () => {
    const op = (tables: string[]) => sqlOp(stmt(["read"], { tables }));
    assert.equal(engine.decide({ principal: agent, connection: conn(), operation: op(["public.users", "secrets"]) }).rule, "secrets");
    assert.equal(engine.decide({ principal: agent, connection: conn(), operation: op(["vault.keys"]) }).rule, "secrets");
    assert.equal(engine.decide({ principal: agent, connection: conn(), operation: op(["keys"]) }).rule, "secrets");
    assert.equal(engine.decide({ principal: agent, connection: conn(), operation: op(["other.secrets"]) }).rule, "secrets");
    assert.equal(engine.decide({ principal: agent, connection: conn(), operation: op(["public.users"]) }).action, "allow");
  });

  test("allow rules with tables need every table covered; qualified patterns do not cover unqualified tables", () => {
    const e = new PolicyEngine(rules([{ name: "reports", operations: { kinds: ["read"], tables: ["reporting.*", "orders"] }, decision: "allow" }]));
    const dec = (tables: string[]) => e.decide({ principal: agent, connection: conn(), operation: sqlOp(stmt(["read"], { tables })) });
    assert.equal(dec(["reporting.daily", "orders"]).action, "allow");
    assert.equal(dec(["reporting.daily", "users"]).action, "deny");
    assert.equal(dec(["daily"]).action, "deny");
    assert.equal(dec([]).action, "allow");
  });

  test("allow rules with flags need every non-informational flag listed", () => {
    const e = new PolicyEngine(rules([{ name: "dba-truncate", principals: { groups: ["dba"] }, operations: { flags: ["truncate"] }, decision: "allow" }]));
    const dec = (flags: RiskFlag[]) => e.decide({ principal: human, connection: conn(), operation: sqlOp(stmt(["write"], { flags })) });
    assert.equal(dec(["truncate"]).action, "allow");
    assert.equal(dec(["truncate", "multi-statement"]).action, "allow");
    assert.equal(dec(["truncate", "drop"]).action, "deny");
    assert.equal(dec([]).action, "deny", "a flag rule does not match a statement without flags");
  });

  test("statement node types", () => {
    const e = new PolicyEngine(rules([{ name: "no-set", operations: { statements: ["VariableSetStmt"] }, decision: "deny" }]));
    const d = e.decide({ principal: agent, connection: conn({ policy: { ...conn().policy, default: "allow" } }), operation: sqlOp(stmt(["session"], { nodeType: "VariableSetStmt", nodeTypes: ["VariableSetStmt"] })) });
    assert.equal(d.rule, "no-set");
  });

  test("principal matchers: kind, roles, subjects; connection matchers: name globs and labels", () => {
    const e = new PolicyEngine(rules([
      { name: "svc", principals: { kind: "service", roles: ["Reader"] }, connections: { names: ["pg-*"] }, decision: "allow" },
      { name: "alice", principals: { subjects: ["alice"] }, connections: { labels: { env: "prod" } }, decision: "review" },
    ]));
    assert.equal(e.decide({ principal: agent, connection: conn(), operation: sqlOp(stmt(["read"])) }).rule, "svc");
    assert.equal(e.decide({ principal: agent, connection: conn({ name: "mysql-x" }), operation: sqlOp(stmt(["read"])) }).rule, "default");
    assert.equal(e.decide({ principal: human, connection: conn(), operation: sqlOp(stmt(["read"])) }).rule, "alice");
    assert.equal(e.decide({ principal: human, connection: conn({ labels: { env: "dev" } }), operation: sqlOp(stmt(["read"])) }).rule, "default");
  });

  test("multi-statement text is judged by its most restrictive statement and names it", () => {
    const d = engine.decide({ principal: agent, connection: conn(), operation: sqlOp(stmt(["transaction"]), stmt(["ddl"]), stmt(["transaction"])) });
    assert.equal(d.action, "review");
    assert.equal(d.statementIndex, 1);
  });

  test("unparseable input is never allowed, even by a match-all allow rule", () => {
    const e = new PolicyEngine(rules([{ name: "everything", decision: "allow" }]));
    const op: Operation = { protocol: "postgres", text: "SELEC 1", sql: { statements: [], parseError: "syntax error" } };
    const d = e.decide({ principal: agent, connection: conn(), operation: op });
    assert.equal(d.action, "review");
    assert.equal(d.rule, "unparseable");
    const d2 = e.decide({ principal: agent, connection: conn({ policy: { ...conn().policy, unparseable: "deny" } }), operation: op });
    assert.equal(d2.action, "deny");
    const deny = new PolicyEngine(rules([{ name: "no-garbage", operations: { flags: ["unparseable"] }, decision: "deny" }]));
    assert.equal(deny.decide({ principal: agent, connection: conn(), operation: op }).rule, "no-garbage");
  });

  test("an empty statement list is allowed (nothing will run)", () => {
    assert.deepEqual(engine.decide({ principal: agent, connection: conn(), operation: sqlOp() }), { action: "allow", rule: "empty" });
  });

  test("an evaluation failure is a deny, never an allow", () => {
    const broken = new PolicyEngine(rules([{ name: "x", principals: { groups: ["a"] }, decision: "allow" }]));
    const bad = { ...agent, groups: null as unknown as string[] };
    const d = broken.decide({ principal: bad, connection: conn(), operation: sqlOp(stmt(["read"])) });
    assert.equal(d.action, "deny");
    assert.equal(d.rule, "error");
  });

  const kindArb = fc.constantFrom<SqlKind>("read", "write", "ddl", "dcl", "transaction", "admin", "unknown");
  const stmtArb = fc.record({ kinds: fc.uniqueArray(kindArb, { minLength: 1, maxLength: 3 }), tables: fc.uniqueArray(fc.constantFrom("users", "secrets", "vault.k", "public.t"), { maxLength: 2 }) }).map((s) => stmt(s.kinds, { tables: s.tables }));

  test("property: deterministic, and a multi-statement decision is at least as strict as each statement's", () => {
    fc.assert(fc.property(fc.array(stmtArb, { minLength: 1, maxLength: 4 }), (stmts) => {
      const whole = engine.decide({ principal: agent, connection: conn(), operation: sqlOp(...stmts) });
      assert.deepEqual(engine.decide({ principal: agent, connection: conn(), operation: sqlOp(...stmts) }), whole);
      for (const s of stmts) {
        const one = engine.decide({ principal: agent, connection: conn(), operation: sqlOp(s) });
        assert.ok(ACTION_RANK[whole.action] >= ACTION_RANK[one.action]);
      }
    }));
  });

  test("property: adding a deny rule never loosens a decision", () => {
    fc.assert(fc.property(stmtArb, kindArb, (s, k) => {
      const before = engine.decide({ principal: agent, connection: conn(), operation: sqlOp(s) });
      const more = new PolicyEngine([...sample, ...rules([{ name: "extra", operations: { kinds: [k] }, decision: "deny" }])]);
      const after = more.decide({ principal: agent, connection: conn(), operation: sqlOp(s) });
      assert.ok(ACTION_RANK[after.action] >= ACTION_RANK[before.action]);
    }));
  });
});

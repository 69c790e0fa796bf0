// Policy: rules × (Principal, Connection, Operation) → Decision. Pure and deterministic: no I/O,
// no clock, no randomness, so `gatehouse policy check` in CI gives exactly what the gateway does.
//
// Precedence: every rule is tried; the most restrictive matching decision wins (deny > review >
// allow); among equally restrictive matches the earlier rule in the file wins. No match → the
// connection's default. A multi-statement operation is judged per statement and takes the most
// restrictive statement's decision. Input the classifier could not parse is never allowed.
//
// List conditions are read in the safer direction: an `allow` rule covers a statement only if
// everything the statement does is covered (all its kinds, tables, statement types are listed);
// a `deny`/`review` rule catches a statement if anything it does is listed.
//
// Never: return `allow` for something it failed to evaluate — any exception becomes `deny`.

import type { Connection } from "../domain/connection.ts";
import { ACTION_RANK, type Decision, type DecisionAction, type ReviewRequirement } from "../domain/decision.ts";
import type { Operation, RiskFlag, SqlKind, SqlStatement } from "../domain/operation.ts";
import type { Principal } from "../domain/principal.ts";
import type { RuleConfig } from "../config/schema.ts";
import { globMatch } from "./glob.ts";

export interface PolicyInput {
  principal: Principal;
  connection: Connection;
  operation: Operation;
}

/** What one rule is matched against: one statement (or the whole operation for non-SQL). */
interface Unit {
  index: number;
  /** HTTP operations: the git ref update this unit is about (a push is judged per ref). */
  git?: { actions: readonly GitAction[]; ref?: string };
  kinds: readonly SqlKind[];
  flags: readonly RiskFlag[];
  tables: readonly string[];
  nodeTypes: readonly string[];
  unparseable: boolean;
}

/** Flags that describe the text rather than an effect; an allow rule need not list them. */
const INFORMATIONAL_FLAGS: ReadonlySet<RiskFlag> = new Set<RiskFlag>(["multi-statement"]);

type GitAction = "fetch" | "push" | "create" | "update" | "delete" | "force";

/** What a git request does: fetch, or per updated ref push + create/update/delete (+ force). */
function gitUnits(op: Operation): Unit[] | undefined {
  const g = op.http?.git;
  if (!g) return undefined;
  const base = { kinds: [], flags: [], tables: [], nodeTypes: [], unparseable: false };
  if (g.service === "upload-pack") return [{ index: 0, ...base, git: { actions: ["fetch"] } }];
  if (g.phase === "discovery" || !g.updates?.length) return [{ index: 0, ...base, git: { actions: ["push"] } }];
  return g.updates.map((u, index) => {
    const actions: GitAction[] = ["push", u.action];
    // Not proven a fast-forward counts as a force push: rules about force pushes see it.
    if (u.action === "update" && u.fastForward !== true) actions.push("force");
    return { index, ...base, git: { actions, ref: u.ref } };
  });
}

function unitsOf(op: Operation): Unit[] {
  const git = gitUnits(op);
  if (git) return git;
  const sql = op.sql;
  if (!sql) return [{ index: 0, kinds: [], flags: [], tables: [], nodeTypes: [], unparseable: false }];
  if (sql.parseError !== undefined) {
    return [{ index: 0, kinds: ["unknown"], flags: ["unparseable"], tables: [], nodeTypes: [], unparseable: true }];
  }
  return sql.statements.map((s: SqlStatement, index) => ({
    index,
    kinds: s.kinds,
    flags: s.flags,
    tables: s.tables,
    nodeTypes: s.nodeTypes,
    unparseable: false,
  }));
}

/** `any` for deny/review rules, `all` (every element covered) for allow rules. */
function listMatches<T>(values: readonly T[], covered: (v: T) => boolean, action: DecisionAction): boolean {
  if (action === "allow") return values.every(covered);
  return values.some(covered);
}

function splitQualified(name: string): [string | undefined, string] {
  const dot = name.lastIndexOf(".");
  return dot < 0 ? [undefined, name] : [name.slice(0, dot), name.slice(dot + 1)];
}

/**
 * Table pattern vs table. An unqualified pattern matches the name in any schema. A qualified
 * pattern against an unqualified table is uncertain (it depends on search_path): a deny/review
 * rule treats it as a match, an allow rule does not.
 */
function tableMatches(pattern: string, table: string, action: DecisionAction): boolean {
  const [ps, pn] = splitQualified(pattern);
  const [ts, tn] = splitQualified(table);
  if (!globMatch(pn, tn)) return false;
  if (ps === undefined) return true;
  if (ts === undefined) return action !== "allow";
  return globMatch(ps, ts);
}

function principalMatches(rule: RuleConfig, p: Principal): boolean {
  const m = rule.principals;
  if (!m) return true;
  if (m.kind && m.kind !== p.kind) return false;
  if (m.groups && !m.groups.some((g) => p.groups.includes(g))) return false;
  if (m.roles && !m.roles.some((r) => p.roles.includes(r))) return false;
  if (m.subjects && !m.subjects.some((s) => s === p.subject || s === p.objectId)) return false;
  return true;
}

function connectionMatches(rule: RuleConfig, c: Connection): boolean {
  const m = rule.connections;
  if (!m) return true;
  if (m.names && !m.names.some((n) => globMatch(n, c.name))) return false;
  if (m.labels && !Object.entries(m.labels).every(([k, v]) => c.labels[k] !== undefined && globMatch(v, c.labels[k]))) return false;
  return true;
}

/**
 * HTTP path pattern vs normalized path: `*` is one segment (or part of one), `**` any number of
 * segments. Deny and review rules compare case-insensitively (a target may treat /Deploy as
 * /deploy); allow rules exactly (so they never cover more than they name).
 */
const pathPatterns = new Map<string, RegExp>();

function pathMatches(pattern: string, path: string, action: DecisionAction): boolean {
  const fold = action !== "allow";
  const p = fold ? pattern.toLowerCase() : pattern;
  let re = pathPatterns.get(p);
  if (!re) {
    re = pathPattern(p);
    if (pathPatterns.size > 5000) pathPatterns.clear();
    pathPatterns.set(p, re);
  }
  const readings = pathReadings(path);
  if (readings.length === 1) return re.test(fold ? path.toLowerCase() : path);
  // Deny and review: any reading a target may take; allow: every one of them.
  return fold ? readings.some((r) => re.test(r.toLowerCase())) : readings.every((r) => re.test(r));
}

/** Paths a target may read otherwise: with a `;` or a segment ending in a dot or space. */
const OTHER_READINGS = /;|[. ](?:\/|$)/;
let lastPath = "";
let lastReadings: string[] = [""];

/**
 * The ways a target may read a normalized path: as it is; without `;` path parameters (Tomcat,
 * Jetty and Spring read `/deploy;v=1` and `/x/..;/deploy` as `/deploy`); without trailing dots
 * and spaces in segments (IIS and Windows read `/deploy.` as `/deploy`); and both. Deny and review
 * rules match if any reading matches, allow rules only if every reading does, so no target's
 * reading escapes a rule. Most paths have one reading; the last result is kept (every rule asks).
 */
export function pathReadings(path: string): string[] {
  if (path === lastPath) return lastReadings;
  const readings = [path];
  if (OTHER_READINGS.test(path)) {
    for (const r of [reading(path, true, false), reading(path, false, true), reading(path, true, true)]) if (!readings.includes(r)) readings.push(r);
  }
  lastPath = path;
  lastReadings = readings;
  return readings;
}

function reading(path: string, params: boolean, trim: boolean): string {
  const out: string[] = [];
  const segments = path.split("/").slice(1);
  for (let seg of segments) {
    if (params) {
      const i = seg.indexOf(";");
      if (i >= 0) seg = seg.slice(0, i);
    }
    if (seg === "" || seg === ".") continue;
    if (seg === "..") {
      out.pop();
      continue;
    }
    if (trim) seg = seg.replace(/[. ]+$/, "");
    if (seg) out.push(seg);
  }
  const trailing = path.length > 1 && path.endsWith("/") && out.length > 0;
  return `/${out.join("/")}${trailing ? "/" : ""}`;
}

/**
 * A query parameter or header condition: for allow rules the named field's values as given, for
 * deny and review rules any field a target may take for it (names compared case-insensitively,
 * `_` as `-` for headers as CGI and WSGI do), values compared case-insensitively and, for
 * headers, each comma-separated element too.
 */
function fieldMatches(pattern: string, name: string, fields: Record<string, string[] | string>, action: DecisionAction, header: boolean): boolean {
  const want = header ? name.toLowerCase().replace(/_/g, "-") : name.toLowerCase();
  // Every value a target may take for the field: of each name that may stand for it, and for
  // headers each comma-separated element too (targets differ in which of several they use).
  const values: string[] = [];
  for (const k in fields) {
    if ((header ? k.toLowerCase().replace(/_/g, "-") : k.toLowerCase()) !== want) continue;
    const v = fields[k]!;
    if (typeof v === "string") values.push(v, ...(v.includes(",") ? v.split(",").map((e) => e.trim()) : []));
    else values.push(...v);
  }
  if (!values.length) return false;
  // Allow: exactly the named field, and every value it may take must match.
  if (action === "allow") return fields[name] !== undefined && values.every((x) => globMatch(pattern, x));
  const p = pattern.toLowerCase();
  return values.some((x) => globMatch(p, x.toLowerCase()));
}

function pathPattern(p: string): RegExp {
  let src = "^";
  for (let i = 0; i < p.length; i++) {
    const ch = p[i]!;
    if (ch === "*" && p[i + 1] === "*") {
      src += ".*";
      i++;
    } else if (ch === "*") src += "[^/]*";
    else if (ch === "?") src += "[^/]";
    else src += ch.replace(/[.+^${}()|[\]\\/-]/g, "\\$&");
  }
  return new RegExp(`${src}$`, "s");
}

function jsonPointer(doc: unknown, pointer: string): unknown {
  if (pointer === "") return doc;
  let cur: unknown = doc;
  for (const raw of pointer.split("/").slice(1)) {
    const key = raw.replace(/~1/g, "/").replace(/~0/g, "~");
    if (cur === null || typeof cur !== "object") return undefined;
    cur = (cur as Record<string, unknown>)[key];
  }
  return cur;
}

const GIT_ALLOW_IMPLIED: Record<string, readonly GitAction[]> = { push: ["push", "create", "update"] };

function httpMatches(m: NonNullable<RuleConfig["operations"]>, op: Operation, u: Unit, a: DecisionAction): boolean {
  const h = op.http;
  if (!h) return false;
  if (m.methods) {
    // With a method override header the target may run either method: deny and review match
    // either, allow must cover both.
    const listed = (x: string) => m.methods!.some((y) => y === "*" || y.toUpperCase() === x);
    const ok = h.methodOverride === undefined ? listed(h.method) : a === "allow" ? listed(h.method) && listed(h.methodOverride) : listed(h.method) || listed(h.methodOverride);
    if (!ok) return false;
  }
  if (m.paths && !m.paths.some((p) => pathMatches(p, h.path, a))) return false;
  if (m.query && !Object.entries(m.query).every(([k, v]) => fieldMatches(v, k, h.query, a, false))) return false;
  if (m.headers && !Object.entries(m.headers).every(([k, v]) => fieldMatches(v, k.toLowerCase(), h.headers, a, true))) return false;
  if (m.json) {
    // A body that may be JSON to the target but could not be judged (not read, not strict JSON, a
    // key twice, …): a rule about its content may apply (deny/review) but cannot cover it (allow).
    if (h.jsonUnknown !== undefined) {
      if (a === "allow") return false;
    } else if (h.json === undefined) return false;
  }
  if (m.json && h.jsonUnknown === undefined) {
    for (const [ptr, pat] of Object.entries(m.json)) {
      const v = jsonPointer(h.json, ptr);
      if (v === undefined) return false;
      if (!globMatch(pat, typeof v === "string" ? v : JSON.stringify(v))) return false;
    }
  }
  if (m.git) {
    const g = u.git;
    if (!g) return false;
    if (m.git.actions) {
      const listed = m.git.actions;
      if (a === "allow") {
        // An allow rule covers a unit only if every specific action is listed (`push` covers
        // create and update, never delete or force).
        const covered = new Set(listed.flatMap((x) => GIT_ALLOW_IMPLIED[x] ?? [x]));
        if (!g.actions.every((x) => covered.has(x))) return false;
      } else if (!g.actions.some((x) => listed.includes(x))) return false;
    }
    if (m.git.refs) {
      if (!g.ref) return false;
      const ref = g.ref;
      const short = ref.replace(/^refs\/(heads|tags)\//, "");
      // Deny and review compare case-insensitively (refs/heads/MAIN is main on a case-insensitive
      // file system); allow exactly.
      const fold = a !== "allow";
      const [r, sh] = fold ? [ref.toLowerCase(), short.toLowerCase()] : [ref, short];
      if (!m.git.refs.some((p) => globMatch(fold ? p.toLowerCase() : p, r) || globMatch(fold ? p.toLowerCase() : p, sh))) return false;
    }
  }
  return true;
}

const SQL_CONDITIONS = ["kinds", "flags", "tables", "statements"] as const;
const HTTP_CONDITIONS = ["methods", "paths", "query", "headers", "json", "git"] as const;

function operationMatches(rule: RuleConfig, op: Operation, u: Unit): boolean {
  const m = rule.operations;
  if (!m) return true;
  const a = rule.decision;
  if (m.protocols && !m.protocols.includes(op.protocol)) return false;
  // Conditions of one protocol never match another's operations (not even vacuously).
  if (op.protocol !== "postgres" && SQL_CONDITIONS.some((k) => m[k] !== undefined)) return false;
  if (HTTP_CONDITIONS.some((k) => m[k] !== undefined)) return op.protocol === "http" && httpMatches(m, op, u, a);
  if (m.kinds) {
    const kinds = m.kinds;
    if (u.kinds.length === 0 || !listMatches(u.kinds, (k) => kinds.includes(k), a)) return false;
  }
  if (m.flags) {
    const flags = m.flags;
    if (!u.flags.some((f) => flags.includes(f))) return false;
    if (a === "allow" && !u.flags.every((f) => flags.includes(f) || INFORMATIONAL_FLAGS.has(f))) return false;
  }
  if (m.tables) {
    const pats = m.tables;
    if (a !== "allow" && u.tables.length === 0) return false;
    if (!listMatches(u.tables, (t) => pats.some((p) => tableMatches(p, t, a)), a)) return false;
  }
  if (m.statements) {
    const types = m.statements;
    if (u.nodeTypes.length === 0 || !listMatches(u.nodeTypes, (t) => types.includes(t), a)) return false;
  }
  return true;
}

function reviewFor(rule: RuleConfig | undefined, c: Connection): ReviewRequirement {
  return {
    approvers: rule?.review?.approvers ?? c.policy.approvers,
    quorum: rule?.review?.quorum ?? 1,
    expiresSeconds: rule?.review?.expires ?? c.policy.reviewExpiresSeconds,
    mode: rule?.review?.mode ?? c.policy.reviewMode,
    notify: rule?.review?.notify ?? c.policy.notify,
  };
}

function decisionFrom(action: DecisionAction, ruleName: string, rule: RuleConfig | undefined, c: Connection, message?: string): Decision {
  const d: Decision = { action, rule: ruleName };
  const msg = rule?.message ?? message;
  if (action !== "allow" && msg) d.message = msg;
  if (action === "review") d.review = reviewFor(rule, c);
  return d;
}

function stricter(a: Decision, b: Decision): Decision {
  return ACTION_RANK[b.action] > ACTION_RANK[a.action] ? b : a;
}

export class PolicyEngine {
  readonly rules: readonly RuleConfig[];
  constructor(rules: readonly RuleConfig[]) {
    this.rules = rules;
  }

  /** Decide one operation. Never throws; an internal failure is a `deny` by rule `error`. */
  decide(input: PolicyInput): Decision {
    try {
      return this.#decide(input);
    } catch (e) {
      return { action: "deny", rule: "error", message: `policy evaluation failed: ${(e as Error).message}` };
    }
  }

  #decide({ principal, connection, operation }: PolicyInput): Decision {
    const units = unitsOf(operation);
    if (units.length === 0) return { action: "allow", rule: "empty" };
    let result: Decision | undefined;
    for (const u of units) {
      const d = { ...this.#decideUnit(principal, connection, operation, u) };
      if (units.length > 1) d.statementIndex = u.index;
      result = result ? stricter(result, d) : d;
    }
    return result!;
  }

  #decideUnit(principal: Principal, connection: Connection, op: Operation, u: Unit): Decision {
    let best: { rule: RuleConfig } | undefined;
    for (const rule of this.rules) {
      if (best && ACTION_RANK[rule.decision] <= ACTION_RANK[best.rule.decision]) continue;
      if (principalMatches(rule, principal) && connectionMatches(rule, connection) && operationMatches(rule, op, u)) {
        best = { rule };
        if (rule.decision === "deny") break;
      }
    }
    if (u.unparseable && (!best || best.rule.decision === "allow")) {
      return decisionFrom(connection.policy.unparseable, "unparseable", undefined, connection, "the statement could not be parsed, so it cannot be judged");
    }
    if (best) return decisionFrom(best.rule.decision, best.rule.name, best.rule, connection);
    return decisionFrom(connection.policy.default, "default", undefined, connection, `no rule matches; the default for connection ${connection.name} is ${connection.policy.default}`);
  }
}

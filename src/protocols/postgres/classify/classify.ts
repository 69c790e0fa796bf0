// Describes what a SQL text will do, so policy can judge it: for each top-level statement its
// kinds, the most dangerous kind, the tables and functions it touches and its risk flags.
// PostgreSQL's own parser (libpg-query) reads the text; the whole parse tree is walked, so a
// DELETE hidden in a CTE, a subquery or an EXPLAIN ANALYZE is seen. This module must never
// look at SQL with regular expressions or string searches, never throw for any input string
// (an unreadable text is a parseError, which the gate refuses), and never hand out a result
// a caller could mutate (results are frozen and shared through the cache).

import { loadModule, parseSync } from "libpg-query";
import {
  RISK_FLAGS,
  type RiskFlag,
  type SqlDescription,
  type SqlKind,
  type SqlStatement,
} from "../../../domain/operation.ts";
import { LruCache, type LruCacheOptions } from "./cache.ts";
import { functionEffect } from "./functions.ts";
import { extractPlpgsql } from "./plpgsql.ts";
import { sortKindsByRisk } from "./risk.ts";
import {
  ADMIN_OBJECT_TYPES,
  CHANGING_KINDS,
  DCL_OBJECT_TYPES,
  ON_RELATION_OBJECT_TYPES,
  RELATION_OBJECT_TYPES,
  SERVER_WIDE_ROLE_OPTIONS,
  STATEMENT_RULES,
  UNTRUSTED_LANGUAGES,
} from "./rules.ts";

// ---------------------------------------------------------------------------------------------
// Public and shared types

/**
 * A statement as the parser sees it, before `EXECUTE name` is resolved against prepared
 * statements. `fnKinds`/`fnFlags` are the parts that come from function calls: they still
 * apply under a plain EXPLAIN, because the planner may run immutable functions while folding
 * constants.
 */
export interface StatementDraft {
  readonly text: string;
  readonly nodeType: string;
  readonly kinds: readonly SqlKind[];
  readonly flags: readonly RiskFlag[];
  readonly nodeTypes: readonly string[];
  readonly tables: readonly string[];
  readonly functions: readonly string[];
  readonly fnKinds: readonly SqlKind[];
  readonly fnFlags: readonly RiskFlag[];
}

/** An `EXECUTE name` found in a statement (at the top, under EXPLAIN, or in CREATE TABLE AS). */
export interface ExecuteRef {
  readonly name: string;
  /** Under a plain EXPLAIN: the prepared statement is planned, not run. */
  readonly planOnly: boolean;
  /** Under EXPLAIN ANALYZE: it runs, and a change it makes is an explain-analyze-write. */
  readonly underExplainAnalyze: boolean;
}

export interface StatementAnalysis {
  readonly own: StatementDraft;
  readonly executes: readonly ExecuteRef[];
  /** PREPARE name AS body. */
  readonly prepare?: { readonly name: string; readonly body: StatementDraft };
  /** DEALLOCATE name, or "all" for DEALLOCATE ALL / DISCARD ALL. */
  readonly deallocate?: { readonly name: string } | "all";
}

/** Everything known about one SQL text; cached and frozen. */
export interface SqlAnalysis {
  /** The stateless description: EXECUTE resolved only against PREPAREs earlier in the text. */
  readonly description: SqlDescription;
  readonly statements: readonly StatementAnalysis[];
}

export type PreparedLookup = (name: string) => StatementDraft | undefined;

export type PreparedEffect =
  | { readonly op: "prepare"; readonly name: string; readonly body: StatementDraft }
  | { readonly op: "deallocate"; readonly name: string }
  | { readonly op: "deallocate-all" };

// ---------------------------------------------------------------------------------------------
// Initialisation, cache, statistics

let ready = false;
let loading: Promise<void> | undefined;

/** Loads PostgreSQL's parser (WebAssembly). Call once at start-up; later calls are free. */
export async function initClassifier(): Promise<void> {
  if (ready) return;
  loading ??= loadModule().then(() => {
    ready = true;
  });
  try {
    await loading;
  } catch (err) {
    loading = undefined;
    throw err;
  }
}

export function isClassifierReady(): boolean {
  return ready;
}

function assertReady(): void {
  if (!ready) {
    throw new Error(
      "SQL classifier used before it was initialised: await initClassifier() once at start-up before calling classifySql()",
    );
  }
}

let cache = new LruCache<SqlAnalysis>();
let parses = 0;

/** Replaces the classification cache (dropping what it held). */
export function configureClassifierCache(options: LruCacheOptions): void {
  cache = new LruCache<SqlAnalysis>(options);
}

export function clearClassifierCache(): void {
  cache.clear();
}

export interface ClassifierStats {
  /** Texts that went through the parser (cache misses). */
  parses: number;
  cacheHits: number;
  cacheMisses: number;
  cacheSize: number;
  cacheEvictions: number;
}

export function classifierStats(): ClassifierStats {
  const s = cache.stats();
  return { parses, cacheHits: s.hits, cacheMisses: s.misses, cacheSize: s.size, cacheEvictions: s.evictions };
}

// ---------------------------------------------------------------------------------------------
// Entry points

/** Describes `sql` (synchronous; needs `initClassifier()` first). Never throws for a string. */
export function classifySql(sql: string): SqlDescription {
  return analyzeSql(sql).description;
}

/** Like classifySql, bypassing the cache (for benchmarks and tests). */
export function classifySqlUncached(sql: string): SqlDescription {
  assertReady();
  return analyzeText(sql).description;
}

/** The full, cached analysis of `sql`, including what session-level resolution needs. */
export function analyzeSql(sql: string): SqlAnalysis {
  assertReady();
  const hit = cache.get(sql);
  if (hit) return hit;
  const analysis = analyzeText(sql);
  cache.set(sql, analysis);
  return analysis;
}

function analyzeText(sql: string): SqlAnalysis {
  parses++;
  let statements: StatementAnalysis[];
  try {
    statements = analyzeStatements(sql);
  } catch (err) {
    return deepFreeze({ description: { statements: [], parseError: describeError(err, sql) }, statements: [] });
  }
  const { statements: resolved } = resolveStatements(statements, () => undefined);
  return deepFreeze({ description: { statements: resolved }, statements });
}

// ---------------------------------------------------------------------------------------------
// Parsing and source text

class ClassifyError extends Error {}

/** Validates the text and maps PostgreSQL's byte offsets back to string indices. */
class SourceText {
  readonly sql: string;
  readonly ascii: boolean;
  #byteToIndex: Uint32Array | undefined;
  readonly #bytes: number;

  constructor(sql: string) {
    this.sql = sql;
    let ascii = true;
    let bytes = 0;
    for (let i = 0; i < sql.length; i++) {
      const c = sql.charCodeAt(i);
      if (c === 0) {
        // libpg-query reads a C string: everything after a NUL would be invisible to it.
        throw new ClassifyError(`query text contains a NUL character at position ${i}`);
      }
      if (c < 0x80) {
        bytes += 1;
        continue;
      }
      ascii = false;
      if (c < 0x800) bytes += 2;
      else if (c >= 0xd800 && c <= 0xdbff) {
        const next = sql.charCodeAt(i + 1);
        if (!(next >= 0xdc00 && next <= 0xdfff)) {
          throw new ClassifyError(`query text contains an unpaired UTF-16 surrogate at position ${i}`);
        }
        bytes += 4;
        i++;
      } else if (c >= 0xdc00 && c <= 0xdfff) {
        throw new ClassifyError(`query text contains an unpaired UTF-16 surrogate at position ${i}`);
      } else bytes += 3;
    }
    this.ascii = ascii;
    this.#bytes = bytes;
  }

  /** String index of a UTF-8 byte offset into the text. */
  index(byteOffset: number): number {
    if (this.ascii) return Math.min(byteOffset, this.sql.length);
    if (!this.#byteToIndex) {
      const map = new Uint32Array(this.#bytes + 1);
      let b = 0;
      for (let i = 0; i < this.sql.length; ) {
        const cp = this.sql.codePointAt(i) ?? 0;
        const len = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
        for (let k = 0; k < len; k++) map[b + k] = i;
        b += len;
        i += cp >= 0x10000 ? 2 : 1;
      }
      map[this.#bytes] = this.sql.length;
      this.#byteToIndex = map;
    }
    return this.#byteToIndex[Math.min(Math.max(byteOffset, 0), this.#bytes)] ?? this.sql.length;
  }

  /** String index of a code-point offset (PostgreSQL reports error positions in characters). */
  indexOfCodePoint(codePoints: number): number {
    if (this.ascii) return Math.min(codePoints, this.sql.length);
    let i = 0;
    for (let n = 0; n < codePoints && i < this.sql.length; n++) {
      i += (this.sql.codePointAt(i) ?? 0) >= 0x10000 ? 2 : 1;
    }
    return i;
  }
}

function describeError(err: unknown, sql: string): string {
  if (err instanceof ClassifyError) return err.message;
  if (err instanceof RangeError) return "statement is nested too deeply to classify";
  const message = err instanceof Error ? err.message : String(err);
  const details = (err as { sqlDetails?: { cursorPosition?: unknown } } | null)?.sqlDetails;
  if (details && typeof details.cursorPosition === "number") {
    let position = details.cursorPosition;
    try {
      position = new SourceText(sql).indexOfCodePoint(details.cursorPosition);
    } catch {
      // keep PostgreSQL's own position
    }
    return `${message} at position ${position}`;
  }
  return message;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);
const asArray = (v: unknown): readonly unknown[] => (Array.isArray(v) ? v : []);
const asString = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);

function parseTree(sql: string): Obj {
  const tree: unknown = parseSync(sql);
  if (!isObj(tree)) throw new ClassifyError("the parser returned no parse tree");
  return tree;
}

function analyzeStatements(sql: string): StatementAnalysis[] {
  if (sql.length === 0) return [];
  const source = new SourceText(sql);
  const tree = parseTree(sql);
  const out: StatementAnalysis[] = [];
  for (const raw of asArray(tree.stmts)) {
    if (!isObj(raw)) continue;
    const start = typeof raw.stmt_location === "number" ? raw.stmt_location : 0;
    const len = typeof raw.stmt_len === "number" && raw.stmt_len > 0 ? raw.stmt_len : undefined;
    const from = source.index(start);
    const to = len === undefined ? sql.length : source.index(start + len);
    const text = sql.slice(from, to).trim();
    out.push(new Walker(raw.stmt, 0).analyze(text));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The tree walk

type Mode =
  /** The statement runs: everything counts. */
  | "exec"
  /** Under a plain EXPLAIN: only planned. Tables and functions count, statement kinds do not. */
  | "plan"
  /** A stored setting (ALTER SYSTEM/ROLE/DATABASE … SET): nothing runs now. */
  | "definition";

interface CteScope {
  readonly names: ReadonlySet<string>;
  readonly parent: CteScope | undefined;
}

interface Ctx {
  readonly mode: Mode;
  readonly ctes: CteScope | undefined;
  readonly explainAnalyze: boolean;
}

interface Acc {
  kinds: Set<SqlKind>;
  flags: Set<RiskFlag>;
  fnKinds: Set<SqlKind>;
  fnFlags: Set<RiskFlag>;
  nodeTypes: Set<string>;
  tables: Set<string>;
  functions: Set<string>;
  executes: ExecuteRef[];
}

const newAcc = (): Acc => ({
  kinds: new Set(),
  flags: new Set(),
  fnKinds: new Set(),
  fnFlags: new Set(),
  nodeTypes: new Set(),
  tables: new Set(),
  functions: new Set(),
  executes: [],
});

function mergeAcc(into: Acc, from: Acc): void {
  for (const k of from.kinds) into.kinds.add(k);
  for (const f of from.flags) into.flags.add(f);
  for (const k of from.fnKinds) into.fnKinds.add(k);
  for (const f of from.fnFlags) into.fnFlags.add(f);
  for (const n of from.nodeTypes) into.nodeTypes.add(n);
  for (const t of from.tables) into.tables.add(t);
  for (const f of from.functions) into.functions.add(f);
  into.executes.push(...from.executes);
}

/**
 * Fields holding a node of a fixed type are serialised without the `{ "Type": … }` wrapper;
 * this says which type they hold. (Unwrapped RangeVars are recognised by their `relname`.)
 */
const UNWRAPPED: Readonly<Record<string, Readonly<Record<string, string>>>> = {
  SelectStmt: { larg: "SelectStmt", rarg: "SelectStmt", intoClause: "IntoClause" },
  PLAssignStmt: { val: "SelectStmt" },
  CallStmt: { funccall: "FuncCall" },
  AlterSystemStmt: { setstmt: "VariableSetStmt" },
  AlterRoleSetStmt: { setstmt: "VariableSetStmt" },
  AlterDatabaseSetStmt: { setstmt: "VariableSetStmt" },
  AlterDefaultPrivilegesStmt: { action: "GrantStmt" },
  CreateForeignTableStmt: { base: "CreateStmt" },
  CreateTableAsStmt: { into: "IntoClause" },
};

const SKIP_NONE: ReadonlySet<string> = new Set();
const SKIP_WITH: ReadonlySet<string> = new Set(["withClause", "intoClause"]);
const SKIP_DML: ReadonlySet<string> = new Set(["withClause", "relation"]);
const SKIP_INSERT_VALUES: ReadonlySet<string> = new Set(["withClause", "relation", "selectStmt"]);
const SKIP_FUNCNAME: ReadonlySet<string> = new Set(["funcname"]);
const SKIP_RELATION: ReadonlySet<string> = new Set(["relation"]);
const SKIP_INTO: ReadonlySet<string> = new Set(["into"]);
const SKIP_RENAMED: ReadonlySet<string> = new Set(["relation", "object"]);

/** Nesting limit for DO blocks whose EXECUTE runs a constant string that is itself a DO. */
const MAX_EMBEDDED_DEPTH = 4;

const EXEC: Ctx = { mode: "exec", ctes: undefined, explainAnalyze: false };

class Walker {
  #acc: Acc = newAcc();
  #prepare: StatementAnalysis["prepare"];
  #deallocate: StatementAnalysis["deallocate"];

  private readonly root: unknown;
  private readonly depth: number;

  constructor(root: unknown, depth: number) {
    this.root = root;
    this.depth = depth;
  }

  analyze(text: string): StatementAnalysis {
    const nodeType = isObj(this.root) ? (Object.keys(this.root)[0] ?? "unknown") : "unknown";
    this.walk(this.root, EXEC);
    const own = draft(text, nodeType, this.#acc);
    const analysis: StatementAnalysis = { own, executes: this.#acc.executes };
    if (this.#prepare) Object.assign(analysis, { prepare: this.#prepare });
    if (this.#deallocate) Object.assign(analysis, { deallocate: this.#deallocate });
    return analysis;
  }

  /** Walks the tree of an embedded statement (DO body) into this walker's accumulator. */
  walkEmbedded(stmt: unknown): void {
    this.walk(stmt, EXEC);
  }

  get acc(): Acc {
    return this.#acc;
  }

  // --- accumulation, respecting the mode

  private kind(ctx: Ctx, k: SqlKind): void {
    if (ctx.mode === "exec") this.#acc.kinds.add(k);
  }

  private flag(ctx: Ctx, f: RiskFlag): void {
    if (ctx.mode === "exec") this.#acc.flags.add(f);
  }

  private fnKind(ctx: Ctx, k: SqlKind): void {
    if (ctx.mode === "definition") return;
    this.#acc.kinds.add(k);
    this.#acc.fnKinds.add(k);
  }

  private fnFlag(ctx: Ctx, f: RiskFlag): void {
    if (ctx.mode === "definition") return;
    this.#acc.flags.add(f);
    this.#acc.fnFlags.add(f);
  }

  private rule(type: string, ctx: Ctx): void {
    const rule = STATEMENT_RULES[type];
    if (!rule) {
      this.kind(ctx, "unknown");
      return;
    }
    for (const k of rule.kinds) this.kind(ctx, k);
    for (const f of rule.flags ?? []) this.flag(ctx, f);
  }

  /** Runs `fn` with a fresh accumulator, merges it into the current one and returns it. */
  private collect(fn: () => void): Acc {
    const parent = this.#acc;
    const sub = newAcc();
    this.#acc = sub;
    try {
      fn();
    } finally {
      this.#acc = parent;
    }
    mergeAcc(parent, sub);
    return sub;
  }

  // --- generic traversal

  private walk(value: unknown, ctx: Ctx, type?: string): void {
    if (Array.isArray(value)) {
      for (const v of value) this.walk(v, ctx);
      return;
    }
    if (!isObj(value)) return;
    if (type !== undefined) {
      this.node(type, value, ctx);
      return;
    }
    const keys = Object.keys(value);
    const only = keys.length === 1 ? keys[0] : undefined;
    // A wrapped node is `{ "TypeName": { …fields } }`; field names never start upper-case.
    if (only !== undefined && isUpper(only.charCodeAt(0))) {
      const inner = value[only];
      if (isObj(inner)) this.node(only, inner, ctx);
      else this.walk(inner, ctx);
      return;
    }
    if (typeof value.relname === "string") {
      this.node("RangeVar", value, ctx);
      return;
    }
    this.fields("", value, ctx, SKIP_NONE);
  }

  private fields(type: string, node: Obj, ctx: Ctx, skip: ReadonlySet<string>): void {
    const hints = UNWRAPPED[type];
    for (const key of Object.keys(node)) {
      if (skip.has(key)) continue;
      this.walk(node[key], ctx, hints?.[key]);
    }
  }

  private node(type: string, node: Obj, ctx: Ctx): void {
    if (type.endsWith("Stmt")) this.#acc.nodeTypes.add(type);
    switch (type) {
      case "RangeVar":
        this.rangeVar(node, ctx, false);
        return;
      case "FuncCall":
        this.funcCall(node, ctx);
        this.fields(type, node, ctx, SKIP_FUNCNAME);
        return;
      case "LockingClause":
        this.flag(ctx, "locking-read");
        // lockedRels name FROM items (often aliases), already counted there.
        return;
      case "SelectStmt":
        this.select(node, ctx);
        return;
      case "InsertStmt":
      case "UpdateStmt":
      case "DeleteStmt":
      case "MergeStmt":
        this.dml(type, node, ctx);
        return;
      case "CopyStmt":
        this.copy(node, ctx);
        return;
      case "CreateTableAsStmt":
        this.createTableAs(node, ctx);
        return;
      case "ExplainStmt":
        this.explain(node, ctx);
        return;
      case "PrepareStmt":
        this.prepareStmt(node, ctx);
        return;
      case "ExecuteStmt":
        this.executeStmt(node, ctx);
        return;
      case "DeallocateStmt":
        this.rule(type, ctx);
        if (node === this.innerRoot()) {
          const name = asString(node.name);
          this.#deallocate = node.isall === true || name === undefined ? "all" : { name };
        }
        return;
      case "DiscardStmt":
        this.rule(type, ctx);
        if (node.target === "DISCARD_ALL") {
          // DISCARD ALL includes SET SESSION AUTHORIZATION DEFAULT and RESET ROLE.
          this.flag(ctx, "set-role");
          this.flag(ctx, "session-authorization");
          if (node === this.innerRoot()) this.#deallocate = "all";
        }
        return;
      case "VariableSetStmt":
        this.variableSet(node, ctx);
        return;
      case "DoStmt":
        this.doStmt(node, ctx);
        return;
      case "CallStmt":
        this.call(node, ctx);
        return;
      case "DropStmt":
        this.drop(node, ctx);
        return;
      case "RenameStmt":
        this.rename(node, ctx);
        return;
      case "CommentStmt":
        this.rule(type, ctx);
        this.objectTables(asString(node.objtype), [node.object]);
        return;
      case "AlterTableCmd":
        this.alterTableCmd(node, ctx);
        this.fields(type, node, ctx, SKIP_NONE);
        return;
      case "CreateRoleStmt":
      case "AlterRoleStmt":
        this.rule(type, ctx);
        if (asArray(node.options).some((o) => isDefElem(o, SERVER_WIDE_ROLE_OPTIONS) && defElemTrue(o))) {
          this.kind(ctx, "admin");
        }
        this.fields(type, node, ctx, SKIP_NONE);
        return;
      case "CreateFunctionStmt": {
        this.rule(type, ctx);
        const language = defElemString(node.options, "language");
        if (language !== undefined && UNTRUSTED_LANGUAGES.has(language.toLowerCase())) this.kind(ctx, "admin");
        this.fields(type, node, ctx, SKIP_NONE);
        return;
      }
      case "AlterSystemStmt":
      case "AlterRoleSetStmt":
      case "AlterDatabaseSetStmt":
        this.rule(type, ctx);
        // The SET inside is stored for later sessions, not run in this one.
        this.fields(type, node, { ...ctx, mode: "definition" }, SKIP_NONE);
        return;
      default:
        if (type.endsWith("Stmt")) this.rule(type, ctx);
        this.fields(type, node, ctx, SKIP_NONE);
    }
  }

  /** The statement node under the top-level wrapper (PREPARE/DEALLOCATE effects only there). */
  private innerRoot(): unknown {
    if (this.depth > 0 || !isObj(this.root)) return undefined;
    const key = Object.keys(this.root)[0];
    return key === undefined ? undefined : this.root[key];
  }

  // --- relations

  private rangeVar(rv: Obj, ctx: Ctx, real: boolean): void {
    const relname = asString(rv.relname);
    if (relname === undefined) return;
    const schema = asString(rv.schemaname);
    const catalog = asString(rv.catalogname);
    if (!real && schema === undefined && catalog === undefined && inScope(ctx.ctes, relname)) return;
    const parts = [catalog, schema, relname].filter((p): p is string => p !== undefined && p !== "");
    this.#acc.tables.add(qualifiedName(parts));
  }

  /** Tables named by a DROP/COMMENT object list. */
  private objectTables(objtype: string | undefined, objects: readonly unknown[]): void {
    if (objtype === undefined) return;
    const whole = RELATION_OBJECT_TYPES.has(objtype);
    const onRelation = ON_RELATION_OBJECT_TYPES.has(objtype);
    if (!whole && !onRelation) return;
    for (const o of objects) {
      const parts = nameList(o);
      const rel = whole ? parts : parts.slice(0, -1);
      if (rel.length > 0) this.#acc.tables.add(qualifiedName(rel));
    }
  }

  /** Enters a WITH clause: CTE bodies and the rest of the statement see the CTE names. */
  private withScope(node: Obj, ctx: Ctx): Ctx {
    const wc = node.withClause;
    if (!isObj(wc)) return ctx;
    const ctes: Obj[] = [];
    for (const item of asArray(wc.ctes)) {
      if (isObj(item) && isObj(item.CommonTableExpr)) ctes.push(item.CommonTableExpr);
      else this.walk(item, ctx);
    }
    const names = ctes.map((c) => asString(c.ctename) ?? "");
    const all: CteScope = { names: new Set(names), parent: ctx.ctes };
    const recursive = wc.recursive === true;
    for (const [i, cte] of ctes.entries()) {
      // Without RECURSIVE a CTE sees only the CTEs before it: a same-named relation in its
      // own body is the real table.
      const scope: CteScope = recursive ? all : { names: new Set(names.slice(0, i)), parent: ctx.ctes };
      this.fields("CommonTableExpr", cte, { ...ctx, ctes: scope }, SKIP_NONE);
    }
    return { ...ctx, ctes: all };
  }

  // --- statements

  /** `reads` is false for the VALUES list of an INSERT, which reads nothing. */
  private select(node: Obj, ctx: Ctx, reads = true): void {
    if (reads) this.rule("SelectStmt", ctx);
    const into = node.intoClause;
    if (isObj(into)) {
      // SELECT … INTO creates a table and fills it.
      this.kind(ctx, "ddl");
      if (into.skipData !== true) this.kind(ctx, "write");
      if (isObj(into.rel)) this.rangeVar(into.rel, ctx, true);
    }
    this.fields("SelectStmt", node, this.withScope(node, ctx), SKIP_WITH);
  }

  private dml(type: string, node: Obj, ctx: Ctx): void {
    this.rule(type, ctx);
    if (type === "DeleteStmt" && node.whereClause === undefined) this.flag(ctx, "delete-without-where");
    if (type === "UpdateStmt" && node.whereClause === undefined) this.flag(ctx, "update-without-where");
    if (type === "UpdateStmt" && isObj(node.relation) && asString(node.relation.relname)?.toLowerCase() === "pg_settings" && [undefined, "pg_catalog"].includes(asString(node.relation.schemaname)?.toLowerCase())) {
      // pg_settings' rule turns an UPDATE into set_config() of whatever settings the rows name:
      // judged like set_config with a name that cannot be read.
      this.kind(ctx, "admin");
      this.flag(ctx, "set-role");
      this.flag(ctx, "session-authorization");
    }
    const inner = this.withScope(node, ctx);
    // The target of INSERT/UPDATE/DELETE/MERGE is always a real table, never a CTE.
    if (isObj(node.relation)) this.rangeVar(node.relation, inner, true);
    const values = isObj(node.selectStmt) ? node.selectStmt.SelectStmt : undefined;
    if (type === "InsertStmt" && isObj(values) && values.valuesLists !== undefined) {
      this.#acc.nodeTypes.add("SelectStmt");
      this.select(values, inner, false);
      this.fields(type, node, inner, SKIP_INSERT_VALUES);
      return;
    }
    this.fields(type, node, inner, SKIP_DML);
  }

  private copy(node: Obj, ctx: Ctx): void {
    const from = node.is_from === true;
    if (node.is_program === true) {
      this.kind(ctx, "admin");
      this.flag(ctx, "copy-program");
    } else if (typeof node.filename === "string") {
      this.kind(ctx, "admin");
      this.flag(ctx, from ? "copy-from-file" : "copy-to-file");
    }
    if (from) this.kind(ctx, "write");
    else if (isObj(node.relation)) this.kind(ctx, "read");
    if (isObj(node.relation)) this.rangeVar(node.relation, ctx, true);
    this.fields("CopyStmt", node, ctx, SKIP_RELATION);
  }

  private createTableAs(node: Obj, ctx: Ctx): void {
    this.kind(ctx, "ddl");
    const into = node.into;
    if (!(isObj(into) && into.skipData === true)) this.kind(ctx, "write");
    if (isObj(into) && isObj(into.rel)) this.rangeVar(into.rel, ctx, true);
    this.fields("CreateTableAsStmt", node, ctx, SKIP_INTO);
  }

  private explain(node: Obj, ctx: Ctx): void {
    this.rule("ExplainStmt", ctx);
    const analyze = asArray(node.options).some((o) => isDefElem(o, ANALYZE) && defElemTrue(o));
    if (analyze && ctx.mode === "exec") {
      // EXPLAIN ANALYZE runs the statement: it is whatever the statement is.
      const inner = this.collect(() => this.walk(node.query, { ...ctx, explainAnalyze: true }));
      if ([...inner.kinds].some((k) => CHANGING_KINDS.has(k))) this.flag(ctx, "explain-analyze-write");
    } else {
      // A plain EXPLAIN only plans: the statement's own kinds do not apply.
      this.walk(node.query, { ...ctx, mode: ctx.mode === "exec" ? "plan" : ctx.mode });
    }
  }

  private prepareStmt(node: Obj, ctx: Ctx): void {
    this.rule("PrepareStmt", ctx);
    const body = this.collect(() => this.walk(node.query, ctx));
    const name = asString(node.name);
    if (name !== undefined && node === this.innerRoot()) {
      this.#prepare = { name, body: draft("", nodeTypeOf(node.query), body) };
    }
  }

  private executeStmt(node: Obj, ctx: Ctx): void {
    const name = asString(node.name);
    if (name !== undefined && ctx.mode !== "definition") {
      this.#acc.executes.push({ name, planOnly: ctx.mode === "plan", underExplainAnalyze: ctx.explainAnalyze });
    }
    this.walk(node.params, ctx);
  }

  private variableSet(node: Obj, ctx: Ctx): void {
    this.rule("VariableSetStmt", ctx);
    // GUC names are case-insensitive; the parser already lower-cases SET ROLE's "role".
    const name = asString(node.name)?.toLowerCase();
    if (name === "role") this.flag(ctx, "set-role");
    if (name === "session_authorization") this.flag(ctx, "session-authorization");
    if (name !== undefined && privilegedSetting(name)) this.kind(ctx, "admin");
    this.fields("VariableSetStmt", node, ctx, SKIP_NONE);
  }

  private call(node: Obj, ctx: Ctx): void {
    this.rule("CallStmt", ctx);
    const fc = node.funccall;
    if (isObj(fc)) {
      const parts = stringList(fc.funcname);
      if (parts.length > 0) this.#acc.functions.add(qualifiedName(parts));
      // The procedure itself is the "procedural" kind; its arguments may call functions.
      this.fields("FuncCall", fc, ctx, SKIP_FUNCNAME);
    }
  }

  private drop(node: Obj, ctx: Ctx): void {
    const objtype = asString(node.removeType) ?? "";
    this.kind(ctx, ADMIN_OBJECT_TYPES.has(objtype) ? "admin" : DCL_OBJECT_TYPES.has(objtype) ? "dcl" : "ddl");
    this.flag(ctx, "drop");
    if (objtype === "OBJECT_DATABASE") this.flag(ctx, "drop-database");
    this.objectTables(objtype, asArray(node.objects));
  }

  private rename(node: Obj, ctx: Ctx): void {
    const objtype = asString(node.renameType) ?? "";
    this.kind(ctx, ADMIN_OBJECT_TYPES.has(objtype) ? "admin" : DCL_OBJECT_TYPES.has(objtype) ? "dcl" : "ddl");
    if (isObj(node.relation)) this.rangeVar(node.relation, ctx, true);
    else this.objectTables(objtype, [node.object]);
    this.fields("RenameStmt", node, ctx, SKIP_RENAMED);
  }

  private alterTableCmd(node: Obj, ctx: Ctx): void {
    switch (node.subtype) {
      case "AT_DropColumn":
        this.flag(ctx, "drop");
        break;
      case "AT_ChangeOwner":
      case "AT_EnableRowSecurity":
      case "AT_DisableRowSecurity":
      case "AT_ForceRowSecurity":
      case "AT_NoForceRowSecurity":
        this.kind(ctx, "dcl");
        break;
      default:
        break;
    }
  }

  private funcCall(node: Obj, ctx: Ctx): void {
    const parts = stringList(node.funcname);
    this.#acc.functions.add(parts.length > 0 ? qualifiedName(parts) : "?");
    const effect = functionEffect(parts);
    if (effect === "pure") return;
    this.fnFlag(ctx, "function-call");
    this.fnKind(ctx, effect.kind);
    for (const f of effect.flags ?? []) this.fnFlag(ctx, f);
    if (parts[parts.length - 1] === "set_config") {
      // set_config('role', …) is SET ROLE; a name we cannot read might be.
      const first = asArray(node.args)[0];
      const setting = constantString(first)?.toLowerCase();
      if (setting === undefined || setting === "role") this.fnFlag(ctx, "set-role");
      if (setting === undefined || setting === "session_authorization") this.fnFlag(ctx, "session-authorization");
      if (setting === undefined || privilegedSetting(setting)) this.fnKind(ctx, "admin");
    }
  }

  // --- DO blocks

  private doStmt(node: Obj, ctx: Ctx): void {
    this.rule("DoStmt", ctx);
    const body = defElemString(node.args, "as");
    const language = (defElemString(node.args, "language") ?? "plpgsql").toLowerCase();
    if (UNTRUSTED_LANGUAGES.has(language)) this.kind(ctx, "admin");
    if (ctx.mode !== "exec") return;
    if (body === undefined || language !== "plpgsql" || this.depth >= MAX_EMBEDDED_DEPTH) {
      this.opaque(ctx);
      return;
    }
    const extraction = extractPlpgsql(body);
    if (extraction.opaque) this.opaque(ctx);
    if (extraction.dynamic) this.flag(ctx, "dynamic-sql");
    if (extraction.transactionControl) this.kind(ctx, "transaction");
    for (const piece of extraction.embedded) {
      this.embedded(piece.sql, ctx);
      if (piece.executedString) {
        // EXECUTE 'constant': the constant is the SQL that runs. SQL built at run time
        // (format(), concatenation) is code we cannot see.
        const constant = selectedConstant(piece.sql);
        if (constant !== undefined) this.embedded(constant, ctx);
        else this.opaque(ctx);
      }
    }
  }

  /** Code we cannot see into: it may run anything. */
  private opaque(ctx: Ctx): void {
    this.kind(ctx, "unknown");
    this.flag(ctx, "dynamic-sql");
  }

  private embedded(sql: string, ctx: Ctx): void {
    let tree: Obj;
    try {
      new SourceText(sql);
      tree = parseTree(sql);
    } catch {
      this.opaque(ctx);
      return;
    }
    for (const raw of asArray(tree.stmts)) {
      if (!isObj(raw)) continue;
      const nested = new Walker(raw.stmt, this.depth + 1);
      nested.walkEmbedded(raw.stmt);
      const sub = nested.acc;
      // Session-level PREPARE/EXECUTE inside a DO block are not tracked: unknown.
      if (sub.executes.length > 0) this.opaque(ctx);
      mergeAcc(this.#acc, { ...sub, executes: [] });
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Small helpers over the parse tree

const ANALYZE: ReadonlySet<string> = new Set(["analyze", "analyse"]);

function isUpper(c: number): boolean {
  return c >= 65 && c <= 90;
}

function inScope(scope: CteScope | undefined, name: string): boolean {
  for (let s = scope; s; s = s.parent) if (s.names.has(name)) return true;
  return false;
}

function nodeTypeOf(v: unknown): string {
  return isObj(v) ? (Object.keys(v)[0] ?? "unknown") : "unknown";
}

/** `[{String: {sval: "a"}}, …]` → ["a", …] */
function stringList(v: unknown): string[] {
  const out: string[] = [];
  for (const item of asArray(v)) {
    if (isObj(item) && isObj(item.String)) out.push(asString(item.String.sval) ?? "");
  }
  return out;
}

/** A qualified name as DROP/COMMENT hold it: `{List: {items: [String…]}}` or one String. */
function nameList(v: unknown): string[] {
  if (!isObj(v)) return [];
  if (isObj(v.List)) return stringList(v.List.items);
  if (isObj(v.String)) return [asString(v.String.sval) ?? ""];
  return [];
}

function isDefElem(v: unknown, names: ReadonlySet<string>): v is { DefElem: Obj } {
  return isObj(v) && isObj(v.DefElem) && names.has(asString(v.DefElem.defname) ?? "");
}

/**
 * PostgreSQL's defGetBoolean: no value means true. Anything that is not clearly false counts
 * as true (fail closed: the server rejects values it does not understand anyway).
 */
function defElemTrue(v: { DefElem: Obj }): boolean {
  const arg = v.DefElem.arg;
  if (!isObj(arg)) return true;
  if (isObj(arg.Boolean)) return arg.Boolean.boolval === true;
  if (isObj(arg.Integer)) return (arg.Integer.ival ?? 0) !== 0;
  if (isObj(arg.String)) {
    const s = (asString(arg.String.sval) ?? "").toLowerCase();
    return !(s === "false" || s === "off" || s === "no" || s === "0");
  }
  return true;
}

function defElemString(list: unknown, name: string): string | undefined {
  for (const o of asArray(list)) {
    if (isObj(o) && isObj(o.DefElem) && o.DefElem.defname === name) {
      const arg = o.DefElem.arg;
      if (isObj(arg) && isObj(arg.String)) return asString(arg.String.sval);
    }
  }
  return undefined;
}

/**
 * Settings only a superuser may change, that reach past the statement at hand: replication role
 * (turns triggers and foreign-key actions off), what the server logs and tracks, damaged-page and
 * checksum handling, system-catalog changes, libraries loaded into the backend. Changing one is
 * server administration ("admin"), not an ordinary session setting.
 */
const PRIVILEGED_SETTINGS: ReadonlySet<string> = new Set([
  // PostgreSQL 15's settings of context "superuser" (pg_settings), and a few kin of newer versions
  "allow_in_place_tablespaces", "allow_system_table_mods", "backtrace_functions", "commit_delay", "composite_type_mismatch",
  "compute_query_id", "deadlock_timeout", "dynamic_library_path", "extension_destdir", "ignore_checksum_failure",
  "ignore_invalid_pages", "ignore_system_indexes", "jit_dump_bitcode", "jit_provider", "lc_messages", "lo_compat_privileges",
  "local_preload_libraries", "max_stack_depth", "output_plugin_libraries", "session_preload_libraries", "session_replication_role",
  "temp_file_limit", "update_process_title", "wal_compression", "wal_consistency_checking", "wal_init_zero", "wal_recycle",
  "zero_damaged_pages",
]);
const PRIVILEGED_PREFIXES = ["log_", "debug_", "trace_", "track_"];

function privilegedSetting(name: string): boolean {
  return PRIVILEGED_SETTINGS.has(name) || PRIVILEGED_PREFIXES.some((p) => name.startsWith(p));
}

/** The string of an `A_Const` string node (possibly under a type cast). */
function constantString(v: unknown): string | undefined {
  if (!isObj(v)) return undefined;
  if (isObj(v.TypeCast)) return constantString(v.TypeCast.arg);
  if (isObj(v.A_Const) && isObj(v.A_Const.sval)) return asString(v.A_Const.sval.sval);
  return undefined;
}

/** For `SELECT 'text'`: the text. */
function selectedConstant(sql: string): string | undefined {
  let tree: Obj;
  try {
    tree = parseTree(sql);
  } catch {
    return undefined;
  }
  const stmts = asArray(tree.stmts);
  if (stmts.length !== 1) return undefined;
  const first = stmts[0];
  const select = isObj(first) && isObj(first.stmt) ? first.stmt.SelectStmt : undefined;
  if (!isObj(select)) return undefined;
  const targets = asArray(select.targetList);
  const target = targets[0];
  if (targets.length !== 1 || !isObj(target) || !isObj(target.ResTarget)) return undefined;
  return constantString(target.ResTarget.val);
}

/** Quotes an identifier the way PostgreSQL's quote_ident does when it has to. */
export function quoteIdent(name: string): string {
  let plain = name.length > 0;
  for (let i = 0; i < name.length && plain; i++) {
    const c = name.charCodeAt(i);
    const lower = c >= 97 && c <= 122;
    const digit = c >= 48 && c <= 57;
    plain = lower || c === 95 || (i > 0 && (digit || c === 36));
  }
  return plain ? name : `"${name.replaceAll('"', '""')}"`;
}

function qualifiedName(parts: readonly string[]): string {
  return parts.map(quoteIdent).join(".");
}

// ---------------------------------------------------------------------------------------------
// Drafts, resolution of EXECUTE, results

const FLAG_ORDER: ReadonlyMap<RiskFlag, number> = new Map(RISK_FLAGS.map((f, i) => [f, i]));
const sortFlags = (flags: Iterable<RiskFlag>): RiskFlag[] =>
  [...new Set(flags)].sort((a, b) => (FLAG_ORDER.get(a) ?? 0) - (FLAG_ORDER.get(b) ?? 0));

function draft(text: string, nodeType: string, acc: Acc): StatementDraft {
  return {
    text,
    nodeType,
    kinds: sortKindsByRisk(acc.kinds),
    flags: sortFlags(acc.flags),
    nodeTypes: [...acc.nodeTypes],
    tables: [...acc.tables],
    functions: [...acc.functions],
    fnKinds: sortKindsByRisk(acc.fnKinds),
    fnFlags: sortFlags(acc.fnFlags),
  };
}

/** The public statement of a draft. A statement with no kind at all is "unknown" (fail closed). */
export function finishStatement(d: StatementDraft, extraFlags: readonly RiskFlag[] = []): SqlStatement {
  const kinds = d.kinds.length > 0 ? [...d.kinds] : (["unknown"] as SqlKind[]);
  return {
    text: d.text,
    kinds,
    kind: kinds[0] ?? "unknown",
    nodeType: d.nodeType,
    nodeTypes: [...d.nodeTypes],
    tables: [...d.tables],
    functions: [...d.functions],
    flags: sortFlags([...d.flags, ...extraFlags]),
  };
}

/** Both possibilities at once: used when a name may refer to either of two bodies. */
export function unionDrafts(a: StatementDraft, b: StatementDraft): StatementDraft {
  const u = <T>(x: readonly T[], y: readonly T[]): T[] => [...new Set([...x, ...y])];
  return {
    text: b.text || a.text,
    nodeType: b.nodeType,
    kinds: sortKindsByRisk(u(a.kinds, b.kinds)),
    flags: sortFlags(u(a.flags, b.flags)),
    nodeTypes: u(a.nodeTypes, b.nodeTypes),
    tables: u(a.tables, b.tables),
    functions: u(a.functions, b.functions),
    fnKinds: sortKindsByRisk(u(a.fnKinds, b.fnKinds)),
    fnFlags: sortFlags(u(a.fnFlags, b.fnFlags)),
  };
}

const NOT_INHERITED_BY_EXECUTE: ReadonlySet<RiskFlag> = new Set(["prepare", "multi-statement"]);

/** Folds what each EXECUTE runs into the statement. */
function applyExecutes(
  own: StatementDraft,
  refs: readonly ExecuteRef[],
  find: (name: string) => StatementDraft | undefined,
): StatementDraft {
  const kinds = new Set(own.kinds);
  const flags = new Set(own.flags);
  const nodeTypes = new Set(own.nodeTypes);
  const tables = new Set(own.tables);
  const functions = new Set(own.functions);
  for (const ref of refs) {
    const body = find(ref.name);
    if (ref.planOnly) {
      if (!body) continue;
      for (const k of body.fnKinds) kinds.add(k);
      for (const f of body.fnFlags) flags.add(f);
    } else if (!body) {
      kinds.add("unknown");
      flags.add("execute-prepared");
      flags.add("unknown-prepared");
      continue;
    } else {
      for (const k of body.kinds) kinds.add(k);
      for (const f of body.flags) if (!NOT_INHERITED_BY_EXECUTE.has(f)) flags.add(f);
      flags.add("execute-prepared");
      if (ref.underExplainAnalyze && body.kinds.some((k) => CHANGING_KINDS.has(k))) flags.add("explain-analyze-write");
    }
    for (const n of body.nodeTypes) nodeTypes.add(n);
    for (const t of body.tables) tables.add(t);
    for (const f of body.functions) functions.add(f);
  }
  return {
    ...own,
    kinds: sortKindsByRisk(kinds),
    flags: sortFlags(flags),
    nodeTypes: [...nodeTypes],
    tables: [...tables],
    functions: [...functions],
  };
}

/**
 * Turns analyses into statements, in order: EXECUTE is resolved against PREPAREs earlier in
 * the same text first (DEALLOCATE in between removes them), then against `lookup`. Returns
 * the PREPARE/DEALLOCATE effects the text would have on a session if it runs.
 */
export function resolveStatements(
  analyses: readonly StatementAnalysis[],
  lookup: PreparedLookup,
): { statements: SqlStatement[]; effects: PreparedEffect[] } {
  const overlay = new Map<string, StatementDraft | null>();
  let cleared = false;
  const find = (name: string): StatementDraft | undefined => {
    if (overlay.has(name)) return overlay.get(name) ?? undefined;
    return cleared ? undefined : lookup(name);
  };
  const multi: readonly RiskFlag[] = analyses.length > 1 ? ["multi-statement"] : [];
  const statements: SqlStatement[] = [];
  const effects: PreparedEffect[] = [];
  for (const a of analyses) {
    const resolved = a.executes.length > 0 ? applyExecutes(a.own, a.executes, find) : a.own;
    statements.push(finishStatement(resolved, multi));
    if (a.prepare) {
      const { name, body } = a.prepare;
      const existing = find(name);
      // PREPARE of a taken name fails on the server, keeping the old body; we cannot see
      // whether it failed, so the name may mean either.
      overlay.set(name, existing ? unionDrafts(existing, body) : body);
      effects.push({ op: "prepare", name, body: { ...body, text: a.own.text } });
    }
    if (a.deallocate === "all") {
      overlay.clear();
      cleared = true;
      effects.push({ op: "deallocate-all" });
    } else if (a.deallocate) {
      overlay.set(a.deallocate.name, null);
      effects.push({ op: "deallocate", name: a.deallocate.name });
    }
  }
  return { statements, effects };
}

/** Freezes an object graph so cached results cannot be changed by whoever receives them. */
export function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

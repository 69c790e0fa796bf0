// Per-session state for SQL-level prepared statements. `PREPARE p AS DELETE FROM t` is
// harmless until `EXECUTE p` runs it, and the EXECUTE text alone says nothing: this registry
// remembers what each name was prepared as, so EXECUTE is judged by its body.
// It must never record a PREPARE the gate did not let through: `describe` is pure and only
// `commit`, called after the statement was allowed, changes the registry. Whatever it cannot
// resolve is "unknown", never "read". Protocol-level prepared statements (extended-protocol
// Parse with a name) are tracked by the proxy; it can hand them in through `fallback`.

import type { RiskFlag, SqlDescription, SqlStatement } from "../../../domain/operation.ts";
import {
  analyzeSql,
  deepFreeze,
  finishStatement,
  type PreparedEffect,
  resolveStatements,
  type SqlAnalysis,
  type StatementDraft,
  unionDrafts,
} from "./classify.ts";

/** What running a described text does to the session's prepared statements. */
export type PreparedEffectSummary =
  | { readonly op: "prepare"; readonly name: string }
  | { readonly op: "deallocate"; readonly name: string }
  | { readonly op: "deallocate-all" };

export interface SessionDescription extends SqlDescription {
  /** Applied to the registry by `commit`, in order, once the text was allowed. */
  readonly preparedEffects: readonly PreparedEffectSummary[];
}

export interface PreparedStatementRegistryOptions {
  /**
   * Consulted for names this registry does not hold, e.g. the proxy's named protocol-level
   * statements (PostgreSQL keeps both in one namespace, so EXECUTE can run either).
   */
  fallback?: (name: string) => SqlStatement | undefined;
}

const NO_EFFECTS: readonly PreparedEffectSummary[] = Object.freeze([]);

export class PreparedStatementRegistry {
  readonly #entries = new Map<string, StatementDraft>();
  readonly #issued = new WeakMap<SessionDescription, readonly PreparedEffect[]>();
  readonly #fallback: ((name: string) => SqlStatement | undefined) | undefined;

  constructor(options: PreparedStatementRegistryOptions = {}) {
    this.#fallback = options.fallback;
  }

  /**
   * Describes `sql` as it would run in this session now: EXECUTE is resolved against PREPAREs
   * earlier in the same text, then this registry, then the fallback; an unknown name is kind
   * "unknown" with flag unknown-prepared. Changes nothing.
   */
  describe(sql: string): SessionDescription {
    const analysis = analyzeSql(sql);
    const plain = independentOfSession(analysis);
    if (plain) return plain;
    const { statements, effects } = resolveStatements(analysis.statements, (name) => this.#lookup(name));
    const description: SessionDescription = deepFreeze({
      statements,
      preparedEffects: effects.map(summary),
    });
    if (effects.length > 0) this.#issued.set(description, effects);
    return description;
  }

  /**
   * Applies the PREPARE/DEALLOCATE effects of a description from this registry's `describe`,
   * after the gate allowed it. Commit each description once.
   */
  commit(description: SessionDescription, defer?: (apply: () => void) => void): void {
    const effects = this.#issued.get(description);
    if (effects === undefined) {
      if (description.preparedEffects.length === 0) return;
      throw new Error(
        "PreparedStatementRegistry.commit: this description was not produced by this registry's describe(), or was already committed",
      );
    }
    this.#issued.delete(description);
    for (const e of effects) {
      if (e.op === "prepare") {
        // A PREPARE of a name already in use fails on the server and keeps the old body; we
        // cannot see whether it failed, so from now on the name may mean either.
        const existing = this.#entries.get(e.name);
        this.#entries.set(e.name, existing ? unionDrafts(existing, e.body) : e.body);
      } else if (e.op === "deallocate") {
        // With `defer`, only once the server confirms it (a DEALLOCATE in a failed transaction
        // does nothing), and only what the name meant then (not a later PREPARE of it).
        const apply = this.forgetter(e.name);
        if (defer) defer(apply);
        else apply();
      } else {
        const was = new Map(this.#entries);
        const apply = () => {
          for (const [k, v] of was) if (this.#entries.get(k) === v) this.#entries.delete(k);
        };
        if (defer) defer(apply);
        else apply();
      }
    }
  }

  /** The classification of what `EXECUTE name` would run, if known here. */
  get(name: string): SqlStatement | undefined {
    const d = this.#entries.get(name);
    return d ? deepFreeze(finishStatement(d)) : undefined;
  }

  has(name: string): boolean {
    return this.#entries.has(name);
  }

  get size(): number {
    return this.#entries.size;
  }

  names(): string[] {
    return [...this.#entries.keys()];
  }

  /** Forgets everything (the session ended or was reset outside SQL). */
  clear(): void {
    this.#entries.clear();
  }

  /**
   * A function that forgets what `name` means now (not a later PREPARE of it), to be called once
   * the server confirms the DEALLOCATE or protocol-level Close (one namespace with SQL PREPARE).
   */
  forgetter(name: string): () => void {
    const was = this.#entries.get(name);
    return () => {
      if (was !== undefined && this.#entries.get(name) === was) this.#entries.delete(name);
    };
  }

  #lookup(name: string): StatementDraft | undefined {
    const own = this.#entries.get(name);
    if (own) return own;
    const s = this.#fallback?.(name);
    if (!s) return undefined;
    return {
      text: s.text,
      nodeType: s.nodeType,
      kinds: s.kinds,
      flags: s.flags.filter((f: RiskFlag) => f !== "multi-statement"),
      nodeTypes: s.nodeTypes,
      tables: s.tables,
      functions: s.functions,
      // Unknown split: a plain EXPLAIN of it conservatively keeps every kind.
      fnKinds: s.kinds,
      fnFlags: s.flags,
    };
  }
}

// Most texts neither prepare nor execute anything: their session description is the cached
// stateless one, shared across sessions (it is frozen).
const plainDescriptions = new WeakMap<SqlAnalysis, SessionDescription>();

function independentOfSession(analysis: SqlAnalysis): SessionDescription | undefined {
  const known = plainDescriptions.get(analysis);
  if (known) return known;
  const plain =
    analysis.description.parseError !== undefined ||
    analysis.statements.every((a) => a.executes.length === 0 && !a.prepare && !a.deallocate);
  if (!plain) return undefined;
  const description: SessionDescription = deepFreeze({ ...analysis.description, preparedEffects: NO_EFFECTS });
  plainDescriptions.set(analysis, description);
  return description;
}

function summary(e: PreparedEffect): PreparedEffectSummary {
  return e.op === "deallocate-all" ? { op: e.op } : { op: e.op, name: e.name };
}

/** Pure: how `sql` would be judged in this session. See PreparedStatementRegistry.describe. */
export function describeInSession(sql: string, registry: PreparedStatementRegistry): SessionDescription {
  return registry.describe(sql);
}

/** After the gate allowed a described text: apply its PREPARE/DEALLOCATE effects. */
export function commitInSession(description: SessionDescription, registry: PreparedStatementRegistry, defer?: (apply: () => void) => void): void {
  registry.commit(description, defer);
}

// Looks inside a DO block. The body of DO is a string to the SQL parser, so a DO that drops a
// table looks like a harmless literal unless we parse the body with PL/pgSQL's own parser and
// hand the SQL it contains back to the classifier. This module only extracts; it must never
// decide a kind itself, and anything it cannot read is reported as opaque so the caller can
// fail closed. It never decides anything by pattern-matching SQL text: PostgreSQL's own
// PL/pgSQL parser and lexer do the reading.

import { parsePlPgSQLSync, scanSync } from "libpg-query";

/** A piece of SQL found in the body, ready to hand to the SQL parser. */
export interface EmbeddedSql {
  /** Complete SQL text (expressions are already wrapped as `SELECT <expr>`). */
  sql: string;
  /** True when this is the argument of EXECUTE: if it is a constant string, that string runs. */
  executedString: boolean;
}

export interface PlpgsqlExtraction {
  embedded: EmbeddedSql[];
  /** EXECUTE, FOR … IN EXECUTE or OPEN … FOR EXECUTE: SQL text is built at run time. */
  dynamic: boolean;
  /** COMMIT / ROLLBACK inside the block. */
  transactionControl: boolean;
  /** The body could not be read completely; what it runs is unknown. */
  opaque: boolean;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

// PL/pgSQL parse modes (RawParseMode in PostgreSQL's parser.h).
const RAW_PARSE_DEFAULT = 0;
const RAW_PARSE_PLPGSQL_EXPR = 2;
const RAW_PARSE_PLPGSQL_ASSIGN1 = 3;
const RAW_PARSE_PLPGSQL_ASSIGN3 = 5;

/**
 * Extract the SQL a PL/pgSQL DO body runs. `body` is the DO string as the SQL parser
 * returned it (already unquoted).
 */
export function extractPlpgsql(body: string): PlpgsqlExtraction {
  const out: PlpgsqlExtraction = { embedded: [], dynamic: false, transactionControl: false, opaque: false };
  // A DO block is compiled exactly like the body of a function returning void.
  const tag = dollarTagNotIn(body);
  let tree: unknown;
  try {
    tree = parsePlPgSQLSync(`CREATE FUNCTION gatehouse_do_block() RETURNS void LANGUAGE plpgsql AS ${tag}${body}${tag}`);
  } catch {
    out.opaque = true;
    return out;
  }
  visit(tree, out, false);
  return out;
}

function visit(value: unknown, out: PlpgsqlExtraction, executed: boolean): void {
  if (Array.isArray(value)) {
    for (const v of value) visit(v, out, executed);
    return;
  }
  if (!isObj(value)) return;
  for (const [key, child] of Object.entries(value)) {
    switch (key) {
      case "PLpgSQL_expr":
        if (isObj(child)) expr(child, out, executed);
        break;
      case "PLpgSQL_stmt_dynexecute":
      case "PLpgSQL_stmt_dynfors":
        out.dynamic = true;
        if (isObj(child)) {
          visit(child.query, out, true);
          visit(omit(child, "query"), out, false);
        }
        break;
      case "dynquery":
        out.dynamic = true;
        visit(child, out, true);
        break;
      case "PLpgSQL_stmt_commit":
      case "PLpgSQL_stmt_rollback":
        out.transactionControl = true;
        visit(child, out, false);
        break;
      default:
        visit(child, out, false);
    }
  }
}

function expr(node: Obj, out: PlpgsqlExtraction, executed: boolean): void {
  const query = node.query;
  const mode = typeof node.parseMode === "number" ? node.parseMode : RAW_PARSE_DEFAULT;
  if (typeof query !== "string") {
    out.opaque = true;
    return;
  }
  if (mode === RAW_PARSE_DEFAULT) {
    out.embedded.push({ sql: query, executedString: false });
  } else if (mode === RAW_PARSE_PLPGSQL_EXPR) {
    // PostgreSQL parses a PL/pgSQL expression as the target list of a SELECT.
    out.embedded.push({ sql: `SELECT ${query}`, executedString: executed });
  } else if (mode >= RAW_PARSE_PLPGSQL_ASSIGN1 && mode <= RAW_PARSE_PLPGSQL_ASSIGN3) {
    const value = assignedExpression(query);
    if (value === undefined) out.opaque = true;
    else out.embedded.push({ sql: `SELECT ${value}`, executedString: false });
  } else {
    out.opaque = true;
  }
}

/**
 * `target := expr` (or `target = expr`): the expression after the first assignment operator
 * outside brackets, found with PostgreSQL's own lexer.
 */
function assignedExpression(assignment: string): string | undefined {
  let tokens: { end: number; text: string }[];
  try {
    tokens = scanSync(assignment).tokens;
  } catch {
    return undefined;
  }
  const bytes = Buffer.from(assignment, "utf8");
  let depth = 0;
  for (const t of tokens) {
    // Token offsets are UTF-8 byte offsets.
    if (t.text === "(" || t.text === "[") depth++;
    else if (t.text === ")" || t.text === "]") depth--;
    else if (depth === 0 && (t.text === ":=" || t.text === "=")) {
      return bytes.subarray(t.end).toString("utf8");
    }
  }
  return undefined;
}

function omit(o: Obj, key: string): Obj {
  const copy: Obj = { ...o };
  delete copy[key];
  return copy;
}

/** A dollar-quote tag that does not occur in `body`, so the body cannot end the quote early. */
function dollarTagNotIn(body: string): string {
  for (let i = 0; ; i++) {
    const tag = `$gatehouse${i}$`;
    if (!body.includes(tag)) return tag;
  }
}

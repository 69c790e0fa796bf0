// The unit the gate judges. Protocol modules describe what will run (classification);
// policy decides on this description only, never on raw bytes.

import type { Protocol } from "./connection.ts";

/** Kinds a SQL statement can have; one statement may have several (WITH … DELETE … SELECT). */
export const SQL_KINDS = [
  "read",
  "write",
  "ddl",
  "dcl",
  "transaction",
  "session",
  "utility",
  "procedural",
  "admin",
  "unknown",
] as const;
export type SqlKind = (typeof SQL_KINDS)[number];

/** Risk flags the classifier sets; policy rules can match them. */
export const RISK_FLAGS = [
  "delete-without-where",
  "update-without-where",
  "truncate",
  "drop",
  "drop-database",
  "do-block",
  "copy-program",
  "copy-to-file",
  "copy-from-file",
  "explain-analyze-write",
  "prepare",
  "execute-prepared",
  "unknown-prepared",
  "set-role",
  "session-authorization",
  "alter-system",
  "function-call",
  "procedure-call",
  "dynamic-sql",
  "locking-read",
  "multi-statement",
  "unparseable",
] as const;
export type RiskFlag = (typeof RISK_FLAGS)[number];

export interface SqlStatement {
  /** Source text of this statement (trimmed). */
  text: string;
  /** Every kind found anywhere in the statement's tree. */
  kinds: SqlKind[];
  /** The most dangerous of `kinds` (order: SQL_KIND_RISK). */
  kind: SqlKind;
  /** Parse-tree node type of the statement itself, e.g. `DeleteStmt`. */
  nodeType: string;
  /** All statement node types in the tree (nested ones too). */
  nodeTypes: string[];
  /** Relations touched, schema-qualified where the statement qualifies them. */
  tables: string[];
  /** Functions called (schema-qualified where given). */
  functions: string[];
  flags: RiskFlag[];
}

export interface SqlDescription {
  statements: SqlStatement[];
  /** Set when the text did not parse: the operation is `unparseable`. */
  parseError?: string;
}

/** One ref update of a git push (from the receive-pack commands). */
export interface GitRefUpdate {
  ref: string;
  old: string;
  new: string;
  action: "create" | "update" | "delete";
  /** update only: true / false when the gateway could tell, undefined when it could not. */
  fastForward?: boolean | undefined;
}

export interface GitDescription {
  service: "upload-pack" | "receive-pack";
  /** discovery: GET info/refs; rpc: the POST that fetches or pushes. */
  phase: "discovery" | "rpc";
  /** receive-pack rpc: the ref updates, each judged on its own. */
  updates?: GitRefUpdate[];
}

export interface HttpDescription {
  /** Upper case. */
  method: string;
  /** Normalized, decoded path (src/protocols/http/normalize.ts), relative to the connection. */
  path: string;
  /** Decoded query parameters. */
  query: Record<string, string[]>;
  /** Request headers, names lower case, without credentials (authorization, cookie, proxy-*). */
  headers: Record<string, string>;
  /** The body's size (streamed: the declared Content-Length, or -1 when chunked). */
  bodyBytes: number;
  /** SHA-256 of the body (part of the approval binding); "" when streamed. */
  bodySha256: string;
  /**
   * The body was larger than the gate reads whole (listeners.http.maxBodyBytes): it is streamed
   * to the target unread, so only `allow` can forward it, and rules on its content (`json`) are
   * read in the safer direction (deny/review match, allow does not).
   */
  bodyStreamed?: boolean;
  /** The method a method override header (X-HTTP-Method-Override…) asks the target to run, upper case. */
  methodOverride?: string;
  /** The start of the body, when it is short UTF-8 text: what a reviewer reads. */
  bodyText?: string;
  /** The body parsed, when it is JSON (for `json` rule conditions). */
  json?: unknown;
  /**
   * Why the body may be JSON to a target but cannot be judged as such (not read whole, too large,
   * not strict JSON, a key given twice, …; src/protocols/http/json-body.ts): `json` conditions are
   * then read in the safer direction (deny/review match, allow does not).
   */
  jsonUnknown?: string;
  git?: GitDescription;
}

export interface Operation {
  protocol: Protocol;
  /** Canonical text shown to reviewers and bound into approvals. */
  text: string;
  /** Bound parameter values (extended protocol), as text or null; part of the approval binding. */
  parameters?: (string | null)[];
  sql?: SqlDescription;
  http?: HttpDescription;
}

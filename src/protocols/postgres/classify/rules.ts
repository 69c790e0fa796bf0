// The kind each PostgreSQL statement node contributes by itself, and the flags that follow
// from its type alone. Statements whose meaning depends on their content (SELECT INTO, COPY,
// EXPLAIN, SET ROLE, DROP DATABASE, …) are refined in classify.ts. A statement type missing
// from this table is classified "unknown": this table must never guess.

import type { RiskFlag, SqlKind } from "../../../domain/operation.ts";

export interface StatementRule {
  kinds: readonly SqlKind[];
  flags?: readonly RiskFlag[];
}

const r = (kinds: readonly SqlKind[], flags?: readonly RiskFlag[]): StatementRule =>
  flags ? { kinds, flags } : { kinds };

const READ = r(["read"]);
const WRITE = r(["write"]);
const DDL = r(["ddl"]);
const DCL = r(["dcl"]);
const ADMIN = r(["admin"]);
const SESSION = r(["session"]);
const UTILITY = r(["utility"]);
const TRANSACTION = r(["transaction"]);
const NOTHING = r([]);

/**
 * Base rule per statement node type (PostgreSQL 18). Decisions worth knowing:
 * - TRUNCATE is "write" + flag truncate: it destroys rows, not schema, and needs the
 *   TRUNCATE privilege on the table, like DELETE needs DELETE.
 * - LOCK is "write": an ACCESS EXCLUSIVE lock stalls every other session, which a read-only
 *   caller must not be able to do.
 * - NOTIFY is "write": other sessions act on it; LISTEN/UNLISTEN only change this session.
 * - SHOW is "read"; FETCH/MOVE/CLOSE are "read" (the cursor's query was judged at DECLARE).
 * - VACUUM/ANALYZE/CLUSTER/REINDEX are "utility"; CHECKPOINT and LOAD (loads a shared
 *   library into the server) are "admin".
 * - Anything reaching outside this database (extensions, languages, FDWs, foreign servers,
 *   tablespaces, publications, subscriptions, event triggers, access methods, databases,
 *   ALTER SYSTEM) is "admin".
 * - Row-level-security policies, ownership, security labels and user mappings (stored
 *   credentials) are "dcl": they decide who may see or do what.
 */
export const STATEMENT_RULES: Readonly<Record<string, StatementRule>> = {
  // data
  SelectStmt: READ,
  InsertStmt: WRITE,
  UpdateStmt: WRITE,
  DeleteStmt: WRITE,
  MergeStmt: WRITE,
  TruncateStmt: r(["write"], ["truncate"]),
  LockStmt: WRITE,
  NotifyStmt: WRITE,
  RefreshMatViewStmt: WRITE,
  CopyStmt: NOTHING, // refined: direction, file, program
  CreateTableAsStmt: NOTHING, // refined: ddl (+ write unless WITH NO DATA)
  // cursors, introspection
  DeclareCursorStmt: READ,
  FetchStmt: READ,
  ClosePortalStmt: READ,
  VariableShowStmt: READ,
  ExplainStmt: READ, // refined: EXPLAIN ANALYZE runs its statement
  // prepared statements: kinds come from the body (PREPARE) or the registry (EXECUTE)
  PrepareStmt: r([], ["prepare"]),
  ExecuteStmt: NOTHING,
  DeallocateStmt: SESSION,
  // transaction control
  TransactionStmt: TRANSACTION,
  ConstraintsSetStmt: TRANSACTION,
  // session state
  VariableSetStmt: SESSION, // refined: SET ROLE, SET SESSION AUTHORIZATION
  DiscardStmt: SESSION, // refined: DISCARD ALL resets the role
  ListenStmt: SESSION,
  UnlistenStmt: SESSION,
  // procedural
  DoStmt: r(["procedural"], ["do-block"]),
  CallStmt: r(["procedural"], ["procedure-call"]),
  // maintenance
  VacuumStmt: UTILITY,
  ClusterStmt: UTILITY,
  ReindexStmt: UTILITY,
  CheckPointStmt: ADMIN,
  LoadStmt: ADMIN,
  // schema
  CreateStmt: DDL,
  CreateForeignTableStmt: DDL,
  AlterTableStmt: DDL, // refined: OWNER TO / row security are dcl, DROP COLUMN is a drop
  ReplicaIdentityStmt: DDL,
  DropStmt: r(["ddl"], ["drop"]), // refined by object type
  RenameStmt: DDL, // refined: renaming a role is dcl, a database or tablespace admin
  CommentStmt: DDL,
  IndexStmt: DDL,
  ViewStmt: DDL,
  RuleStmt: DDL,
  CreateSchemaStmt: DDL,
  CreateSeqStmt: DDL,
  AlterSeqStmt: DDL,
  CreateFunctionStmt: DDL, // refined: C and untrusted languages are admin
  AlterFunctionStmt: DDL,
  CreateTrigStmt: DDL,
  CreateDomainStmt: DDL,
  AlterDomainStmt: DDL,
  CreateEnumStmt: DDL,
  AlterEnumStmt: DDL,
  CreateRangeStmt: DDL,
  CompositeTypeStmt: DDL,
  AlterTypeStmt: DDL,
  DefineStmt: DDL,
  CreateOpClassStmt: DDL,
  CreateOpFamilyStmt: DDL,
  AlterOpFamilyStmt: DDL,
  AlterOperatorStmt: DDL,
  CreateCastStmt: DDL,
  CreateConversionStmt: DDL,
  CreateTransformStmt: DDL,
  CreateStatsStmt: DDL,
  AlterStatsStmt: DDL,
  AlterCollationStmt: DDL,
  AlterTSDictionaryStmt: DDL,
  AlterTSConfigurationStmt: DDL,
  AlterObjectDependsStmt: DDL,
  AlterObjectSchemaStmt: DDL,
  ImportForeignSchemaStmt: DDL,
  // privileges
  GrantStmt: DCL,
  GrantRoleStmt: DCL,
  AlterDefaultPrivilegesStmt: DCL,
  CreateRoleStmt: DCL, // refined: SUPERUSER / REPLICATION / BYPASSRLS are admin
  AlterRoleStmt: DCL, // refined likewise
  AlterRoleSetStmt: DCL,
  DropRoleStmt: r(["dcl"], ["drop"]),
  AlterOwnerStmt: DCL,
  ReassignOwnedStmt: DCL,
  DropOwnedStmt: r(["dcl"], ["drop"]),
  CreatePolicyStmt: DCL,
  AlterPolicyStmt: DCL,
  SecLabelStmt: DCL,
  CreateUserMappingStmt: DCL,
  AlterUserMappingStmt: DCL,
  DropUserMappingStmt: r(["dcl"], ["drop"]),
  // beyond this database
  CreatedbStmt: ADMIN,
  AlterDatabaseStmt: ADMIN,
  AlterDatabaseSetStmt: ADMIN,
  AlterDatabaseRefreshCollStmt: ADMIN,
  DropdbStmt: r(["admin"], ["drop", "drop-database"]),
  AlterSystemStmt: r(["admin"], ["alter-system"]),
  CreateTableSpaceStmt: ADMIN,
  DropTableSpaceStmt: r(["admin"], ["drop"]),
  AlterTableSpaceOptionsStmt: ADMIN,
  AlterTableMoveAllStmt: ADMIN,
  CreateExtensionStmt: ADMIN,
  AlterExtensionStmt: ADMIN,
  AlterExtensionContentsStmt: ADMIN,
  CreatePLangStmt: ADMIN,
  CreateFdwStmt: ADMIN,
  AlterFdwStmt: ADMIN,
  CreateForeignServerStmt: ADMIN,
  AlterForeignServerStmt: ADMIN,
  CreateEventTrigStmt: ADMIN,
  AlterEventTrigStmt: ADMIN,
  CreateAmStmt: ADMIN,
  CreatePublicationStmt: ADMIN,
  AlterPublicationStmt: ADMIN,
  CreateSubscriptionStmt: ADMIN,
  AlterSubscriptionStmt: ADMIN,
  DropSubscriptionStmt: r(["admin"], ["drop"]),
  // only ever nested inside other statements
  ReturnStmt: NOTHING,
  PLAssignStmt: NOTHING,
  RawStmt: NOTHING,
  SetOperationStmt: READ,
};

/** Object types whose DROP/RENAME/COMMENT reaches outside the database or needs a superuser. */
export const ADMIN_OBJECT_TYPES: ReadonlySet<string> = new Set([
  "OBJECT_DATABASE",
  "OBJECT_TABLESPACE",
  "OBJECT_EXTENSION",
  "OBJECT_EVENT_TRIGGER",
  "OBJECT_FDW",
  "OBJECT_FOREIGN_SERVER",
  "OBJECT_LANGUAGE",
  "OBJECT_ACCESS_METHOD",
  "OBJECT_PUBLICATION",
  "OBJECT_SUBSCRIPTION",
  "OBJECT_PARAMETER_ACL",
]);

/** Object types that are about access control. */
export const DCL_OBJECT_TYPES: ReadonlySet<string> = new Set(["OBJECT_ROLE", "OBJECT_POLICY", "OBJECT_USER_MAPPING"]);

/** Object types that are relations: their name (as a qualified-name list) is a table. */
export const RELATION_OBJECT_TYPES: ReadonlySet<string> = new Set([
  "OBJECT_TABLE",
  "OBJECT_VIEW",
  "OBJECT_MATVIEW",
  "OBJECT_FOREIGN_TABLE",
  "OBJECT_SEQUENCE",
]);

/** Object types named "<table>.<name>": all but the last name part is the table. */
export const ON_RELATION_OBJECT_TYPES: ReadonlySet<string> = new Set([
  "OBJECT_COLUMN",
  "OBJECT_TRIGGER",
  "OBJECT_RULE",
  "OBJECT_POLICY",
  "OBJECT_TABCONSTRAINT",
]);

/** Procedural languages that are not sandboxed: code in them runs as the server's OS user. */
export const UNTRUSTED_LANGUAGES: ReadonlySet<string> = new Set([
  "c",
  "internal",
  "plpythonu",
  "plpython2u",
  "plpython3u",
  "plperlu",
  "pltclu",
  "plrubyu",
  "plsh",
  "plv8u",
]);

/** Role attributes that give power over the whole server. */
export const SERVER_WIDE_ROLE_OPTIONS: ReadonlySet<string> = new Set(["superuser", "replication", "bypassrls"]);

/** Kinds that, reached through EXPLAIN ANALYZE, mean the "explanation" changes something. */
export const CHANGING_KINDS: ReadonlySet<SqlKind> = new Set(["write", "ddl", "dcl", "admin", "procedural"]);

// A whole gateway for integration tests: a real OIDC provider, a throwaway database on the real
// PostgreSQL server, and the gateway (API + PostgreSQL listener on port 0, self-signed TLS).

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseConfig } from "../../src/config/load.ts";
import type { ConfigInput } from "../../src/config/schema.ts";
import { startGateway, type Gateway } from "../../src/main.ts";
import { createLogger } from "../../src/observability/logger.ts";
import { startTestIdp, type TestIdp, type TestIdpOptions } from "./idp.ts";
import { createTempDatabase, PG_ADMIN_USER, PG_HOST, PG_PORT, type TempDatabase } from "./pg.ts";

/** Group ids as Entra would send them, and the names config maps them to. */
export const GROUPS = {
  aiAgents: "7d7e2f0a-0000-4000-8000-00000000a1a1",
  dba: "7d7e2f0a-0000-4000-8000-00000000dbdb",
} as const;

export const DEFAULT_POLICIES: NonNullable<ConfigInput["policies"]> = [
  { name: "agents-read", principals: { groups: ["ai-agents"] }, operations: { kinds: ["read", "transaction", "session"] }, decision: "allow" },
  { name: "agents-write", principals: { groups: ["ai-agents"] }, operations: { kinds: ["write"] }, decision: "allow" },
  { name: "schema-changes", operations: { kinds: ["ddl", "dcl"] }, decision: "review", message: "schema and permission changes need a DBA", review: { approvers: ["dba"], expires: "30s" } },
  { name: "destructive", operations: { flags: ["delete-without-where", "update-without-where", "truncate"] }, decision: "review", review: { approvers: ["dba"], expires: "30s" } },
  { name: "procedural", operations: { kinds: ["procedural"] }, decision: "review", review: { approvers: ["dba"], expires: "30s" } },
  { name: "no-drop-database", operations: { flags: ["drop-database"] }, decision: "deny", message: "never drop a database" },
  { name: "no-admin", operations: { kinds: ["admin"] }, decision: "deny", message: "no server administration" },
  { name: "no-role-switch", operations: { flags: ["set-role", "session-authorization"] }, decision: "deny", message: "role switching is not allowed" },
];

export interface TestGateway {
  gw: Gateway;
  idp: TestIdp;
  db: TempDatabase;
  /** Host/port of the gateway's PostgreSQL listener. */
  host: string;
  port: number;
  /** Connection name that points at `db`. */
  connection: string;
  /** A token for an AI agent (app-only) in the given groups (names from GROUPS keys). */
  agentToken(groups?: Array<keyof typeof GROUPS>, clientId?: string): Promise<string>;
  /** A human reviewer's token (delegated: has scp, idtyp user). */
  humanToken(groups: Array<keyof typeof GROUPS>, name: string): Promise<string>;
  /** libpq connection string through the gateway (token goes in PGPASSWORD). */
  conninfo(extra?: string): string;
  /** Direct URL to the test database (bypassing the gateway), for checking effects. */
  directUrl: string;
  close(): Promise<void>;
}

export interface TestGatewayOptions {
  policies?: ConfigInput["policies"];
  connectionPolicy?: Record<string, unknown>;
  extraConfig?: (c: ConfigInput) => void;
  /** Options for the test identity provider (e.g. a short token lifetime). */
  idp?: TestIdpOptions;
}

export async function startTestGateway(opts: TestGatewayOptions = {}): Promise<TestGateway> {
  const idp = await startTestIdp(opts.idp);
  const db = await createTempDatabase("gh_gw");
  const dir = mkdtempSync(join(tmpdir(), "gh-gw-"));
  const connection = "pg-test";
  const input: ConfigInput = {
    identity: { issuers: [{ issuer: idp.issuer, audiences: [idp.audience] }], groupNames: { [GROUPS.aiAgents]: "ai-agents", [GROUPS.dba]: "dba" } },
    // A file store, as the gateway's default is: audit events go through the audit journal.
    store: { url: `sqlite:${join(dir, "gatehouse.db")}` },
    api: { host: "127.0.0.1", port: 0 },
    listeners: { postgres: { host: "127.0.0.1", port: 0, tls: { selfSignedDir: join(dir, "tls") } } },
    connections: [{ name: connection, protocol: "postgres", postgres: { host: PG_HOST, port: PG_PORT, database: db.name, user: PG_ADMIN_USER, tls: "disable" }, ...(opts.connectionPolicy ? { policy: opts.connectionPolicy } : {}) }],
    policies: opts.policies ?? DEFAULT_POLICIES,
    logging: { level: "silent" },
  };
  opts.extraConfig?.(input);
  const gw = await startGateway(parseConfig(input), { logger: createLogger(process.env.GH_TEST_LOG ?? "silent") });
  const port = gw.postgres!.port;
  const groupIds = (gs: Array<keyof typeof GROUPS>) => gs.map((g) => GROUPS[g]);
  return {
    gw,
    idp,
    db,
    host: "127.0.0.1",
    port,
    connection,
    agentToken: (groups = ["aiAgents"], clientId = "agent-under-test") => idp.token({ clientId, groups: groupIds(groups), typ: "JWT" }),
    humanToken: (groups, name) => idp.token({ clientId: `human-${name}`, groups: groupIds(groups), claims: { idtyp: "user", scp: "access_as_user", name } }),
    conninfo: (extra = "") => `host=127.0.0.1 port=${port} dbname=${connection} user=agent sslmode=require ${extra}`.trim(),
    directUrl: db.url,
    async close() {
      await gw.close();
      await idp.close();
      await db.drop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

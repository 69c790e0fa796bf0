// The embedded defaults `npm start` runs: SQLite store under ./data, the development issuer,
// and a demo policy. Everything here is for a laptop, never for production; the gateway says so
// in its log when it runs this configuration.

import type { Config, ConfigInput } from "./schema.ts";
import { parseConfig } from "./load.ts";

export const DEMO_DATA_DIR = process.env.GATEHOUSE_DATA_DIR ?? "./data";

export interface DemoTargetAddress {
  host: string;
  port: number;
  database?: string;
  user?: string;
  password?: string;
}

export function demoConfigInput(target?: DemoTargetAddress): ConfigInput {
  return {
    identity: {
      devIssuer: { enabled: true, keyFile: `${DEMO_DATA_DIR}/dev-issuer-key.json` },
    },
    store: { url: `sqlite:${DEMO_DATA_DIR}/gatehouse.db` },
    api: { host: "127.0.0.1", port: 8080, adminGroups: ["gatehouse-admins"] },
    // The demo's DBA also audits: replays recorded sessions and searches the audit trail.
    audit: { auditorGroups: ["dba"] },
    listeners: { postgres: { host: "127.0.0.1", port: 15432 } },
    connections: target
      ? [
          {
            name: "demo",
            protocol: "postgres",
            description: "the quick start's database (in-process PGlite unless --target-url is given)",
            labels: { env: "demo" },
            postgres: { host: target.host, port: target.port, database: target.database ?? "postgres", user: target.user ?? "postgres", ...(target.password ? { password: target.password } : {}), tls: "disable" },
            policy: { default: "deny", unparseable: "review", reviewMode: "hold", approvers: ["dba"], reviewExpires: "15m" },
          },
        ]
      : [],
    policies: [
      { name: "agents-read", description: "AI agents may read", principals: { groups: ["ai-agents"] }, operations: { kinds: ["read", "transaction", "session"] }, decision: "allow" },
      { name: "agents-write", description: "AI agents may change data with a WHERE clause", principals: { groups: ["ai-agents"] }, operations: { kinds: ["read", "write", "transaction"] }, decision: "allow" },
      { name: "schema-changes", description: "schema and permission changes wait for a DBA", operations: { kinds: ["ddl", "dcl"] }, decision: "review", message: "schema and permission changes need a DBA's approval", review: { approvers: ["dba"] } },
      { name: "destructive", description: "unbounded deletes and updates, truncates", operations: { flags: ["delete-without-where", "update-without-where", "truncate"] }, decision: "review", message: "statements that touch every row need approval", review: { approvers: ["dba"] } },
      { name: "no-drop-database", operations: { flags: ["drop-database"] }, decision: "deny", message: "dropping a database is never allowed through Gatehouse" },
      { name: "no-admin", operations: { kinds: ["admin"] }, decision: "deny", message: "server administration is not available through Gatehouse" },
    ],
  };
}

export function demoConfig(target?: DemoTargetAddress): Config {
  return parseConfig(demoConfigInput(target), "demo configuration");
}

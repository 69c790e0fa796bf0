// Turns validated connection config into the domain Connection the gate works with.

import type { Connection } from "../domain/connection.ts";
import type { Config, ConnectionConfig } from "./schema.ts";

export function toConnection(c: ConnectionConfig): Connection {
  const conn: Connection = {
    name: c.name,
    protocol: c.protocol,
    agent: Array.isArray(c.agent) ? c.agent[0]! : c.agent,
    agents: Array.isArray(c.agent) ? [...c.agent] : [c.agent],
    labels: c.labels,
    policy: {
      default: c.policy.default,
      unparseable: c.policy.unparseable,
      reviewMode: c.policy.reviewMode,
      approvers: c.policy.approvers,
      reviewExpiresSeconds: c.policy.reviewExpires,
      notify: c.policy.notify,
    },
  };
  conn.recording = { onFailure: c.recording.onFailure };
  if (c.description !== undefined) conn.description = c.description;
  if (c.postgres) conn.postgres = { ...c.postgres };
  if (c.http) {
    const { auth, ca, ...rest } = c.http;
    conn.http = { ...rest, ...(ca ? { ca } : {}) };
    if (auth) conn.http.auth = { type: auth.type, secret: auth.secret, ...(auth.username ? { username: auth.username } : {}), ...(auth.header ? { header: auth.header } : {}) };
  }
  return conn;
}

export function connectionsOf(cfg: Config): Map<string, Connection> {
  return new Map(cfg.connections.map((c) => [c.name, toConnection(c)]));
}

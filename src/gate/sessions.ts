// Session bookkeeping shared by every protocol engine: a row in the store and audit events at
// open and close, plus the active-session gauge.

import { randomUUID } from "node:crypto";
import type { AuditLog } from "../audit/log.ts";
import type { Connection } from "../domain/connection.ts";
import type { Principal } from "../domain/principal.ts";
import type { GatewayMetrics } from "../observability/metrics.ts";
import type { Store } from "../store/store.ts";

export interface OpenSession {
  id: string;
  principal: Principal;
  connection: Connection;
  startedAt: number;
}

export class SessionLog {
  constructor(
    private readonly store: Store,
    private readonly audit: AuditLog,
    private readonly metrics: GatewayMetrics,
    private readonly gatewayId: string,
  ) {}

  async open(principal: Principal, connection: Connection, clientAddr: string | undefined, details: Record<string, unknown> = {}): Promise<OpenSession> {
    const s: OpenSession = { id: randomUUID(), principal, connection, startedAt: Date.now() };
    await this.store.db
      .insertInto("sessions")
      .values({ id: s.id, principal_subject: principal.subject, principal_name: principal.displayName, principal_json: JSON.stringify(principal), connection: connection.name, protocol: connection.protocol, client_addr: clientAddr ?? null, gateway_id: this.gatewayId, started_at: s.startedAt, ended_at: null, status: "active", end_reason: null })
      .execute();
    await this.audit.append({
      type: "session.started",
      principal,
      connection: connection.name,
      sessionId: s.id,
      data: { protocol: connection.protocol, client: clientAddr ?? null, kind: principal.kind, groups: principal.groups, roles: principal.roles, clientId: principal.clientId ?? null, tokenId: principal.tokenId ?? null, groupsOverage: principal.groupsOverage ?? false, ...details },
    });
    this.metrics.sessions.inc({ connection: connection.name, protocol: connection.protocol });
    this.metrics.sessionsActive.inc({ connection: connection.name });
    return s;
  }

  async close(s: OpenSession, reason: string): Promise<void> {
    this.metrics.sessionsActive.dec({ connection: s.connection.name });
    const now = Date.now();
    await this.store.db.updateTable("sessions").set({ ended_at: now, status: "closed", end_reason: reason }).where("id", "=", s.id).execute();
    await this.audit.append({ type: "session.ended", principal: s.principal, connection: s.connection.name, sessionId: s.id, data: { reason, durationMs: now - s.startedAt } });
  }
}

// Session bookkeeping shared by every protocol engine: a row in the store, audit events at open
// and close, the session's recorder, and the active-session gauge.

import { randomUUID } from "node:crypto";
import { GatehouseError } from "../domain/errors.ts";
import type { AgentRegistry } from "../agent/agent.ts";
import type { Verifier } from "../api/auth.ts";
import type { AuditLog } from "../audit/log.ts";
import type { Logger } from "../observability/logger.ts";
import type { Gate } from "./gate.ts";
import type { Connection } from "../domain/connection.ts";
import type { Principal } from "../domain/principal.ts";
import type { GatewayMetrics } from "../observability/metrics.ts";
import type { RecordingService, SessionRecorder } from "../recording/recorder.ts";
import type { Store } from "../store/store.ts";

/** What every protocol engine gets from the composition root: the one gate and its collaborators. */
export interface EngineDeps {
  connections: Map<string, Connection>;
  verifier: Verifier;
  gate: Gate;
  agents: AgentRegistry;
  sessions: SessionLog;
  audit: AuditLog;
  metrics: GatewayMetrics;
  logger: Logger;
}

export interface OpenSession {
  id: string;
  principal: Principal;
  connection: Connection;
  startedAt: number;
  /** Undefined when recording is off. */
  recorder: SessionRecorder | undefined;
}

export class SessionLog {
  constructor(
    private readonly store: Store,
    private readonly audit: AuditLog,
    private readonly metrics: GatewayMetrics,
    private readonly gatewayId: string,
    private readonly recordings?: RecordingService,
  ) {}

  async open(principal: Principal, connection: Connection, clientAddr: string | undefined, details: Record<string, unknown> = {}): Promise<OpenSession> {
    const id = randomUUID();
    const recorder = this.recordings?.start(id, { onFailure: connection.recording?.onFailure ?? "strict" });
    const s: OpenSession = { id, principal, connection, startedAt: Date.now(), recorder };
    await this.store.db
      .insertInto("sessions")
      .values({ id: s.id, principal_subject: principal.subject, principal_name: principal.displayName, principal_json: JSON.stringify(principal), connection: connection.name, protocol: connection.protocol, client_addr: clientAddr ?? null, gateway_id: this.gatewayId, started_at: s.startedAt, ended_at: null, status: "active", end_reason: null, rec_status: recorder ? "recording" : "none", rec_storage: recorder ? this.recordings!.storage : null })
      .execute()
      .catch((e: Error) => {
        // Fail closed, and say why: a session that cannot be recorded does not start.
        throw new GatehouseError("STORE_UNAVAILABLE", `cannot record the session: ${e.message}`);
      });
    recorder?.event({ type: "session.started", session: s.id, protocol: connection.protocol, connection: connection.name, principal: { subject: principal.subject, name: principal.displayName, kind: principal.kind }, client: clientAddr ?? null, ...details }, s.startedAt);
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
    let rec: { rec_status: string; rec_bytes: number } | undefined;
    if (s.recorder) {
      s.recorder.event({ type: "session.ended", reason }, now);
      const r = await this.recordings!.finish(s.recorder);
      rec = { rec_status: r.status, rec_bytes: r.bytes };
    }
    await this.store.db.updateTable("sessions").set({ ended_at: now, status: "closed", end_reason: reason, ...rec }).where("id", "=", s.id).execute();
    await this.audit.append({ type: "session.ended", principal: s.principal, connection: s.connection.name, sessionId: s.id, data: { reason, durationMs: now - s.startedAt } });
  }
}

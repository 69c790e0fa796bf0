// Table types for Kysely. Times are Unix milliseconds (bigint in PostgreSQL, integer in SQLite);
// structured values are JSON text, so one set of migrations and queries serves both engines.

import type { Generated } from "kysely";

export interface SessionsTable {
  id: string;
  principal_subject: string;
  principal_name: string;
  principal_json: string;
  connection: string;
  protocol: string;
  client_addr: string | null;
  gateway_id: string;
  started_at: number;
  ended_at: number | null;
  status: string;
  end_reason: string | null;
  /** none | recording | complete | truncated | failed | interrupted | pruned */
  rec_status: Generated<string>;
  rec_bytes: Generated<number>;
  /** store | directory; null when not recorded. */
  rec_storage: string | null;
}

export interface RecordingChunksTable {
  session_id: string;
  seq: number;
  at: number;
  bytes: number;
  data: Buffer;
}

export interface AuditCheckpointsTable {
  seq: number;
  hash: string;
  at: number;
  gateway_id: string | null;
  /** SHA-256 (hex, first 16) of the signing public key, when signed. */
  key_id: string | null;
  /** Ed25519 signature (base64) over the checkpoint statement, when signed. */
  signature: string | null;
}

export interface AuditAnchorTable {
  id: number;
  seq: number;
  hash: string;
  pruned_at: number;
}

export interface AuditEventsTable {
  seq: number;
  id: string;
  at: number;
  type: string;
  principal_subject: string | null;
  principal_name: string | null;
  connection: string | null;
  session_id: string | null;
  decision: string | null;
  rule: string | null;
  data: string;
  prev_hash: string;
  hash: string;
}

export interface ReviewsTable {
  id: string;
  status: string;
  created_at: number;
  expires_at: number;
  decided_at: number | null;
  session_id: string | null;
  connection: string;
  principal_subject: string;
  principal_json: string;
  operation_json: string;
  binding_hash: string;
  rule: string;
  message: string | null;
  approvers_json: string;
  quorum: number;
  mode: string;
  decisions_json: string;
  used_at: number | null;
  version: Generated<number>;
  notify_json: Generated<string>;
  modified_json: string | null;
}

export interface GatewaysTable {
  id: string;
  started_at: number;
  heartbeat_at: number;
  version: string;
  stopped_at: number | null;
}

export interface MetaTable {
  key: string;
  value: string;
}

export interface AgentsTable {
  name: string;
  /** SHA-256 (hex) of the agent's secret; the secret itself is shown once and never stored. */
  secret_hash: string;
  created_at: number;
  revoked_at: number | null;
  last_seen_at: number | null;
  last_address: string | null;
  last_version: string | null;
}

export interface Database {
  sessions: SessionsTable;
  audit_events: AuditEventsTable;
  reviews: ReviewsTable;
  gatehouse_meta: MetaTable;
  gateways: GatewaysTable;
  recording_chunks: RecordingChunksTable;
  audit_checkpoints: AuditCheckpointsTable;
  audit_anchor: AuditAnchorTable;
  agents: AgentsTable;
}

// Export of audit events for SIEMs and spreadsheets: JSON Lines and CSV with the same columns,
// named after the Elastic Common Schema where a field exists there (docs/audit.md lists them).
//
// CSV follows RFC 4180 (CRLF line ends; a field with a comma, quote, CR or LF is quoted, quotes
// doubled). A text cell starting with = + - @, tab or CR gets a leading apostrophe, so a
// spreadsheet shows it instead of evaluating it as a formula (CSV injection); JSON Lines is exact.

import type { AuditRecord } from "./chain.ts";
import { parseData } from "./query.ts";

export type ExportFormat = "jsonl" | "csv";

export const SIEM_FIELDS = [
  "@timestamp",
  "event.sequence",
  "event.id",
  "event.dataset",
  "event.action",
  "event.outcome",
  "user.id",
  "user.name",
  "gatehouse.connection",
  "gatehouse.session_id",
  "gatehouse.decision",
  "rule.name",
  "event.hash",
  "event.prev_hash",
  "gatehouse.data",
] as const;

export type SiemRecord = Record<(typeof SIEM_FIELDS)[number], unknown>;

/** ECS event.outcome: success / failure / unknown, from the decision (auth.failed is a failure). */
export function outcomeOf(r: Pick<AuditRecord, "type" | "decision">): string | null {
  if (r.type === "auth.failed") return "failure";
  switch (r.decision) {
    case "allow":
    case "approved":
      return "success";
    case "deny":
    case "denied":
      return "failure";
    case "review":
    case "pending":
      return "unknown";
    default:
      return null;
  }
}

export function siemRecord(r: AuditRecord): SiemRecord {
  return {
    "@timestamp": new Date(Number(r.at)).toISOString(),
    "event.sequence": Number(r.seq),
    "event.id": r.id,
    "event.dataset": "gatehouse.audit",
    "event.action": r.type,
    "event.outcome": outcomeOf(r),
    "user.id": r.principal_subject,
    "user.name": r.principal_name,
    "gatehouse.connection": r.connection,
    "gatehouse.session_id": r.session_id,
    "gatehouse.decision": r.decision,
    "rule.name": r.rule,
    "event.hash": r.hash,
    "event.prev_hash": r.prev_hash,
    "gatehouse.data": parseData(r.data),
  };
}

export function jsonLine(r: AuditRecord): string {
  return `${JSON.stringify(siemRecord(r))}\n`;
}

/** One CSV cell: RFC 4180 quoting, formula injection neutralised. */
export function csvCell(v: unknown): string {
  if (v === null || v === undefined) return "";
  if (typeof v === "number") return String(v);
  let s = typeof v === "string" ? v : JSON.stringify(v);
  if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export const CSV_HEADER = `${SIEM_FIELDS.join(",")}\r\n`;

export function csvLine(r: AuditRecord): string {
  const rec = siemRecord(r);
  return `${SIEM_FIELDS.map((f) => csvCell(rec[f])).join(",")}\r\n`;
}

export const EXPORT_CONTENT_TYPE: Record<ExportFormat, string> = { jsonl: "application/x-ndjson; charset=utf-8", csv: "text/csv; charset=utf-8; header=present" };

/** The export as text chunks (one per page), header first for CSV. */
export async function* exportChunks(pages: AsyncIterable<AuditRecord[]>, format: ExportFormat): AsyncGenerator<string> {
  if (format === "csv") yield CSV_HEADER;
  const line = format === "csv" ? csvLine : jsonLine;
  for await (const rows of pages) yield rows.map(line).join("");
}

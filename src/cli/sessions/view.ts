// How sessions look in the terminal (shared by the sessions commands).

import type { SessionView } from "../../recording/read.ts";
import { relative, table } from "../table.ts";

export function sessionsTable(items: SessionView[]): string {
  if (!items.length) return "no sessions";
  return table(
    ["ID", "STARTED", "PRINCIPAL", "CONNECTION", "STATUS", "RECORDING"],
    items.map((s) => [s.id, relative(s.startedAt), s.principal.name, s.connection, s.status, `${s.recording.status} ${formatBytes(s.recording.bytes)}`]),
  );
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1 << 20) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1 << 30) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  return `${(n / (1 << 30)).toFixed(2)} GiB`;
}

/** Query-string filters shared by list and export commands. */
export function sessionFilters(o: { principal?: string; connection?: string; from?: string; to?: string; status?: string; decision?: string }): URLSearchParams {
  const q = new URLSearchParams();
  for (const k of ["principal", "connection", "from", "to", "status", "decision"] as const) if (o[k]) q.set(k, o[k]!);
  return q;
}

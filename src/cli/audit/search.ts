// `gatehouse audit search`: who did what, when, with which decision — through the API (auditor
// groups only; the search itself is audited).

import type { Command } from "commander";
import type { AuditEventView } from "../../audit/query.ts";
import { addApiOptions, ApiClient, type ApiOptions } from "../api-client.ts";
import { action, printJson } from "../output.ts";
import { table } from "../table.ts";
import { addFilterOptions, type FilterOptions, filterParams } from "./filters.ts";

/** The gist of an event's data for one table cell. */
function summary(e: AuditEventView): string {
  const d = (e.data ?? {}) as Record<string, unknown>;
  for (const k of ["text", "modified", "reason", "code", "reviewId", "fingerprint"]) if (typeof d[k] === "string") return `${k === "text" ? "" : `${k}: `}${d[k]}`;
  return "";
}

export function eventsTable(items: AuditEventView[]): string {
  return table(
    ["SEQ", "TIME", "TYPE", "PRINCIPAL", "CONNECTION", "DECISION", "RULE", "DETAIL"],
    items.map((e) => [String(e.seq), e.at.replace("T", " ").replace(/\.\d+Z$/, "Z"), e.type, e.principal?.name || e.principal?.subject || "", e.connection ?? "", e.decision ?? "", e.rule ?? "", summary(e)]),
    50,
  );
}

export function register(audit: Command): void {
  addFilterOptions(addApiOptions(audit.command("search").description("search the audit trail, newest first (auditor groups)")))
    .option("--limit <n>", "at most this many (up to 1000)", "50")
    .option("--cursor <next>", "continue after a previous page (its `next`)")
    .option("--asc", "oldest first")
    .option("--json", "print JSON ({ items, next })")
    .action(
      action(async (o: ApiOptions & FilterOptions & { limit: string; cursor?: string; asc?: boolean; json?: boolean }) => {
        const q = filterParams(o);
        q.set("limit", o.limit);
        if (o.cursor) q.set("cursor", o.cursor);
        if (o.asc) q.set("order", "asc");
        const res = await new ApiClient(o).request<{ items: AuditEventView[]; next: string | null }>("GET", `/api/v1/audit/events?${q}`);
        if (o.json) return printJson(res);
        process.stdout.write(`${eventsTable(res.items)}\n`);
        if (res.next) process.stderr.write(`more: --cursor ${res.next}\n`);
      }),
    );
}

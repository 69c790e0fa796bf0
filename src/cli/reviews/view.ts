// How a review reads in a terminal: the exact operation first, then who asked, why, and the votes.

import { relative, table } from "../table.ts";

export interface ReviewJson {
  id: string;
  status: string;
  createdAt: string;
  expiresAt: string;
  decidedAt: string | null;
  connection: string;
  requester: { subject: string; displayName: string; kind: string };
  operation: { text: string; parameters?: (string | null)[]; sql?: { statements: Array<{ kind: string; kinds: string[]; tables: string[]; flags: string[] }>; parseError?: string }; http?: { bodyBytes: number; bodySha256: string; bodyStreamed?: boolean; bodyText?: string } };
  modified?: { text: string } | null;
  rule: string;
  message: string | null;
  approvers: string[];
  quorum: number;
  mode: string;
  votes: Array<{ verdict: string; displayName: string; via: string; comment?: string; at: number }>;
}

export function reviewsTable(items: ReviewJson[]): string {
  if (!items.length) return "no reviews";
  return table(
    ["ID", "STATUS", "CONNECTION", "REQUESTER", "RULE", "OPERATION", "CREATED", "EXPIRES"],
    items.map((r) => [r.id, r.status, r.connection, r.requester.displayName, r.rule, r.operation.text, relative(r.createdAt), r.status === "pending" ? relative(r.expiresAt) : ""]),
  );
}

/** Show parameters as a reviewer should read them: binary values as \x hex. */
export function showParam(p: string | null): string {
  if (p === null) return "NULL";
  return p.startsWith("\u0000") ? p.slice(1) : JSON.stringify(p);
}

export function reviewDetail(r: ReviewJson): string {
  const lines = [
    `Review ${r.id} — ${r.status.toUpperCase()}`,
    "",
    "Operation:",
    ...r.operation.text.split("\n").map((l) => `  ${l}`),
  ];
  const h = r.operation.http;
  if (h) {
    // An HTTP request: its body (bound by its hash), the fields bound with it, what it says.
    lines.push(`Body: ${h.bodyStreamed ? "streamed, not read" : `${h.bodyBytes} bytes${h.bodyBytes ? `, sha256 ${h.bodySha256}` : ""}`}`);
    for (const p of r.operation.parameters?.slice(1) ?? []) lines.push(`  ${p}`);
    if (h.bodyText !== undefined) lines.push(...h.bodyText.split("\n").map((l) => `  | ${l}`));
  } else if (r.operation.parameters?.length) lines.push("Parameters:", ...r.operation.parameters.map((p, i) => `  $${i + 1} = ${showParam(p)}`));
  if (r.modified) lines.push("Modified by the reviewer to:", ...r.modified.text.split("\n").map((l) => `  ${l}`));
  const st = r.operation.sql?.statements ?? [];
  if (st.length) lines.push("Classification:", ...st.map((s, i) => `  [${i}] ${s.kinds.join(", ")}${s.tables.length ? `  tables: ${s.tables.join(", ")}` : ""}${s.flags.length ? `  flags: ${s.flags.join(", ")}` : ""}`));
  if (r.operation.sql?.parseError) lines.push(`Classification: does not parse (${r.operation.sql.parseError})`);
  lines.push(
    "",
    `Connection: ${r.connection}`,
    `Requester:  ${r.requester.displayName} (${r.requester.kind}, ${r.requester.subject})`,
    `Rule:       ${r.rule}${r.message ? ` — ${r.message}` : ""}`,
    `Approvers:  ${r.approvers.join(", ") || "(none)"}; quorum ${r.quorum}; mode ${r.mode}`,
    `Created:    ${r.createdAt} (${relative(r.createdAt)})`,
    `Expires:    ${r.expiresAt} (${relative(r.expiresAt)})`,
  );
  if (r.votes.length) lines.push("Votes:", ...r.votes.map((v) => `  ${v.verdict} by ${v.displayName} via ${v.via} at ${new Date(v.at).toISOString()}${v.comment ? `: ${v.comment}` : ""}`));
  return lines.join("\n");
}

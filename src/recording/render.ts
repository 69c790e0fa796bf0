// Human-readable text for a replayed conversation: the CLI's `sessions replay` and the asciicast
// export print the same lines. Pure.

import type { RecordingEvent } from "./format.ts";
import type { ReplayCycle, ReplayItem, ReplayStatement } from "./postgres-replay.ts";

const MAX_CELL = 80;

function cell(v: string | null): string {
  if (v === null) return "NULL";
  const one = v.replace(/\r?\n/g, "\\n");
  return one.length > MAX_CELL ? `${one.slice(0, MAX_CELL - 1)}…` : one;
}

function resultTable(columns: string[], rows: Array<Array<string | null>>): string[] {
  const cells = rows.map((r) => r.map(cell));
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((r) => (r[i] ?? "").length)));
  const line = (r: string[]) => ` ${r.map((c, i) => c.padEnd(widths[i]!)).join(" | ")}`.trimEnd();
  return [line(columns), `-${widths.map((w) => "-".repeat(w)).join("-+-")}-`.replace(/-$/, ""), ...cells.map(line)];
}

function decisionOf(events: RecordingEvent[]): string | undefined {
  const parts: string[] = [];
  for (const e of events) {
    if (e.type === "decision") {
      let s = `${e.decision} · ${e.rule}`;
      if (e.reviewId) s += ` · review ${e.reviewId} ${e.reviewStatus ?? ""}${e.decidedBy ? ` by ${e.decidedBy}` : ""}`.trimEnd();
      if (!e.forwarded) s += " · refused";
      if (e.replacement) s += " · modified by reviewer";
      parts.push(s);
    } else if (e.type === "decision.deferred") {
      parts.push(`${e.decision} at execution · ${e.rule}`);
    } else if (e.type === "refused") {
      parts.push(`refused · ${e.code}`);
    }
  }
  return parts.length ? parts.join("; ") : undefined;
}

function statementLines(st: ReplayStatement): string[] {
  const d = decisionOf(st.events);
  const tag = d ? `   [${d}]` : "";
  const out: string[] = [];
  if (st.message === "Query" || st.message === "Parse") {
    const text = (st.text ?? "").trim();
    const lines = text.split("\n");
    out.push(`${st.message === "Parse" ? `=> (parse${st.statementName ? ` ${st.statementName}` : ""}) ` : "=> "}${lines[0]}${lines.length === 1 ? tag : ""}`);
    for (const [i, l] of lines.slice(1).entries()) out.push(`   ${l}${i === lines.length - 2 ? tag : ""}`);
  } else if (st.message === "Bind") {
    const params = (st.parameters ?? []).map((p, i) => `$${i + 1}=${p === null ? "NULL" : `'${cell(p)}'`}`).join(" ");
    out.push(`   (bind${st.statementName ? ` ${st.statementName}` : ""}) ${params}${tag}`.trimEnd());
  } else if (st.message === "FunctionCall") {
    out.push(`=> (fastpath function call)${tag}`);
  } else if (d) {
    out.push(`   (${st.message.toLowerCase()})${tag}`);
  }
  for (const e of st.events) if (e.replacement) out.push(`   ran instead: ${String(e.replacement).trim()}`);
  return out;
}

export function renderCycle(c: ReplayCycle, sessionStart: number): string[] {
  const out: string[] = [];
  const t = ((c.at - sessionStart) / 1000).toFixed(3);
  out.push(`-- #${c.index}  +${t}s${c.durationMs !== undefined ? `  ${c.durationMs.toFixed(1)} ms` : "  (no answer: the session ended)"}`);
  for (const st of c.statements) out.push(...statementLines(st));
  for (const n of c.notices) out.push(`${n.severity}: ${n.message}${n.detail ? ` (${n.detail})` : ""}`);
  for (const r of c.results) {
    if (r.columns.length) {
      out.push(...resultTable(r.columns.map((x) => x.name), r.rows));
      const n = r.rows.length + (r.rowsOmitted ?? 0);
      out.push(`(${n} row${n === 1 ? "" : "s"}${r.rowsOmitted ? `, ${r.rowsOmitted} not shown` : ""})`);
    }
    if (r.tag) out.push(r.tag);
  }
  if (c.copyInBytes) out.push(`(COPY: ${c.copyInBytes} bytes sent by the client)`);
  if (c.copyOutBytes) out.push(`(COPY: ${c.copyOutBytes} bytes sent to the client)`);
  for (const e of c.errors) out.push(`${e.severity} ${e.code}: ${e.message}${e.detail ? `\n  DETAIL: ${e.detail}` : ""}${e.hint ? `\n  HINT: ${e.hint}` : ""}`);
  return out;
}

export function renderEvent(e: RecordingEvent): string {
  switch (e.type) {
    case "session.started": {
      const p = e.principal as { subject?: string; name?: string; kind?: string } | undefined;
      return `-- session ${e.session} on ${e.connection} by ${p?.name ?? "?"} (${p?.subject ?? "?"}, ${p?.kind ?? "?"}) from ${e.client ?? "?"}`;
    }
    case "session.ended":
      return `-- session ended: ${e.reason}`;
    case "recording.truncated":
      return `-- recording truncated at ${e.recordedBytes} bytes (limit ${e.limitBytes}); the session went on unrecorded`;
    case "recording.gap":
      return `-- recording gap: ${e.lostBytes} bytes could not be written (${e.reason})`;
    case "server.error":
    case "server.notice":
      return `${e.severity} ${e.code}: ${e.message}`;
    case "session.error":
      return `-- session ended by the gateway: ${e.message}`;
    case "http.exchange":
      return `=> ${e.method} ${e.path} → ${e.status || "no answer"}  ${e.durationMs} ms, ${e.requestBytes} B in, ${e.responseBytes} B out${e.decision ? `   [${e.decision} · ${e.rule}]` : ""}`;
    case "decision":
      return `   [${decisionOf([e])}]`;
    default:
      return `-- ${e.type} ${JSON.stringify(e)}`;
  }
}

/** One replay item as text lines. */
export function renderItem(item: ReplayItem, sessionStart: number): string[] {
  if (item.type === "cycle") return renderCycle(item, sessionStart);
  if (item.type === "login") return [`-- logged in; server ${item.parameters.server_version ?? "?"}${item.backendPid !== undefined ? `, backend pid ${item.backendPid}` : ""}`];
  return [renderEvent(item.event)];
}

// Turns a PostgreSQL session recording back into a conversation: one "cycle" per query cycle (a
// simple Query, or an extended-protocol batch up to Sync), each with the statements the client
// sent, the gateway's decisions about them, and what the server answered — result columns and
// rows, command tags, errors and notices — with timings.
//
// It works from the recorded bytes alone (the client's stream and the stream the client received)
// plus the recording's events, which name the client message they are about by its index.
// Streaming: cycles are emitted as soon as they end, so a long recording never sits in memory.

import {
  BackendFramer,
  BackendType,
  backendTypeName,
  type FrontendMessage,
  FrontendDecoder,
  parseCommandComplete,
  parseDataRow,
  parseNoticeFields,
  parseReadyForQuery,
  parseRowDescription,
  type RowField,
} from "../protocols/postgres/codec/index.ts";
import type { RecordedFrame, RecordingEvent } from "./format.ts";

export interface ReplayStatement {
  /** Client message index (0 = first after authentication). */
  msg: number;
  /** Query, Parse, Bind, Execute, FunctionCall… */
  message: string;
  text?: string;
  /** Bind: parameter values as text (binary as \x hex), null for NULL. */
  parameters?: Array<string | null>;
  statementName?: string;
  portal?: string;
  /** Events about this message (decisions, held reviews, refusals). */
  events: RecordingEvent[];
}

export interface ReplayResult {
  columns: Array<{ name: string; typeOid: number; format: number }>;
  rows: Array<Array<string | null>>;
  /** Rows beyond maxRows were counted, not kept. */
  rowsOmitted?: number;
  tag?: string;
}

export interface ReplayCycle {
  type: "cycle";
  index: number;
  /** Unix ms of the cycle's first client message (or its first server message). */
  at: number;
  /** Until the ReadyForQuery that ended it; absent when the session ended first. */
  durationMs?: number;
  statements: ReplayStatement[];
  results: ReplayResult[];
  errors: Array<{ severity: string; code: string; message: string; detail?: string; hint?: string }>;
  notices: Array<{ severity: string; code: string; message: string; detail?: string; hint?: string }>;
  /** COPY: bytes the client sent / received as CopyData. */
  copyInBytes?: number;
  copyOutBytes?: number;
  /** Transaction status after the cycle (I idle, T in a block, E failed block). */
  txStatus?: string;
  complete: boolean;
}

export type ReplayItem = ReplayCycle | { type: "event"; at: number; event: RecordingEvent } | { type: "login"; at: number; parameters: Record<string, string>; backendPid?: number };

export interface ReplayOptions {
  /** Rows kept per result (the rest are counted). Default 1000. */
  maxRows?: number;
}

const PROTOCOL_MESSAGE_NAMES = new Set(["Query", "Parse", "Bind", "Describe", "Execute", "Close", "Flush", "FunctionCall"]);

function valueText(v: Buffer | null, format: number): string | null {
  if (v === null) return null;
  return format === 1 ? `\\x${v.toString("hex")}` : v.toString("utf8");
}

function noticeOf(payload: Buffer) {
  const f = parseNoticeFields(payload);
  const n: ReplayCycle["errors"][number] = { severity: f.severity, code: f.code, message: f.message };
  if (f.detail) n.detail = f.detail;
  if (f.hint) n.hint = f.hint;
  return n;
}

/**
 * The decoder. Feed it the recording's frames in order with `push`; it returns the items that
 * became complete. Call `end` for the last, incomplete cycle.
 */
export class PostgresReplay {
  readonly #maxRows: number;
  readonly #client = new FrontendDecoder({ maxMessageBytes: 0x3fffffff - 1 });
  readonly #server = new BackendFramer();
  #msg = -1;
  /** Client messages not yet assigned to a finished cycle, by the cycle they belong to. */
  readonly #open: ReplayCycle[] = [];
  /** The cycle whose server answer is being read (the oldest one not finished). */
  #cycleCount = 0;
  #loginDone = false;
  #loginParams: Record<string, string> = {};
  #loginAt = 0;
  #backendPid: number | undefined;
  /** The cycle that extended-protocol messages go to until Sync. */
  #extended: ReplayCycle | undefined;
  /** The last cycle opened by a Query (COPY data belongs to it). */
  #lastQuery: ReplayCycle | undefined;
  readonly #byMsg = new Map<number, ReplayStatement>();
  #pendingRowFields: RowField[] | undefined;
  /** Events about messages not seen yet (never expected; kept for safety). */
  readonly #early: RecordingEvent[] = [];

  constructor(opts: ReplayOptions = {}) {
    this.#maxRows = opts.maxRows ?? 1000;
    this.#client.startupDone();
  }

  push(f: RecordedFrame): ReplayItem[] {
    const out: ReplayItem[] = [];
    if (f.kind === "client") {
      for (const m of this.#client.push(f.data)) this.#onClient(m, f.at);
    } else if (f.kind === "server") {
      for (const fr of this.#server.push(f.data)) this.#onServer(fr.type, fr.payload, f.at, out);
    } else if (f.kind === "event") {
      const e = f.event;
      const msg = typeof e.msg === "number" ? e.msg : undefined;
      const st = msg !== undefined ? this.#byMsg.get(msg) : undefined;
      if (st) st.events.push(e);
      else if (msg !== undefined) this.#early.push(e);
      else out.push({ type: "event", at: f.at, event: e });
    }
    return out;
  }

  /** The session ended: what is still open is returned as incomplete. */
  end(): ReplayItem[] {
    const out: ReplayItem[] = [...this.#open];
    this.#open.length = 0;
    for (const e of this.#early) out.push({ type: "event", at: 0, event: e });
    return out;
  }

  #newCycle(at: number): ReplayCycle {
    const c: ReplayCycle = { type: "cycle", index: this.#cycleCount++, at, statements: [], results: [], errors: [], notices: [], complete: false };
    this.#open.push(c);
    return c;
  }

  #statement(c: ReplayCycle, m: FrontendMessage): ReplayStatement {
    const st: ReplayStatement = { msg: this.#msg, message: m.type, events: [] };
    this.#byMsg.set(this.#msg, st);
    c.statements.push(st);
    return st;
  }

  #onClient(m: FrontendMessage, at: number): void {
    this.#msg++;
    switch (m.type) {
      case "Query": {
        const c = this.#newCycle(at);
        this.#statement(c, m).text = m.query;
        this.#lastQuery = c;
        return;
      }
      case "FunctionCall": {
        const c = this.#newCycle(at);
        this.#statement(c, m);
        return;
      }
      case "CopyData":
      case "CopyDone":
      case "CopyFail": {
        const c = this.#lastQuery ?? this.#extended;
        if (c && m.type === "CopyData") c.copyInBytes = (c.copyInBytes ?? 0) + m.raw.length - 5;
        return;
      }
      case "Sync": {
        const c = this.#extended ?? this.#newCycle(at);
        this.#extended = undefined;
        this.#lastQuery = c;
        return;
      }
      case "Terminate":
        return;
      default: {
        if (!PROTOCOL_MESSAGE_NAMES.has(m.type)) return;
        if (!this.#extended) this.#extended = this.#newCycle(at);
        const st = this.#statement(this.#extended, m);
        if (m.type === "Parse") {
          st.text = m.query;
          st.statementName = m.name;
        } else if (m.type === "Bind") {
          st.statementName = m.statement;
          st.portal = m.portal;
          st.parameters = m.params.map((p, i) => valueText(p, m.paramFormats.length === 0 ? 0 : m.paramFormats.length === 1 ? m.paramFormats[0]! : (m.paramFormats[i] ?? 0)));
        } else if (m.type === "Execute" || m.type === "Describe" || m.type === "Close") {
          st.portal = "portal" in m ? m.portal : m.name;
        }
      }
    }
  }

  /** The cycle a server message belongs to: the oldest one not finished. */
  #current(): ReplayCycle | undefined {
    return this.#open[0];
  }

  #onServer(type: number, payload: Buffer, at: number, out: ReplayItem[]): void {
    if (!this.#loginDone) {
      // AuthenticationOk, ParameterStatus…, BackendKeyData, ReadyForQuery
      if (type === BackendType.ParameterStatus) {
        const i = payload.indexOf(0);
        this.#loginParams[payload.subarray(0, i).toString("utf8")] = payload.subarray(i + 1, payload.indexOf(0, i + 1)).toString("utf8");
      } else if (type === BackendType.BackendKeyData) {
        this.#backendPid = payload.readInt32BE(0);
      } else if (type === BackendType.Authentication && !this.#loginAt) {
        this.#loginAt = at;
      }
      if (type === BackendType.ReadyForQuery || type === BackendType.ErrorResponse) {
        this.#loginDone = true;
        const login: ReplayItem = { type: "login", at: this.#loginAt || at, parameters: this.#loginParams };
        if (this.#backendPid !== undefined) login.backendPid = this.#backendPid;
        out.push(login);
        if (type === BackendType.ErrorResponse) out.push({ type: "event", at, event: { type: "server.error", ...noticeOf(payload) } });
      }
      return;
    }
    const c = this.#current();
    if (!c) {
      // Between cycles: asynchronous notices, a FATAL error at shutdown, ParameterStatus.
      if (type === BackendType.NoticeResponse || type === BackendType.ErrorResponse) {
        out.push({ type: "event", at, event: { type: type === BackendType.ErrorResponse ? "server.error" : "server.notice", ...noticeOf(payload) } });
      }
      return;
    }
    switch (type) {
      case BackendType.RowDescription: {
        const fields = parseRowDescription(payload);
        this.#pendingRowFields = fields;
        c.results.push({ columns: fields.map((f) => ({ name: f.name, typeOid: f.typeOid, format: f.format })), rows: [] });
        return;
      }
      case BackendType.DataRow: {
        let r = c.results.at(-1);
        if (!r || r.tag !== undefined) {
          r = { columns: [], rows: [] };
          c.results.push(r);
        }
        if (r.rows.length >= this.#maxRows) {
          r.rowsOmitted = (r.rowsOmitted ?? 0) + 1;
          return;
        }
        const formats = this.#pendingRowFields;
        r.rows.push(parseDataRow(payload).map((v, i) => valueText(v, formats?.[i]?.format ?? 0)));
        return;
      }
      case BackendType.CommandComplete: {
        const last = c.results.at(-1);
        const tag = parseCommandComplete(payload);
        if (last && last.tag === undefined) last.tag = tag;
        else c.results.push({ columns: [], rows: [], tag });
        this.#pendingRowFields = undefined;
        return;
      }
      case BackendType.EmptyQueryResponse:
        c.results.push({ columns: [], rows: [], tag: "" });
        return;
      case BackendType.ErrorResponse:
        c.errors.push(noticeOf(payload));
        return;
      case BackendType.NoticeResponse:
        c.notices.push(noticeOf(payload));
        return;
      case BackendType.CopyData: {
        c.copyOutBytes = (c.copyOutBytes ?? 0) + payload.length;
        return;
      }
      case BackendType.ReadyForQuery: {
        this.#open.shift();
        c.complete = true;
        c.durationMs = Math.max(0, at - c.at);
        c.txStatus = parseReadyForQuery(payload);
        if (this.#lastQuery === c) this.#lastQuery = undefined;
        out.push(c);
        return;
      }
      default:
        // ParseComplete, BindComplete, NoData, ParameterDescription, PortalSuspended, CloseComplete,
        // CopyIn/OutResponse, CopyDone, ParameterStatus, NotificationResponse: nothing to show.
        void backendTypeName(type);
        return;
    }
  }
}

// The audit writer thread: ingests the audit journal (journal.ts) into the store on its own
// SQLite connection — linking each batch onto the chain head read in the same transaction — so
// the event loop that forwards traffic only writes journal lines. It polls the journal every 20 ms
// (100 ms under load) and at once when asked (a drain), and reports how far it got. Waiting for the
// write lock (busy_timeout) sleeps here, never in the event loop.
//
// Never: report a position before the transaction that reached it committed.

import { parentPort, workerData } from "node:worker_threads";
import BetterSqlite3 from "better-sqlite3";
import { compressChunk } from "../recording/format.ts";
import { JournalIngester, type JournalPosition } from "./journal.ts";

/**
 * From the event loop: the segment being written (never deleted), "ingest now", a batch of
 * recording chunks to insert (compressed here first if `compress`), or stop.
 */
export type IngesterRequest = { writing: number } | { nudge: true } | { close: true } | { chunks: number; compress?: boolean; rows: [string, number, number, Uint8Array][] };
/** To the event loop: ingested up to `at`, the last attempt failed (it is retried), or a chunk batch's outcome. */
export type IngesterReply = { at: JournalPosition } | { error: string } | { chunksDone: number; error?: string };

/**
 * Between passes. Longer passes batch more events per transaction (each busy session then dirties
 * its index pages once per pass, not once per event, and each commit writes fewer pages twice):
 * 5 → 20 ms took this thread from ~22 % to ~15 % of a core at 15k events/s, and a pass of 800
 * events costs ~20 % less per event than one of 150. So under load (a pass found BUSY_ROWS or
 * more) it waits BUSY_POLL_MS; with few events they reach the store within POLL_MS. Reads that
 * need everything drain (a nudge) and never wait for either.
 */
const POLL_MS = 20;
const BUSY_POLL_MS = 100;
const BUSY_ROWS = 200;
const port = parentPort!;
const { file } = workerData as { file: string };
const db = new BetterSqlite3(file);
db.pragma("busy_timeout = 5000");
db.pragma("synchronous = NORMAL");
const ingester = new JournalIngester(db, file);
let writing: number | undefined;
let insertChunks: ((rows: [string, number, number, Buffer][]) => void) | undefined;

/**
 * Recording chunks (src/recording/sinks.ts) in one transaction, off the event loop too, and
 * compressed here: compressing costs less than writing the bytes it saves (docs/performance.md).
 */
function chunks(n: number, rows: [string, number, number, Uint8Array][], compress: boolean): void {
  try {
    if (!insertChunks) {
      const ins = db.prepare("INSERT INTO recording_chunks (session_id, seq, at, bytes, data) VALUES (?, ?, ?, ?, ?)");
      const tx = db.transaction((batch: [string, number, number, Buffer][]) => {
        for (const [sessionId, seq, at, data] of batch) ins.run(sessionId, seq, at, data.length, data);
      });
      insertChunks = (batch) => tx.immediate(batch);
    }
    insertChunks(
      rows.map(([sessionId, seq, at, data]) => {
        const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
        return [sessionId, seq, at, compress ? compressChunk(buf) : buf];
      }),
    );
    port.postMessage({ chunksDone: n } satisfies IngesterReply);
  } catch (e) {
    port.postMessage({ chunksDone: n, error: (e as Error).message } satisfies IngesterReply);
  }
}
let timer: NodeJS.Timeout | undefined;
let last = "";

function cycle(): void {
  if (timer) clearTimeout(timer);
  let more = false;
  let busy = false;
  try {
    const r = ingester.step(writing);
    more = r.more;
    busy = r.rows >= BUSY_ROWS;
    const key = `${r.at.segment}:${r.at.offset}`;
    if (key !== last) {
      last = key;
      port.postMessage({ at: r.at } satisfies IngesterReply);
    }
  } catch (e) {
    last = "";
    port.postMessage({ error: (e as Error).message } satisfies IngesterReply);
  }
  timer = setTimeout(cycle, more ? 0 : busy ? BUSY_POLL_MS : POLL_MS);
}

port.on("message", (m: IngesterRequest) => {
  if ("close" in m) {
    if (timer) clearTimeout(timer);
    cycle(); // a last pass: everything written before close is ingested
    if (timer) clearTimeout(timer);
    db.close();
    port.close();
    return;
  }
  if ("writing" in m) writing = m.writing;
  else if ("chunks" in m) chunks(m.chunks, m.rows, m.compress === true);
  else cycle();
});
cycle();

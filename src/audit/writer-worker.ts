// The audit writer thread: ingests the audit journal (journal.ts) into the store on its own
// SQLite connection — linking each batch onto the chain head read in the same transaction — so
// the event loop that forwards traffic only writes journal lines. It polls the journal every few
// milliseconds and at once when asked (a drain), and reports how far it got. Waiting for the
// write lock (busy_timeout) sleeps here, never in the event loop.
//
// Never: report a position before the transaction that reached it committed.

import { parentPort, workerData } from "node:worker_threads";
import BetterSqlite3 from "better-sqlite3";
import { JournalIngester, type JournalPosition } from "./journal.ts";

/** From the event loop: the segment being written (never deleted), "ingest now", or stop. */
export type IngesterRequest = { writing: number } | { nudge: true } | { close: true };
/** To the event loop: ingested up to `at`, or the last attempt failed (it is retried). */
export type IngesterReply = { at: JournalPosition } | { error: string };

const POLL_MS = 5;
const port = parentPort!;
const { file } = workerData as { file: string };
const db = new BetterSqlite3(file);
db.pragma("busy_timeout = 5000");
db.pragma("synchronous = NORMAL");
const ingester = new JournalIngester(db, file);
let writing: number | undefined;
let timer: NodeJS.Timeout | undefined;
let last = "";

function cycle(): void {
  if (timer) clearTimeout(timer);
  let more = false;
  try {
    const r = ingester.step(writing);
    more = r.more;
    const key = `${r.at.segment}:${r.at.offset}`;
    if (key !== last) {
      last = key;
      port.postMessage({ at: r.at } satisfies IngesterReply);
    }
  } catch (e) {
    last = "";
    port.postMessage({ error: (e as Error).message } satisfies IngesterReply);
  }
  timer = setTimeout(cycle, more ? 0 : POLL_MS);
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
  else cycle();
});
cycle();

// Export formats for a recording:
//  - JSON Lines: the header, then one line per frame — byte frames carry base64 data, events
//    their JSON — so a tool can reassemble either direction's bytes exactly.
//  - asciicast v2 (https://docs.asciinema.org/manual/asciicast/v2/): a terminal playback. For a
//    PostgreSQL session the output is the replayed conversation as text at its real timings;
//    terminal protocols (SSH) will export their output bytes as "o" and input as "i" events.

import type { RecordedFrame } from "./format.ts";
import { RECORDING_FORMAT } from "./format.ts";
import type { ReplayItem } from "./postgres-replay.ts";
import type { SessionView } from "./read.ts";
import { renderItem } from "./render.ts";

export async function* jsonLines(session: SessionView, frames: AsyncIterable<RecordedFrame>): AsyncGenerator<string> {
  // Version 1: an export carries frames of kinds 1–3 only (compressed frames are expanded).
  yield `${JSON.stringify({ format: RECORDING_FORMAT, version: 1, session })}\n`;
  for await (const f of frames) {
    if (f.kind === "event") yield `${JSON.stringify({ at: f.at, kind: "event", event: f.event })}\n`;
    else yield `${JSON.stringify({ at: f.at, kind: f.kind, data: f.data.toString("base64") })}\n`;
  }
}

function itemAt(item: ReplayItem): number {
  return item.type === "cycle" && item.durationMs !== undefined ? item.at + item.durationMs : item.at;
}

export async function* asciicast(session: SessionView, items: AsyncIterable<ReplayItem>, size = { width: 120, height: 40 }): AsyncGenerator<string> {
  const start = Date.parse(session.startedAt);
  yield `${JSON.stringify({ version: 2, width: size.width, height: size.height, timestamp: Math.floor(start / 1000), title: `gatehouse session ${session.id} (${session.connection}, ${session.principal.name})`, env: { TERM: "xterm-256color" } })}\n`;
  let last = 0;
  for await (const item of items) {
    // Times never go backwards in a cast.
    const t = Math.max(last, (itemAt(item) - start) / 1000);
    last = t;
    const text = renderItem(item, start).join("\r\n");
    yield `${JSON.stringify([Number(t.toFixed(6)), "o", `${text}\r\n`])}\n`;
  }
}

// The session recording format, version 1 — documented in docs/recording.md.
//
// A recording is a sequence of chunks (numbered from 0). A chunk is a run of frames:
//
//   kind  u8        1 = bytes the client sent, 2 = bytes the gateway sent the client, 3 = event (JSON)
//   at    f64 BE    wall-clock time in Unix milliseconds (sub-microsecond precision)
//   len   u32 BE    payload length
//   payload
//
// Byte frames of one direction, concatenated in order, are exactly that direction's plaintext
// stream (after TLS) from the end of authentication on; the credential exchange itself is never
// recorded. Events (decisions, review outcomes, truncation, errors) sit between the byte frames
// in the order they happened. Pure: no I/O.

export const RECORDING_FORMAT = "gatehouse-recording";
export const RECORDING_VERSION = 1;

export const FrameKind = { client: 1, server: 2, event: 3 } as const;
export type FrameKindName = keyof typeof FrameKind;

export const FRAME_HEADER_BYTES = 13;

export type RecordedFrame =
  | { kind: "client" | "server"; at: number; data: Buffer }
  | { kind: "event"; at: number; event: RecordingEvent };

/** An event in a recording. `type` names it; the rest depends on the type (docs/recording.md). */
export interface RecordingEvent {
  type: string;
  [k: string]: unknown;
}

/** Write a frame header (kind, at, len) into `buf` at `off`. */
export function writeFrameHeader(buf: Buffer, off: number, kind: number, at: number, len: number): void {
  buf[off] = kind;
  buf.writeDoubleBE(at, off + 1);
  buf.writeUInt32BE(len, off + 9);
}

export function frameHeader(kind: number, at: number, len: number): Buffer {
  const h = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  writeFrameHeader(h, 0, kind, at, len);
  return h;
}

export class RecordingFormatError extends Error {}

/** Decode one chunk into frames. A chunk that does not end on a frame boundary is damaged. */
export function decodeChunk(chunk: Buffer): RecordedFrame[] {
  const out: RecordedFrame[] = [];
  let off = 0;
  while (off < chunk.length) {
    if (chunk.length - off < FRAME_HEADER_BYTES) throw new RecordingFormatError(`chunk ends inside a frame header at byte ${off}`);
    const kind = chunk[off]!;
    const at = chunk.readDoubleBE(off + 1);
    const len = chunk.readUInt32BE(off + 9);
    const start = off + FRAME_HEADER_BYTES;
    const end = start + len;
    if (end > chunk.length) throw new RecordingFormatError(`frame at byte ${off} claims ${len} bytes, ${chunk.length - start} remain`);
    const payload = chunk.subarray(start, end);
    if (kind === FrameKind.client || kind === FrameKind.server) {
      out.push({ kind: kind === FrameKind.client ? "client" : "server", at, data: payload });
    } else if (kind === FrameKind.event) {
      let event: RecordingEvent;
      try {
        event = JSON.parse(payload.toString("utf8")) as RecordingEvent;
      } catch {
        throw new RecordingFormatError(`event frame at byte ${off} is not JSON`);
      }
      out.push({ kind: "event", at, event });
    } else {
      throw new RecordingFormatError(`unknown frame kind ${kind} at byte ${off}`);
    }
    off = end;
  }
  return out;
}

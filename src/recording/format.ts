// The session recording format, version 2 — documented in docs/recording.md.
//
// A recording is a sequence of chunks (numbered from 0). A chunk is a run of frames:
//
//   kind  u8        1 = bytes the client sent, 2 = bytes the gateway sent the client, 3 = event (JSON),
//                   4 = compressed: the payload is a Brotli stream of a run of frames of kinds 1–3
//   at    f64 BE    wall-clock time in Unix milliseconds (sub-microsecond precision); for kind 4,
//                   the time of the first frame inside
//   len   u32 BE    payload length
//   payload
//
// Byte frames of one direction, concatenated in order, are exactly that direction's plaintext
// stream (after TLS) from the end of authentication on; the credential exchange itself is never
// recorded. Events (decisions, review outcomes, truncation, errors) sit between the byte frames
// in the order they happened. Version 2 added kind 4 (version 1 recordings read unchanged); the
// writer stores a chunk as one compressed frame when that is smaller (recording.compression).
// No I/O: compression runs in place (or on libuv's pool, compressChunkAsync).

import { promisify } from "node:util";
import { brotliCompress, brotliCompressSync, brotliDecompressSync, constants as zlibConstants } from "node:zlib";

export const RECORDING_FORMAT = "gatehouse-recording";
export const RECORDING_VERSION = 2;
/** Versions this code reads. */
export const READABLE_VERSIONS: readonly number[] = [1, 2];

export const FrameKind = { client: 1, server: 2, event: 3, compressed: 4 } as const;
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

/**
 * The most a compressed frame may expand to. The writer never compresses a larger chunk (a session
 * flushes long before: recorder.ts PENDING_LIMIT_BYTES), so a frame claiming more is damage, or a
 * decompression bomb, and is refused without being expanded further.
 */
export const MAX_CHUNK_BYTES = 64 << 20;
/** Smaller chunks are stored as they are: the frame header and Brotli's framing would eat the gain. */
const MIN_COMPRESS_BYTES = 256;

/**
 * Brotli quality 1: ~1.5 GB/s and 3 % of the size on a recorded HTTP exchange (bench:http's
 * requests), where quality 4 is 4× slower for 2.2 %. Cheaper than the store writes it saves.
 */
function brotliOptions(size: number) {
  return { params: { [zlibConstants.BROTLI_PARAM_QUALITY]: 1, [zlibConstants.BROTLI_PARAM_SIZE_HINT]: size } };
}

function compressible(chunk: Buffer): boolean {
  return chunk.length >= MIN_COMPRESS_BYTES && chunk.length <= MAX_CHUNK_BYTES && chunk[0] !== FrameKind.compressed;
}

/** One compressed frame holding `chunk`, or `chunk` itself where that is not smaller. */
function wrapCompressed(chunk: Buffer, packed: Buffer): Buffer {
  if (packed.length + FRAME_HEADER_BYTES >= chunk.length) return chunk;
  const out = Buffer.allocUnsafe(FRAME_HEADER_BYTES + packed.length);
  writeFrameHeader(out, 0, FrameKind.compressed, chunk.readDoubleBE(1), packed.length);
  packed.copy(out, FRAME_HEADER_BYTES);
  return out;
}

/** A chunk as it is stored with compression on: one compressed frame when that is smaller. */
export function compressChunk(chunk: Buffer): Buffer {
  return compressible(chunk) ? wrapCompressed(chunk, brotliCompressSync(chunk, brotliOptions(chunk.length))) : chunk;
}

const brotliCompressAsync = promisify(brotliCompress);

/** compressChunk on libuv's thread pool, for sinks that write from the event loop. */
export async function compressChunkAsync(chunk: Buffer): Promise<Buffer> {
  return compressible(chunk) ? wrapCompressed(chunk, await brotliCompressAsync(chunk, brotliOptions(chunk.length))) : chunk;
}

/** The frames inside a compressed frame's payload, bounded by MAX_CHUNK_BYTES. */
function expand(payload: Buffer, off: number): Buffer {
  try {
    return brotliDecompressSync(payload, { maxOutputLength: MAX_CHUNK_BYTES });
  } catch (e) {
    const why = (e as { code?: string }).code === "ERR_BUFFER_TOO_LARGE" ? `expands past ${MAX_CHUNK_BYTES} bytes` : `does not decompress (${(e as Error).message})`;
    throw new RecordingFormatError(`compressed frame at byte ${off} ${why}`);
  }
}

/**
 * Decode one chunk into frames, compressed frames expanded in place. A chunk that does not end on
 * a frame boundary is damaged. A compressed frame is the whole chunk or nothing (the writer never
 * makes another kind), so one chunk expands to at most MAX_CHUNK_BYTES: several bombs in a row
 * are refused at the second.
 */
export function decodeChunk(chunk: Buffer): RecordedFrame[] {
  return decodeFrames(chunk, undefined);
}

function decodeFrames(chunk: Buffer, inside: number | undefined): RecordedFrame[] {
  /** Damage, located: inside a compressed frame, offsets are those of the expanded bytes. */
  const damaged = (what: string) => new RecordingFormatError(inside === undefined ? what : `inside the compressed frame at byte ${inside}: ${what}`);
  const out: RecordedFrame[] = [];
  let off = 0;
  while (off < chunk.length) {
    if (chunk.length - off < FRAME_HEADER_BYTES) throw damaged(`chunk ends inside a frame header at byte ${off}`);
    const kind = chunk[off]!;
    const at = chunk.readDoubleBE(off + 1);
    const len = chunk.readUInt32BE(off + 9);
    const start = off + FRAME_HEADER_BYTES;
    const end = start + len;
    if (end > chunk.length) throw damaged(`frame at byte ${off} claims ${len} bytes, ${chunk.length - start} remain`);
    const payload = chunk.subarray(start, end);
    if (kind === FrameKind.client || kind === FrameKind.server) {
      out.push({ kind: kind === FrameKind.client ? "client" : "server", at, data: payload });
    } else if (kind === FrameKind.event) {
      let event: RecordingEvent;
      try {
        event = JSON.parse(payload.toString("utf8")) as RecordingEvent;
      } catch {
        throw damaged(`event frame at byte ${off} is not JSON`);
      }
      out.push({ kind: "event", at, event });
    } else if (kind === FrameKind.compressed && inside === undefined) {
      if (off !== 0 || end !== chunk.length) throw damaged(`compressed frame at byte ${off} is not the whole chunk`);
      for (const f of decodeFrames(expand(payload, off), off)) out.push(f);
    } else if (kind === FrameKind.compressed) {
      throw new RecordingFormatError(`compressed frame inside the compressed frame at byte ${inside}`);
    } else {
      throw damaged(`unknown frame kind ${kind} at byte ${off}`);
    }
    off = end;
  }
  return out;
}

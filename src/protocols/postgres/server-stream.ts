// The server→client direction of a PostgreSQL session. Bytes pass through untouched, chunk by
// chunk, while a zero-copy scanner tracks frame boundaries so the gateway can
//  - inject its own messages (NoticeResponse about a held statement) only between frames, and
//  - replace the server's answer to a "marker" statement with the gateway's own ErrorResponse.
//
// Markers: to refuse a statement the engine sends the server a statement that cannot parse
// (`gatehouse_refused_<nonce>`) in its place. The server then does exactly what PostgreSQL does
// for any failed statement — aborts the transaction block, skips the rest of an extended-protocol
// pipeline until Sync, answers ReadyForQuery with the right status — and its ErrorResponse, which
// names the marker token, is swapped for the refusal. If an earlier error already made the server
// skip the marker, it answers nothing for it, just as it would for a skipped real statement.
//
// Pure: no sockets. `push` returns the buffers to write to the client.

import { randomBytes } from "node:crypto";
import { BackendType, parseNoticeFields, parseParameterStatus, parseReadyForQuery, type TransactionStatus } from "./codec/index.ts";

export const MARKER_PREFIX = "gatehouse_refused_";

export function newMarker(): string {
  return `${MARKER_PREFIX}${randomBytes(8).toString("hex")}`;
}

export class ServerStream {
  /** Body bytes of the current frame still to pass through. */
  #need = 0;
  /** A partial frame header (fewer than 5 bytes) carried to the next chunk. */
  #hdr: Buffer | undefined;
  /** A whole frame being collected: an ErrorResponse a marker may be inside, or a ParameterStatus to read. */
  #collect: { parts: Buffer[]; need: number; param: boolean } | undefined;
  #markers = new Map<string, { frame: Buffer; cycle: number }>();
  #injected: Buffer[] = [];
  /** Transaction status from the last ReadyForQuery. */
  txStatus: TransactionStatus = "I";
  /** Counts ReadyForQuery frames seen (tests, metrics). */
  readyCount = 0;
  /** Counts ErrorResponse frames seen: no change between two readings means no error in between. */
  errorCount = 0;
  /** Told of each ParameterStatus the server sends (a setting it reports changed). */
  onParameter: ((name: string, value: string) => void) | undefined;
  /** Told at each ReadyForQuery: its number (as readyCount), and whether an error came since the one before. */
  onReady: ((count: number, error: boolean) => void) | undefined;
  #errorsAtReady = 0;

  /**
   * Replace the server's error for `marker` with `errorFrame` (a whole ErrorResponse). `cycle` is
   * the number of the ReadyForQuery that ends the marker's query cycle (1 = the first after
   * login); once it has passed, the marker can no longer be answered and is forgotten.
   */
  expectMarker(marker: string, errorFrame: Buffer, cycle: number): void {
    this.#markers.set(marker, { frame: errorFrame, cycle });
  }

  get pendingMarkers(): number {
    return this.#markers.size;
  }

  /** True when the bytes written so far end on a frame boundary. */
  get atBoundary(): boolean {
    return this.#need === 0 && this.#hdr === undefined && this.#collect === undefined;
  }

  /** Queue bytes (whole frames) for the client; returned now if at a boundary, else after the current frame. */
  inject(frame: Buffer): Buffer[] {
    if (this.atBoundary) return [frame];
    this.#injected.push(frame);
    return [];
  }

  push(chunk: Buffer): Buffer[] {
    const out: Buffer[] = [];
    let pos = 0;
    let passStart = 0;
    const flushPass = (end: number) => {
      if (end > passStart) out.push(passStart === 0 && end === chunk.length ? chunk : chunk.subarray(passStart, end));
    };
    while (pos < chunk.length) {
      if (this.#collect) {
        const take = Math.min(this.#collect.need, chunk.length - pos);
        this.#collect.parts.push(chunk.subarray(pos, pos + take));
        this.#collect.need -= take;
        pos += take;
        passStart = pos;
        if (this.#collect.need === 0) {
          const frame = Buffer.concat(this.#collect.parts);
          const param = this.#collect.param;
          this.#collect = undefined;
          out.push(param ? this.#parameter(frame) : this.#rewriteError(frame));
          this.#drainInjected(out);
        }
        continue;
      }
      if (this.#need > 0) {
        const take = Math.min(this.#need, chunk.length - pos);
        this.#need -= take;
        pos += take;
        if (this.#need === 0) {
          flushPass(pos);
          passStart = pos;
          this.#drainInjected(out);
        }
        continue;
      }
      // At a frame start: read (or finish reading) the 5-byte header.
      let header: Buffer;
      if (this.#hdr) {
        const want = 5 - this.#hdr.length;
        const take = Math.min(want, chunk.length - pos);
        this.#hdr = Buffer.concat([this.#hdr, chunk.subarray(pos, pos + take)]);
        pos += take;
        passStart = pos;
        if (this.#hdr.length < 5) break;
        header = this.#hdr;
        this.#hdr = undefined;
        const len = header.readInt32BE(1);
        const type = header[0]!;
        if (type === BackendType.ErrorResponse) this.errorCount++;
        const param = type === BackendType.ParameterStatus;
        if ((type === BackendType.ErrorResponse && this.#markers.size) || param) {
          this.#collect = { parts: [header], need: len - 4, param };
          if (this.#collect.need === 0) {
            const frame = header;
            this.#collect = undefined;
            out.push(param ? this.#parameter(frame) : this.#rewriteError(frame));
          }
          continue;
        }
        out.push(header);
        this.#need = len - 4;
        if (type === BackendType.ReadyForQuery) this.#readyFromNext(chunk, pos);
        if (this.#need === 0) this.#drainInjected(out);
        continue;
      }
      if (chunk.length - pos < 5) {
        flushPass(pos);
        this.#hdr = Buffer.from(chunk.subarray(pos));
        pos = chunk.length;
        passStart = pos;
        break;
      }
      const type = chunk[pos]!;
      const len = chunk.readInt32BE(pos + 1);
      if (type === BackendType.ErrorResponse) this.errorCount++;
      const param = type === BackendType.ParameterStatus;
      if ((type === BackendType.ErrorResponse && this.#markers.size) || param) {
        flushPass(pos);
        const end = pos + 1 + len;
        if (end <= chunk.length) {
          const frame = chunk.subarray(pos, end);
          out.push(param ? this.#parameter(frame) : this.#rewriteError(frame));
          pos = end;
          passStart = pos;
          this.#drainInjected(out);
        } else {
          this.#collect = { parts: [chunk.subarray(pos)], need: end - chunk.length, param };
          pos = chunk.length;
          passStart = pos;
        }
        continue;
      }
      if (type === BackendType.ReadyForQuery) this.#readyFromNext(chunk, pos + 5);
      const end = pos + 1 + len;
      if (end <= chunk.length) {
        pos = end;
        if (this.#injected.length) {
          flushPass(pos);
          passStart = pos;
          this.#drainInjected(out);
        }
      } else {
        this.#need = end - chunk.length;
        pos = chunk.length;
      }
    }
    flushPass(Math.min(pos, chunk.length));
    return out;
  }

  #readyFromNext(chunk: Buffer, bodyAt: number): void {
    this.readyCount++;
    const error = this.errorCount !== this.#errorsAtReady;
    this.#errorsAtReady = this.errorCount;
    this.onReady?.(this.readyCount, error);
    // Markers of this cycle (and earlier) have been answered, or skipped by the server, by now.
    for (const [m, v] of this.#markers) if (v.cycle <= this.readyCount) this.#markers.delete(m);
    if (bodyAt < chunk.length) {
      try {
        this.txStatus = parseReadyForQuery(chunk.subarray(bodyAt, bodyAt + 1));
      } catch {
        /* a malformed status byte is passed through; the client will complain */
      }
    }
  }

  /** A whole ParameterStatus frame: told to `onParameter`, passed on unchanged. */
  #parameter(frame: Buffer): Buffer {
    try {
      const { name, value } = parseParameterStatus(frame.subarray(5));
      this.onParameter?.(name, value);
    } catch {
      /* malformed: passed through; the client will complain */
    }
    return frame;
  }

  #rewriteError(frame: Buffer): Buffer {
    try {
      const fields = parseNoticeFields(frame.subarray(5));
      for (const [marker, v] of this.#markers) {
        if (fields.message.includes(marker)) {
          this.#markers.delete(marker);
          return v.frame;
        }
      }
    } catch {
      /* not parseable: pass it through unchanged */
    }
    return frame;
  }

  #drainInjected(out: Buffer[]): void {
    if (this.#injected.length && this.atBoundary) {
      out.push(...this.#injected);
      this.#injected = [];
    }
  }
}

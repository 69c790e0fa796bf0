// One multiplexed stream of a tunnel, as a Duplex: to the PostgreSQL engine it looks like the
// target's socket (write, pause/resume, drain, end, destroy, 'close').
//
// Flow control is per stream and credit based: a sender may have at most `window` bytes that the
// receiver has not consumed; the receiver grants credit (WINDOW) as its consumer reads. So a
// client that stops reading stops its own stream — the agent pauses that target socket — and
// never stalls another stream or grows memory past the window.

import { Duplex } from "node:stream";
import type { GatehouseError } from "../domain/errors.ts";
import { encodeControl, encodeData, encodeWindow, MAX_DATA_BYTES } from "./frames.ts";

export interface StreamSink {
  /** Send one encoded frame on the tunnel. */
  send(frame: Buffer): void;
  /** The stream is finished on both sides (or reset): forget it. */
  forget(id: number): void;
}

interface PendingWrite {
  chunk: Buffer;
  cb: (err?: Error | null) => void;
}

export class TunnelStream extends Duplex {
  readonly id: number;
  readonly #sink: StreamSink;
  readonly #window: number;
  #sendCredit: number;
  #queue: PendingWrite[] = [];
  /** Bytes received and handed to the consumer but not yet granted back. */
  #unacked = 0;
  #sentClose = false;
  #gotClose = false;
  #peerReset = false;
  /** Why the stream ended abnormally (agent gone, reset by the peer), for the client's error. */
  closeReason: GatehouseError | undefined;

  /**
   * `halfOpen`: each direction ends on its own (HTTP: the request body ends, the response goes on).
   * Otherwise the stream behaves like a socket: the end of what it reads ends what it writes.
   */
  constructor(id: number, sink: StreamSink, window: number, halfOpen = false) {
    super({ allowHalfOpen: halfOpen, readableHighWaterMark: 64 * 1024, writableHighWaterMark: 64 * 1024 });
    this.id = id;
    this.#sink = sink;
    this.#window = window;
    this.#sendCredit = window;
  }

  // ---------------------------------------------------------------- sending (consumer → peer)

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    // An empty write (a bodiless request's `end(Buffer.alloc(0))`) carries nothing: no frame.
    if (!chunk.length) {
      cb();
      return;
    }
    this.#queue.push({ chunk, cb });
    this.#pump();
  }

  #pump(): void {
    while (this.#queue.length && this.#sendCredit > 0 && !this.destroyed) {
      const w = this.#queue[0]!;
      const n = Math.min(w.chunk.length, this.#sendCredit, MAX_DATA_BYTES);
      this.#sink.send(encodeData(this.id, w.chunk.subarray(0, n)));
      this.#sendCredit -= n;
      if (n === w.chunk.length) {
        this.#queue.shift();
        w.cb();
      } else {
        w.chunk = w.chunk.subarray(n);
      }
    }
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (!this.#peerReset) this.#sink.send(encodeControl("CLOSE", this.id, {}));
    this.#sentClose = true;
    this.#maybeDone();
    cb();
  }

  // ---------------------------------------------------------------- receiving (peer → consumer)

  override _read(): void {
    // Credit goes back in quarters of the window, not per message: the sender still has three
    // quarters of it in hand, so it never waits, and a small request/response exchange costs two
    // tunnel messages instead of four (a WINDOW after each DATA doubled them).
    this.#grant(this.#window >> 2);
  }

  #grant(threshold: number): void {
    if (this.#unacked >= threshold && !this.#gotClose && !this.destroyed) {
      this.#sink.send(encodeWindow(this.id, this.#unacked));
      this.#unacked = 0;
    }
  }

  /** Frames from the peer, dispatched by the multiplexer. */
  onData(data: Buffer): void {
    if (this.#gotClose || this.destroyed) return;
    this.#unacked += data.length;
    // Copy: the frame buffer belongs to the WebSocket message.
    if (this.push(Buffer.from(data))) this.#grant(this.#window >> 2);
  }

  /**
   * Credit is granted while the buffer is under its high-water mark, so an honest peer can fill at
   * most the window plus that mark (plus one frame); anything beyond means it ignores flow control.
   */
  get overrun(): boolean {
    return this.readableLength > this.#window + this.readableHighWaterMark + MAX_DATA_BYTES;
  }

  onWindow(credit: number): void {
    this.#sendCredit += credit;
    this.#pump();
  }

  /** The peer has sent everything (CLOSE): what is buffered is the whole of the rest. */
  get peerDone(): boolean {
    return this.#gotClose;
  }

  /**
   * Everything the peer sent, at once, if it has finished (CLOSE received) and that is at most
   * `max` bytes; else undefined and the stream is left as it was. For small whole messages that
   * arrived in one batch: one buffer instead of a stream.
   */
  takeWhole(max: number): Buffer | undefined {
    if (!this.#gotClose || this.readableLength > max || this.destroyed) return undefined;
    const parts: Buffer[] = [];
    for (let b = this.read() as Buffer | null; b !== null; b = this.read() as Buffer | null) parts.push(b);
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }

  onClose(): void {
    this.#gotClose = true;
    this.push(null);
    this.#maybeDone();
  }

  onReset(reason: GatehouseError): void {
    this.#peerReset = true;
    this.closeReason ??= reason;
    this.destroy();
  }

  #maybeDone(): void {
    if (this.#sentClose && this.#gotClose) this.#sink.forget(this.id);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    for (const w of this.#queue) w.cb(err ?? new Error("stream closed"));
    this.#queue = [];
    const clean = this.#sentClose && this.#gotClose;
    if (!clean && !this.#peerReset) {
      try {
        this.#sink.send(encodeControl("RESET", this.id, { reason: err?.message ?? "closed" }));
      } catch {
        /* the tunnel is gone */
      }
    }
    this.#sink.forget(this.id);
    cb(err);
  }
}

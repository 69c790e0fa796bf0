// Records sessions byte for byte. The engine hands each SessionRecorder what it read from the
// client, what it wrote to the client, and events; the recorder copies them at once into one
// growing buffer per session (the frames, already encoded), so nothing the forwarding path
// allocates outlives its request and nothing is written on that path. The RecordingService
// flushes every recorder's pending frames
// as one chunk per session, all sessions in one batch, every recording.flushInterval (sooner when
// a session has a lot pending), so a store round trip is paid per batch, not per message.
//
// Limits: past recording.maxSessionBytes the byte frames stop (a `recording.truncated` event) and
// the session goes on; events (decisions, the session's end) are still kept, within an allowance
// of a quarter of the cap (at most 1 MiB). When a flush fails, `strict` sessions are ended with GH-REC-001 and
// `best-effort` ones go on with the recording flagged `failed` (a `recording.gap` event says how
// many bytes were lost). A session whose unflushed data grows past PENDING_LIMIT_BYTES (the store
// cannot keep up) is treated like a failed flush, so memory stays bounded.
//
// Never: block forwarding on a write, or record the credential exchange.

import type { RecordingConfig } from "../config/schema.ts";
import { GatehouseError } from "../domain/errors.ts";
import type { Logger } from "../observability/logger.ts";
import type { GatewayMetrics } from "../observability/metrics.ts";
import type { Store } from "../store/store.ts";
import { FRAME_HEADER_BYTES, FrameKind, type RecordingEvent, writeFrameHeader } from "./format.ts";
import { type ChunkOffload, type ChunkWrite, openSink, type RecordingSink } from "./sinks.ts";

/** A session with this much unflushed data triggers a flush at once. */
const FLUSH_SOON_BYTES = 1 << 20;
/** Unflushed data a session may hold before the store is considered unable to keep up. */
export const PENDING_LIMIT_BYTES = 32 << 20;
/** The smallest frame buffer a session starts with (it grows by doubling). */
const MIN_BUFFER_BYTES = 4096;
/** A frame buffer this large is let go after a flush that used less than a quarter of it. */
const KEEP_BUFFER_BYTES = 256 << 10;

/** Room for events beyond recording.maxSessionBytes: a quarter of it, at most 1 MiB. */
export function eventAllowance(max: number): number {
  return Math.min(Math.floor(max / 4), 1 << 20);
}

export type RecordingStatus = "recording" | "complete" | "truncated" | "failed";

export interface RecorderOptions {
  onFailure: "strict" | "best-effort";
}

export class SessionRecorder {
  readonly sessionId: string;
  readonly #svc: RecordingService;
  readonly #max: number;
  readonly onFailure: "strict" | "best-effort";
  /** Pending frames, encoded: #buf[0, #pending). */
  #buf: Buffer | undefined;
  #pending = 0;
  #total = 0;
  #seq = 0;
  #lost = 0;
  #ended = false;
  truncated = false;
  failed = false;
  /** Called once when a strict recording fails: the engine ends the session with this error. */
  onFatal: ((e: GatehouseError) => void) | undefined;

  constructor(svc: RecordingService, sessionId: string, max: number, opts: RecorderOptions) {
    this.#svc = svc;
    this.sessionId = sessionId;
    this.#max = max;
    this.onFailure = opts.onFailure;
  }

  /** Bytes recorded so far (frames incl. headers). */
  get bytes(): number {
    return this.#total;
  }

  get status(): RecordingStatus {
    return this.failed ? "failed" : this.truncated ? "truncated" : this.#ended ? "complete" : "recording";
  }

  /**
   * Bytes the client sent, as one frame: `data`, then `more` if given. A string is taken as
   * latin1 (one byte per character), the encoding of an HTTP head.
   */
  client(data: Buffer | string, more?: Buffer, at = Date.now()): void {
    this.#bytes(FrameKind.client, data, more, at);
  }

  /** Bytes the gateway sent the client, as one frame (see client()). */
  server(data: Buffer | string, more?: Buffer, at = Date.now()): void {
    this.#bytes(FrameKind.server, data, more, at);
  }

  event(e: RecordingEvent, at = Date.now()): void {
    this.#event(JSON.stringify(e), at, false);
  }

  /**
   * An event already serialized: `json` must be one JSON object with a string `type` (the
   * caller's hot path builds it directly; event() is the general form).
   */
  eventJson(json: string, at = Date.now()): void {
    this.#event(json, at, false);
  }

  #bytes(kind: number, a: Buffer | string, b: Buffer | undefined, at: number): void {
    const n = (typeof a === "string" ? a.length : a.length) + (b ? b.length : 0);
    if (n === 0 || !this.#admit(FRAME_HEADER_BYTES + n, at)) return;
    const buf = this.#room(FRAME_HEADER_BYTES + n);
    let off = this.#pending + FRAME_HEADER_BYTES;
    off += typeof a === "string" ? buf.write(a, off, "latin1") : a.copy(buf, off);
    if (b) b.copy(buf, off);
    this.#frame(kind, at, n);
  }

  #event(json: string, at: number, force: boolean): void {
    if (this.#ended) return;
    // UTF-8 takes at most 3 bytes per UTF-16 unit: reserve that, write, then keep it or not.
    const buf = this.#room(FRAME_HEADER_BYTES + 3 * json.length);
    const len = buf.write(json, this.#pending + FRAME_HEADER_BYTES, "utf8");
    // Events (decisions, the end) go on past the cap, within an allowance of their own.
    if (!force && this.#total + FRAME_HEADER_BYTES + len > this.#max + eventAllowance(this.#max)) return;
    this.#frame(FrameKind.event, at, len);
  }

  /** Whether a byte frame of `n` bytes (header included) is kept under the session cap. */
  #admit(n: number, at: number): boolean {
    if (this.#ended || this.truncated) return false;
    if (this.#total + n > this.#max) {
      this.truncated = true;
      this.#svc.truncated(this);
      this.#event(JSON.stringify({ type: "recording.truncated", limitBytes: this.#max, recordedBytes: this.#total }), at, true);
      return false;
    }
    return true;
  }

  /** The frame buffer, with room for `n` more bytes. */
  #room(n: number): Buffer {
    const need = this.#pending + n;
    const cur = this.#buf;
    if (cur && cur.length >= need) return cur;
    let size = cur ? cur.length * 2 : MIN_BUFFER_BYTES;
    while (size < need) size *= 2;
    // Not from the shared pool: the buffer is ours alone, and large ones live outside the JS heap.
    const next = Buffer.allocUnsafeSlow(size);
    if (cur && this.#pending) cur.copy(next, 0, 0, this.#pending);
    this.#buf = next;
    return next;
  }

  /** Write the header of the frame whose `len` payload bytes were just put after #pending + header. */
  #frame(kind: number, at: number, len: number): void {
    const off = this.#pending;
    writeFrameHeader(this.#buf!, off, kind, at, len);
    const n = FRAME_HEADER_BYTES + len;
    const first = off === 0;
    this.#pending += n;
    this.#total += n;
    if (this.#pending >= PENDING_LIMIT_BYTES) this.#svc.overflow(this);
    // The service learns of a recorder once per flush (its first pending frame), and again when
    // it has enough pending to flush early.
    else if (first || this.#pending >= FLUSH_SOON_BYTES) this.#svc.dirty(this, this.#pending >= FLUSH_SOON_BYTES);
  }

  /** The pending frames as the next chunk (a buffer of its own), or undefined. */
  take(): ChunkWrite | undefined {
    const buf = this.#buf;
    if (!buf || !this.#pending) return undefined;
    const data = Buffer.allocUnsafeSlow(this.#pending);
    buf.copy(data, 0, 0, this.#pending);
    const chunk: ChunkWrite = { sessionId: this.sessionId, seq: this.#seq++, at: data.readDoubleBE(1), data, owned: true };
    // A burst's big buffer is not kept for a session that went quiet again.
    if (buf.length > KEEP_BUFFER_BYTES && this.#pending < buf.length / 4) this.#buf = undefined;
    this.#pending = 0;
    return chunk;
  }

  /** A chunk of ours could not be written (or we overflowed). */
  lost(bytes: number, err: GatehouseError): void {
    this.#lost += bytes;
    if (this.onFailure === "strict") {
      if (!this.failed) {
        this.failed = true;
        this.onFatal?.(err);
      }
      return;
    }
    this.failed = true;
    this.#event(JSON.stringify({ type: "recording.gap", lostBytes: bytes, totalLostBytes: this.#lost, reason: err.detail }), Date.now(), true);
  }

  /** Drop unflushed data (overflow): it counts as lost. */
  discardPending(): number {
    const n = this.#pending;
    this.#buf = undefined;
    this.#pending = 0;
    return n;
  }

  end(): void {
    this.#ended = true;
  }

  get ended(): boolean {
    return this.#ended;
  }
}

export interface RecordingServiceDeps {
  store: Store;
  config: RecordingConfig;
  logger: Logger;
  metrics: GatewayMetrics;
  /** For tests: a sink to use instead of the configured one. */
  sink?: RecordingSink;
  /** Store storage: where chunk batches can be inserted off the event loop (the audit writer thread). */
  offload?: ChunkOffload;
}

export class RecordingService {
  readonly sink: RecordingSink;
  readonly enabled: boolean;
  readonly #d: RecordingServiceDeps;
  readonly #dirty = new Set<SessionRecorder>();
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> | undefined;
  #soon = false;
  #closed = false;
  /** False after a failed flush until one succeeds (readiness). */
  healthy = true;
  lastError: string | undefined;

  constructor(deps: RecordingServiceDeps) {
    this.#d = deps;
    this.enabled = deps.config.enabled;
    this.sink = deps.sink ?? openSink(deps.store, deps.config.storage, deps.config.directory, deps.offload, deps.config.compression);
    if (this.enabled) {
      this.#timer = setInterval(() => void this.flush(), Math.max(10, deps.config.flushInterval * 1000));
      this.#timer.unref();
    }
  }

  get storage(): "store" | "directory" {
    return this.sink.kind;
  }

  start(sessionId: string, opts: RecorderOptions): SessionRecorder | undefined {
    if (!this.enabled || this.#closed) return undefined;
    return new SessionRecorder(this, sessionId, this.#d.config.maxSessionBytes, opts);
  }

  dirty(r: SessionRecorder, soon: boolean): void {
    this.#dirty.add(r);
    if (soon && !this.#soon) {
      this.#soon = true;
      setImmediate(() => {
        this.#soon = false;
        void this.flush();
      });
    }
  }

  truncated(r: SessionRecorder): void {
    this.#d.metrics.recordingsTruncated.inc({});
    this.#d.logger.warn({ session: r.sessionId, limitBytes: this.#d.config.maxSessionBytes }, "recording reached recording.maxSessionBytes; the rest of the session is not recorded");
  }

  overflow(r: SessionRecorder): void {
    const n = r.discardPending();
    this.#d.metrics.recordingFailures.inc({ storage: this.storage });
    r.lost(n, new GatehouseError("RECORDING_FAILED", `the recording store cannot keep up (${n} bytes pending)`));
  }

  /** Write every pending chunk. Flushes never overlap; a call during one waits for the next. */
  flush(): Promise<void> {
    if (this.#flushing) return this.#flushing.then(() => this.flush());
    if (!this.#dirty.size) return Promise.resolve();
    const p = this.#write().finally(() => {
      this.#flushing = undefined;
    });
    this.#flushing = p;
    return p;
  }

  async #write(): Promise<void> {
    const owners: SessionRecorder[] = [];
    const batch: ChunkWrite[] = [];
    for (const r of this.#dirty) {
      const c = r.take();
      if (c) {
        batch.push(c);
        owners.push(r);
      }
    }
    this.#dirty.clear();
    if (!batch.length) return;
    // Sizes now: a sink may move owned chunks' memory to another thread.
    const sizes = batch.map((c) => c.data.length);
    try {
      await this.sink.write(batch);
      let n = 0;
      for (const size of sizes) n += size;
      this.#d.metrics.recordingBytes.inc({}, n);
      if (!this.healthy) this.#d.logger.info({}, "recording writes succeed again");
      this.healthy = true;
      this.lastError = undefined;
    } catch (e) {
      const msg = (e as Error).message;
      this.healthy = false;
      this.lastError = msg;
      this.#d.metrics.recordingFailures.inc({ storage: this.storage });
      this.#d.logger.error({ err: msg, sessions: owners.length }, "recording write failed");
      const err = new GatehouseError("RECORDING_FAILED", msg);
      for (const [i, r] of owners.entries()) r.lost(sizes[i]!, err);
    }
  }

  /** The session ended: write the rest of its recording. Returns its final status and size. */
  async finish(r: SessionRecorder): Promise<{ status: RecordingStatus; bytes: number }> {
    r.end();
    this.#dirty.add(r);
    await this.flush();
    this.sink.forget?.(r.sessionId);
    return { status: r.status, bytes: r.bytes };
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    await this.flush();
  }
}

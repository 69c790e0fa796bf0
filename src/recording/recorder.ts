// Records sessions byte for byte. The engine hands each SessionRecorder the buffers it already
// has (what it read from the client, what it wrote to the client) plus events; nothing is copied
// or written on the forwarding path. The RecordingService flushes every recorder's pending frames
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
import { FRAME_HEADER_BYTES, FrameKind, frameHeader, type RecordingEvent } from "./format.ts";
import { type ChunkOffload, type ChunkWrite, openSink, type RecordingSink } from "./sinks.ts";

/** A session with this much unflushed data triggers a flush at once. */
const FLUSH_SOON_BYTES = 1 << 20;
/** Unflushed data a session may hold before the store is considered unable to keep up. */
export const PENDING_LIMIT_BYTES = 32 << 20;

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
  #parts: Buffer[] = [];
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

  client(data: Buffer, at = Date.now()): void {
    if (data.length) this.#push(FrameKind.client, data, at);
  }

  server(data: Buffer, at = Date.now()): void {
    if (data.length) this.#push(FrameKind.server, data, at);
  }

  event(e: RecordingEvent, at = Date.now()): void {
    this.#push(FrameKind.event, Buffer.from(JSON.stringify(e)), at);
  }

  #push(kind: number, payload: Buffer, at: number, force = false): void {
    if (this.#ended) return;
    const n = FRAME_HEADER_BYTES + payload.length;
    if (!force) {
      if (kind === FrameKind.event) {
        // Events (decisions, the end) go on past the cap, within an allowance of their own.
        if (this.#total + n > this.#max + eventAllowance(this.#max)) return;
      } else if (this.truncated) {
        return;
      } else if (this.#total + n > this.#max) {
        this.truncated = true;
        this.#svc.truncated(this);
        this.#push(FrameKind.event, Buffer.from(JSON.stringify({ type: "recording.truncated", limitBytes: this.#max, recordedBytes: this.#total })), at, true);
        return;
      }
    }
    this.#parts.push(frameHeader(kind, at, payload.length), payload);
    this.#pending += n;
    this.#total += n;
    if (this.#pending >= PENDING_LIMIT_BYTES) this.#svc.overflow(this);
    else this.#svc.dirty(this, this.#pending >= FLUSH_SOON_BYTES);
  }

  /** The pending frames as the next chunk, or undefined. */
  take(): ChunkWrite | undefined {
    if (!this.#parts.length) return undefined;
    const data = this.#parts.length === 1 ? this.#parts[0]! : Buffer.concat(this.#parts, this.#pending);
    const chunk: ChunkWrite = { sessionId: this.sessionId, seq: this.#seq++, at: data.readDoubleBE(1), data };
    this.#parts = [];
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
    this.#push(FrameKind.event, Buffer.from(JSON.stringify({ type: "recording.gap", lostBytes: bytes, totalLostBytes: this.#lost, reason: err.detail })), Date.now(), true);
  }

  /** Drop unflushed data (overflow): it counts as lost. */
  discardPending(): number {
    const n = this.#pending;
    this.#parts = [];
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
    this.sink = deps.sink ?? openSink(deps.store, deps.config.storage, deps.config.directory, deps.offload);
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
    try {
      await this.sink.write(batch);
      let n = 0;
      for (const c of batch) n += c.data.length;
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
      for (const [i, r] of owners.entries()) r.lost(batch[i]!.data.length, err);
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

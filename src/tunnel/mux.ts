// One tunnel connection: frames over a WebSocket, many TunnelStreams, heartbeats. Used on both
// ends — the gateway opens streams (odd ids), the agent answers them.
//
// Never: deliver a frame to a stream it does not name, or keep a tunnel whose peer breaks the
// framing (it is closed and every stream on it reset: no byte of one session may reach another).

import type { WebSocket } from "ws";
import { GatehouseError } from "../domain/errors.ts";
import { BATCH_ENTRY_BYTES, decodeMessage, encodeBatch, encodeControl, type Frame, HEADER_BYTES, MAX_FRAME_BYTES, TunnelProtocolError } from "./frames.ts";
import { type StreamSink, TunnelStream } from "./stream.ts";

/** Frames larger than this are sent as messages of their own, not copied into a BATCH. */
const BATCH_FRAME_BYTES = 16 * 1024;

export interface MuxOptions {
  /** Per-stream flow-control window in bytes (both directions). */
  window: number;
  /** PING interval; the tunnel is closed after 3 intervals without any frame from the peer. */
  heartbeatMs: number;
  /** Control frames (HELLO, WELCOME, CANCEL, GOODBYE…) and OPEN/OPENED/OPEN_FAILED. */
  onControl(frame: Frame & { body: Record<string, unknown> }): void;
  /** The tunnel closed; every stream has been reset with `reason`. */
  onClosed?(reason: GatehouseError): void;
  /** The peer's PING body (agents report their health in it). */
  onPing?(body: Record<string, unknown>): void;
  /** What this side puts in its PINGs. */
  pingBody?(): Record<string, unknown>;
}

export class Mux implements StreamSink {
  readonly #ws: WebSocket;
  readonly #o: MuxOptions;
  readonly streams = new Map<number, TunnelStream>();
  #nextId = 1;
  #lastHeard = Date.now();
  #timer: NodeJS.Timeout;
  #closed = false;
  /** The end of this event-loop turn is scheduled (#endOfTurn): the socket is corked, batched frames wait for it. */
  #turnEnds = false;
  /** The peer reads BATCH messages. */
  #batching = false;
  /** Small frames of this turn, sent as one message at its end. */
  #batch: Buffer[] = [];
  #batchBytes = 0;
  /** Why the tunnel ended (set before streams are reset). */
  reason: GatehouseError | undefined;

  constructor(ws: WebSocket, opts: MuxOptions) {
    this.#ws = ws;
    this.#o = opts;
    ws.binaryType = "nodebuffer";
    ws.on("message", (data, isBinary) => this.#onMessage(data as Buffer, isBinary));
    ws.on("close", (code, why) => this.#shutdown(this.reason ?? new GatehouseError("AGENT_UNAVAILABLE", `the tunnel closed (${code}${why.length ? ` ${why.toString()}` : ""})`)));
    ws.on("error", () => {});
    this.#timer = setInterval(() => this.#heartbeat(), opts.heartbeatMs);
    this.#timer.unref();
  }

  get closed(): boolean {
    return this.#closed;
  }

  send(frame: Buffer): void {
    if (this.#closed) throw new GatehouseError("AGENT_UNAVAILABLE", "the tunnel is closed");
    this.#endOfTurn();
    if (!this.#batching || frame.length > BATCH_FRAME_BYTES) {
      // Alone, after what is batched before it: frames leave in the order they were sent.
      this.#flushBatch();
      this.#ws.send(frame, { binary: true });
      return;
    }
    if (HEADER_BYTES + this.#batchBytes + BATCH_ENTRY_BYTES + frame.length > MAX_FRAME_BYTES) this.#flushBatch();
    this.#batch.push(frame);
    this.#batchBytes += BATCH_ENTRY_BYTES + frame.length;
  }

  /**
   * The peer reads BATCH messages (it announced the "batch" capability): from now on the small
   * frames of one event-loop turn go as one WebSocket message.
   */
  enableBatching(): void {
    this.#batching = true;
  }

  /**
   * Frames sent in one event-loop turn leave in one write: an HTTP exchange is several frames
   * (OPEN, its body, CLOSE; OPENED, DATA, CLOSE), and a socket write — with the wake-up it causes
   * on the other side — costs far more than the frames. At the turn's first frame the socket is
   * corked; in the check phase of the same turn (setImmediate, so nothing waits for a timer) the
   * batched frames are sent and the socket uncorked. `_socket` is ws's own field (ws@8); without
   * it unbatched frames go out one write each, as before.
   */
  #endOfTurn(): void {
    if (this.#turnEnds) return;
    this.#turnEnds = true;
    const socket = (this.#ws as unknown as { _socket?: { cork(): void; uncork(): void; destroyed: boolean } })._socket;
    const cork = socket && !socket.destroyed ? socket : undefined;
    cork?.cork();
    setImmediate(() => {
      this.#turnEnds = false;
      this.#flushBatch();
      cork?.uncork();
    });
  }

  /** Send what is batched: one frame as itself, several as one BATCH. */
  #flushBatch(): void {
    const frames = this.#batch;
    if (!frames.length) return;
    this.#batch = [];
    this.#batchBytes = 0;
    // Closing: the streams these frames belong to are reset with the tunnel.
    if (this.#ws.readyState !== this.#ws.OPEN) return;
    this.#ws.send(frames.length === 1 ? frames[0]! : encodeBatch(frames), { binary: true });
  }

  forget(id: number): void {
    this.streams.delete(id);
  }

  control(type: Parameters<typeof encodeControl>[0], body: Record<string, unknown>, stream = 0): void {
    this.send(encodeControl(type, stream, body));
  }

  /**
   * The flow-control window for streams opened from now on. Both ends must use the same one: a
   * receiver returns credit in quarters of its own window, so a sender with a window under a
   * quarter of it would wait for credit that never comes. The agent takes the gateway's (WELCOME).
   */
  setWindow(bytes: number): void {
    if (Number.isSafeInteger(bytes) && bytes >= 4096 && bytes <= 1 << 30) this.#o.window = bytes;
  }

  /** Gateway side: a new stream id (odd) and its stream, registered before OPEN is sent. */
  newStream(halfOpen = false): TunnelStream {
    const id = this.#nextId;
    this.#nextId += 2;
    return this.adopt(id, halfOpen);
  }

  /** Agent side: the stream the gateway opened. */
  adopt(id: number, halfOpen = false): TunnelStream {
    if (this.streams.has(id)) throw new TunnelProtocolError(`stream ${id} is already open`);
    const s = new TunnelStream(id, this, this.#o.window, halfOpen);
    this.streams.set(id, s);
    return s;
  }

  #onMessage(data: Buffer, isBinary: boolean): void {
    this.#lastHeard = Date.now();
    let frames: Frame[];
    try {
      if (!isBinary) throw new TunnelProtocolError("text message on the tunnel");
      frames = decodeMessage(data);
    } catch (e) {
      this.close(new GatehouseError("AGENT_UNAVAILABLE", `tunnel protocol violation: ${(e as Error).message}`), 1002);
      return;
    }
    // A frame may close the tunnel (a peer breaking the protocol): nothing after it is used.
    for (let i = 0; i < frames.length && !this.#closed; i++) this.#onFrame(frames[i]!);
  }

  #onFrame(f: Frame): void {
    switch (f.type) {
      case "DATA": {
        const s = this.streams.get(f.stream);
        // Data for a stream we reset may still be in flight: drop it (never hand it to another).
        if (!s) return;
        s.onData(f.data);
        if (s.overrun) s.onReset(new GatehouseError("AGENT_UNAVAILABLE", "the peer ignored flow control"));
        return;
      }
      case "WINDOW":
        this.streams.get(f.stream)?.onWindow(f.credit);
        return;
      case "CLOSE":
        this.streams.get(f.stream)?.onClose();
        return;
      case "RESET":
        this.streams.get(f.stream)?.onReset(new GatehouseError("PG_TARGET_LOST", `the agent reset the stream: ${String(f.body.reason ?? "")}`));
        return;
      case "PING":
        this.#o.onPing?.(f.body);
        this.control("PONG", { t: f.body.t ?? null });
        return;
      case "PONG":
        return;
      default:
        this.#o.onControl(f);
    }
  }

  #heartbeat(): void {
    if (this.#closed) return;
    if (Date.now() - this.#lastHeard > 3 * this.#o.heartbeatMs) {
      this.close(new GatehouseError("AGENT_UNAVAILABLE", `no heartbeat for ${Math.round((Date.now() - this.#lastHeard) / 1000)} s`), 1001);
      return;
    }
    try {
      this.control("PING", { ...this.#o.pingBody?.(), t: Date.now() });
    } catch {
      /* closing */
    }
  }

  /** Close the tunnel; every stream is reset with `reason`. */
  close(reason: GatehouseError, code = 1000): void {
    this.reason ??= reason;
    // What was sent before (a GOODBYE) goes before the close.
    this.#flushBatch();
    try {
      this.#ws.close(code, reason.detail.slice(0, 120));
    } catch {
      this.#ws.terminate();
    }
    // A peer that does not finish the close handshake is cut off.
    setTimeout(() => this.#ws.terminate(), 2000).unref();
    this.#shutdown(reason);
  }

  #shutdown(reason: GatehouseError): void {
    if (this.#closed) return;
    this.#closed = true;
    this.reason ??= reason;
    clearInterval(this.#timer);
    for (const s of [...this.streams.values()]) s.onReset(reason);
    this.streams.clear();
    this.#o.onClosed?.(reason);
  }
}

// One tunnel connection: frames over a WebSocket, many TunnelStreams, heartbeats. Used on both
// ends — the gateway opens streams (odd ids), the agent answers them.
//
// Never: deliver a frame to a stream it does not name, or keep a tunnel whose peer breaks the
// framing (it is closed and every stream on it reset: no byte of one session may reach another).

import type { WebSocket } from "ws";
import { GatehouseError } from "../domain/errors.ts";
import { decodeFrame, encodeControl, type Frame, TunnelProtocolError } from "./frames.ts";
import { type StreamSink, TunnelStream } from "./stream.ts";

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
  /** The socket is corked until the end of this event-loop turn (#cork). */
  #corked = false;
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
    this.#cork();
    this.#ws.send(frame, { binary: true });
  }

  /**
   * Frames sent in one event-loop turn leave in one write: an HTTP exchange is several frames
   * (OPEN, its body, CLOSE; OPENED, DATA, CLOSE), and a socket write — with the wake-up it causes
   * on the other side — costs far more than the frames. The socket is corked at the turn's first
   * frame and uncorked in the check phase of the same turn (setImmediate), so nothing waits for a
   * timer. `_socket` is ws's own field (ws@8); without it frames go out one write each, as before.
   */
  #cork(): void {
    if (this.#corked) return;
    const socket = (this.#ws as unknown as { _socket?: { cork(): void; uncork(): void; destroyed: boolean } })._socket;
    if (!socket || socket.destroyed) return;
    this.#corked = true;
    socket.cork();
    setImmediate(() => {
      this.#corked = false;
      socket.uncork();
    });
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
    let f: Frame;
    try {
      if (!isBinary) throw new TunnelProtocolError("text message on the tunnel");
      f = decodeFrame(data);
    } catch (e) {
      this.close(new GatehouseError("AGENT_UNAVAILABLE", `tunnel protocol violation: ${(e as Error).message}`), 1002);
      return;
    }
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

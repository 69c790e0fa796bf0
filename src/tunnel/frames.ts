// The tunnel's framing: one binary WebSocket message carries one frame.
//
//   type      u8
//   stream    u32 BE   0 for the control channel, else a stream id (odd: opened by the gateway)
//   payload   the rest (raw bytes for DATA, u32 BE credit for WINDOW, UTF-8 JSON otherwise)
//
// Or, between peers that both announced the "batch" capability, one BATCH message carries several
// frames (stream 0; payload: for each frame, its length as u32 BE and then the frame itself): an
// HTTP exchange is six small frames, and each WebSocket message costs both ends more than its
// bytes do. A BATCH never holds another BATCH.
//
// Pure: encode and decode, with every malformed input refused as a TunnelProtocolError (the
// tunnel is then closed; a peer that cannot frame cannot be trusted to keep streams apart).

export const TUNNEL_PROTOCOL = "gatehouse-tunnel";
/** Version spoken by this build; a peer states the range it speaks in HELLO. */
export const TUNNEL_VERSION = 1;
export const MIN_TUNNEL_VERSION = 1;

export const FrameType = {
  HELLO: 1, // agent → gateway, stream 0: { versions, agent, software, capabilities }
  WELCOME: 2, // gateway → agent, stream 0: { version, capabilities, heartbeatMs, window, connections }
  OPEN: 3, // gateway → agent: { connection, protocol, target, clientParameters }
  OPENED: 4, // agent → gateway: protocol-specific result (PostgreSQL: parameters, backend key, tls)
  OPEN_FAILED: 5, // agent → gateway: { code, message, sqlstate }
  DATA: 6, // both: bytes
  WINDOW: 7, // both: u32 credit — the receiver consumed this many more bytes
  CLOSE: 8, // both: no more DATA from the sender (half close)
  RESET: 9, // both: the stream is gone, with { reason }
  PING: 10, // both, stream 0: { t }
  PONG: 11, // both, stream 0: { t }
  CANCEL: 12, // gateway → agent, stream 0: { connection, target, processId, secretKey }
  GOODBYE: 13, // both, stream 0: { reason } — e.g. revoked, shutting down
  BATCH: 14, // both, stream 0: several frames (only to a peer that announced "batch")
} as const;
/** The frames a message may carry on their own or inside a BATCH (a BATCH is only their envelope). */
export type FrameTypeName = Exclude<keyof typeof FrameType, "BATCH">;
const NAMES: string[] = [];
for (const [k, v] of Object.entries(FrameType)) if (k !== "BATCH") NAMES[v] = k;

export const HEADER_BYTES = 5;
/** Largest DATA payload a sender puts in one frame. */
export const MAX_DATA_BYTES = 64 * 1024;
/** Largest frame a receiver accepts (DATA plus headroom for JSON control frames). */
export const MAX_FRAME_BYTES = MAX_DATA_BYTES + 64 * 1024;

export class TunnelProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TunnelProtocolError";
  }
}

export type Frame =
  | { type: "DATA"; stream: number; data: Buffer }
  | { type: "WINDOW"; stream: number; credit: number }
  | { type: Exclude<FrameTypeName, "DATA" | "WINDOW">; stream: number; body: Record<string, unknown> };

const CONTROL_ONLY = new Set<FrameTypeName>(["HELLO", "WELCOME", "PING", "PONG", "CANCEL", "GOODBYE"]);

export function frameName(type: number): FrameTypeName | undefined {
  return NAMES[type] as FrameTypeName | undefined;
}

function header(type: number, stream: number, payloadLength: number): Buffer {
  const b = Buffer.allocUnsafe(HEADER_BYTES + payloadLength);
  b[0] = type;
  b.writeUInt32BE(stream, 1);
  return b;
}

export function encodeData(stream: number, data: Buffer): Buffer {
  if (data.length > MAX_DATA_BYTES) throw new RangeError(`DATA payload of ${data.length} bytes exceeds ${MAX_DATA_BYTES}`);
  const b = header(FrameType.DATA, stream, data.length);
  data.copy(b, HEADER_BYTES);
  return b;
}

export function encodeWindow(stream: number, credit: number): Buffer {
  if (!Number.isInteger(credit) || credit <= 0 || credit > 0xffffffff) throw new RangeError(`invalid credit ${credit}`);
  const b = header(FrameType.WINDOW, stream, 4);
  b.writeUInt32BE(credit, HEADER_BYTES);
  return b;
}

export function encodeControl(type: Exclude<FrameTypeName, "DATA" | "WINDOW">, stream: number, body: Record<string, unknown>): Buffer {
  const json = Buffer.from(JSON.stringify(body));
  const b = header(FrameType[type], stream, json.length);
  json.copy(b, HEADER_BYTES);
  return b;
}

export function decodeFrame(buf: Buffer): Frame {
  if (buf.length < HEADER_BYTES) throw new TunnelProtocolError(`frame of ${buf.length} bytes is shorter than its header`);
  if (buf.length > MAX_FRAME_BYTES) throw new TunnelProtocolError(`frame of ${buf.length} bytes exceeds ${MAX_FRAME_BYTES}`);
  const name = frameName(buf[0]!);
  if (!name) throw new TunnelProtocolError(`unknown frame type ${buf[0]}`);
  const stream = buf.readUInt32BE(1);
  const payload = buf.subarray(HEADER_BYTES);
  if (CONTROL_ONLY.has(name) !== (stream === 0)) throw new TunnelProtocolError(`${name} ${stream === 0 ? "needs a stream id" : "belongs to the control channel (stream 0)"}`);
  if (name === "DATA") {
    if (payload.length > MAX_DATA_BYTES) throw new TunnelProtocolError(`DATA of ${payload.length} bytes exceeds ${MAX_DATA_BYTES}`);
    return { type: "DATA", stream, data: payload };
  }
  if (name === "WINDOW") {
    if (payload.length !== 4) throw new TunnelProtocolError("WINDOW carries exactly 4 bytes");
    const credit = payload.readUInt32BE(0);
    if (credit === 0) throw new TunnelProtocolError("WINDOW of 0");
    return { type: "WINDOW", stream, credit };
  }
  let body: unknown;
  try {
    body = payload.length ? JSON.parse(payload.toString("utf8")) : {};
  } catch {
    throw new TunnelProtocolError(`${name} payload is not JSON`);
  }
  if (body === null || typeof body !== "object" || Array.isArray(body)) throw new TunnelProtocolError(`${name} payload must be a JSON object`);
  return { type: name, stream, body: body as Record<string, unknown> };
}

/** Bytes a frame adds to a BATCH besides itself: its length. */
export const BATCH_ENTRY_BYTES = 4;

/** Several encoded frames as one BATCH message (each is copied once); at most MAX_FRAME_BYTES in all. */
export function encodeBatch(frames: readonly Buffer[]): Buffer {
  let size = 0;
  for (const f of frames) size += BATCH_ENTRY_BYTES + f.length;
  if (!frames.length) throw new RangeError("an empty BATCH");
  if (HEADER_BYTES + size > MAX_FRAME_BYTES) throw new RangeError(`a BATCH of ${HEADER_BYTES + size} bytes exceeds ${MAX_FRAME_BYTES}`);
  const b = header(FrameType.BATCH, 0, size);
  let at = HEADER_BYTES;
  for (const f of frames) {
    b.writeUInt32BE(f.length, at);
    f.copy(b, at + BATCH_ENTRY_BYTES);
    at += BATCH_ENTRY_BYTES + f.length;
  }
  return b;
}

/**
 * The frames of one WebSocket message: the frame itself, or every frame of a BATCH. All of a
 * BATCH is decoded before any of it is used: one malformed entry refuses the whole message (the
 * tunnel is then closed), so a stream never acts on part of what its peer sent together.
 */
export function decodeMessage(buf: Buffer): Frame[] {
  if (buf[0] !== FrameType.BATCH) return [decodeFrame(buf)];
  if (buf.length > MAX_FRAME_BYTES) throw new TunnelProtocolError(`BATCH of ${buf.length} bytes exceeds ${MAX_FRAME_BYTES}`);
  if (buf.length < HEADER_BYTES) throw new TunnelProtocolError(`frame of ${buf.length} bytes is shorter than its header`);
  if (buf.readUInt32BE(1) !== 0) throw new TunnelProtocolError("BATCH belongs to the control channel (stream 0)");
  const frames: Frame[] = [];
  let at = HEADER_BYTES;
  while (at < buf.length) {
    if (buf.length - at < BATCH_ENTRY_BYTES) throw new TunnelProtocolError("BATCH entry length is truncated");
    const n = buf.readUInt32BE(at);
    at += BATCH_ENTRY_BYTES;
    if (n > buf.length - at) throw new TunnelProtocolError(`BATCH entry of ${n} bytes runs past the message`);
    const inner = buf.subarray(at, at + n);
    if (inner[0] === FrameType.BATCH) throw new TunnelProtocolError("a BATCH inside a BATCH");
    frames.push(decodeFrame(inner));
    at += n;
  }
  if (!frames.length) throw new TunnelProtocolError("an empty BATCH");
  return frames;
}

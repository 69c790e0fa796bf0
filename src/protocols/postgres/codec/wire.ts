// Low-level byte plumbing shared by the codec's readers and writers: a bounds-checked cursor over
// one frame, an exact-size frame writer, and the incremental frame splitter both directions use.
// It exists so that every read is checked against the frame's end in one place. It must never
// read past a frame, never throw anything but ProtocolError on bad bytes, and never copy a frame
// that already lies whole inside one pushed chunk.

import { isUtf8 } from "node:buffer";
import { ProtocolError } from "./errors.ts";

export const EMPTY = Buffer.alloc(0);

/** Printable name of a message type byte, for error messages. */
export function typeName(b: number): string {
  return b >= 0x20 && b < 0x7f ? `'${String.fromCharCode(b)}'` : `0x${b.toString(16).padStart(2, "0")}`;
}

/**
 * A bounds-checked reader over buf[pos, end). One instance is reused per decoder so that decoding
 * a message allocates nothing but the values it returns.
 */
export class Cursor {
  buf: Buffer = EMPTY;
  pos = 0;
  end = 0;
  /** What is being read, e.g. "Bind", used in error messages only. */
  what = "";
  /** Reject C strings that are not valid UTF-8 instead of decoding them lossily. */
  strictUtf8 = false;

  reset(buf: Buffer, pos: number, what: string): this {
    this.buf = buf;
    this.pos = pos;
    this.end = buf.length;
    this.what = what;
    return this;
  }

  /** Drop the reference to the last frame so a decoder does not keep it alive. */
  release(): void {
    this.buf = EMPTY;
    this.pos = 0;
    this.end = 0;
  }

  get remaining(): number {
    return this.end - this.pos;
  }

  truncated(field: string): ProtocolError {
    return new ProtocolError("PG_MESSAGE_TRUNCATED", `${this.what} message is truncated: ${field} runs past the end of the message`);
  }

  need(n: number, field: string): void {
    if (this.end - this.pos < n) throw this.truncated(field);
  }

  /** Check that `count` elements of `size` bytes each fit in what is left, before allocating for them. */
  needCount(count: number, size: number, field: string): void {
    if (count * size > this.end - this.pos) {
      throw new ProtocolError("PG_MESSAGE_TRUNCATED", `${this.what} message is truncated: ${field} count ${count} overruns the message`);
    }
  }

  u8(field: string): number {
    if (this.pos >= this.end) throw this.truncated(field);
    return this.buf[this.pos++]!;
  }

  i16(field: string): number {
    if (this.end - this.pos < 2) throw this.truncated(field);
    const v = this.buf.readInt16BE(this.pos);
    this.pos += 2;
    return v;
  }

  u16(field: string): number {
    if (this.end - this.pos < 2) throw this.truncated(field);
    const v = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }

  i32(field: string): number {
    if (this.end - this.pos < 4) throw this.truncated(field);
    const v = this.buf.readInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  u32(field: string): number {
    if (this.end - this.pos < 4) throw this.truncated(field);
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  /** A NUL-terminated string, decoded as UTF-8 (lossily unless strictUtf8). */
  cstring(field: string): string {
    const buf = this.buf;
    const start = this.pos;
    const i = buf.indexOf(0, start);
    if (i < 0 || i >= this.end) {
      throw new ProtocolError("PG_STRING_UNTERMINATED", `${this.what} message is malformed: ${field} has no NUL terminator inside the message`);
    }
    this.pos = i + 1;
    if (i === start) return "";
    if (this.strictUtf8 && !isUtf8(buf.subarray(start, i))) {
      throw new ProtocolError("PG_INVALID_UTF8", `${this.what} message is malformed: ${field} is not valid UTF-8`);
    }
    return buf.toString("utf8", start, i);
  }

  /** n bytes, as a view (no copy). */
  bytes(n: number, field: string): Buffer {
    if (n < 0 || this.end - this.pos < n) throw this.truncated(field);
    const v = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }

  /** Everything left, as a view. */
  rest(): Buffer {
    const v = this.buf.subarray(this.pos, this.end);
    this.pos = this.end;
    return v;
  }

  /** PostgreSQL rejects a message with bytes after its last field (pq_getmsgend); so do we. */
  finish(): void {
    if (this.pos !== this.end) {
      throw new ProtocolError("PG_MESSAGE_TRAILING_BYTES", `${this.what} message is malformed: ${this.end - this.pos} unexpected byte(s) after the last field`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Writing

export function writeInvalid(message: string): ProtocolError {
  return new ProtocolError("PG_WRITE_INVALID", message);
}

/** Byte length of `s` as a C string (UTF-8 plus the NUL); rejects an embedded NUL. */
export function cstrLen(s: string, field: string): number {
  if (s.includes("\0")) throw writeInvalid(`${field} must not contain a NUL character`);
  return Buffer.byteLength(s, "utf8") + 1;
}

export function checkInt16Count(n: number, field: string): void {
  if (n > 0xffff) throw writeInvalid(`${field}: ${n} elements do not fit the protocol's 16-bit count`);
}

export function checkInt(v: number, min: number, max: number, field: string): void {
  if (!Number.isInteger(v) || v < min || v > max) throw writeInvalid(`${field} must be an integer in ${min}..${max}, got ${v}`);
}

/** An exact-size frame under construction. Sizes are computed by the caller first, so nothing grows. */
export class Out {
  readonly buf: Buffer;
  pos: number;

  private constructor(buf: Buffer, pos: number) {
    this.buf = buf;
    this.pos = pos;
  }

  /** A typed frame: type byte, Int32 length (body + 4), then `bodyLen` bytes to fill. */
  static typed(type: number, bodyLen: number): Out {
    if (bodyLen + 4 > 0x7fffffff) throw writeInvalid("message is too large for the protocol");
    const buf = Buffer.allocUnsafe(5 + bodyLen);
    buf[0] = type;
    buf.writeInt32BE(bodyLen + 4, 1);
    return new Out(buf, 5);
  }

  /** An untyped startup-phase packet: Int32 length (body + 4), then `bodyLen` bytes to fill. */
  static untyped(bodyLen: number): Out {
    const buf = Buffer.allocUnsafe(4 + bodyLen);
    buf.writeInt32BE(bodyLen + 4, 0);
    return new Out(buf, 4);
  }

  u8(v: number): this {
    this.buf[this.pos++] = v;
    return this;
  }

  i16(v: number): this {
    this.buf.writeInt16BE(v, this.pos);
    this.pos += 2;
    return this;
  }

  u16(v: number): this {
    this.buf.writeUInt16BE(v, this.pos);
    this.pos += 2;
    return this;
  }

  i32(v: number): this {
    this.buf.writeInt32BE(v, this.pos);
    this.pos += 4;
    return this;
  }

  u32(v: number): this {
    this.buf.writeUInt32BE(v, this.pos);
    this.pos += 4;
    return this;
  }

  /** A C string whose length was already validated with cstrLen. */
  cstr(s: string): this {
    this.pos += this.buf.write(s, this.pos, "utf8");
    this.buf[this.pos++] = 0;
    return this;
  }

  bytes(b: Uint8Array): this {
    this.buf.set(b, this.pos);
    this.pos += b.length;
    return this;
  }

  /** The finished frame; asserts the size computation was right (a writer bug, not bad input). */
  done(): Buffer {
    if (this.pos !== this.buf.length) throw new Error(`codec writer bug: wrote ${this.pos} of ${this.buf.length} bytes`);
    return this.buf;
  }
}

// ---------------------------------------------------------------------------------------------
// Incremental splitting

/**
 * Cuts a byte stream into frames. A frame wholly inside a pushed chunk is handed on as a view of
 * that chunk (no copy); only a frame spanning chunks is assembled, once, when its last byte
 * arrives. Bytes of an incomplete frame are kept as views of the chunks they arrived in, so
 * memory grows with bytes actually received, never with what a length field merely promises.
 * Headers are validated as soon as they are complete (the type byte even earlier), so a bad or
 * oversized length fails immediately instead of waiting for bytes that will never come.
 *
 * Chunks passed to push must not be modified afterwards: frames and their fields alias them.
 */
export abstract class FrameSplitter<T> {
  private readonly head = Buffer.alloc(8);
  private headLen = 0;
  private total = 0;
  private parts: Buffer[] = [];
  private partsLen = 0;
  private failure: ProtocolError | null = null;

  /** Header size for the frame about to start: 5 typed (type + length), 4 untyped (length). */
  protected abstract headerSize(): number;
  /** Called before the first byte of each new frame, e.g. to refuse bytes after Terminate. */
  protected abstract frameStart(): void;
  /** Validate a frame's first byte as soon as it arrives (typed: the message type). */
  protected abstract checkFirstByte(b: number): void;
  /** Validate a complete header at buf[off..] and return the whole frame's byte length. */
  protected abstract frameLength(buf: Buffer, off: number): number;
  /** Decode one complete frame; `more` tells whether bytes follow it in the same chunk. */
  protected abstract onFrame(frame: Buffer, out: T[], more: boolean): void;

  /** Bytes held for a frame that is not complete yet. */
  get buffered(): number {
    return this.headLen + this.partsLen;
  }

  /** The bytes held for a frame that is not complete yet (a copy; empty when none). */
  pendingBytes(): Buffer {
    if (this.headLen === 0) return EMPTY;
    return Buffer.concat([this.head.subarray(0, this.headLen), ...this.parts]);
  }

  /** After a ProtocolError the stream cannot be resynchronised: every later push rethrows it. */
  get failed(): ProtocolError | null {
    return this.failure;
  }

  protected split(chunk: Buffer, out: T[]): void {
    if (this.failure !== null) throw this.failure;
    try {
      this.splitInner(chunk, out);
    } catch (e) {
      if (e instanceof ProtocolError) {
        this.failure = e;
        this.parts = [];
        this.partsLen = 0;
        this.headLen = 0;
      }
      throw e;
    }
  }

  private splitInner(chunk: Buffer, out: T[]): void {
    const n = chunk.length;
    let off = 0;

    if (this.headLen > 0) {
      // Finish the frame that spans chunks.
      const hsz = this.headerSize();
      if (this.headLen < hsz) {
        const take = Math.min(hsz - this.headLen, n);
        chunk.copy(this.head, this.headLen, 0, take);
        this.headLen += take;
        off = take;
        if (this.headLen < hsz) return;
        this.total = this.frameLength(this.head, 0);
      }
      const want = this.total - hsz - this.partsLen;
      const take = Math.min(want, n - off);
      if (take > 0) {
        this.parts.push(chunk.subarray(off, off + take));
        this.partsLen += take;
        off += take;
      }
      if (take < want) return;
      const frame = Buffer.allocUnsafe(this.total);
      this.head.copy(frame, 0, 0, hsz);
      let p = hsz;
      for (const part of this.parts) {
        part.copy(frame, p);
        p += part.length;
      }
      this.parts = [];
      this.partsLen = 0;
      this.headLen = 0;
      this.onFrame(frame, out, off < n);
    }

    while (off < n) {
      this.frameStart();
      const hsz = this.headerSize();
      this.checkFirstByte(chunk[off]!);
      const avail = n - off;
      if (avail < hsz) {
        chunk.copy(this.head, 0, off, n);
        this.headLen = avail;
        return;
      }
      const total = this.frameLength(chunk, off);
      if (avail >= total) {
        const end = off + total;
        this.onFrame(chunk.subarray(off, end), out, end < n);
        off = end;
        continue;
      }
      chunk.copy(this.head, 0, off, off + hsz);
      this.headLen = hsz;
      this.total = total;
      if (avail > hsz) {
        this.parts.push(chunk.subarray(off + hsz, n));
        this.partsLen = avail - hsz;
      }
      return;
    }
  }
}

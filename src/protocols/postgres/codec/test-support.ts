// Byte builders for the codec's tests. They exist so readers are tested against frames written
// out by hand, field by field, independently of the codec's own writers. Test-only: production
// code must never import this module.

export type Part = Buffer | Uint8Array | number[] | string;

/** Concatenate parts; a string is its UTF-8 bytes (no terminator), a number[] is raw bytes. */
export function bytes(...parts: Part[]): Buffer {
  return Buffer.concat(parts.map((p) => (typeof p === "string" ? Buffer.from(p, "utf8") : Buffer.from(p))));
}

export function i16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeInt16BE(n);
  return b;
}

export function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

export function i32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
}

export function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

/** A C string: UTF-8 bytes and a NUL. */
export function cstr(s: string): Buffer {
  return bytes(s, [0]);
}

/** A typed frame: type byte, Int32 length (including itself), body. */
export function typed(type: string, ...body: Part[]): Buffer {
  const b = bytes(...body);
  return bytes(type, i32(b.length + 4), b);
}

/** A startup-phase packet: Int32 length (including itself), body. */
export function untyped(...body: Part[]): Buffer {
  const b = bytes(...body);
  return bytes(i32(b.length + 4), b);
}

/** Split `buf` at the given offsets. */
export function splitAt(buf: Buffer, cuts: number[]): Buffer[] {
  const sorted = [...new Set(cuts)].filter((c) => c > 0 && c < buf.length).sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const c of sorted) {
    out.push(buf.subarray(prev, c));
    prev = c;
  }
  out.push(buf.subarray(prev));
  return out;
}

/** A JSON-comparable copy: Buffers become hex strings, null-prototype objects plain ones. */
export function plain(v: unknown): unknown {
  if (Buffer.isBuffer(v)) return `hex:${v.toString("hex")}`;
  if (Array.isArray(v)) return v.map(plain);
  if (v !== null && typeof v === "object") {
    const o: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) o[k] = plain(x);
    return o;
  }
  return v;
}

// The recording format, the recorder's limits and failure modes, both sinks, and the PostgreSQL
// replay decoder on synthetic conversations (including every way the bytes can be split).

import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import fc from "fast-check";
import { serialize } from "pg-protocol";
import { GatehouseError } from "../domain/errors.ts";
import { createGatewayMetrics } from "../observability/metrics.ts";
import { createLogger } from "../observability/logger.ts";
import { backend, frontendWriter } from "../protocols/postgres/codec/index.ts";
import type { Store } from "../store/store.ts";
import { brotliCompressSync } from "node:zlib";
import { compressChunk, compressChunkAsync, decodeChunk, FRAME_HEADER_BYTES, FrameKind, frameHeader, MAX_CHUNK_BYTES, type RecordedFrame, RecordingFormatError } from "./format.ts";
import { PostgresReplay, type ReplayCycle, type ReplayItem } from "./postgres-replay.ts";
import { RecordingService } from "./recorder.ts";
import { type ChunkWrite, DirectorySink, type RecordingSink, type StoredChunk } from "./sinks.ts";

class MemorySink implements RecordingSink {
  readonly kind = "store";
  chunks: ChunkWrite[] = [];
  fail: Error | undefined;
  async write(batch: ChunkWrite[]): Promise<void> {
    if (this.fail) throw this.fail;
    this.chunks.push(...batch);
  }
  async *read(sessionId: string): AsyncIterable<StoredChunk> {
    for (const c of this.chunks.filter((x) => x.sessionId === sessionId)) yield { seq: c.seq, data: c.data };
  }
  async remove(): Promise<number> {
    return 0;
  }
  frames(sessionId: string): RecordedFrame[] {
    return this.chunks.filter((c) => c.sessionId === sessionId).flatMap((c) => decodeChunk(c.data));
  }
}

function service(sink: RecordingSink, over: Partial<{ maxSessionBytes: number }> = {}) {
  const metrics = createGatewayMetrics();
  const svc = new RecordingService({
    store: {} as Store,
    config: { enabled: true, storage: "store", directory: "", maxSessionBytes: over.maxSessionBytes ?? 1 << 20, flushInterval: 3600, compression: "none", retention: 0 },
    logger: createLogger("silent"),
    metrics,
    sink,
  });
  return { svc, metrics };
}

const SID = "00000000-0000-4000-8000-000000000001";

describe("format", () => {
  test("frames round-trip, in order, with their times", () => {
    const at = 1_764_000_000_123.456;
    const ev = Buffer.from(JSON.stringify({ type: "decision", msg: 0 }));
    const chunk = Buffer.concat([frameHeader(FrameKind.client, at, 3), Buffer.from("abc"), frameHeader(FrameKind.event, at + 1, ev.length), ev, frameHeader(FrameKind.server, at + 2, 0)]);
    const frames = decodeChunk(chunk);
    assert.equal(frames.length, 3);
    assert.deepEqual(frames[0], { kind: "client", at, data: Buffer.from("abc") });
    assert.deepEqual(frames[1], { kind: "event", at: at + 1, event: { type: "decision", msg: 0 } });
    assert.equal(frames[2]!.kind, "server");
  });
  test("damaged chunks are refused, never half-read", () => {
    const good = Buffer.concat([frameHeader(FrameKind.client, 1, 3), Buffer.from("abc")]);
    assert.throws(() => decodeChunk(good.subarray(0, 10)), RecordingFormatError);
    assert.throws(() => decodeChunk(good.subarray(0, good.length - 1)), RecordingFormatError);
    assert.throws(() => decodeChunk(Buffer.concat([frameHeader(9, 1, 0)])), /unknown frame kind 9/);
    assert.throws(() => decodeChunk(Buffer.concat([frameHeader(FrameKind.event, 1, 2), Buffer.from("{x")])), /not JSON/);
  });
});

/** A chunk of frames: an HTTP-like exchange repeated `n` times, an event between. */
function exchangeChunk(n: number, at = 1_764_000_000_000.25): Buffer {
  const parts: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    const req = Buffer.from(`GET /svc/items/${i} HTTP/1.1\r\nHost: gw\r\nAuthorization: [redacted]\r\n\r\n`, "latin1");
    const ev = Buffer.from(JSON.stringify({ type: "decision", decision: "allow", n: i }));
    const res = Buffer.from(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{"n":${String(i).padStart(5, "0")}}`, "latin1");
    parts.push(frameHeader(FrameKind.client, at + 3 * i, req.length), req, frameHeader(FrameKind.event, at + 3 * i + 1, ev.length), ev, frameHeader(FrameKind.server, at + 3 * i + 2, res.length), res);
  }
  return Buffer.concat(parts);
}

describe("compressed frames (format version 2)", () => {
  test("a compressed chunk decodes to exactly the frames it was made of, much smaller, stamped with its first frame's time", async () => {
    const chunk = exchangeChunk(200);
    const packed = compressChunk(chunk);
    assert.equal(packed[0], FrameKind.compressed);
    assert.equal(packed.readDoubleBE(1), chunk.readDoubleBE(1));
    assert.equal(packed.readUInt32BE(9), packed.length - FRAME_HEADER_BYTES);
    assert.ok(packed.length < chunk.length / 10, `${packed.length} of ${chunk.length} bytes`);
    assert.deepEqual(decodeChunk(packed), decodeChunk(chunk));
    assert.deepEqual(decodeChunk(await compressChunkAsync(chunk)), decodeChunk(chunk));
  });

  test("what would not get smaller is stored as it is: small chunks, random bytes, a chunk already compressed", async () => {
    const small = exchangeChunk(1).subarray(0, 0);
    const one = Buffer.concat([frameHeader(FrameKind.client, 5, 3), Buffer.from("abc")]);
    assert.equal(compressChunk(one), one);
    assert.equal(compressChunk(small), small);
    const noise = Buffer.concat([frameHeader(FrameKind.server, 7, 4096), Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 2654435761) >>> 24))]);
    const random = Buffer.concat([frameHeader(FrameKind.server, 7, 4096), (await import("node:crypto")).randomBytes(4096)]);
    assert.equal(compressChunk(random), random);
    assert.equal(await compressChunkAsync(random), random);
    assert.deepEqual(decodeChunk(compressChunk(noise)), decodeChunk(noise));
    const packed = compressChunk(exchangeChunk(50));
    assert.equal(compressChunk(packed), packed, "never compressed twice");
  });

  test("damaged, smuggled and oversized compressed frames are refused, never half-read", () => {
    const packed = compressChunk(exchangeChunk(100));
    const payload = packed.subarray(FRAME_HEADER_BYTES);
    // Truncated inside the Brotli stream (the frame length says so too).
    const cut = payload.subarray(0, payload.length - 20);
    assert.throws(() => decodeChunk(Buffer.concat([frameHeader(FrameKind.compressed, 1, cut.length), cut])), (e) => e instanceof RecordingFormatError && /compressed frame at byte 0 does not decompress/.test(e.message));
    // Garbage that is not Brotli at all.
    const junk = Buffer.from("this is not a brotli stream at all, not even close");
    assert.throws(() => decodeChunk(Buffer.concat([frameHeader(FrameKind.compressed, 1, junk.length), junk])), RecordingFormatError);
    // A frame inside that is cut short: reported as inside the compressed frame.
    const inner = exchangeChunk(3);
    const torn = brotliCompressSync(inner.subarray(0, inner.length - 1));
    assert.throws(() => decodeChunk(Buffer.concat([frameHeader(FrameKind.compressed, 1, torn.length), torn])), /inside the compressed frame at byte 0: frame at byte/);
    // A compressed frame smuggled inside a compressed frame.
    const nested = brotliCompressSync(Buffer.concat([frameHeader(FrameKind.client, 1, 1), Buffer.from("x"), packed]));
    assert.throws(() => decodeChunk(Buffer.concat([frameHeader(FrameKind.compressed, 1, nested.length), nested])), /compressed frame inside the compressed frame at byte 0/);
    // A bomb: a few kilobytes that would expand past the bound.
    const bomb = brotliCompressSync(Buffer.alloc(MAX_CHUNK_BYTES + 1));
    assert.ok(bomb.length < 64 << 10);
    assert.throws(() => decodeChunk(Buffer.concat([frameHeader(FrameKind.compressed, 1, bomb.length), bomb])), new RegExp(`expands past ${MAX_CHUNK_BYTES} bytes`));
    // A compressed frame is the whole chunk: nothing before or after it, and never two in a row
    // (each could expand to the bound: a chunk of bombs would not be bounded at all).
    assert.throws(() => decodeChunk(Buffer.concat([packed, Buffer.from([1, 2, 3])])), /compressed frame at byte 0 is not the whole chunk/);
    assert.throws(() => decodeChunk(Buffer.concat([packed, packed])), /compressed frame at byte 0 is not the whole chunk/);
    const one = Buffer.concat([frameHeader(FrameKind.client, 1, 1), Buffer.from("x")]);
    assert.throws(() => decodeChunk(Buffer.concat([one, packed])), /compressed frame at byte 14 is not the whole chunk/);
  });

  test("any run of frames survives compression (property)", () => {
    const frame = fc.oneof(
      fc.record({ kind: fc.constantFrom(FrameKind.client, FrameKind.server), at: fc.double({ noNaN: true, noDefaultInfinity: true }), data: fc.uint8Array({ maxLength: 600 }) }),
      fc.record({ kind: fc.constant(FrameKind.event), at: fc.double({ noNaN: true, noDefaultInfinity: true }), data: fc.jsonValue().map((v) => new TextEncoder().encode(JSON.stringify({ type: "e", v }))) }),
    );
    fc.assert(
      fc.property(fc.array(frame, { maxLength: 30 }), fc.nat(40), (frames, repeat) => {
        const once = frames.flatMap((f) => [frameHeader(f.kind, f.at, f.data.length), Buffer.from(f.data)]);
        const chunk = Buffer.concat(Array.from({ length: repeat + 1 }, () => once).flat());
        assert.deepEqual(decodeChunk(compressChunk(chunk)), decodeChunk(chunk));
      }),
      { numRuns: 150 },
    );
  });
});

describe("recorder", () => {
  test("byte frames of each direction reassemble exactly, however they were pushed", async () => {
    // A push: bytes (a Buffer, or latin1 text as HTTP heads are, optionally followed by a second
    // part in the same frame) or an event with arbitrary text.
    const push = fc.oneof(
      fc.record({ client: fc.boolean(), first: fc.oneof(fc.uint8Array({ maxLength: 300 }), fc.string({ unit: fc.integer({ min: 0, max: 255 }).map((c) => String.fromCharCode(c)), maxLength: 200 })), more: fc.option(fc.uint8Array({ maxLength: 5000 }), { nil: undefined }) }),
      fc.record({ event: fc.string({ unit: "binary", maxLength: 100 }) }),
    );
    const bytesOf = (x: Uint8Array | string) => (typeof x === "string" ? Buffer.from(x, "latin1") : Buffer.from(x));
    await fc.assert(
      fc.asyncProperty(fc.array(push, { maxLength: 40 }), async (pushes) => {
        const sink = new MemorySink();
        const { svc } = service(sink);
        const r = svc.start(SID, { onFailure: "strict" })!;
        for (const [i, p] of pushes.entries()) {
          if ("event" in p) r.event({ type: "note", text: p.event });
          else {
            const first = typeof p.first === "string" ? p.first : Buffer.from(p.first);
            const more = p.more ? Buffer.from(p.more) : undefined;
            if (p.client) r.client(first, more);
            else r.server(first, more);
          }
          if (i % 7 === 3) await svc.flush();
        }
        await svc.finish(r);
        const frames = sink.frames(SID);
        const join = (k: "client" | "server") => Buffer.concat(frames.flatMap((f) => (f.kind === k ? [f.data] : [])));
        const sent = (client: boolean) => Buffer.concat(pushes.flatMap((p) => ("event" in p || p.client !== client ? [] : [bytesOf(p.first), ...(p.more ? [Buffer.from(p.more)] : [])])));
        assert.ok(join("client").equals(sent(true)));
        assert.ok(join("server").equals(sent(false)));
        assert.ok(frames.every((f) => f.kind === "event" || f.data.length > 0), "no empty byte frames");
        assert.deepEqual(frames.flatMap((f) => (f.kind === "event" ? [f.event.text] : [])), pushes.flatMap((p) => ("event" in p ? [p.event] : [])));
        assert.deepEqual(sink.chunks.map((c) => c.seq), sink.chunks.map((_, i) => i));
      }),
      { numRuns: 80 },
    );
  });

  test("a taken chunk is a buffer of its own: later frames do not change it", async () => {
    const sink = new MemorySink();
    const { svc } = service(sink);
    const r = svc.start(SID, { onFailure: "strict" })!;
    r.client("GET / HTTP/1.1\r\n\r\n");
    await svc.flush();
    const first = Buffer.from(sink.chunks[0]!.data);
    for (let i = 0; i < 100; i++) r.server(Buffer.alloc(1000, i));
    await svc.finish(r);
    assert.ok(sink.chunks[0]!.data.equals(first));
    assert.equal(sink.chunks[0]!.data.buffer.byteLength, sink.chunks[0]!.data.length, "exactly sized, so handing it to a thread copies no more than it");
    assert.equal(sink.frames(SID).length, 101);
  });

  test("the size cap stops byte frames, marks the recording truncated, and keeps later events", async () => {
    const sink = new MemorySink();
    const { svc, metrics } = service(sink, { maxSessionBytes: 1024 });
    const r = svc.start(SID, { onFailure: "strict" })!;
    r.client(Buffer.alloc(500, 1));
    r.server(Buffer.alloc(600, 2));
    r.server(Buffer.alloc(10, 3));
    r.event({ type: "decision", msg: 1 });
    const done = await svc.finish(r);
    assert.equal(done.status, "truncated");
    const frames = sink.frames(SID);
    assert.deepEqual(frames.map((f) => (f.kind === "event" ? f.event.type : f.kind)), ["client", "recording.truncated", "decision"]);
    assert.ok(done.bytes <= 1024 + 256);
    assert.match(metrics.registry.render(), /gatehouse_recordings_truncated_total 1/);
  });

  test("events past the cap stop at the allowance", async () => {
    const sink = new MemorySink();
    const { svc } = service(sink, { maxSessionBytes: 1024 });
    const r = svc.start(SID, { onFailure: "strict" })!;
    for (let i = 0; i < 1000; i++) r.event({ type: "decision", msg: i, pad: "x".repeat(20) });
    const done = await svc.finish(r);
    assert.ok(done.bytes <= 1024 + 256, `${done.bytes}`);
  });

  test("a failed write ends a strict session once, and flags a best-effort one with a gap", async () => {
    const sink = new MemorySink();
    const { svc, metrics } = service(sink);
    const strict = svc.start(SID, { onFailure: "strict" })!;
    const lenient = svc.start("00000000-0000-4000-8000-000000000002", { onFailure: "best-effort" })!;
    const fatal: GatehouseError[] = [];
    strict.onFatal = (e) => fatal.push(e);
    strict.client(Buffer.from("a"));
    lenient.client(Buffer.from("b"));
    sink.fail = new Error("disk full");
    await svc.flush();
    assert.equal(svc.healthy, false);
    strict.client(Buffer.from("c"));
    await svc.flush();
    assert.equal(fatal.length, 1);
    assert.equal(fatal[0]!.code, "GH-REC-001");
    assert.match(fatal[0]!.message, /disk full/);
    sink.fail = undefined;
    lenient.client(Buffer.from("d"));
    await svc.finish(lenient);
    assert.equal(svc.healthy, true);
    assert.equal(lenient.status, "failed");
    const events = sink.frames(lenient.sessionId).flatMap((f) => (f.kind === "event" ? [f.event] : []));
    // The first gap event was itself lost in the second failed flush: the one that got through
    // counts everything lost so far.
    assert.deepEqual(events.map((e) => e.type), ["recording.gap"]);
    assert.ok((events[0]!.totalLostBytes as number) > FRAME_HEADER_BYTES + 1);
    assert.match(metrics.registry.render(), /gatehouse_recording_write_failures_total\{storage="store"\} 2/, "two failed flushes");
  });

  test("unflushed data past the pending limit counts as lost (bounded memory)", async () => {
    const sink = new MemorySink();
    const { svc } = service(sink, { maxSessionBytes: 1 << 30 });
    const r = svc.start(SID, { onFailure: "best-effort" })!;
    for (let i = 0; i < 40; i++) r.server(Buffer.alloc(1 << 20));
    assert.equal(r.status, "failed");
    await svc.finish(r);
  });

  test("recording off: no recorder", () => {
    const { svc } = service(new MemorySink());
    const off = new RecordingService({ store: {} as Store, config: { enabled: false, storage: "store", directory: "", maxSessionBytes: 1 << 20, flushInterval: 1, compression: "brotli", retention: 0 }, logger: createLogger("silent"), metrics: createGatewayMetrics(), sink: new MemorySink() });
    assert.equal(off.start(SID, { onFailure: "strict" }), undefined);
    void svc.close();
  });
});

describe("directory sink", () => {
  test("writes, reads back in order, stops at a torn tail, reports a bad CRC", async () => {
    const dir = mkdtempSync(join(tmpdir(), "gh-sink-"));
    try {
      const sink = new DirectorySink(dir);
      await sink.write([{ sessionId: SID, seq: 0, at: 1, data: Buffer.from("zero") }]);
      await sink.write([{ sessionId: SID, seq: 1, at: 2, data: Buffer.from("one") }]);
      const read = async () => {
        const out: string[] = [];
        for await (const c of sink.read(SID)) out.push(`${c.seq}:${c.data}`);
        return out;
      };
      assert.deepEqual(await read(), ["0:zero", "1:one"]);
      const file = join(dir, `${SID}.ghrec`);
      writeFileSync(file, Buffer.concat([readFileSync(file), Buffer.from([0, 0, 0, 9, 0, 0])]));
      assert.deepEqual(await read(), ["0:zero", "1:one"], "torn tail ignored");
      assert.match(readFileSync(file, "latin1"), new RegExp(`^gatehouse-recording 2 ${SID}\n`));
      const bytes = readFileSync(file);
      const at = bytes.indexOf("zero") + 1;
      bytes[at] = (bytes[at] ?? 0) ^ 0xff;
      writeFileSync(file, bytes);
      await assert.rejects(read(), /GH-REC-004|fails its CRC/);
      assert.throws(() => sink.file("../../etc/passwd"), (e) => e instanceof GatehouseError && e.code === "GH-REC-002");
      assert.equal(await sink.remove([SID]) > 0, true);
      assert.deepEqual(await read(), []);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("stores chunks compressed (or not, with compression none), and still reads version 1 files", async () => {
    const dir = mkdtempSync(join(tmpdir(), "gh-sink-"));
    try {
      const chunk = exchangeChunk(100);
      const frames = async (sink: DirectorySink, id: string) => {
        const out: RecordedFrame[] = [];
        for await (const c of sink.read(id)) out.push(...decodeChunk(c.data));
        return out;
      };
      const packed = new DirectorySink(dir);
      // A batch of several chunks of several sessions (compressed two at a time): each session's
      // chunks land in order.
      const SID3 = "00000000-0000-4000-8000-000000000003";
      const parts = [exchangeChunk(10), exchangeChunk(20), exchangeChunk(30)];
      await packed.write(parts.flatMap((data, seq) => [{ sessionId: SID3, seq, at: 1, data }, { sessionId: SID, seq, at: 1, data: chunk }]).filter((c) => c.sessionId === SID3 || c.seq === 0));
      assert.deepEqual(await frames(packed, SID3), parts.flatMap((c) => decodeChunk(c)));
      assert.ok(readFileSync(join(dir, `${SID}.ghrec`)).length < chunk.length / 5);
      assert.deepEqual(await frames(packed, SID), decodeChunk(chunk));
      const SID2 = "00000000-0000-4000-8000-000000000002";
      const plain = new DirectorySink(dir, "none");
      await plain.write([{ sessionId: SID2, seq: 0, at: 1, data: chunk }]);
      assert.ok(readFileSync(join(dir, `${SID2}.ghrec`)).includes(chunk));
      assert.match(readFileSync(join(dir, `${SID2}.ghrec`), "latin1"), new RegExp(`^gatehouse-recording 1 ${SID2}\n`), "uncompressed: a version 1 file");
      // A file written before version 2: the same records under a version 1 header.
      const v2 = readFileSync(join(dir, `${SID2}.ghrec`));
      writeFileSync(join(dir, `${SID2}.ghrec`), Buffer.concat([Buffer.from(`gatehouse-recording 1 ${SID2}\n`), v2.subarray(v2.indexOf(0x0a) + 1)]));
      assert.deepEqual(await frames(plain, SID2), decodeChunk(chunk));
      writeFileSync(join(dir, `${SID2}.ghrec`), Buffer.concat([Buffer.from(`gatehouse-recording 3 ${SID2}\n`), v2.subarray(v2.indexOf(0x0a) + 1)]));
      await assert.rejects(frames(plain, SID2), /not a recording of version 1 or 2/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// ------------------------------------------------------------------------------ replay decoder

/** A conversation as the two streams plus events naming client messages. */
function conversation(): RecordedFrame[] {
  let t = 1000;
  const tick = () => {
    t += 1;
    return t;
  };
  const c = (data: Buffer): RecordedFrame => ({ kind: "client", at: tick(), data });
  const s = (data: Buffer): RecordedFrame => ({ kind: "server", at: tick(), data });
  const e = (event: Record<string, unknown>): RecordedFrame => ({ kind: "event", at: tick(), event: event as { type: string } });
  return [
    s(Buffer.concat([backend.authenticationOk(), backend.parameterStatus("server_version", "15.8"), backend.backendKeyData(42, 7), backend.readyForQuery("I")])),
    c(frontendWriter.query("SELECT id, name FROM t")),
    e({ type: "decision", msg: 0, decision: "allow", rule: "r1", forwarded: true }),
    s(Buffer.concat([backend.rowDescription([{ name: "id", typeOid: 23 }, { name: "name", typeOid: 25 }]), backend.dataRow(["1", "a"]), backend.dataRow(["2", null]), backend.commandComplete("SELECT 2"), backend.readyForQuery("I")])),
    c(Buffer.concat([frontendWriter.parse("", "SELECT $1::int"), serialize.bind({ values: ["5"] }), serialize.describe({ type: "P" }), serialize.execute(), serialize.sync()])),
    e({ type: "decision", msg: 1, decision: "allow", rule: "r2", forwarded: true }),
    s(Buffer.concat([backend.parseComplete(), backend.bindComplete(), backend.rowDescription([{ name: "int4", typeOid: 23 }]), backend.dataRow(["5"]), backend.commandComplete("SELECT 1"), backend.readyForQuery("I")])),
    c(frontendWriter.query("DROP TABLE t")),
    e({ type: "decision", msg: 6, decision: "deny", rule: "no-drop", forwarded: false }),
    s(Buffer.concat([backend.errorResponse({ severity: "ERROR", code: "42501", message: "denied" }), backend.readyForQuery("I")])),
    c(frontendWriter.query("SELECT pg_sleep(10)")),
    e({ type: "session.ended", reason: "client disconnected" }),
  ];
}

function decodeAll(frames: RecordedFrame[]): ReplayItem[] {
  const r = new PostgresReplay();
  return [...frames.flatMap((f) => r.push(f)), ...r.end()];
}

describe("PostgreSQL replay", () => {
  test("cycles carry statements, decisions, rows, errors and timings", () => {
    const items = decodeAll(conversation());
    const cycles = items.filter((i): i is ReplayCycle => i.type === "cycle");
    assert.equal(items[0]!.type, "login");
    assert.equal(cycles.length, 4);
    const [q, ext, denied, open] = cycles as [ReplayCycle, ReplayCycle, ReplayCycle, ReplayCycle];
    assert.equal(q.statements[0]!.text, "SELECT id, name FROM t");
    assert.equal(q.statements[0]!.events[0]!.rule, "r1");
    assert.deepEqual(q.results, [{ columns: [{ name: "id", typeOid: 23, format: 0 }, { name: "name", typeOid: 25, format: 0 }], rows: [["1", "a"], ["2", null]], tag: "SELECT 2" }]);
    assert.ok(q.complete && q.durationMs !== undefined && q.durationMs > 0);
    assert.deepEqual(ext.statements.map((s) => s.message), ["Parse", "Bind", "Describe", "Execute"]);
    assert.deepEqual(ext.statements[1]!.parameters, ["5"]);
    assert.deepEqual(ext.results[0]!.rows, [["5"]]);
    assert.equal(denied.statements[0]!.events[0]!.decision, "deny");
    assert.equal(denied.errors[0]!.code, "42501");
    assert.equal(open.complete, false, "the last statement never got an answer");
    assert.equal((items.at(-2) as { event: { type: string } }).event.type, "session.ended");
  });

  test("the decoded conversation does not depend on how the bytes were split into frames", () => {
    const frames = conversation();
    const expected = JSON.stringify(decodeAll(frames), (_k, v) => v);
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 7 }), { minLength: 1, maxLength: 8 }), (sizes) => {
        // Re-split every byte frame into pieces of the given sizes (same times).
        const split: RecordedFrame[] = frames.flatMap((f) => {
          if (f.kind === "event") return [f];
          const out: RecordedFrame[] = [];
          let off = 0;
          for (let i = 0; off < f.data.length; i++) {
            const n = sizes[i % sizes.length]!;
            out.push({ kind: f.kind, at: f.at, data: f.data.subarray(off, off + n) });
            off += n;
          }
          return out;
        });
        assert.equal(JSON.stringify(decodeAll(split)), expected);
      }),
      { numRuns: 100 },
    );
  });

  test("rows beyond maxRows are counted, not kept", () => {
    const r = new PostgresReplay({ maxRows: 1 });
    const frames: RecordedFrame[] = [
      { kind: "server", at: 1, data: Buffer.concat([backend.authenticationOk(), backend.readyForQuery("I")]) },
      { kind: "client", at: 2, data: frontendWriter.query("SELECT generate_series(1,3)") },
      { kind: "server", at: 3, data: Buffer.concat([backend.rowDescription([{ name: "g", typeOid: 23 }]), backend.dataRow(["1"]), backend.dataRow(["2"]), backend.dataRow(["3"]), backend.commandComplete("SELECT 3"), backend.readyForQuery("I")]) },
    ];
    const cycle = frames.flatMap((f) => r.push(f)).find((i): i is ReplayCycle => i.type === "cycle")!;
    assert.deepEqual(cycle.results[0]!.rows, [["1"]]);
    assert.equal(cycle.results[0]!.rowsOmitted, 2);
  });
});

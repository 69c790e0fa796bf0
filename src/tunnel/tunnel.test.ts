// The tunnel's pieces on a real WebSocket pair: the frame codec (round trips and every malformed
// input), stream flow control (a stalled reader holds back only its own stream, within its
// window), endings (half close, reset, tunnel loss) and the rule that a peer breaking the framing
// loses the whole tunnel.

import assert from "node:assert/strict";
import { once } from "node:events";
import { after, before, describe, test } from "node:test";
import fc from "fast-check";
import WebSocket, { WebSocketServer } from "ws";
import { GatehouseError } from "../domain/errors.ts";
import { decodeFrame, decodeMessage, encodeBatch, encodeControl, encodeData, encodeWindow, type Frame, FrameType, HEADER_BYTES, MAX_DATA_BYTES, MAX_FRAME_BYTES, TunnelProtocolError } from "./frames.ts";
import { Mux } from "./mux.ts";
import { tunnelUrl } from "./agent-client.ts";
import type { TunnelStream } from "./stream.ts";

describe("frames", () => {
  test("DATA, WINDOW and control frames round-trip", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 0xffffffff }), fc.uint8Array({ maxLength: 2000 }), fc.integer({ min: 1, max: 0xffffffff }), (stream, data, credit) => {
        const d = decodeFrame(encodeData(stream, Buffer.from(data)));
        assert.deepEqual(d, { type: "DATA", stream, data: Buffer.from(data) });
        assert.deepEqual(decodeFrame(encodeWindow(stream, credit)), { type: "WINDOW", stream, credit });
        assert.deepEqual(decodeFrame(encodeControl("RESET", stream, { reason: "x" })), { type: "RESET", stream, body: { reason: "x" } });
      }),
    );
    assert.deepEqual(decodeFrame(encodeControl("HELLO", 0, { versions: [1, 1] })), { type: "HELLO", stream: 0, body: { versions: [1, 1] } });
  });

  test("malformed frames are refused, never guessed at", () => {
    const bad: Array<[Buffer, RegExp]> = [
      [Buffer.from([FrameType.DATA, 0, 0]), /shorter than its header/],
      [Buffer.from([99, 0, 0, 0, 1]), /unknown frame type 99/],
      [encodeControl("HELLO", 0, {}).fill(1, 1, 5), /belongs to the control channel/],
      [Buffer.concat([Buffer.from([FrameType.OPEN, 0, 0, 0, 0]), Buffer.from("{}")]), /needs a stream id/],
      [Buffer.concat([Buffer.from([FrameType.WINDOW, 0, 0, 0, 1]), Buffer.from([0, 0, 0, 0])]), /WINDOW of 0/],
      [Buffer.concat([Buffer.from([FrameType.WINDOW, 0, 0, 0, 1]), Buffer.from([0, 1])]), /exactly 4 bytes/],
      [Buffer.concat([Buffer.from([FrameType.RESET, 0, 0, 0, 1]), Buffer.from("{nope")]), /not JSON/],
      [Buffer.concat([Buffer.from([FrameType.RESET, 0, 0, 0, 1]), Buffer.from("[1]")]), /JSON object/],
      [Buffer.concat([Buffer.from([FrameType.DATA, 0, 0, 0, 1]), Buffer.alloc(MAX_DATA_BYTES + 1)]), /exceeds/],
      [Buffer.alloc(MAX_FRAME_BYTES + 1, FrameType.DATA), /exceeds/],
    ];
    for (const [buf, re] of bad) assert.throws(() => decodeFrame(buf), (e) => e instanceof TunnelProtocolError && re.test(e.message), re.source);
    assert.throws(() => encodeData(1, Buffer.alloc(MAX_DATA_BYTES + 1)), RangeError);
    assert.equal(HEADER_BYTES, 5);
  });

  test("random bytes never crash the decoder", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (b) => {
        try {
          decodeFrame(Buffer.from(b));
        } catch (e) {
          assert.ok(e instanceof TunnelProtocolError);
        }
      }),
      { numRuns: 2000 },
    );
  });

  test("a BATCH carries any frames, in order, and decodes to exactly them", () => {
    const frame = fc.oneof(
      fc.tuple(fc.integer({ min: 1, max: 0xffffffff }), fc.uint8Array({ maxLength: 3000 })).map(([s, d]) => encodeData(s, Buffer.from(d))),
      fc.tuple(fc.integer({ min: 1, max: 0xffffffff }), fc.integer({ min: 1, max: 0xffffffff })).map(([s, c]) => encodeWindow(s, c)),
      fc.tuple(fc.integer({ min: 1, max: 0xffffffff }), fc.string()).map(([s, r]) => encodeControl("RESET", s, { reason: r })),
      fc.integer().map((t) => encodeControl("PING", 0, { t })),
    );
    fc.assert(
      fc.property(fc.array(frame, { minLength: 1, maxLength: 30 }), (frames) => {
        assert.deepEqual(decodeMessage(encodeBatch(frames)), frames.map((f) => decodeFrame(f)));
      }),
    );
    // A message that is not a BATCH is the one frame it holds.
    assert.deepEqual(decodeMessage(encodeWindow(3, 7)), [{ type: "WINDOW", stream: 3, credit: 7 }]);
    assert.throws(() => encodeBatch([]), RangeError);
    assert.throws(() => encodeBatch([encodeData(1, Buffer.alloc(MAX_DATA_BYTES)), encodeData(1, Buffer.alloc(MAX_DATA_BYTES))]), RangeError);
  });

  test("malformed BATCHes are refused whole", () => {
    const entry = (f: Buffer) => {
      const n = Buffer.alloc(4);
      n.writeUInt32BE(f.length);
      return Buffer.concat([n, f]);
    };
    const batch = (...parts: Buffer[]) => Buffer.concat([Buffer.from([FrameType.BATCH, 0, 0, 0, 0]), ...parts]);
    const ok = encodeData(1, Buffer.from("x"));
    const bad: Array<[Buffer, RegExp]> = [
      [batch(), /empty BATCH/],
      [batch(entry(ok), Buffer.from([0, 0])), /entry length is truncated/],
      [batch(Buffer.from([0, 0, 0, 9]), ok), /runs past the message/],
      [batch(entry(encodeBatch([ok]))), /BATCH inside a BATCH/],
      [batch(entry(ok), entry(Buffer.from([FrameType.WINDOW, 0, 0, 0, 1, 0, 0, 0, 0]))), /WINDOW of 0/],
      [batch(entry(ok), entry(Buffer.from([1, 2]))), /shorter than its header/],
      [batch(entry(ok), entry(Buffer.alloc(0))), /shorter than its header/],
      [encodeBatch([ok]).fill(7, 4, 5), /control channel/],
      [Buffer.from([FrameType.BATCH, 0, 0]), /shorter than its header/],
      [Buffer.concat([Buffer.from([FrameType.BATCH, 0, 0, 0, 0]), Buffer.alloc(MAX_FRAME_BYTES)]), /exceeds/],
    ];
    for (const [buf, re] of bad) assert.throws(() => decodeMessage(buf), (e) => e instanceof TunnelProtocolError && re.test(e.message), re.source);
    // A BATCH is only an envelope: on its own, the frame decoder does not know it.
    assert.throws(() => decodeFrame(encodeBatch([ok])), /unknown frame type 14/);
  });

  test("random bytes never crash the message decoder", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 96 }), (b) => {
        try {
          decodeMessage(Buffer.concat([Buffer.from([FrameType.BATCH, 0, 0, 0, 0]), Buffer.from(b)]));
        } catch (e) {
          assert.ok(e instanceof TunnelProtocolError);
        }
      }),
      { numRuns: 2000 },
    );
  });

  test("tunnel URLs: https → wss, plaintext only to loopback unless allowed", () => {
    assert.equal(tunnelUrl("https://gw.example.com"), "wss://gw.example.com/api/v1/agents/tunnel");
    assert.equal(tunnelUrl("http://127.0.0.1:8080"), "ws://127.0.0.1:8080/api/v1/agents/tunnel");
    assert.throws(() => tunnelUrl("http://gw.example.com"), (e) => e instanceof GatehouseError && e.code === "GH-AGENT-006");
    assert.equal(tunnelUrl("http://gw.internal:8080", true), "ws://gw.internal:8080/api/v1/agents/tunnel");
    assert.throws(() => tunnelUrl("ftp://x"), /http\(s\):\/\/ or ws\(s\):\/\//);
  });
});

/** Two Muxes joined by a real WebSocket on loopback. */
async function pair(window = 64 * 1024, agentWindow = window, batch = false): Promise<{ gw: Mux; agent: Mux; raw: { gw: WebSocket; agent: WebSocket }; close(): Promise<void> }> {
  const { server, client, close } = await sockets();
  const control = () => {};
  const gw = new Mux(server, { window, heartbeatMs: 60_000, onControl: control });
  const agent = new Mux(client, { window: agentWindow, heartbeatMs: 60_000, onControl: control });
  if (batch) {
    gw.enableBatching();
    agent.enableBatching();
  }
  return {
    gw,
    agent,
    raw: { gw: server, agent: client },
    close,
  };
}

/** Both ends of a real WebSocket on loopback, not yet in a Mux. */
async function sockets(): Promise<{ server: WebSocket; client: WebSocket; close(): Promise<void> }> {
  const wss = new WebSocketServer({ port: 0, host: "127.0.0.1" });
  await once(wss, "listening");
  const accepted = once(wss, "connection") as Promise<[WebSocket]>;
  const client = new WebSocket(`ws://127.0.0.1:${(wss.address() as { port: number }).port}`);
  await once(client, "open");
  const [server] = await accepted;
  return {
    server,
    client,
    async close() {
      client.terminate();
      server.terminate();
      await new Promise((r) => wss.close(r));
    },
  };
}

/** Agent-side twin of a gateway stream. */
async function twin(p: Awaited<ReturnType<typeof pair>>): Promise<[TunnelStream, TunnelStream]> {
  const g = p.gw.newStream();
  const a = p.agent.adopt(g.id);
  return [g, a];
}

for (const batched of [false, true])
describe(`streams over a real WebSocket${batched ? ", frames batched" : ""}`, () => {
  let p: Awaited<ReturnType<typeof pair>>;
  before(async () => {
    p = await pair(64 * 1024, 64 * 1024, batched);
  });
  after(async () => {
    await p.close();
  });

  test("bytes arrive in order and intact, in both directions, across many frames", async () => {
    const [g, a] = await twin(p);
    const payload = Buffer.from(Array.from({ length: 300_000 }, (_, i) => i % 251));
    const got: Buffer[] = [];
    const back: Buffer[] = [];
    a.on("data", (b: Buffer) => got.push(b));
    g.on("data", (b: Buffer) => back.push(b));
    a.write(Buffer.from("pong"));
    g.end(payload);
    await once(a, "end");
    assert.ok(Buffer.concat(got).equals(payload));
    // Like a socket (no half-open): the end of one side ends the stream both ways.
    await once(g, "close");
    assert.equal(Buffer.concat(back).toString(), "pong");
    assert.equal(p.gw.streams.size, 0, "a cleanly closed stream is forgotten");
  });

  test("a stalled reader holds back only its own stream, within its window", async () => {
    const [slowG, slowA] = await twin(p);
    const [fastG, fastA] = await twin(p);
    slowA.pause(); // the consumer of the slow stream never reads
    const chunk = Buffer.alloc(16 * 1024, 7);
    let written = 0;
    for (let i = 0; i < 64; i++) {
      slowG.write(chunk);
      written += chunk.length;
    }
    // The fast stream goes on while the slow one is stuck.
    const echoed: Buffer[] = [];
    fastA.on("data", (b: Buffer) => echoed.push(b));
    fastG.write(Buffer.from("still flowing"));
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(Buffer.concat(echoed).toString(), "still flowing");
    // At most the window plus the receiver's high-water mark (64 KiB each) is in flight.
    assert.ok(slowA.readableLength <= 128 * 1024 + 16 * 1024, `receiver buffers ${slowA.readableLength} bytes`);
    assert.ok(slowG.writableLength >= written - 160 * 1024, "the rest waits at the sender, as backpressure");
    assert.equal(slowG.writableNeedDrain, true);
    // Reading resumes the flow; everything arrives.
    let total = 0;
    slowA.on("data", (b: Buffer) => (total += b.length));
    slowA.resume();
    await waitUntil(() => total === written);
    slowG.destroy();
    fastG.destroy();
  });

  test("credit returns in quarters of the window: small exchanges send no WINDOW frames, bulk never stalls", async () => {
    const windows = { gw: 0, agent: 0 };
    // This stream's own WINDOW frames only: credit for an earlier test's streams on the same
    // tunnel may still be on its way.
    const [g, a] = await twin(p);
    const count = (side: "gw" | "agent") => (data: Buffer) => {
      for (const f of decodeMessage(data)) if (f.type === "WINDOW" && f.stream === g.id) windows[side]++;
    };
    const [onGw, onAgent] = [count("gw"), count("agent")];
    p.raw.gw.on("message", onGw);
    p.raw.agent.on("message", onAgent);
    try {
      a.on("data", (b: Buffer) => a.write(b)); // an echoing target
      const replies: Buffer[] = [];
      g.on("data", (b: Buffer) => replies.push(b));
      // 100 request/response exchanges of 100 bytes each way: 10 KB, under a quarter of the window.
      for (let i = 0; i < 100; i++) {
        const n = replies.length;
        g.write(Buffer.alloc(100, i));
        await waitUntil(() => replies.length > n && Buffer.concat(replies).length === (i + 1) * 100);
      }
      assert.deepEqual(windows, { gw: 0, agent: 0 }, "no credit message for small exchanges");
      // 1 MiB one way through a 64 KiB window: credit flows back in grants of 16 to 64 KiB (at
      // least a quarter, at most the window), and the sender never waits for good.
      const big = Buffer.alloc(1 << 20, 3);
      const before = Buffer.concat(replies).length;
      g.write(big);
      await waitUntil(() => Buffer.concat(replies).length === before + big.length, 10_000);
      for (const n of Object.values(windows)) assert.ok(n >= 16 && n <= 66, `WINDOW frames ${JSON.stringify(windows)}`);
      g.destroy();
    } finally {
      p.raw.gw.off("message", onGw);
      p.raw.agent.off("message", onAgent);
    }
  });

  test("frames sent in one event-loop turn leave in one socket write, and arrive in order", async () => {
    const socket = (p.raw.agent as unknown as { _socket: import("node:net").Socket })._socket;
    let writes = 0;
    const counted = <T extends (...a: never[]) => unknown>(f: T) =>
      function (this: unknown, ...a: Parameters<T>) {
        writes++;
        return f.apply(this, a);
      } as T;
    const own = socket as unknown as { _write: (...a: never[]) => unknown; _writev: (...a: never[]) => unknown };
    const [w, wv] = [own._write, own._writev];
    own._write = counted(w);
    own._writev = counted(wv);
    try {
      const [g, a] = await twin(p);
      const got: Buffer[] = [];
      g.on("data", (b: Buffer) => got.push(b));
      let messages = 0;
      const counting = () => messages++;
      p.raw.gw.on("message", counting);
      await new Promise((r) => setImmediate(r));
      writes = 0;
      for (let i = 0; i < 5; i++) a.write(Buffer.from(`part ${i};`));
      p.agent.control("PING", { t: 1 });
      await new Promise((r) => setImmediate(r));
      assert.equal(writes, 1, "one write for six frames");
      await waitUntil(() => Buffer.concat(got).toString() === "part 0;part 1;part 2;part 3;part 4;");
      await waitUntil(() => messages >= (batched ? 1 : 6));
      p.raw.gw.off("message", counting);
      assert.equal(messages, batched ? 1 : 6, batched ? "one message for six frames" : "a message per frame");
      g.destroy();
    } finally {
      own._write = w;
      own._writev = wv;
    }
  });

  test("a finished stream hands over what it holds as one buffer; an unfinished or larger one stays a stream", async () => {
    const [g, a] = await twin(p);
    a.write(Buffer.from("one,"));
    a.end(Buffer.from("two"));
    await waitUntil(() => g.peerDone);
    assert.equal(g.takeWhole(3), undefined, "over the limit: left as it was");
    assert.equal(g.takeWhole(1024)?.toString(), "one,two");
    const [g2, a2] = await twin(p);
    a2.write(Buffer.from("partial"));
    await waitUntil(() => g2.readableLength > 0);
    assert.equal(g2.takeWhole(1024), undefined, "no CLOSE yet");
    a2.end();
    await waitUntil(() => g2.peerDone);
    assert.equal(g2.takeWhole(1024)?.toString(), "partial");
    g.destroy();
    g2.destroy();
  });

  test("a reset reaches the other end with a reason; late data for it is dropped", async () => {
    const [g, a] = await twin(p);
    const closed = once(g, "close");
    a.on("error", () => {});
    a.destroy(new Error("target went away"));
    await closed;
    assert.equal(g.closeReason?.code, "GH-PG-005");
    assert.match(g.closeReason!.message, /target went away/);
    p.agent.send(encodeData(a.id, Buffer.from("late")));
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(p.gw.streams.has(g.id), false);
  });
});

describe("batched frames", () => {
  test("small frames share a message; a large one goes alone, in its place: the stream's bytes stay in order", async () => {
    const p = await pair(1 << 20, 1 << 20, true);
    try {
      const [g, a] = await twin(p);
      let messages = 0;
      const counting = () => messages++;
      p.raw.agent.on("message", counting);
      const got: Buffer[] = [];
      a.on("data", (b: Buffer) => got.push(b));
      const big = Buffer.alloc(40 * 1024, 9);
      g.write(Buffer.from("a"));
      g.write(Buffer.from("b"));
      g.write(big);
      g.write(Buffer.from("c"));
      const want = Buffer.concat([Buffer.from("ab"), big, Buffer.from("c")]);
      await waitUntil(() => Buffer.concat(got).equals(want));
      assert.equal(messages, 3, "[a, b] as one BATCH, the large frame alone, then [c]");
      p.raw.agent.off("message", counting);
      // Many small frames in one turn, more than one message holds: as many BATCHes as needed.
      got.length = 0;
      const parts = Array.from({ length: 20 }, (_, i) => Buffer.alloc(10 * 1024, i));
      for (const part of parts) g.write(part);
      await waitUntil(() => Buffer.concat(got).equals(Buffer.concat(parts)));
      // An empty write sends nothing; the end is one CLOSE.
      const frames: string[] = [];
      const listing = (d: Buffer) => frames.push(...decodeMessage(d).map((f) => f.type));
      p.raw.agent.on("message", listing);
      g.end(Buffer.alloc(0));
      await waitUntil(() => a.peerDone);
      assert.deepEqual(frames, ["CLOSE"], "no DATA frame for an empty write");
      p.raw.agent.off("message", listing);
      g.destroy();
    } finally {
      await p.close();
    }
  });

  test("a BATCH with one malformed entry is refused whole: the tunnel closes and no frame of it is used", async () => {
    const p = await pair(64 * 1024, 64 * 1024, true);
    try {
      const [g, a] = await twin(p);
      const got: Buffer[] = [];
      g.on("data", (b: Buffer) => got.push(b));
      const closed = once(g, "close");
      const good = encodeData(a.id, Buffer.from("must not arrive"));
      const bad = Buffer.from([FrameType.WINDOW, 0, 0, 0, 1, 0, 0, 0, 0]);
      const n = Buffer.alloc(4);
      n.writeUInt32BE(bad.length);
      p.raw.agent.send(Buffer.concat([encodeBatch([good]), n, bad]), { binary: true });
      await closed;
      assert.match(g.closeReason!.message, /tunnel protocol violation: WINDOW of 0/);
      assert.equal(Buffer.concat(got).length, 0);
    } finally {
      await p.close();
    }
  });

  test("frames after one that closes the tunnel, in the same BATCH, are not used", async () => {
    const { server, client, close } = await sockets();
    const seen: Frame[] = [];
    const gw: Mux = new Mux(server, {
      window: 64 * 1024,
      heartbeatMs: 60_000,
      onControl: (f) => {
        seen.push(f);
        if (f.type === "GOODBYE") gw.close(new GatehouseError("AGENT_UNAVAILABLE", "goodbye"));
      },
    });
    try {
      client.send(encodeBatch([encodeControl("OPENED", 1, { n: 1 }), encodeControl("GOODBYE", 0, { reason: "x" }), encodeControl("OPENED", 3, { n: 2 })]), { binary: true });
      await waitUntil(() => gw.closed);
      await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual(
        seen.map((f) => f.type),
        ["OPENED", "GOODBYE"],
      );
    } finally {
      await close();
    }
  });

  test("what is batched when the tunnel is closed (a GOODBYE) goes out before the close", async () => {
    const { server, client, close } = await sockets();
    const seen: string[] = [];
    const gw = new Mux(server, { window: 64 * 1024, heartbeatMs: 60_000, onControl: (f) => seen.push(`${f.type} ${String(f.body.reason)}`) });
    const agent = new Mux(client, { window: 64 * 1024, heartbeatMs: 60_000, onControl: () => {} });
    agent.enableBatching();
    try {
      agent.control("GOODBYE", { reason: "shutting down" });
      agent.close(new GatehouseError("AGENT_UNAVAILABLE", "bye"));
      await waitUntil(() => gw.closed);
      assert.deepEqual(seen, ["GOODBYE shutting down"]);
    } finally {
      await close();
    }
  });
});

describe("windows", () => {
  test("an agent that takes the gateway's window moves bulk data both ways with a smaller window than its own default", async () => {
    const p = await pair(64 * 1024, 1 << 20);
    try {
      // The agent side starts with a 1 MiB default, as AgentClient does, then takes WELCOME's.
      p.agent.setWindow(64 * 1024);
      const [g, a] = await twin(p);
      const big = Buffer.alloc(1 << 20, 5);
      let gotA = 0;
      let gotG = 0;
      a.on("data", (b: Buffer) => (gotA += b.length));
      g.on("data", (b: Buffer) => (gotG += b.length));
      g.write(big);
      a.write(big);
      await waitUntil(() => gotA === big.length && gotG === big.length, 10_000);
      g.destroy();
    } finally {
      await p.close();
    }
  });
});

describe("tunnel failures", () => {
  test("losing the tunnel resets every stream with the reason", async () => {
    const p = await pair();
    const streams = await Promise.all([twin(p), twin(p), twin(p)]);
    const closes = streams.map(([g]) => once(g, "close"));
    p.raw.agent.terminate();
    await Promise.all(closes);
    for (const [g] of streams) assert.equal(g.closeReason?.code, "GH-AGENT-001");
    assert.equal(p.gw.closed, true);
    await p.close();
  });

  test("a peer that breaks the framing loses the whole tunnel, not just a stream", async () => {
    const p = await pair();
    const [g] = await twin(p);
    const closed = once(g, "close");
    p.raw.agent.send(Buffer.from([FrameType.DATA, 0, 0]), { binary: true });
    await closed;
    assert.match(g.closeReason!.message, /tunnel protocol violation/);
    await p.close();
  });

  test("a text message is a protocol violation", async () => {
    const p = await pair();
    const [g] = await twin(p);
    const closed = once(g, "close");
    p.raw.agent.send("hello");
    await closed;
    assert.match(g.closeReason!.message, /text message/);
    await p.close();
  });

  test("a peer that ignores flow control is cut off", async () => {
    const p = await pair(16 * 1024);
    const [g, a] = await twin(p);
    g.pause();
    const closed = once(g, "close");
    // Bypass the sender's credit accounting: raw DATA frames well past the window.
    for (let i = 0; i < 40; i++) p.agent.send(encodeData(a.id, Buffer.alloc(8 * 1024)));
    await closed;
    assert.match(g.closeReason!.message, /ignored flow control/);
    await p.close();
  });

  test("heartbeats: a silent peer is dropped after three intervals", async () => {
    const { server, client, close } = await sockets();
    // The client end never answers: its socket stops reading.
    (client as unknown as { _socket: { pause(): void } })._socket.pause();
    let reason: GatehouseError | undefined;
    const gw = new Mux(server, { window: 1024, heartbeatMs: 50, onControl: () => {}, onClosed: (r) => (reason = r) });
    await waitUntil(() => gw.closed, 3000);
    assert.match(reason!.message, /no heartbeat/);
    await close();
  });
});

async function waitUntil(fn: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!fn()) {
    if (Date.now() > end) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 10));
  }
}

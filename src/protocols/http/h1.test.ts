import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { ChunkedDecoder, headerLines, HttpSyntaxError, keepAlive, parseRequestHead, parseResponseHead, requestFraming, responseFraming } from "./h1.ts";

const b = (s: string) => Buffer.from(s, "latin1");

function rejects(text: string, status: number, why?: RegExp): void {
  assert.throws(
    () => {
      const h = parseRequestHead(b(text));
      if (h) requestFraming(h);
    },
    (e: unknown) => e instanceof HttpSyntaxError && e.status === status && (!why || why.test(e.message)),
    JSON.stringify(text),
  );
}

describe("request heads", () => {
  test("a plain request: method, target, version, fields in lower case, raw names kept", () => {
    const h = parseRequestHead(b("GET /a/b?x=1 HTTP/1.1\r\nHost: gw\r\nX-Thing:  v a l \t\r\nAccept: */*\r\n\r\nBODY"))!;
    assert.equal(h.method, "GET");
    assert.equal(h.target, "/a/b?x=1");
    assert.equal(h.minor, 1);
    assert.equal(h.headers.host, "gw");
    assert.equal(h.headers["x-thing"], "v a l", "leading and trailing white space is not part of a value");
    assert.deepEqual(h.raw, ["Host", "gw", "X-Thing", "v a l", "Accept", "*/*"]);
    assert.equal(h.length, Buffer.byteLength("GET /a/b?x=1 HTTP/1.1\r\nHost: gw\r\nX-Thing:  v a l \t\r\nAccept: */*\r\n\r\n"));
    assert.deepEqual(requestFraming(h), { kind: "none" });
  });

  test("incomplete heads wait for more bytes; oversized ones are 431", () => {
    assert.equal(parseRequestHead(b("GET / HTTP/1.1\r\nHost: gw\r\n")), undefined);
    assert.equal(parseRequestHead(b("GET / HTTP/1.1\r\nHost: gw\r\n\r")), undefined);
    assert.throws(() => parseRequestHead(b(`GET / HTTP/1.1\r\nX: ${"a".repeat(200)}`), { maxHeadBytes: 100, maxHeaders: 10 }), (e: unknown) => (e as HttpSyntaxError).status === 431);
    assert.throws(() => parseRequestHead(b(`GET / HTTP/1.1\r\nHost: a\r\n${"X: 1\r\n".repeat(11)}\r\n`), { maxHeadBytes: 1000, maxHeaders: 10 }), (e: unknown) => (e as HttpSyntaxError).status === 431);
  });

  test("repeated fields are joined; Set-Cookie is a list; Cookie joins with ;", () => {
    const h = parseRequestHead(b("GET / HTTP/1.1\r\nHost: gw\r\nAccept: a\r\naccept: b\r\nCookie: x=1\r\nCookie: y=2\r\n\r\n"))!;
    assert.equal(h.headers.accept, "a, b");
    assert.equal(h.headers.cookie, "x=1; y=2");
    const r = parseResponseHead(b("HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 0\r\n\r\n"))!;
    assert.deepEqual(r.headers["set-cookie"], ["a=1", "b=2"]);
  });

  test("HTTP/1.0 and absolute-form targets", () => {
    const h10 = parseRequestHead(b("GET /x HTTP/1.0\r\n\r\n"))!;
    assert.equal(h10.minor, 0);
    assert.equal(keepAlive(0, h10.headers), false);
    assert.equal(keepAlive(0, parseRequestHead(b("GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"))!.headers), true);
    assert.equal(keepAlive(1, parseRequestHead(b("GET /x HTTP/1.1\r\nHost: a\r\nConnection: foo, close\r\n\r\n"))!.headers), false);
    const abs = parseRequestHead(b("GET http://svc.example:8080/p/q?x HTTP/1.1\r\nHost: other\r\n\r\n"))!;
    assert.equal(abs.target, "/p/q?x");
    assert.equal(abs.authority, "svc.example:8080");
    assert.equal(parseRequestHead(b("GET http://svc.example HTTP/1.1\r\nHost: other\r\n\r\n"))!.target, "/");
    assert.equal(parseRequestHead(b("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"))!.target, "*");
  });

  test("malformed request lines and versions", () => {
    rejects("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    rejects("GET / HTTP/1.1 x\r\nHost: a\r\n\r\n", 400);
    rejects("GET /\r\nHost: a\r\n\r\n", 400);
    rejects("G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400, /method/);
    rejects("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505);
    rejects("GET / FOO/1.1\r\nHost: a\r\n\r\n", 400);
    rejects("GET /a\u0001 HTTP/1.1\r\nHost: a\r\n\r\n", 400, /control character/);
    rejects("GET ftp://x/ HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    rejects("GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    rejects("CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", 405);
    rejects("GET / HTTP/1.1\r\n\r\n", 400, /Host/);
    // A fragment has no meaning in a request; parsers disagree whether `#` ends the query.
    rejects("GET /q?action=delete# HTTP/1.1\r\nHost: a\r\n\r\n", 400, /fragment/);
    rejects("GET http://a/x#y HTTP/1.1\r\nHost: a\r\n\r\n", 400, /fragment/);
    rejects(`GET /${"a".repeat(8192)} HTTP/1.1\r\nHost: a\r\n\r\n`, 414, /longer than 8192/);
    assert.equal(parseRequestHead(b(`GET /${"a".repeat(8191)} HTTP/1.1\r\nHost: a\r\n\r\n`))!.target.length, 8192);
  });

  test("raw bytes over 0x7F in the target (a UTF-8 path as curl sends it) are taken as their percent-encoding", () => {
    const h = parseRequestHead(Buffer.concat([Buffer.from("GET /caf"), Buffer.from("é", "utf8"), Buffer.from("?q=ü HTTP/1.1\r\nHost: a\r\n\r\n")]))!;
    assert.equal(h.target, "/caf%C3%A9?q=%C3%BC");
  });

  test("lines ending in a bare LF are refused as soon as they are seen, not after a timeout", () => {
    // Incomplete by CRLF rules, so without this it would wait for a CRLFCRLF that never comes.
    assert.throws(() => parseRequestHead(b("GET / HTTP/1.1\nHost: a\n\n")), (e: unknown) => e instanceof HttpSyntaxError && e.status === 400 && /bare CR or LF/.test(e.message));
    assert.throws(() => parseRequestHead(b("GET / HTTP/1.1\r\nHost: a\n")), (e: unknown) => e instanceof HttpSyntaxError && e.status === 400);
    assert.equal(parseRequestHead(b("GET / HTTP/1.1\r\nHost: a\r\n")), undefined, "CRLF lines still wait for the rest");
  });

  test("header syntax that parsers disagree on is refused, never guessed", () => {
    rejects("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400, /obs-fold/);
    rejects("GET / HTTP/1.1\r\nHost: a\r\nX : a\r\n\r\n", 400, /field name/);
    rejects("GET / HTTP/1.1\r\nHost: a\r\n: a\r\n\r\n", 400);
    rejects("GET / HTTP/1.1\r\nHost: a\r\nno colon\r\n\r\n", 400);
    rejects("GET / HTTP/1.1\r\nHost: a\r\nX: a\nY: b\r\n\r\n", 400, /bare CR or LF/);
    rejects("GET / HTTP/1.1\r\nHost: a\r\nX: a\rY: b\r\n\r\n", 400, /bare CR or LF/);
    rejects("GET / HTTP/1.1\nHost: a\r\n\r\n", 400, /bare CR or LF/);
    rejects("GET / HTTP/1.1\r\nHost: a\r\nX: a\u0000b\r\n\r\n", 400, /control/);
    rejects("GET / HTTP/1.1\r\nHost: a\r\nX: a\u001bb\r\n\r\n", 400, /control/);
    rejects("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, /host/);
    rejects("GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer x\r\nAuthorization: Bearer y\r\n\r\n", 400, /authorization/);
    // obs-text in a value is allowed (and kept byte for byte)
    assert.equal(parseRequestHead(b("GET / HTTP/1.1\r\nHost: a\r\nX: caf\u00e9\r\n\r\n"))!.headers.x, "caf\u00e9");
  });

  test("request body framing: smuggling shapes are errors", () => {
    const framing = (t: string) => requestFraming(parseRequestHead(b(t))!);
    assert.deepEqual(framing("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n"), { kind: "length", length: 12 });
    assert.deepEqual(framing("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"), { kind: "none" });
    assert.deepEqual(framing("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"), { kind: "length", length: 5 });
    assert.deepEqual(framing("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n"), { kind: "chunked" });
    rejects("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400, /disagree/);
    rejects("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400, /both/);
    rejects("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400, /both/);
    rejects("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", 400);
    rejects("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", 400);
    rejects("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", 400);
    rejects("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999\r\n\r\n", 400);
    rejects("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 400, /final/);
    rejects("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501);
    rejects("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400, /only once/);
    rejects("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", 400);
    rejects("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400, /1\.0/);
  });
});

describe("response heads and framing", () => {
  test("status line, interim and bodiless responses", () => {
    const r = parseResponseHead(b("HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nabc"))!;
    assert.equal(r.status, 404);
    assert.equal(r.reason, "Not Found");
    assert.deepEqual(responseFraming(r, "GET"), { kind: "length", length: 3 });
    assert.deepEqual(responseFraming(r, "HEAD"), { kind: "none" });
    assert.equal(parseResponseHead(b("HTTP/1.1 204\r\n\r\n"))!.status, 204, "the reason phrase may be absent");
    for (const s of ["204", "304", "100"]) assert.deepEqual(responseFraming(parseResponseHead(b(`HTTP/1.1 ${s} X\r\nContent-Length: 9\r\n\r\n`))!, "GET"), { kind: "none" });
    assert.deepEqual(responseFraming(parseResponseHead(b("HTTP/1.1 200 OK\r\n\r\n"))!, "GET"), { kind: "close" });
    assert.deepEqual(responseFraming(parseResponseHead(b("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"))!, "GET"), { kind: "chunked" });
  });

  test("a target's ambiguous or broken framing is a 502, never a guess", () => {
    const bad = (t: string) =>
      assert.throws(
        () => responseFraming(parseResponseHead(b(t))!, "GET"),
        (e: unknown) => (e as HttpSyntaxError).status === 502,
        t,
      );
    bad("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n");
    bad("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n");
    bad("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n");
    bad("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (const t of ["HTTP/1.1 20 OK\r\n\r\n", "HTTP/1.1 2000 OK\r\n\r\n", "HTTP/1.1\r\n\r\n", "ICY 200 OK\r\n\r\n"]) assert.throws(() => parseResponseHead(b(t)), HttpSyntaxError, t);
  });
});

function decodeAll(input: Buffer, splits: number[] = []): { data: string; used: number } {
  const d = new ChunkedDecoder();
  const parts: Buffer[] = [];
  let pos = 0;
  const cuts = [...splits.filter((s) => s > 0 && s < input.length).sort((x, y) => x - y), input.length];
  let used = 0;
  for (const cut of cuts) {
    if (d.done) break;
    const piece = input.subarray(pos, cut);
    const n = d.feed(piece, 0, (s) => parts.push(Buffer.from(s)));
    used += n;
    pos = cut;
  }
  assert.ok(d.done, "the body ended");
  return { data: Buffer.concat(parts).toString("latin1"), used };
}

describe("chunked transfer coding", () => {
  test("chunks, extensions and trailers; the bytes after the body are left alone", () => {
    const body = b("5\r\nhello\r\n6;name=val;x\r\n world\r\nA \t;ext\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\nGET /next");
    const r = decodeAll(body);
    assert.equal(r.data, "hello world0123456789");
    assert.equal(body.subarray(r.used).toString(), "GET /next");
  });

  test("malformed chunking is an error", () => {
    for (const t of ["zz\r\nabc\r\n0\r\n\r\n", "\r\n", "5\nhello\r\n0\r\n\r\n", "5\r\nhelloX\r\n0\r\n\r\n", "5\r\nhello\rX0\r\n\r\n", "5 x\r\nhello\r\n0\r\n\r\n", "5;a\u0001\r\nhello\r\n0\r\n\r\n", "0\r\nTrailer\nX\r\n\r\n", "fffffffffffffff\r\n", "-1\r\n", "0x5\r\n"]) {
      assert.throws(() => new ChunkedDecoder().feed(b(t), 0, () => {}), HttpSyntaxError, JSON.stringify(t));
    }
  });

  test("any split of the input decodes to the same data and the same end (property)", () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ minLength: 1, maxLength: 40 }), { maxLength: 6 }), fc.array(fc.nat(400), { maxLength: 8 }), fc.boolean(), (chunks, splits, ext) => {
        let enc = "";
        for (const c of chunks) enc += `${c.length.toString(16)}${ext ? ";e=1" : ""}\r\n${Buffer.from(c).toString("latin1")}\r\n`;
        enc += "0\r\n\r\ntail";
        const input = b(enc);
        const whole = decodeAll(input);
        const split = decodeAll(input, splits);
        assert.equal(split.data, whole.data);
        assert.equal(whole.data, Buffer.concat(chunks.map((c) => Buffer.from(c))).toString("latin1"));
        assert.equal(input.subarray(whole.used).toString(), "tail");
        assert.equal(split.used, whole.used);
      }),
      { numRuns: 300 },
    );
  });

  test("arbitrary bytes never crash the decoder: they decode or throw HttpSyntaxError (property)", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        try {
          new ChunkedDecoder().feed(Buffer.from(bytes), 0, () => {});
        } catch (e) {
          assert.ok(e instanceof HttpSyntaxError);
        }
      }),
      { numRuns: 500 },
    );
  });
});

describe("request-head parsing never crashes", () => {
  test("arbitrary heads parse or throw HttpSyntaxError (property)", () => {
    const piece = fc.constantFrom("GET", "POST", " ", "/", "HTTP/1.1", "HTTP/1.0", "\r\n", "\n", "\r", ":", "Host", "Content-Length", "Transfer-Encoding", "chunked", "5", "\t", "\u0000", "a", "\u00ff");
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 40 }), (parts) => {
        const text = `${parts.join("")}\r\n\r\n`;
        try {
          const h = parseRequestHead(b(text));
          if (h) {
            requestFraming(h);
            // What parsed is consistent: no CR/LF or control characters reached a name or value.
            for (const v of h.raw) assert.ok(!/[\r\n\u0000]/.test(v));
          }
        } catch (e) {
          assert.ok(e instanceof HttpSyntaxError, String(e));
        }
      }),
      { numRuns: 1000 },
    );
  });
});

describe("writing heads", () => {
  test("values with CR, LF or NUL are refused (no response splitting through a header)", () => {
    assert.equal(headerLines({ a: "1", b: ["x", "y"], c: 3, d: undefined }), "a: 1\r\nb: x\r\nb: y\r\nc: 3\r\n");
    assert.throws(() => headerLines({ a: "x\r\nInjected: 1" }), HttpSyntaxError);
    assert.throws(() => headerLines({ a: ["ok", "x\nb"] }), HttpSyntaxError);
    assert.throws(() => headerLines({ "bad name": "x" }), HttpSyntaxError);
  });

});

describe("header field names", () => {
  test("many distinct ones (past the name cache's bound) are all checked and lower-cased", () => {
    for (let i = 0; i < 1500; i++) {
      const name = `X-Made-Up-Name-${i}-${"Q".repeat(i % 70)}`;
      const h = parseRequestHead(Buffer.from(`GET / HTTP/1.1\r\nHost: a\r\n${name}: v${i}\r\nContent-TYPE: text/plain\r\n\r\n`))!;
      assert.equal(h.headers[name.toLowerCase()], `v${i}`);
      assert.equal(h.headers["content-type"], "text/plain");
      assert.deepEqual(h.raw.slice(2, 4), [name, `v${i}`]);
    }
    assert.throws(() => parseRequestHead(Buffer.from("GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n")), /invalid header field name/);
  });
});

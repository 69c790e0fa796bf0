import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { normalizeTarget, PathRejected, withoutFirstSegment } from "./normalize.ts";

test("every trick lands on the canonical path", () => {
  const cases: Array<[string, string]> = [
    ["/deploy", "/deploy"],
    ["/a/../deploy", "/deploy"],
    ["/a/b/../../deploy", "/deploy"],
    ["/./deploy", "/deploy"],
    ["//deploy", "/deploy"],
    ["///a//b///", "/a/b/"],
    ["/x/%2e%2e/deploy", "/deploy"],
    ["/x/%2E%2E/deploy", "/deploy"],
    ["/x/.%2e/deploy", "/deploy"],
    ["/%64eploy", "/deploy"],
    ["/de%70loy", "/deploy"],
    ["/job/a%20b/build", "/job/a b/build"],
    ["/deploy?force=1", "/deploy"],
    ["/caf%C3%A9", "/café"],
    ["/", "/"],
  ];
  for (const [input, path] of cases) assert.equal(normalizeTarget(input).path, path, input);
});

test("what cannot be made canonical is refused", () => {
  for (const bad of ["/%2564eploy", "/a%2Fb", "/a%2fb", "/a\\b", "/a%5Cb", "/a%00b", "/a%0Ab", "/%zz", "/%4", "/..", "/a/../../b", "/%C3", "deploy", "http://x/deploy", "*", "/a?b\u0000", "/a?x=1%00"]) {
    assert.throws(() => normalizeTarget(bad), PathRejected, bad);
  }
});

test("the forwarded target is canonical and judged again gives the same path", () => {
  const n = normalizeTarget("/a/../x%20y/%7Euser/./z?q=%2e%2e");
  assert.equal(n.forward, "/x%20y/~user/z?q=%2e%2e");
  assert.equal(n.query, "q=%2e%2e");
  fc.assert(
    fc.property(fc.array(fc.oneof(fc.constantFrom("..", ".", "", "%2e", "%2E%2e", "a", "B", "%41", "é", "%20", "~"), fc.string({ maxLength: 4 })), { maxLength: 8 }), (segs) => {
      let first: ReturnType<typeof normalizeTarget>;
      try {
        first = normalizeTarget(`/${segs.join("/")}`);
      } catch (e) {
        assert.ok(e instanceof PathRejected);
        return;
      }
      const again = normalizeTarget(first.forward);
      assert.equal(again.path, first.path, "idempotent: the target sees the judged path");
      assert.ok(!first.segments.includes("..") && !first.segments.includes(".") && !first.segments.includes(""));
    }),
    { numRuns: 3000 },
  );
});

test("the target after the connection's segment is the canonical rest, query included as sent", () => {
  const cases: Array<[string, string, string]> = [
    ["/svc/status", "/status", "/status"],
    ["/svc?x=1", "/", "/?x=1"],
    ["/svc/a?next=/b/c", "/a", "/a?next=/b/c"],
    ["/svc/", "/", "/"],
    ["/svc/a/", "/a/", "/a/"],
    ["/s%20c/a%20b?", "/a b", "/a%20b?"],
    ["/svc/../other/x", "/x", "/x"],
  ];
  for (const [input, path, forward] of cases) {
    const r = withoutFirstSegment(normalizeTarget(input));
    assert.deepEqual([r.path, r.forward], [path, forward], input);
  }
  fc.assert(
    fc.property(fc.array(fc.oneof(fc.constantFrom("..", ".", "", "%2e", "a", "B", "%41", "é", "%20", "~", "x?y=/z"), fc.string({ maxLength: 4 })), { minLength: 1, maxLength: 8 }), (segs) => {
      let t: ReturnType<typeof normalizeTarget>;
      try {
        t = normalizeTarget(`/${segs.join("/")}`);
      } catch {
        return;
      }
      if (!t.segments.length) return;
      const rest = withoutFirstSegment(t);
      assert.deepEqual(normalizeTarget(rest.forward), rest, "the same as normalizing the rest");
      assert.deepEqual(rest.segments, t.segments.slice(1));
    }),
    { numRuns: 3000 },
  );
});

test("an already-canonical path takes the short way to the same result", () => {
  const seg = fc.stringMatching(/^[A-Za-z0-9\-._~!$&'()*+,;=:@]{1,6}$/);
  fc.assert(
    fc.property(fc.array(seg, { minLength: 1, maxLength: 6 }), fc.boolean(), fc.option(fc.stringMatching(/^[a-z0-9=&/%.]{0,8}$/), { nil: undefined }), (segs, slash, query) => {
      const path = `/${segs.join("/")}${slash ? "/" : ""}`;
      const target = query === undefined ? path : `${path}?${query}`;
      let direct: ReturnType<typeof normalizeTarget>;
      try {
        direct = normalizeTarget(target);
      } catch (e) {
        assert.ok(e instanceof PathRejected);
        assert.throws(() => normalizeTarget(`/x/..${target}`), PathRejected);
        return;
      }
      // `/x/..` first forces the segment-by-segment walk; it cancels out.
      assert.deepEqual(direct, normalizeTarget(`/x/..${target}`), target);
    }),
    { numRuns: 3000 },
  );
});

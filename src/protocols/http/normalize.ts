// The one canonical form of an HTTP request target, so a rule on `/deploy` cannot be dodged with
// `/a/../deploy`, `/%2e%2e/deploy`, `//deploy`, `/%2564eploy` or `/./deploy`. Policy judges the
// canonical path and the gateway forwards exactly that path (re-encoded), so the target runs what
// was judged. Pure.
//
// Rules (docs/policy.md, "HTTP paths"):
//  - only origin-form targets (`/path?query`); no absolute-form, authority-form or `*`;
//  - percent-encodings are decoded once, as UTF-8; what still looks percent-encoded after that is
//    double encoding and is refused, as are encoded `/` (%2F) and `\` (raw or %5C), NUL and other
//    control characters, and invalid UTF-8;
//  - empty segments (`//`) collapse, `.` segments vanish, `..` removes the previous segment; a `..`
//    above the root is refused;
//  - the query string is kept as sent (parameters are matched after decoding).
//
// Never: forward a path other than the one that was judged.

import { MAX_TARGET } from "./h1.ts";

export class PathRejected extends Error {
  constructor(readonly reason: string) {
    super(reason);
    this.name = "PathRejected";
  }
}

export interface NormalizedTarget {
  /** Decoded, canonical path: starts with `/`, no empty, `.` or `..` segments. */
  path: string;
  segments: string[];
  /** The query string as sent, without `?` ("" when none). */
  query: string;
  /** The canonical path re-encoded for the wire, plus the query. */
  forward: string;
}

const HEX = /^[0-9A-Fa-f]{2}$/;
/** A segment of only these characters is already canonical: decoding and re-encoding leave it as is. */
const PLAIN = /^[A-Za-z0-9\-._~!$&'()*+,;=:@]*$/;
const UTF8 = new TextDecoder("utf-8", { fatal: true });

function decodeSegment(raw: string): string {
  if (PLAIN.test(raw)) return raw;
  if (raw.includes("\\")) throw new PathRejected("a backslash in the path");
  const bytes: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (c === "%") {
      const h = raw.slice(i + 1, i + 3);
      if (!HEX.test(h)) throw new PathRejected(`an invalid percent-encoding "%${h}"`);
      const b = Number.parseInt(h, 16);
      if (b === 0x2f) throw new PathRejected("an encoded slash (%2F) in the path");
      if (b === 0x5c) throw new PathRejected("an encoded backslash (%5C) in the path");
      bytes.push(b);
      i += 2;
    } else {
      const code = c.charCodeAt(0);
      if (code < 0x20 || code === 0x7f) throw new PathRejected("a control character in the path");
      for (const b of Buffer.from(c, "utf8")) bytes.push(b);
    }
  }
  const buf = Buffer.from(bytes);
  let s: string;
  try {
    s = UTF8.decode(buf);
  } catch {
    throw new PathRejected("the path is not valid UTF-8 after decoding");
  }
  for (let i = 0; i < s.length; i++) {
    const code = s.charCodeAt(i);
    if (code < 0x20 || code === 0x7f) throw new PathRejected("a control character in the path");
  }
  if (/%[0-9A-Fa-f]{2}/.test(s)) throw new PathRejected("a double percent-encoding in the path");
  return s;
}

/** Characters left as they are in a re-encoded segment (RFC 3986 pchar minus "%"). */
const KEEP = /[A-Za-z0-9\-._~!$&'()*+,;=:@]/;

function encodeSegment(s: string): string {
  if (PLAIN.test(s)) return s;
  let out = "";
  for (const ch of s) {
    if (KEEP.test(ch)) out += ch;
    else for (const b of Buffer.from(ch, "utf8")) out += `%${b.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

/**
 * A path already in canonical form: non-empty segments of characters that decode and re-encode to
 * themselves, none of them `.` or `..`, an optional trailing slash. Most requests; they skip the
 * segment-by-segment walk (the result is the same: normalize.test.ts checks it on generated paths).
 */
const CANONICAL_PATH = /^(?:\/(?!\.\.?(?:\/|$))[A-Za-z0-9\-._~!$&'()*+,;=:@]+)+\/?$/;

export function normalizeTarget(target: string): NormalizedTarget {
  if (!target.startsWith("/")) throw new PathRejected("the request target must be a path starting with /");
  if (target.length > MAX_TARGET) throw new PathRejected(`the request target is longer than ${MAX_TARGET} characters`);
  const q = target.indexOf("?");
  const rawPath = q < 0 ? target : target.slice(0, q);
  const query = q < 0 ? "" : target.slice(q + 1);
  if (/[\u0000-\u001f\u007f]/.test(query)) throw new PathRejected("a control character in the query");
  // An encoded NUL ends a value early for a target written in C (or a CGI), not for the gate.
  if (query.includes("%00")) throw new PathRejected("an encoded NUL (%00) in the query");
  if (CANONICAL_PATH.test(rawPath)) {
    const trailing = rawPath.endsWith("/");
    const segments = (trailing ? rawPath.slice(1, -1) : rawPath.slice(1)).split("/");
    return { path: rawPath, segments, query, forward: target };
  }
  const out: string[] = [];
  for (const rawSeg of rawPath.split("/").slice(1)) {
    const seg = decodeSegment(rawSeg);
    if (seg === "" || seg === ".") continue;
    if (seg === "..") {
      if (!out.length) throw new PathRejected("`..` above the root");
      out.pop();
      continue;
    }
    out.push(seg);
  }
  const trailing = rawPath.length > 1 && rawPath.endsWith("/") && out.length > 0;
  const path = `/${out.join("/")}${trailing ? "/" : ""}`;
  const forward = `/${out.map(encodeSegment).join("/")}${trailing ? "/" : ""}${q < 0 ? "" : `?${query}`}`;
  return { path, segments: out, query, forward };
}

/**
 * The target relative to its first segment (the connection named in the path): `/svc/a/b?q=/x`
 * → `/a/b?q=/x`. The same as normalizing that rest, without doing it twice.
 */
export function withoutFirstSegment(t: NormalizedTarget): NormalizedTarget {
  const first = t.segments[0];
  if (first === undefined) return t;
  const segments = t.segments.slice(1);
  const trailing = segments.length > 0 && t.path.length > 1 && t.path.endsWith("/");
  // The forward form starts with `/` and the first segment as encoded; what follows is the rest.
  const after = t.forward.slice(1 + encodeSegment(first).length);
  return { path: `/${segments.join("/")}${trailing ? "/" : ""}`, segments, query: t.query, forward: after.startsWith("/") ? after : `/${after}` };
}

// What an HTTP request body is to `json` rule conditions: a JSON document, certainly not JSON, or
// JSON that cannot be judged reliably. Targets read bodies more loosely than a strict gate would
// — many parse JSON whatever the Content-Type says, skip a byte-order mark, take UTF-16, or keep
// the first (or last) of two equal keys — so a body is taken as JSON whenever a target might,
// and where the gate cannot know what the target will see, the answer is "unknown": `json`
// conditions then match for deny and review and never cover for allow (src/policy/engine.ts).
// Pure.

/** JSON bodies up to this size are parsed; a larger one that may be JSON is "unknown". */
export const JSON_PARSE_LIMIT = 8 << 20;

export type JsonBody = { kind: "json"; doc: unknown } | { kind: "not-json" } | { kind: "unknown"; why: string };

const JSON_TYPE = /^\s*application\/([\w.+-]*\+)?json\s*(;|$)/i;

/**
 * `start`: the body (or, when `complete` is false, only its start — the rest was not read).
 * `contentType`: the request's Content-Type, if any.
 */
export function readJsonBody(start: Buffer, complete: boolean, contentType: string | undefined): JsonBody {
  const declared = contentType !== undefined && JSON_TYPE.test(contentType);
  if (!start.length) return complete ? { kind: "not-json" } : declared ? { kind: "unknown", why: "the body was not read" } : { kind: "not-json" };
  const enc = encodingOf(start, contentType);
  if (enc === "unsupported") {
    // UTF-32 (or a binary start that looks like it, as many media formats do): JSON only if its
    // first character opens an object or array.
    return looksLikeJson32(start) ? { kind: "unknown", why: "a JSON text in an encoding the gate does not read (UTF-32)" } : { kind: "not-json" };
  }
  const looks = looksLikeJson(start, enc);
  if (!looks && !declared) return { kind: "not-json" };
  if (!complete) return { kind: "unknown", why: "the body was not read whole" };
  if (start.length > JSON_PARSE_LIMIT) return { kind: "unknown", why: `a JSON body over ${JSON_PARSE_LIMIT} bytes is not parsed` };
  let text: string;
  try {
    text = DECODERS[enc.name].decode(start);
  } catch {
    // Not valid text. Lenient parsers (Express through iconv-lite, Go's encoding/json) put U+FFFD
    // for the bad bytes and parse on: if that makes JSON, the target may act on it.
    try {
      JSON.parse(new TextDecoder(enc.name).decode(start));
    } catch {
      return { kind: "not-json" };
    }
    return { kind: "unknown", why: `the body is JSON only with its invalid ${enc.name} replaced` };
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    // Declared JSON, or shaped like it, but not strict JSON: a lenient target may still read it.
    return { kind: "unknown", why: "the body is not strict JSON" };
  }
  const dup = duplicateKey(text);
  if (dup !== undefined) return { kind: "unknown", why: `the key ${JSON.stringify(dup).slice(0, 80)} appears twice in one object (targets differ in which one they keep)` };
  return { kind: "json", doc };
}

type Encoding = { name: "utf-8" | "utf-16le" | "utf-16be"; bom: number };

/** Strict decoders (a byte-order mark is dropped). */
const DECODERS = { "utf-8": new TextDecoder("utf-8", { fatal: true }), "utf-16le": new TextDecoder("utf-16le", { fatal: true }), "utf-16be": new TextDecoder("utf-16be", { fatal: true }) };

/** The body's encoding: its byte-order mark, else the charset parameter, else RFC 4627's zero-byte pattern, else UTF-8. */
function encodingOf(b: Buffer, contentType: string | undefined): Encoding | "unsupported" {
  if (b.length >= 4 && ((b[0] === 0 && b[1] === 0 && b[2] === 0xfe && b[3] === 0xff) || (b[0] === 0xff && b[1] === 0xfe && b[2] === 0 && b[3] === 0))) return "unsupported";
  if (b.length >= 3 && b[0] === 0xef && b[1] === 0xbb && b[2] === 0xbf) return { name: "utf-8", bom: 3 };
  if (b.length >= 2 && b[0] === 0xff && b[1] === 0xfe) return { name: "utf-16le", bom: 2 };
  if (b.length >= 2 && b[0] === 0xfe && b[1] === 0xff) return { name: "utf-16be", bom: 2 };
  const charset = /;\s*charset\s*=\s*"?([\w-]+)/i.exec(contentType ?? "")?.[1]?.toLowerCase();
  if (charset === "utf-32" || charset === "utf-32le" || charset === "utf-32be") return "unsupported";
  if (charset === "utf-16le") return { name: "utf-16le", bom: 0 };
  if (charset === "utf-16be" || charset === "utf-16") return { name: b.length >= 2 && b[0] !== 0 && b[1] === 0 ? "utf-16le" : "utf-16be", bom: 0 };
  if (b.length >= 4 && b[0] === 0 && b[1] === 0) return "unsupported"; // 00 00 00 xx: UTF-32BE
  if (b.length >= 4 && b[1] === 0 && b[2] === 0 && b[3] === 0) return "unsupported"; // xx 00 00 00: UTF-32LE
  if (b.length >= 2 && b[0] === 0 && b[1] !== 0) return { name: "utf-16be", bom: 0 };
  if (b.length >= 2 && b[0] !== 0 && b[1] === 0) return { name: "utf-16le", bom: 0 };
  return { name: "utf-8", bom: 0 };
}

/** Whether the first character after the byte-order mark and white space opens a JSON object or array. */
function looksLikeJson(b: Buffer, enc: Encoding): boolean {
  const step = enc.name === "utf-8" ? 1 : 2;
  const lo = enc.name === "utf-16be" ? 1 : 0;
  for (let i = enc.bom; i + step - 1 < b.length; i += step) {
    if (step === 2 && b[i + 1 - lo] !== 0) return false; // a character outside ASCII first
    const c = b[i + lo]!;
    if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) continue;
    return c === 0x7b || c === 0x5b;
  }
  return false;
}

/** Whether a UTF-32 text (either byte order, with or without its mark) starts, after white space, with `{` or `[`. */
function looksLikeJson32(b: Buffer): boolean {
  // 00 00 FE FF and 00 00 00 xx are big-endian; FF FE 00 00 and xx 00 00 00 little-endian.
  const le = b[0] !== 0;
  let i = (b[0] === 0xff && b[1] === 0xfe) || (b[0] === 0 && b[1] === 0 && b[2] === 0xfe && b[3] === 0xff) ? 4 : 0;
  for (; i + 3 < b.length; i += 4) {
    const c = le ? b.readUInt32LE(i) : b.readUInt32BE(i);
    if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) continue;
    return c === 0x7b || c === 0x5b;
  }
  return false;
}

/** The first key that appears twice in one object of a valid JSON text, if any. */
export function duplicateKey(text: string): string | undefined {
  // Objects being read (their keys so far); null for an array.
  const stack: (Set<string> | null)[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x7b) stack.push(new Set());
    else if (c === 0x5b) stack.push(null);
    else if (c === 0x7d || c === 0x5d) stack.pop();
    else if (c === 0x22) {
      let j = i + 1;
      let escaped = false;
      for (; j < text.length; j++) {
        const d = text.charCodeAt(j);
        if (d === 0x5c) {
          escaped = true;
          j++;
        } else if (d === 0x22) break;
      }
      const raw = text.slice(i, j + 1);
      i = j;
      // A key is a string followed by a colon.
      let k = j + 1;
      while (k < text.length && (text[k] === " " || text[k] === "\t" || text[k] === "\n" || text[k] === "\r")) k++;
      if (text[k] !== ":") continue;
      const keys = stack.at(-1);
      if (!keys) continue;
      const key = escaped ? (JSON.parse(raw) as string) : raw.slice(1, -1);
      if (keys.has(key)) return key;
      keys.add(key);
    }
  }
  return undefined;
}

// An HTTP request as an Operation: method, normalized path, decoded query, headers (without
// credentials), body hash and, for JSON bodies, the parsed document; git smart-HTTP requests also
// carry what they do to which refs. Pure; throws PathRejected / GitProtocolError for requests that
// cannot be described (they are refused, never judged on a guess).

import { hash } from "node:crypto";
import { GatehouseError } from "../../domain/errors.ts";
import type { HttpDescription, Operation } from "../../domain/operation.ts";
import { gitService, parseReceivePack, type ReceivePackCommands } from "./git.ts";
import { readJsonBody } from "./json-body.ts";
import { type NormalizedTarget, normalizeTarget } from "./normalize.ts";

/** Headers that are credentials or hop-by-hop: never part of an Operation. */
export const SENSITIVE_HEADERS = new Set(["authorization", "proxy-authorization", "cookie", "set-cookie", "x-gatehouse-token"]);

export interface HttpRequestInput {
  method: string;
  /** Request target relative to the connection, e.g. `/job/x/build?delay=0`. */
  target: string;
  /** `target` already normalized (normalize.ts), if the caller did. */
  normalized?: NormalizedTarget | undefined;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  /** The body with its Content-Encoding (gzip) undone, when it had one: what JSON and git parsing read. */
  decoded?: Buffer;
  /** The connection speaks git smart HTTP. */
  git: boolean;
  /** The body is larger than the gate reads: `body` is only its start, the rest streams. */
  streamed?: { declaredBytes: number | undefined };
}

function decodeQuery(query: string): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  if (!query) return out;
  for (const [k, v] of new URLSearchParams(query)) {
    const list = out[k] ?? [];
    list.push(v);
    out[k] = list;
  }
  return out;
}

export interface DescribedHttp extends Operation {
  http: HttpDescription;
  /** The canonical target to forward (re-encoded path and query). */
  forward: string;
  /** A git push's parsed commands (where the pack starts, the client's capabilities). */
  receivePack?: ReceivePackCommands;
}

const EMPTY_SHA256 = hash("sha256", "", "hex");

/** Headers with which frameworks (Rails, Laravel, Spring, ASP.NET…) override the request's method. */
export const METHOD_OVERRIDE_HEADERS = ["x-http-method-override", "x-http-method", "x-method-override"];
/** Headers that change how the target reads the body: bound to an approval with it. */
const BINDING_HEADERS = ["content-type", "content-encoding"];
/** Bodies up to this size that are UTF-8 text are shown to reviewers (the first BODY_TEXT_CHARS of them). */
const BODY_TEXT_BYTES = 64 * 1024;
const BODY_TEXT_CHARS = 4096;
const STRICT_UTF8 = new TextDecoder("utf-8", { fatal: true });

/**
 * The body as text for a reviewer, when it is short UTF-8 text (no control characters but tab and
 * line ends). Not part of describeHttp: only an operation that goes to review needs it (the
 * engine adds it then), and most requests are allowed.
 */
export function bodyText(b: Buffer): string | undefined {
  if (!b.length || b.length > BODY_TEXT_BYTES) return undefined;
  let s: string;
  try {
    s = STRICT_UTF8.decode(b);
  } catch {
    return undefined;
  }
  if (/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/.test(s)) return undefined;
  return s.length > BODY_TEXT_CHARS ? `${s.slice(0, BODY_TEXT_CHARS)}…` : s;
}

export function describeHttp(input: HttpRequestInput): DescribedHttp {
  const method = input.method.toUpperCase();
  const t = input.normalized ?? normalizeTarget(input.target);
  const headers: Record<string, string> = {};
  for (const k in input.headers) {
    const v = input.headers[k];
    const name = k.toLowerCase();
    if (v === undefined || SENSITIVE_HEADERS.has(name)) continue;
    headers[name] = Array.isArray(v) ? v.join(", ") : v;
  }
  const query = decodeQuery(t.query);
  const streamed = input.streamed;
  const bodySha256 = streamed ? "" : input.body.length ? hash("sha256", input.body, "hex") : EMPTY_SHA256;
  const http: HttpDescription = { method, path: t.path, query, headers, bodyBytes: streamed ? (streamed.declaredBytes ?? -1) : input.body.length, bodySha256 };
  if (streamed) http.bodyStreamed = true;
  const content = input.decoded ?? input.body;
  // The body as `json` conditions see it. A streamed body with a Content-Encoding has only its
  // compressed start here: whether it is JSON cannot be told.
  const coding = headers["content-encoding"]?.trim().toLowerCase();
  const json = streamed && coding && coding !== "identity" ? ({ kind: "unknown", why: "the body was not read whole and is compressed" } as const) : readJsonBody(content, !streamed, headers["content-type"]);
  if (json.kind === "json") http.json = json.doc;
  else if (json.kind === "unknown") http.jsonUnknown = json.why;
  // A method override header makes many frameworks run another method than the request line's.
  let override: string | undefined;
  for (const name of METHOD_OVERRIDE_HEADERS) if (headers[name] !== undefined) override = headers[name]!.trim().toUpperCase();
  if (override !== undefined) http.methodOverride = override;
  let text = `${method} ${t.path}${t.query ? `?${t.query}` : ""}${override !== undefined ? ` (X-HTTP-Method-Override: ${override})` : ""}`;
  let receivePack: ReceivePackCommands | undefined;
  if (input.git) {
    const g = gitService(method, t.path, query);
    if (g) {
      http.git = g;
      if (g.service === "receive-pack" && g.phase === "rpc") {
        if (streamed) throw new GatehouseError("HTTP_BODY_TOO_LARGE", "a git push is judged per ref and checked against the target's history, so it must fit in listeners.http.maxBodyBytes");
        const cmds = parseReceivePack(content);
        receivePack = cmds;
        http.git.updates = cmds.updates;
        text = `git push ${t.path.replace(/\/git-receive-pack$/, "")}\n${cmds.updates.map((u) => `${u.action} ${u.ref} ${u.old.slice(0, 12)}..${u.new.slice(0, 12)}`).join("\n")}`;
      } else if (g.service === "upload-pack") text = `git fetch ${t.path.replace(/\/(info\/refs|git-upload-pack)$/, "")}`;
    }
  }
  // The body's hash, and the fields that say how to read it, are the operation's parameters: an
  // approval covers exactly this body, read this way.
  const parameters = [streamed ? "streamed" : bodySha256];
  for (const name of BINDING_HEADERS) if (headers[name] !== undefined) parameters.push(`${name}: ${headers[name]}`);
  const op: DescribedHttp = { protocol: "http", text, parameters, http, forward: t.forward };
  if (receivePack) op.receivePack = receivePack;
  return op;
}

// git smart HTTP, as far as the gate needs it: which service a request is (fetch or push), and for
// a push the ref-update commands at the start of the receive-pack body (pkt-lines:
// "<old> <new> <ref>\0<capabilities>", …, flush "0000", then the pack). Pure.
//
// Fast-forward detection is left to the target's side (src/protocols/http/git-ancestry.ts); this
// file only parses.

import type { GitDescription, GitRefUpdate } from "../../domain/operation.ts";

export class GitProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "GitProtocolError";
  }
}

const ZERO = /^0{40}$|^0{64}$/;
const OID = /^[0-9a-f]{40}$|^[0-9a-f]{64}$/;

/** Which git service a request is, if any (path relative to the connection). */
export function gitService(method: string, path: string, query: Record<string, string[]>): Omit<GitDescription, "updates"> | undefined {
  if (method === "GET" && path.endsWith("/info/refs")) {
    // Servers differ in which of several `service` parameters they use: more than one is refused.
    if ((query.service?.length ?? 0) > 1) throw new GitProtocolError("more than one service parameter");
    const svc = query.service?.[0];
    if (svc === "git-upload-pack") return { service: "upload-pack", phase: "discovery" };
    if (svc === "git-receive-pack") return { service: "receive-pack", phase: "discovery" };
    return undefined;
  }
  if (method === "POST" && path.endsWith("/git-upload-pack")) return { service: "upload-pack", phase: "rpc" };
  if (method === "POST" && path.endsWith("/git-receive-pack")) return { service: "receive-pack", phase: "rpc" };
  return undefined;
}

export interface ReceivePackCommands {
  updates: GitRefUpdate[];
  capabilities: string[];
  /** Offset of the first byte after the commands' flush-pkt (the pack, or push options). */
  end: number;
}

/**
 * Parse the commands of a receive-pack request. Needs only the start of the body; throws
 * GitProtocolError on anything malformed (the push is then refused, never guessed at).
 */
export function parseReceivePack(body: Buffer): ReceivePackCommands {
  const updates: GitRefUpdate[] = [];
  let capabilities: string[] = [];
  let off = 0;
  for (;;) {
    if (body.length - off < 4) throw new GitProtocolError("the push ends inside its ref-update commands");
    const lenHex = body.subarray(off, off + 4).toString("latin1");
    if (!/^[0-9a-f]{4}$/.test(lenHex)) throw new GitProtocolError(`bad pkt-line length "${lenHex}"`);
    const len = Number.parseInt(lenHex, 16);
    if (len === 0) {
      off += 4;
      break;
    }
    if (len < 4 || len > 65520) throw new GitProtocolError(`pkt-line length ${len} out of range`);
    if (off + len > body.length) throw new GitProtocolError("the push ends inside a pkt-line");
    let line = body.subarray(off + 4, off + len).toString("utf8");
    off += len;
    if (line.endsWith("\n")) line = line.slice(0, -1);
    const nul = line.indexOf("\0");
    if (nul >= 0) {
      if (updates.length === 0) capabilities = line.slice(nul + 1).split(" ").filter(Boolean);
      line = line.slice(0, nul);
    }
    if (line.startsWith("shallow ")) continue;
    const m = /^(\S+) (\S+) (\S+)$/.exec(line);
    if (!m || !OID.test(m[1]!) || !OID.test(m[2]!)) throw new GitProtocolError(`not a ref-update command: "${line.slice(0, 200)}"`);
    const [, oldId, newId, ref] = m as unknown as [string, string, string, string];
    if (!ref.startsWith("refs/") || ref.includes("..") || /[\s~^:?*[\\\u0000-\u001f]/.test(ref)) throw new GitProtocolError(`invalid ref name "${ref.slice(0, 200)}"`);
    if (ZERO.test(oldId) && ZERO.test(newId)) throw new GitProtocolError(`ref ${ref}: both ids are zero`);
    const action: GitRefUpdate["action"] = ZERO.test(oldId) ? "create" : ZERO.test(newId) ? "delete" : "update";
    updates.push({ ref, old: oldId, new: newId, action });
  }
  // A body that is only a flush-pkt is git's probe before a large push (remote-curl's probe_rpc,
  // sent when the pack exceeds http.postBuffer): it changes nothing and is judged as a push to
  // the repository with no ref. Commands are required before anything else.
  if (!updates.length && off !== body.length) throw new GitProtocolError("a push without ref updates");
  return { updates, capabilities, end: off };
}

/** `refs/heads/main` → `main`, `refs/tags/v1` → `v1` (rules may use either form). */
export function shortRef(ref: string): string {
  return ref.replace(/^refs\/(heads|tags)\//, "");
}

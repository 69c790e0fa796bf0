// Telling a fast-forward push from a force push needs the target's history: the agent keeps a
// bare mirror of each git target it serves (the real `git`), fetches it before judging a push,
// indexes the pushed pack into it, and asks `git merge-base --is-ancestor old new`. Anything it
// cannot establish stays unknown — and policy treats an update not proven fast-forward as force.
//
// Credentials reach git through GIT_CONFIG_* environment variables (never the command line, which
// other users can read in /proc).

import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import type { HttpTarget } from "../domain/connection.ts";
import type { GitRefUpdate } from "../domain/operation.ts";
import type { Logger } from "../observability/logger.ts";
import type { SecretResolver } from "./secrets.ts";

interface GitResult {
  code: number;
  stderr: string;
}

function git(args: string[], opts: { env?: Record<string, string>; input?: Buffer; timeoutMs?: number } = {}): Promise<GitResult> {
  return new Promise((done) => {
    // No global or system git configuration: a host's ~/.gitconfig (an http.extraHeader that
    // would go before the target's credential, a url.insteadOf that would send it elsewhere)
    // has no say in how the agent talks to a target.
    const child = execFile("git", args, { env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/tmp", GIT_TERMINAL_PROMPT: "0", GIT_CONFIG_GLOBAL: "/dev/null", GIT_CONFIG_NOSYSTEM: "1", ...opts.env }, timeout: opts.timeoutMs ?? 60_000, maxBuffer: 1 << 20, encoding: "buffer" }, (err, _out, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === "number" ? ((err as { code: number }).code) : -1) : 0;
      done({ code, stderr: stderr.toString("utf8").slice(0, 2000) });
    });
    child.stdin?.on("error", () => {});
    child.stdin?.end(opts.input ?? Buffer.alloc(0));
  });
}

/** Skip push options (pkt-lines up to a flush) when the client asked for that capability. */
function packStart(body: Buffer, commandsEnd: number, capabilities: string[]): number {
  let off = commandsEnd;
  if (!capabilities.includes("push-options")) return off;
  while (off + 4 <= body.length) {
    const len = Number.parseInt(body.subarray(off, off + 4).toString("latin1"), 16);
    if (!Number.isFinite(len)) return -1;
    off += len === 0 ? 4 : len;
    if (len === 0) return off;
  }
  return -1;
}

export class GitMirrors {
  readonly #dir: string;
  readonly #locks = new Map<string, Promise<unknown>>();
  constructor(
    dir: string,
    private readonly secrets: SecretResolver,
    private readonly logger: Logger,
  ) {
    this.#dir = resolve(dir);
  }

  async #env(t: HttpTarget): Promise<Record<string, string>> {
    const env: Record<string, string> = {};
    let n = 0;
    const set = (k: string, v: string) => {
      env[`GIT_CONFIG_KEY_${n}`] = k;
      env[`GIT_CONFIG_VALUE_${n}`] = v;
      n++;
    };
    if (t.auth) {
      const secret = await this.secrets.resolve(t.auth.secret);
      const header = t.auth.type === "bearer" ? `Authorization: Bearer ${secret}` : t.auth.type === "basic" ? `Authorization: Basic ${Buffer.from(`${t.auth.username ?? ""}:${secret}`).toString("base64")}` : `${t.auth.header}: ${secret}`;
      set("http.extraHeader", header);
    }
    if (t.ca) set("http.sslCAInfo", t.ca.replace(/^file:/, ""));
    env.GIT_CONFIG_COUNT = String(n);
    return env;
  }

  /**
   * Set `fastForward` on each `update` of a push to `repoPath` (relative to the target URL). The
   * push body is the receive-pack request: commands, then (maybe) push options, then the pack.
   */
  async classify(name: string, t: HttpTarget, repoPath: string, updates: GitRefUpdate[], body: Buffer, commandsEnd: number, capabilities: string[]): Promise<void> {
    const todo = updates.filter((u) => u.action === "update");
    if (!todo.length) return;
    const mirror = join(this.#dir, name, `${createHash("sha256").update(repoPath).digest("hex").slice(0, 24)}.git`);
    const prev = this.#locks.get(mirror) ?? Promise.resolve();
    const run = prev.then(() => this.#classify(mirror, t, repoPath, todo, body, commandsEnd, capabilities)).catch((e) => this.logger.warn({ connection: name, err: (e as Error).message }, "cannot tell fast-forward pushes from force pushes"));
    this.#locks.set(mirror, run);
    await run;
    if (this.#locks.get(mirror) === run) this.#locks.delete(mirror);
  }

  async #classify(mirror: string, t: HttpTarget, repoPath: string, todo: GitRefUpdate[], body: Buffer, commandsEnd: number, capabilities: string[]): Promise<void> {
    if (!existsSync(mirror)) {
      mkdirSync(mirror, { recursive: true, mode: 0o700 });
      const init = await git(["init", "--bare", "--quiet", mirror]);
      if (init.code !== 0) throw new Error(`git init failed: ${init.stderr}`);
    }
    const env = await this.#env(t);
    const url = `${t.url.replace(/\/$/, "")}${repoPath}`;
    const fetched = await git(["-C", mirror, "fetch", "--quiet", "--no-tags", "--prune", url, "+refs/*:refs/*"], { env, timeoutMs: 120_000 });
    if (fetched.code !== 0) throw new Error(`git fetch of the target failed: ${fetched.stderr.replace(/Authorization:[^\n]*/gi, "Authorization: ***")}`);
    const start = packStart(body, commandsEnd, capabilities);
    if (start >= 0 && body.subarray(start, start + 4).toString("latin1") === "PACK") {
      const indexed = await git(["-C", mirror, "index-pack", "--stdin", "--fix-thin"], { input: body.subarray(start), timeoutMs: 120_000 });
      if (indexed.code !== 0) throw new Error(`the pushed pack does not index: ${indexed.stderr}`);
    }
    for (const u of todo) {
      const r = await git(["-C", mirror, "merge-base", "--is-ancestor", u.old, u.new]);
      u.fastForward = r.code === 0 ? true : r.code === 1 ? false : undefined;
    }
  }
}

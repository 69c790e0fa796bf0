// A git smart-HTTP target for tests: `git http-backend` as CGI behind Basic auth that only the
// agent's injected credential passes, and a seeded bare repository.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { join } from "node:path";
import { runProcess } from "./clients.ts";

export const REPO_SECRET = "repo-secret-only-the-agent-has";

/** A git smart-HTTP server: `git http-backend` as CGI, behind Basic auth for git-bot. */
export async function gitServer(root: string): Promise<{ server: Server; url: string }> {
  const expected = `Basic ${Buffer.from(`git-bot:${REPO_SECRET}`).toString("base64")}`;
  const server = createServer((req, res) => {
    if (req.headers.authorization !== expected) {
      res.writeHead(401, { "www-authenticate": 'Basic realm="git"' });
      res.end();
      return;
    }
    const url = new URL(req.url ?? "/", "http://x");
    const child = spawn("git", ["http-backend"], {
      env: { PATH: process.env.PATH, GIT_PROJECT_ROOT: root, GIT_HTTP_EXPORT_ALL: "1", PATH_INFO: decodeURIComponent(url.pathname), QUERY_STRING: url.search.slice(1), REQUEST_METHOD: req.method, CONTENT_TYPE: req.headers["content-type"] ?? "", HTTP_CONTENT_ENCODING: req.headers["content-encoding"] ?? "", REMOTE_USER: "git-bot", REMOTE_ADDR: "127.0.0.1", GIT_HTTP_MAX_REQUEST_BUFFER: "100M" },
    });
    req.pipe(child.stdin);
    child.stdin.on("error", () => {});
    let head = Buffer.alloc(0);
    let done = false;
    child.stdout.on("data", (b: Buffer) => {
      if (done) return void res.write(b);
      head = Buffer.concat([head, b]);
      const end = head.indexOf("\r\n\r\n") >= 0 ? head.indexOf("\r\n\r\n") : head.indexOf("\n\n");
      if (end < 0) return;
      const sep = head.indexOf("\r\n\r\n") >= 0 ? 4 : 2;
      const headers: Record<string, string> = {};
      let status = 200;
      for (const line of head.subarray(0, end).toString().split(/\r?\n/)) {
        const i = line.indexOf(":");
        const k = line.slice(0, i).trim();
        const v = line.slice(i + 1).trim();
        if (k.toLowerCase() === "status") status = Number(v.split(" ")[0]);
        else headers[k] = v;
      }
      res.writeHead(status, headers);
      done = true;
      res.write(head.subarray(end + sep));
    });
    child.on("close", () => res.end());
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { server, url: `http://127.0.0.1:${(server.address() as { port: number }).port}` };
}


/** A bare repository at `bare` with one commit ("seed", README.md) on main, made in `scratch`. */
export async function seedRepository(bare: string, scratch: string): Promise<void> {
  for (const args of [["init", "-q", "--bare", "-b", "main", bare], ["init", "-q", "-b", "main", scratch]]) assert.equal((await runProcess("git", args)).code, 0);
  writeFileSync(join(scratch, "README.md"), "hello\n");
  const env = { ...process.env, GIT_AUTHOR_NAME: "Seed", GIT_AUTHOR_EMAIL: "s@e", GIT_COMMITTER_NAME: "Seed", GIT_COMMITTER_EMAIL: "s@e" };
  for (const args of [["-C", scratch, "add", "."], ["-C", scratch, "commit", "-q", "-m", "seed"], ["-C", scratch, "push", "-q", bare, "main"]]) assert.equal((await runProcess("git", args, { env })).code, 0, args.join(" "));
}

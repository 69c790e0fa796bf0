// git over smart HTTP through the gateway, with the real `git` client against a local
// `git http-backend` that only accepts the credential the agent injects: clone works, a push to a
// feature branch passes (created, then fast-forwarded), a push to main waits for review and lands
// after approval, a force push and a branch deletion are refused with readable git errors.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { approveReview, runProcess, type RunResult, waitFor } from "./helpers/clients.ts";
import { gitServer, REPO_SECRET, seedRepository } from "./helpers/git.ts";
import { startTestGateway, type TestGateway } from "./helpers/gateway.ts";

describe("git through the gateway", () => {
  let t: TestGateway;
  let dir: string;
  let srv: Awaited<ReturnType<typeof gitServer>>;
  let remote: string;
  let work: string;
  let token: string;

  const git = (args: string[], extraEnv: Record<string, string> = {}): Promise<RunResult> =>
    runProcess("git", args, {
      env: { PATH: process.env.PATH, HOME: dir, GIT_TERMINAL_PROMPT: "0", GIT_CONFIG_COUNT: "1", GIT_CONFIG_KEY_0: "http.extraHeader", GIT_CONFIG_VALUE_0: `Authorization: Bearer ${token}`, GIT_AUTHOR_NAME: "Agent", GIT_AUTHOR_EMAIL: "agent@example.com", GIT_COMMITTER_NAME: "Agent", GIT_COMMITTER_EMAIL: "agent@example.com", ...extraEnv },
      timeoutMs: 60_000,
    });
  const inWork = (args: string[], extraEnv: Record<string, string> = {}) => git(["-C", work, ...args], extraEnv);
  const bare = (args: string[]) => runProcess("git", ["-C", join(dir, "repos", "app.git"), ...args]);

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "gh-git-"));
    process.env.GH_TEST_REPO_SECRET = REPO_SECRET;
    await seedRepository(join(dir, "repos", "app.git"), join(dir, "seed"));
    srv = await gitServer(join(dir, "repos"));
    t = await startTestGateway({
      policies: [
        { name: "git-fetch", principals: { groups: ["ai-agents"] }, operations: { git: { actions: ["fetch"] } }, decision: "allow" },
        { name: "git-push", principals: { groups: ["ai-agents"] }, operations: { git: { actions: ["push"] } }, decision: "allow" },
        { name: "protected-branches", operations: { git: { actions: ["push"], refs: ["main", "release/*"] } }, decision: "review", review: { approvers: ["dba"], expires: "60s" } },
        { name: "no-force-or-delete", operations: { git: { actions: ["force", "delete"] } }, decision: "deny", message: "force pushes and branch deletions are not allowed" },
      ],
      extraConfig: (c) => {
        c.listeners!.http = { host: "127.0.0.1", port: 0, gitMirrorDir: join(dir, "mirrors") };
        c.connections!.push({ name: "repo", protocol: "http", http: { url: srv.url, auth: { type: "basic", username: "git-bot", secret: "env:GH_TEST_REPO_SECRET" }, git: true } });
      },
    });
    token = await t.agentToken();
    remote = `http://127.0.0.1:${t.gw.http!.port}/repo/app.git`;
    work = join(dir, "work");
  });
  after(async () => {
    await t?.close();
    await new Promise((r) => srv?.server.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  const commit = async (file: string, text: string) => {
    writeFileSync(join(work, file), text);
    assert.equal((await inWork(["add", file])).code, 0);
    assert.equal((await inWork(["commit", "-q", "-m", `change ${file}`])).code, 0);
  };
  const head = async (ref: string) => (await bare(["rev-parse", ref])).stdout.trim();

  test("clone through the gateway (the caller never has the repository's credential)", async () => {
    const r = await git(["clone", "-q", remote, work]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await inWork(["log", "--format=%s"])).stdout.trim(), "seed");
    assert.ok(!(await inWork(["config", "--get-regexp", "."])).stdout.includes(REPO_SECRET));
  });

  test("a push to a feature branch passes: created, then fast-forwarded", async () => {
    assert.equal((await inWork(["checkout", "-q", "-b", "feature/x"])).code, 0);
    await commit("a.txt", "a\n");
    const created = await inWork(["push", "-q", "origin", "feature/x"]);
    assert.equal(created.code, 0, created.stderr);
    await commit("b.txt", "b\n");
    const ff = await inWork(["push", "origin", "feature/x"]);
    assert.equal(ff.code, 0, ff.stderr);
    assert.equal(await head("feature/x"), (await inWork(["rev-parse", "HEAD"])).stdout.trim());
  });

  test("a push larger than git's http.postBuffer (its flush-only probe first, then a chunked body) passes", async () => {
    // 3 MiB of incompressible bytes: over the default 1 MiB postBuffer, so git probes with a body
    // of just "0000" and then streams the pack with chunked encoding.
    writeFileSync(join(work, "big.bin"), randomBytes(3 << 20));
    assert.equal((await inWork(["add", "big.bin"])).code, 0);
    assert.equal((await inWork(["commit", "-q", "-m", "big"])).code, 0);
    const r = await inWork(["push", "origin", "feature/x"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await head("feature/x"), (await inWork(["rev-parse", "HEAD"])).stdout.trim());
    // The probe on its own: answered as the repository answers it; anything after a command-less
    // flush, or two service parameters, is refused.
    const url = `http://127.0.0.1:${t.gw.http!.port}/repo/app.git`;
    const post = (body: Buffer) => fetch(`${url}/git-receive-pack`, { method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/x-git-receive-pack-request" }, body });
    assert.equal((await post(Buffer.from("0000"))).status, 200);
    const trailing = await post(Buffer.from("0000PACK"));
    assert.equal(trailing.status, 400);
    assert.match(await trailing.text(), /GH-HTTP-004.*a push without ref updates/);
    const twice = await fetch(`${url}/info/refs?service=git-upload-pack&service=git-receive-pack`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(twice.status, 400);
    assert.match(await twice.text(), /more than one service parameter/);
  });

  test("the fast-forward check ignores the host's git configuration (a global http.extraHeader)", async () => {
    // A ~/.gitconfig on the agent's host whose header would go before the target's credential.
    const hostile = join(dir, "hostile-home");
    mkdirSync(hostile, { recursive: true });
    writeFileSync(join(hostile, ".gitconfig"), "[http]\n\textraHeader = Authorization: Basic d3Jvbmc6d3Jvbmc=\n");
    const home = process.env.HOME;
    process.env.HOME = hostile;
    try {
      await commit("hostile.txt", "h\n");
      const r = await inWork(["push", "origin", "feature/x"]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(await head("feature/x"), (await inWork(["rev-parse", "HEAD"])).stdout.trim());
    } finally {
      process.env.HOME = home;
    }
  });

  test("a force push is refused with a readable git error, and changes nothing", async () => {
    const before = await head("feature/x");
    assert.equal((await inWork(["commit", "-q", "--amend", "-m", "rewritten"])).code, 0);
    const r = await inWork(["push", "--force", "origin", "feature/x"]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /\[remote rejected\] feature\/x -> feature\/x \(GH-POLICY-001 .*no-force-or-delete/);
    assert.match(r.stderr, /remote: Gatehouse: GH-POLICY-001/);
    assert.equal(await head("feature/x"), before);
  });

  test("deleting a branch is refused with a readable git error", async () => {
    const r = await inWork(["push", "origin", ":feature/x"]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /\[remote rejected\] feature\/x \(GH-POLICY-001 .*force pushes and branch deletions are not allowed/);
    assert.ok((await head("feature/x")).length === 40, "the branch is still there");
  });

  test("a push to main waits for review and lands after approval", async () => {
    assert.equal((await inWork(["checkout", "-q", "main"])).code, 0);
    await commit("c.txt", "c\n");
    const pushing = inWork(["push", "origin", "main"]);
    const review = await waitFor(async () => (await t.gw.reviews.list({ status: "pending", limit: 100 })).find((r) => r.operation.text.startsWith("git push /app.git")), "the push to main to be held", 20_000);
    assert.match(review.operation.text, /update refs\/heads\/main/);
    const before = await head("main");
    assert.notEqual(before, (await inWork(["rev-parse", "HEAD"])).stdout.trim(), "not landed while held");
    await approveReview(t, review.id, await t.humanToken(["dba"], "Dana DBA"));
    const r = await pushing;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await head("main"), (await inWork(["rev-parse", "HEAD"])).stdout.trim());
  });

  test("without a token git is challenged, and gets no data", async () => {
    const r = await runProcess("git", ["ls-remote", remote], { env: { PATH: process.env.PATH, HOME: dir, GIT_TERMINAL_PROMPT: "0" }, timeoutMs: 30_000 });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /Authentication failed|could not read Username|401/);
  });
});

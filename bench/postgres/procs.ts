// Child processes for the PostgreSQL benchmark: each server under test runs in its own process
// group so that one kill reaches it and everything it started (runuser → pgbouncer, node → tsx).
// Never leaves a child behind: every spawn is registered and `killAll` is called from a finally
// block and from the signal handlers of the runner.

import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { createServer, connect } from "node:net";

export interface Child {
  name: string;
  proc: ChildProcess;
  /** Everything the process printed (stdout and stderr), for error messages. */
  output(): string;
  /** Resolves with the exit code (or signal name) once the process has exited. */
  exited: Promise<number | string>;
}

const live = new Set<Child>();

export function startChild(name: string, cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Child {
  const proc = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  const keep = (b: Buffer) => {
    out += b.toString("utf8");
    if (out.length > 64_000) out = out.slice(-32_000);
  };
  proc.stdout?.on("data", keep);
  proc.stderr?.on("data", keep);
  const exited = new Promise<number | string>((resolve) => {
    proc.once("exit", (code, signal) => resolve(code ?? signal ?? "unknown"));
    proc.once("error", (e) => {
      keep(Buffer.from(`spawn error: ${e.message}\n`));
      resolve("spawn-error");
    });
  });
  const child: Child = { name, proc, output: () => out, exited };
  live.add(child);
  void exited.then(() => live.delete(child));
  return child;
}

function signalGroup(c: Child, sig: NodeJS.Signals): void {
  const pid = c.proc.pid;
  if (pid === undefined) return;
  try {
    process.kill(-pid, sig);
  } catch {
    /* the group is gone already */
  }
}

/** SIGTERM the child's process group, wait up to `graceMs`, then SIGKILL it. */
export async function stopChild(c: Child, graceMs = 5000): Promise<void> {
  if (c.proc.exitCode !== null || c.proc.signalCode !== null) {
    signalGroup(c, "SIGKILL"); // grandchildren that outlived the leader
    return;
  }
  signalGroup(c, "SIGTERM");
  const timer = new Promise<"timeout">((r) => setTimeout(() => r("timeout"), graceMs).unref());
  if ((await Promise.race([c.exited, timer])) === "timeout") {
    signalGroup(c, "SIGKILL");
    await c.exited;
  }
  signalGroup(c, "SIGKILL");
}

export async function stopAll(): Promise<void> {
  await Promise.all([...live].map((c) => stopChild(c, 3000)));
}

/** Synchronous last resort (process 'exit' handler): SIGKILL every group still registered. */
export function killAllSync(): void {
  for (const c of live) signalGroup(c, "SIGKILL");
}

/** Ports handed out by this process: the OS may offer a port again once it is closed. */
const handedOut = new Set<number>();

/** A port free on 127.0.0.1 now and not handed out before in this process. */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const s = createServer();
      s.once("error", reject);
      s.listen(0, "127.0.0.1", () => {
        const a = s.address();
        const p = typeof a === "object" && a ? a.port : 0;
        s.close(() => resolve(p));
      });
    });
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
}

/** Wait until 127.0.0.1:port accepts TCP connections, or fail with the child's output. */
export async function waitForPort(port: number, child: Child, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (child.proc.exitCode !== null || child.proc.signalCode !== null) {
      throw new Error(`${child.name} exited before listening on ${port}:\n${child.output().slice(-4000)}`);
    }
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ host: "127.0.0.1", port });
      s.once("connect", () => {
        s.destroy();
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`${child.name} did not listen on ${port} within ${timeoutMs} ms:\n${child.output().slice(-4000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export function which(cmd: string): string | undefined {
  const r = spawnSync("sh", ["-c", `command -v ${cmd}`], { encoding: "utf8" });
  const p = r.stdout.trim();
  return r.status === 0 && p ? p : undefined;
}

/** Run a command to completion, capturing output; rejects on a non-zero exit. */
export function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const c = startChild(cmd, cmd, args, { env: opts.env ?? process.env });
    let stdout = "";
    let stderr = "";
    c.proc.stdout?.on("data", (b: Buffer) => {
      stdout += b.toString("utf8");
    });
    c.proc.stderr?.on("data", (b: Buffer) => {
      stderr += b.toString("utf8");
    });
    const timer = opts.timeoutMs ? setTimeout(() => void stopChild(c, 1000), opts.timeoutMs) : undefined;
    void c.exited.then((code) => {
      if (timer) clearTimeout(timer);
      if (code === 0) resolve({ stdout, stderr });
      else reject(new Error(`${cmd} ${args.join(" ")} failed (${code}):\n${stderr.slice(-4000) || stdout.slice(-4000)}`));
    });
  });
}

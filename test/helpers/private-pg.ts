// A private PostgreSQL server for one test file: initdb into a temp directory, a free port on
// 127.0.0.1, TLS with a fresh self-signed certificate, and pg_hba rules the test writes. Why: the
// shared server on :5432 trusts everyone, so password methods (SCRAM, md5) and TLS towards the
// target can only be exercised against an instance whose configuration the test owns.
// initdb and postgres refuse to run as root; as root they run as the `postgres` OS user.

import { execFileSync } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runProcess } from "./clients.ts";

const BIN = process.env.PG_BIN_TEST ?? "/usr/lib/postgresql/15/bin";

export interface PrivatePostgres {
  host: string;
  port: number;
  dir: string;
  /** PEM certificate of the server (self-signed; also its own CA). */
  certFile: string;
  /** Runs SQL as the superuser over the instance's Unix socket; returns psql's unaligned output. */
  sql(text: string, database?: string): Promise<string>;
  /** The server's log (connections are logged). */
  log(): string;
  stop(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** Why a private server cannot run here, or undefined if it can. */
export function privatePostgresUnavailable(): string | undefined {
  for (const b of ["initdb", "pg_ctl", "postgres"]) if (!existsSync(join(BIN, b))) return `${join(BIN, b)} not found (set PG_BIN_TEST)`;
  try {
    execFileSync("openssl", ["version"], { stdio: "ignore" });
  } catch {
    return "openssl is not installed";
  }
  if (process.getuid?.() === 0) {
    try {
      execFileSync("id", ["-u", "postgres"], { stdio: "ignore" });
    } catch {
      return "running as root and there is no `postgres` OS user to run initdb as";
    }
  }
  return undefined;
}

export async function startPrivatePostgres(opts: { hba: string[]; conf?: Record<string, string> }): Promise<PrivatePostgres> {
  const root = process.getuid?.() === 0;
  const uid = root ? Number(execFileSync("id", ["-u", "postgres"]).toString().trim()) : undefined;
  const gid = root ? Number(execFileSync("id", ["-g", "postgres"]).toString().trim()) : undefined;
  const as = (cmd: string, args: string[]): [string, string[]] => (root ? ["runuser", ["-u", "postgres", "--", cmd, ...args]] : [cmd, args]);
  const run = async (cmd: string, args: string[], timeoutMs = 30_000) => {
    const [c, a] = as(cmd, args);
    const r = await runProcess(c, a, { timeoutMs });
    if (r.code !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.code ?? r.signal}): ${r.stderr || r.stdout}`);
    return r.stdout;
  };

  const dir = mkdtempSync(join(tmpdir(), "gh-private-pg-"));
  const data = join(dir, "data");
  if (root) chownSync(dir, uid!, gid!);
  const port = await freePort();
  try {
    await run(join(BIN, "initdb"), ["-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync", "--no-instructions"]);
    const certFile = join(data, "server.crt");
    const keyFile = join(data, "server.key");
    execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", keyFile, "-out", certFile], { stdio: "ignore" });
    chmodSync(keyFile, 0o600);
    if (root) for (const f of [certFile, keyFile]) chownSync(f, uid!, gid!);
    writeFileSync(join(data, "pg_hba.conf"), `${["local all all trust", ...opts.hba].join("\n")}\n`);
    const conf: Record<string, string> = {
      port: String(port),
      listen_addresses: "'127.0.0.1'",
      unix_socket_directories: `'${dir}'`,
      ssl: "on",
      fsync: "off",
      synchronous_commit: "off",
      full_page_writes: "off",
      max_connections: "20",
      shared_buffers: "16MB",
      log_connections: "on",
      ...opts.conf,
    };
    writeFileSync(join(data, "postgresql.conf"), `${readFileSync(join(data, "postgresql.conf"), "utf8")}\n${Object.entries(conf).map(([k, v]) => `${k} = ${v}`).join("\n")}\n`);
    if (root) for (const f of ["pg_hba.conf", "postgresql.conf"]) chownSync(join(data, f), uid!, gid!);
    const logFile = join(dir, "server.log");
    await run(join(BIN, "pg_ctl"), ["-D", data, "-l", logFile, "-w", "-t", "30", "start"]);
    return {
      host: "127.0.0.1",
      port,
      dir,
      certFile,
      async sql(text, database = "postgres") {
        const r = await runProcess("psql", ["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", dir, "-p", String(port), "-U", "postgres", "-d", database, "-c", text], { timeoutMs: 15_000 });
        if (r.code !== 0) throw new Error(`psql on the private server failed: ${r.stderr}`);
        return r.stdout;
      },
      log: () => (existsSync(logFile) ? readFileSync(logFile, "utf8") : ""),
      async stop() {
        await run(join(BIN, "pg_ctl"), ["-D", data, "-m", "immediate", "-w", "-t", "20", "stop"]).catch(() => {});
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (e) {
    const [c, a] = as(join(BIN, "pg_ctl"), ["-D", data, "-m", "immediate", "stop"]);
    await runProcess(c, a, { timeoutMs: 10_000 }).catch(() => {});
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}

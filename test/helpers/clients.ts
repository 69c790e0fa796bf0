// Clients for end-to-end tests through the gateway: node-postgres over TLS with a token, psql and
// pgbench as child processes (always bounded by a timeout), a raw wire-protocol socket for
// misbehaving clients, the review API as a human, and a look at the real server's
// pg_stat_activity to prove no target session is left behind.
// Why here: several test files drive the same real clients; none of this may mock the gateway.

import { spawn } from "node:child_process";
import { createServer, connect as netConnect, type Socket } from "node:net";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import pg from "pg";
import { serialize } from "pg-protocol";
import type { Review } from "../../src/domain/review.ts";
import type { TestGateway } from "./gateway.ts";
import { adminClient } from "./pg.ts";

/** A TCP port free on 127.0.0.1 right now (for servers that must be given a fixed port, e.g. a restarted process). */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** application_name of the tests' own direct connections, so they are not counted as target sessions. */
export const DIRECT_APP = "gh-test-direct";

export function gatewayConfig(t: TestGateway, token: string, extra: pg.ClientConfig = {}): pg.ClientConfig {
  return { host: t.host, port: t.port, database: t.connection, user: "agent", password: token, ssl: { rejectUnauthorized: false }, connectionTimeoutMillis: 5000, ...extra };
}

/** A connected node-postgres client through the gateway. Errors after connect are kept, not thrown. */
export async function connectGateway(t: TestGateway, token: string, extra: pg.ClientConfig = {}): Promise<pg.Client> {
  const c = new pg.Client(gatewayConfig(t, token, extra));
  c.on("error", () => {});
  await c.connect();
  return c;
}

/** A connected client straight to the test database (bypassing the gateway). */
export async function connectDirect(t: TestGateway): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: t.directUrl, application_name: DIRECT_APP });
  await c.connect();
  return c;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs a command to completion; SIGKILL after timeoutMs (the result then has signal SIGKILL). */
export function runProcess(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number; onSpawn?: (pid: number) => void } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const child = spawn(cmd, args, { env: opts.env ?? process.env, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 20_000);
    child.once("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once("spawn", () => {
      if (child.pid !== undefined) opts.onSpawn?.(child.pid);
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - started });
    });
    child.stdin.on("error", () => {});
    child.stdin.end(opts.input ?? "");
  });
}

/** psql through the gateway (sslmode=require, the token as PGPASSWORD), no psqlrc. */
export function psql(t: TestGateway, token: string, args: string[], opts: { input?: string; timeoutMs?: number; conninfo?: string; onSpawn?: (pid: number) => void } = {}): Promise<RunResult> {
  const env = { ...process.env, PGPASSWORD: token, PGCONNECT_TIMEOUT: "5", PGAPPNAME: "psql-e2e" };
  return runProcess("psql", [opts.conninfo ?? t.conninfo(), "-X", "-q", ...args], { env, input: opts.input ?? "", timeoutMs: opts.timeoutMs ?? 20_000, ...(opts.onSpawn ? { onSpawn: opts.onSpawn } : {}) });
}

export interface ApiResult<T = Record<string, unknown>> {
  status: number;
  body: T;
}

export async function api<T = Record<string, unknown>>(t: TestGateway, method: "GET" | "POST", path: string, token: string, body?: unknown): Promise<ApiResult<T>> {
  const init: RequestInit = { method, headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { "content-type": "application/json" } : {}) }, signal: AbortSignal.timeout(5000) };
  if (body !== undefined) init.body = JSON.stringify(body);
  const res = await fetch(`${t.gw.apiUrl}${path}`, init);
  return { status: res.status, body: (await res.json()) as T };
}

export type ReviewView = Omit<Review, "createdAt" | "expiresAt" | "decidedAt" | "usedAt"> & { createdAt: string; expiresAt: string; decidedAt: string | null; usedAt: string | null };

export const approveReview = (t: TestGateway, id: string, token: string, comment?: string) => api<ReviewView & { code?: string; detail?: string }>(t, "POST", `/api/v1/reviews/${id}/approve`, token, comment ? { comment } : {});
export const denyReview = (t: TestGateway, id: string, token: string, reason?: string) => api<ReviewView & { code?: string; detail?: string }>(t, "POST", `/api/v1/reviews/${id}/deny`, token, reason ? { reason } : {});
export const getReview = (t: TestGateway, id: string, token: string) => api<ReviewView>(t, "GET", `/api/v1/reviews/${id}`, token);

/** Polls until fn returns a value other than undefined/false, or fails after timeoutMs. */
export async function waitFor<T>(fn: () => Promise<T | undefined | false> | T | undefined | false, what: string, timeoutMs = 5000, intervalMs = 20): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ""}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** The pending review whose operation text is exactly `text`, once it exists. */
export function pendingReviewFor(t: TestGateway, text: string, timeoutMs = 5000): Promise<Review> {
  return waitFor(async () => (await t.gw.reviews.list({ status: "pending", limit: 1000 })).find((r) => r.operation.text === text), `a pending review of ${JSON.stringify(text)}`, timeoutMs);
}

const UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";

/** The review id a GH-POLICY-002 / GH-REVIEW-* message names. */
export function reviewIdIn(message: string): string {
  const m = new RegExp(`review (${UUID})`).exec(message);
  if (!m) throw new Error(`no review id in ${JSON.stringify(message)}`);
  return m[1]!;
}

/** Client sessions on the real server in `database`, excluding the tests' own direct connections. */
export async function targetSessions(database: string): Promise<Array<{ pid: number; state: string | null; application_name: string; query: string }>> {
  const a = adminClient();
  await a.connect();
  try {
    const r = await a.query("SELECT pid, state, application_name, query FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend' AND application_name <> $2 AND pid <> pg_backend_pid()", [database, DIRECT_APP]);
    return r.rows;
  } finally {
    await a.end();
  }
}

/** Waits until the real server has no target session left in `database`. */
export async function waitNoTargetSessions(database: string, timeoutMs = 3000): Promise<void> {
  let seen: unknown[] = [];
  await waitFor(
    async () => {
      seen = await targetSessions(database);
      return seen.length === 0;
    },
    `no target sessions on ${database}`,
    timeoutMs,
    50,
  ).catch((e) => {
    throw new Error(`${(e as Error).message}; still there: ${JSON.stringify(seen)}`);
  });
}

export async function metricsText(t: TestGateway): Promise<string> {
  const res = await fetch(`${t.gw.apiUrl}/metrics`, { signal: AbortSignal.timeout(5000) });
  return res.text();
}

/** Sum of a Prometheus series' samples whose labels include all of `labels`. */
export function metricSum(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-z_]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = new Map<string, string>();
    for (const kv of (m[2] ?? "").matchAll(/([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"/g)) have.set(kv[1]!, kv[2]!);
    if (Object.entries(labels).every(([k, v]) => have.get(k) === v)) sum += Number(m[3]);
  }
  return sum;
}

// ------------------------------------------------------------------------------ raw wire client

export interface BackendMessage {
  type: string;
  body: Buffer;
}

/** Fields of an ErrorResponse/NoticeResponse body, keyed by their one-letter codes. */
export function errorFields(body: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  while (i < body.length && body[i] !== 0) {
    const code = String.fromCharCode(body[i]!);
    const end = body.indexOf(0, i + 1);
    out[code] = body.toString("utf8", i + 1, end);
    i = end + 1;
  }
  return out;
}

/**
 * A hand-driven PostgreSQL frontend over a raw socket (pg-protocol's serializer, a tiny backend
 * framer), for clients that misbehave in ways libraries will not: garbage after login, a
 * message cut in half, a bare CancelRequest.
 */
export class RawClient {
  socket: Socket | TLSSocket;
  #buf = Buffer.alloc(0);
  #messages: BackendMessage[] = [];
  #waiters: Array<() => void> = [];
  closed = false;

  private constructor(socket: Socket) {
    this.socket = socket;
  }

  static async connect(host: string, port: number): Promise<RawClient> {
    const s = netConnect({ host, port });
    await new Promise<void>((resolve, reject) => {
      s.once("connect", () => resolve());
      s.once("error", reject);
    });
    s.on("error", () => {});
    return new RawClient(s);
  }

  /** SSLRequest, expect 'S', then TLS (not verified: the gateway's certificate is self-signed). */
  async startTls(): Promise<void> {
    const raw = this.socket as Socket;
    raw.write(serialize.requestSsl());
    const answer = await new Promise<Buffer>((resolve) => raw.once("data", resolve));
    if (answer.toString() !== "S") throw new Error(`expected S, got ${JSON.stringify(answer.toString())}`);
    const t = tlsConnect({ socket: raw, rejectUnauthorized: false });
    await new Promise<void>((resolve, reject) => {
      t.once("secureConnect", () => resolve());
      t.once("error", reject);
    });
    t.on("error", () => {});
    this.socket = t;
  }

  /** Start reading backend messages (after any TLS switch). */
  listen(): void {
    this.socket.on("data", (chunk: Buffer) => {
      this.#buf = Buffer.concat([this.#buf, chunk]);
      while (this.#buf.length >= 5) {
        const len = this.#buf.readInt32BE(1);
        if (this.#buf.length < 1 + len) break;
        this.#messages.push({ type: String.fromCharCode(this.#buf[0]!), body: this.#buf.subarray(5, 1 + len) });
        this.#buf = this.#buf.subarray(1 + len);
      }
      this.#wake();
    });
    this.socket.once("close", () => {
      this.closed = true;
      this.#wake();
    });
  }

  #wake(): void {
    const ws = this.#waiters;
    this.#waiters = [];
    for (const w of ws) w();
  }

  write(b: Buffer): void {
    this.socket.write(b);
  }

  /** Next backend message of one of `types` (others are collected), or undefined if the socket closed. */
  async next(types: string[], timeoutMs = 5000): Promise<BackendMessage | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.#messages.findIndex((m) => types.includes(m.type));
      if (i >= 0) return this.#messages.splice(i, 1)[0];
      if (this.closed) return undefined;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for backend message ${types.join("/")}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Resolves when the socket is closed (or fails after timeoutMs). */
  async waitClosed(timeoutMs = 5000): Promise<void> {
    await waitFor(() => this.closed, "the gateway to close the socket", timeoutMs, 10);
  }

  /** Full login through the gateway: TLS, StartupMessage, token as password, until ReadyForQuery. */
  static async login(t: TestGateway, token: string): Promise<RawClient> {
    const c = await RawClient.connect(t.host, t.port);
    await c.startTls();
    c.listen();
    c.write(serialize.startup({ user: "agent", database: t.connection, application_name: "raw-e2e" }));
    const auth = await c.next(["R", "E"]);
    if (auth?.type !== "R" || auth.body.readInt32BE(0) !== 3) throw new Error("expected AuthenticationCleartextPassword");
    c.write(serialize.password(token));
    const key = await c.next(["K", "E"]);
    if (key?.type !== "K") throw new Error(`login failed: ${key ? JSON.stringify(errorFields(key.body)) : "closed"}`);
    c.backendKey = { processId: key.body.readInt32BE(0), secretKey: key.body.readInt32BE(4) };
    await c.next(["Z"]);
    return c;
  }

  backendKey: { processId: number; secretKey: number } | undefined;

  destroy(): void {
    this.socket.destroy();
  }
}

/** The 16-byte CancelRequest, sent on a fresh plain TCP connection as the protocol prescribes. */
export async function sendCancelRequest(host: string, port: number, processId: number, secretKey: number): Promise<void> {
  const s = netConnect({ host, port });
  await new Promise<void>((resolve, reject) => {
    s.once("connect", () => resolve());
    s.once("error", reject);
  });
  // The server closes the connection without answering; wait for that (bounded).
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, 3000);
    s.once("close", () => {
      clearTimeout(timer);
      resolve();
    });
    s.on("error", () => {});
    s.end(serialize.cancel(processId, secretKey));
  });
  s.destroy();
}

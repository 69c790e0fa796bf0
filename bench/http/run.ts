// HTTP gate benchmark: `wrk` (16 connections, keep-alive) against a small JSON response from a Node
// target, in one run: direct to the target; through a bare node:http reverse proxy (no policy — the
// ceiling for any Node HTTP gate); through nginx as a reverse proxy (keep-alive upstream); and
// through Gatehouse with the full gate on (token check, policy, audit, recording), the same
// gate with recording off (where the time goes), and the full gate with the target behind a
// network-resident agent (its own process, over the tunnel: the production shape). Prints requests/s
// and p50/p99 latency per row, and Gatehouse's ratios to each baseline.
//
//   npm run bench:http                                  # 6 rounds of 3 s per row
//   BENCH_SECONDS=2 BENCH_REPEAT=3 npm run bench:http   # quick
//
// Environment: BENCH_SECONDS (3), BENCH_CONNECTIONS (16), BENCH_THREADS (2), BENCH_REPEAT (6
// rounds; each round runs every row once, in turn), BENCH_REMOTE=0 skips the remote-agent row,
// BENCH_KEEP=1 keeps the temp directory.
//
// Why rounds: on a shared 2-core VM the same row drifts by ±20 % from one minute to the next, so
// one long run per row compares rows measured under different conditions. Each ratio is taken per
// round, between rows measured seconds apart, and the median of those paired ratios is reported
// next to the ratio of the median req/s.
// Needs `wrk` (apt-get install wrk); the nginx row is skipped without `nginx` (apt-get install nginx-light).

import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { loadConfigFile } from "../../src/config/load.ts";
import { mintDevToken } from "../../src/identity/index.ts";
import { type Child, freePort, killAllSync, run, startChild, stopAll, waitForPort, which } from "../postgres/procs.ts";

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = resolve(HERE, "../..");
const env = process.env;
const SECONDS = Number(env.BENCH_SECONDS ?? 3);
const CONNECTIONS = Number(env.BENCH_CONNECTIONS ?? 16);
const THREADS = Number(env.BENCH_THREADS ?? 2);
const REPEAT = Math.max(1, Number(env.BENCH_REPEAT ?? 6));
const log = (s: string) => process.stderr.write(`${s}\n`);

const TARGET_JS = `
const http = require("node:http");
const body = JSON.stringify({ ok: true, service: "bench", items: [1, 2, 3] });
http.createServer({ keepAliveTimeout: 60000 }, (req, res) => {
  req.resume();
  req.on("end", () => { res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) }); res.end(body); });
}).listen(Number(process.argv[1]), "127.0.0.1");
`;

/** The ceiling: a reverse proxy in plain node:http with a keep-alive agent, nothing else. */
const BARE_PROXY_JS = `
const http = require("node:http");
const [port, upstream] = [Number(process.argv[1]), Number(process.argv[2])];
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
http.createServer({ keepAliveTimeout: 60000 }, (req, res) => {
  const up = http.request({ host: "127.0.0.1", port: upstream, method: req.method, path: req.url, headers: req.headers, agent }, (r) => {
    res.writeHead(r.statusCode, r.headers);
    r.pipe(res);
  });
  up.on("error", () => { res.statusCode = 502; res.end(); });
  req.pipe(up);
}).listen(port, "127.0.0.1");
`;

interface Row {
  name: string;
  url: string;
  headers?: string[];
  /** The proxy's process group (its leader's pid; nginx's worker is in its master's group), for CPU accounting. */
  group?: number;
  /** A second process group counted with the proxy (a remote agent). */
  group2?: number;
}

interface Result {
  rps: number;
  p50: number;
  p99: number;
  non2xx: number;
  errors: string;
  /** CPU time (user + system, all threads) per request: the row's proxy, and the target. */
  proxyUs?: number;
  targetUs: number;
}

/** Kernel clock ticks per second for /proc/PID/stat's utime and stime (USER_HZ: 100 on Linux). */
const CLK_TCK = 100;

/**
 * CPU ticks (user + system) used so far by every process in a process group, threads included.
 * Noise-robust where req/s is not: on a shared 2-vCPU VM throughput drifts ±20 % from one minute to
 * the next, while the CPU a proxy spends per request moves far less.
 */
function groupTicks(pgid: number): number {
  let ticks = 0;
  for (const d of readdirSync("/proc")) {
    if (d.charCodeAt(0) < 48 || d.charCodeAt(0) > 57) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${d}/stat`, "utf8");
    } catch {
      continue; // exited while we looked
    }
    // After the command name in parentheses: state ppid pgrp … utime (12th) stime (13th).
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (Number(f[2]) === pgid) ticks += Number(f[11]) + Number(f[12]);
  }
  return ticks;
}

function ms(v: string, unit: string): number {
  const n = Number(v);
  return unit === "us" ? n / 1000 : unit === "s" ? n * 1000 : n;
}

async function wrk(row: Row, seconds: number, targetGroup: number): Promise<Result> {
  const args = ["-t", String(THREADS), "-c", String(CONNECTIONS), "-d", `${seconds}s`, "--latency", ...(row.headers ?? []).flatMap((h) => ["-H", h]), row.url];
  const proxyTicks = () => (row.group ? groupTicks(row.group) : 0) + (row.group2 ? groupTicks(row.group2) : 0);
  const [p0, t0] = [proxyTicks(), groupTicks(targetGroup)];
  const { stdout } = await run("wrk", args, { timeoutMs: (seconds + 30) * 1000 });
  const [p1, t1] = [proxyTicks(), groupTicks(targetGroup)];
  const requests = Number(/(\d+) requests in/.exec(stdout)?.[1] ?? Number.NaN);
  const perRequest = (ticks: number) => (ticks * 1e6) / CLK_TCK / requests;
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)?.[1] ?? Number.NaN);
  const lat = (p: string) => {
    const m = new RegExp(`\\s${p}%\\s+([\\d.]+)(us|ms|s)`).exec(stdout);
    return m ? ms(m[1]!, m[2]!) : Number.NaN;
  };
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(stdout)?.[1] ?? 0);
  const errors = /Socket errors:.*/.exec(stdout)?.[0] ?? "";
  return { rps, p50: lat("50"), p99: lat("99"), non2xx, errors, proxyUs: row.group ? perRequest(p1 - p0) : undefined, targetUs: perRequest(t1 - t0) };
}

async function nginxRow(dir: string, upstream: number): Promise<{ port: number; group?: number } | string> {
  const bin = which("nginx") ?? (which("/usr/sbin/nginx") ? "/usr/sbin/nginx" : undefined);
  if (!bin) return "nginx is not installed (apt-get install -y nginx-light)";
  const port = await freePort();
  const d = join(dir, "nginx");
  mkdirSync(join(d, "logs"), { recursive: true });
  writeFileSync(
    join(d, "nginx.conf"),
    `worker_processes 1;
pid ${d}/nginx.pid;
error_log ${d}/logs/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${d}/body; proxy_temp_path ${d}/proxy; fastcgi_temp_path ${d}/fcgi; uwsgi_temp_path ${d}/uwsgi; scgi_temp_path ${d}/scgi;
  upstream target { server 127.0.0.1:${upstream}; keepalive 64; }
  server {
    listen 127.0.0.1:${port};
    location / { proxy_pass http://target; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
`,
  );
  const child = startChild("nginx", bin, ["-c", join(d, "nginx.conf"), "-p", d, "-g", "daemon off;"]);
  await waitForPort(port, child, 10_000);
  return { port, group: child.proc.pid };
}

async function gatehouseRow(dir: string, upstream: number, opts: { recording?: boolean; remote?: boolean } = {}): Promise<{ port: number; token: string; group?: number; agentGroup?: number }> {
  const d = join(dir, opts.remote ? "gatehouse-remote" : opts.recording === false ? "gatehouse-norec" : "gatehouse");
  mkdirSync(d, { recursive: true });
  const [httpPort, apiPort] = [await freePort(), await freePort()];
  const config = {
    identity: { devIssuer: { enabled: true, keyFile: join(d, "dev-issuer-key.json") } },
    store: { url: `sqlite:${join(d, "gatehouse.db")}` },
    api: { host: "127.0.0.1", port: apiPort },
    listeners: { postgres: { enabled: false }, http: { host: "127.0.0.1", port: httpPort } },
    connections: [{ name: "svc", protocol: "http", ...(opts.remote ? { agent: "bench-edge" } : {}), http: { url: `http://127.0.0.1:${upstream}` } }],
    policies: [{ name: "agents-read", principals: { groups: ["ai-agents"] }, operations: { methods: ["GET"], paths: ["/**"] }, decision: "allow" }],
    logging: { level: "warn" },
    ...(opts.recording === false ? { recording: { enabled: false } } : {}),
  };
  const file = join(d, "gatehouse.yaml");
  writeFileSync(file, JSON.stringify(config, null, 2));
  const token = await mintDevToken(loadConfigFile(file).identity, { subject: "bench-agent", name: "bench-agent", groups: ["ai-agents"], kind: "service", lifetimeSeconds: 4 * 3600 });
  const cli = (args: string[]) => ["--import", "tsx", join(REPO, "src/cli/index.ts"), ...args];
  const secret = opts.remote ? (await run(process.execPath, cli(["agents", "create", "bench-edge", "--config", file]), { timeoutMs: 60_000 })).stdout.trim().split("\n").at(-1)! : "";
  const child: Child = startChild("gatehouse", process.execPath, cli(["gateway", "--config", file]), { cwd: REPO });
  await waitForPort(httpPort, child, 60_000);
  if (!opts.remote) return { port: httpPort, token, group: child.proc.pid };
  // The production shape: the target reached through a network-resident agent (its own process,
  // pinned to the target), over the WebSocket tunnel on loopback. Ready once a request goes through.
  writeFileSync(join(d, "targets.yaml"), `targets:\n  - http: http://127.0.0.1:${upstream}\n`);
  const agent = startChild("agent", process.execPath, cli(["agent", "--gateway", `http://127.0.0.1:${apiPort}`, "--targets", join(d, "targets.yaml"), "--log-level", "warn"]), { cwd: REPO, env: { ...process.env, GATEHOUSE_AGENT_TOKEN: secret } });
  for (let i = 0; ; i++) {
    const res = await fetch(`http://127.0.0.1:${httpPort}/svc/status`, { headers: { authorization: `Bearer ${token}` } }).catch(() => undefined);
    if (res?.status === 200) break;
    if (i > 200) throw new Error(`the remote agent did not come up (last status ${res?.status}): ${agent.output().slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 150));
  }
  return { port: httpPort, token, group: child.proc.pid, agentGroup: agent.proc.pid };
}

function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(" | ")} |`;
  return [line(headers), `|${widths.map((w, i) => (i === 0 ? `${"-".repeat(w + 2)}` : `${"-".repeat(w + 1)}:`)).join("|")}|`, ...rows.map(line)].join("\n");
}

async function main(): Promise<void> {
  if (!which("wrk")) throw new Error("wrk is not installed (apt-get install -y wrk)");
  const dir = mkdtempSync(join(tmpdir(), "gh-bench-http-"));
  const load0 = loadavg();
  try {
    const targetPort = await freePort();
    const target = startChild("target", process.execPath, ["-e", TARGET_JS, String(targetPort)]);
    const targetGroup = target.proc.pid!;
    await waitForPort(targetPort, target);
    const proxyPort = await freePort();
    const proxy = startChild("bare-proxy", process.execPath, ["-e", BARE_PROXY_JS, String(proxyPort), String(targetPort)]);
    await waitForPort(proxyPort, proxy);
    const rows: Row[] = [
      { name: "direct (Node target)", url: `http://127.0.0.1:${targetPort}/status` },
      { name: "bare node:http proxy", url: `http://127.0.0.1:${proxyPort}/status`, group: proxy.proc.pid },
    ];
    const skipped: string[] = [];
    const ng = await nginxRow(dir, targetPort);
    if (typeof ng === "string") skipped.push(`nginx: ${ng}`);
    else rows.push({ name: "nginx reverse proxy", url: `http://127.0.0.1:${ng.port}/status`, group: ng.group });
    const gh = await gatehouseRow(dir, targetPort);
    rows.push({ name: "Gatehouse (full gate)", url: `http://127.0.0.1:${gh.port}/svc/status`, headers: [`Authorization: Bearer ${gh.token}`], group: gh.group });
    // Where the time goes: the same gate without session recording.
    const norec = await gatehouseRow(dir, targetPort, { recording: false });
    rows.push({ name: "Gatehouse, recording off", url: `http://127.0.0.1:${norec.port}/svc/status`, headers: [`Authorization: Bearer ${norec.token}`], group: norec.group });
    // The production shape: the same gate with the target behind a network-resident agent.
    if (env.BENCH_REMOTE !== "0") {
      const remote = await gatehouseRow(dir, targetPort, { remote: true });
      rows.push({ name: "Gatehouse, remote agent", url: `http://127.0.0.1:${remote.port}/svc/status`, headers: [`Authorization: Bearer ${remote.token}`], group: remote.group, group2: remote.agentGroup });
    }

    log("warming up …");
    for (const r of rows) await wrk(r, Math.min(2, SECONDS), targetGroup);
    const runs = new Map<string, Result[]>();
    for (let i = 0; i < REPEAT; i++)
      // Every other round runs the rows in reverse, so no row always follows the same neighbour.
      for (const r of i % 2 ? [...rows].reverse() : rows) {
        const res = await wrk(r, SECONDS, targetGroup);
        log(`${r.name.padEnd(24)} ${Math.round(res.rps)} req/s  p50 ${res.p50.toFixed(2)} ms  p99 ${res.p99.toFixed(2)} ms  CPU µs/req proxy ${res.proxyUs?.toFixed(1) ?? "-"} target ${res.targetUs.toFixed(1)}${res.non2xx ? `  NON-2XX ${res.non2xx}` : ""}${res.errors ? `  ${res.errors}` : ""}`);
        runs.set(r.name, [...(runs.get(r.name) ?? []), res]);
      }
    const med = (name: string) => {
      const rs = [...(runs.get(name) ?? [])].sort((a, b) => a.rps - b.rps);
      return rs[Math.floor((rs.length - 1) / 2)];
    };
    const out: string[] = [];
    out.push(`wrk -t${THREADS} -c${CONNECTIONS}, ${SECONDS} s per row and round, ${REPEAT} round${REPEAT > 1 ? "s (medians)" : ""}, small JSON response from a Node target; ${cpus().length} CPUs, Node ${process.version}; load ${load0.map((x) => x.toFixed(1)).join(" ")} → ${loadavg().map((x) => x.toFixed(1)).join(" ")}`);
    out.push("");
    /** The median of one per-request CPU figure over a row's rounds. */
    const medCpu = (name: string, pick: (r: Result) => number | undefined) => {
      const xs = (runs.get(name) ?? []).map(pick).filter((x): x is number => x !== undefined && Number.isFinite(x)).sort((a, b) => a - b);
      return xs.length ? xs[Math.floor((xs.length - 1) / 2)]!.toFixed(1) : "—";
    };
    out.push(
      table(
        ["row", "req/s", "p50 ms", "p99 ms", "non-2xx", "proxy CPU µs/req", "target CPU µs/req"],
        rows.map((r) => {
          const m = med(r.name)!;
          return [r.name, String(Math.round(m.rps)), m.p50.toFixed(2), m.p99.toFixed(2), String(m.non2xx), medCpu(r.name, (x) => x.proxyUs), medCpu(r.name, (x) => x.targetUs)];
        }),
      ),
    );
    const ratio = (a: string, b: string) => {
      const x = med(a)?.rps;
      const y = med(b)?.rps;
      return x && y ? (x / y).toFixed(2) : "—";
    };
    /** The median over rounds of a / b measured in the same round (rows seconds apart). */
    const paired = (a: string, b: string, pick: (r: Result) => number | undefined = (r) => r.rps) => {
      const xs = runs.get(a) ?? [];
      const ys = runs.get(b) ?? [];
      const rs = xs.map((x, i) => (pick(x) ?? Number.NaN) / (ys[i] ? (pick(ys[i]) ?? Number.NaN) : Number.NaN)).filter((r) => Number.isFinite(r)).sort((p, q) => p - q);
      if (!rs.length) return "—";
      const mid = rs[Math.floor((rs.length - 1) / 2)]!;
      return rs.length > 1 ? `${mid.toFixed(2)} (${rs[0]!.toFixed(2)}–${rs.at(-1)!.toFixed(2)})` : mid.toFixed(2);
    };
    out.push("");
    const pairs: Array<[string, string, string]> = [["bare node proxy / direct", "bare node:http proxy", "direct (Node target)"]];
    if (runs.has("nginx reverse proxy")) pairs.push(["nginx / direct", "nginx reverse proxy", "direct (Node target)"]);
    pairs.push(["Gatehouse / direct", "Gatehouse (full gate)", "direct (Node target)"]);
    pairs.push(["Gatehouse / bare node proxy (target ≥ 0.95)", "Gatehouse (full gate)", "bare node:http proxy"]);
    pairs.push(["Gatehouse recording off / bare node proxy", "Gatehouse, recording off", "bare node:http proxy"]);
    if (runs.has("nginx reverse proxy")) pairs.push(["Gatehouse / nginx", "Gatehouse (full gate)", "nginx reverse proxy"]);
    if (runs.has("Gatehouse, remote agent")) pairs.push(["Gatehouse remote agent / embedded agent", "Gatehouse, remote agent", "Gatehouse (full gate)"], ["Gatehouse remote agent / bare node proxy", "Gatehouse, remote agent", "bare node:http proxy"]);
    out.push(table(["ratio (req/s)", "of medians", `per round, median (range)`], pairs.map(([label, a, b]) => [label, ratio(a, b), paired(a, b)])));
    // The same comparison in CPU: what one request costs the proxy process (all its threads).
    // Below 1.05 means the gate costs under 5 % of what a bare Node proxy spends per request.
    const cpuPairs: Array<[string, string, string]> = [
      ["Gatehouse / bare node proxy", "Gatehouse (full gate)", "bare node:http proxy"],
      ["Gatehouse recording off / bare node proxy", "Gatehouse, recording off", "bare node:http proxy"],
    ];
    if (runs.has("nginx reverse proxy")) cpuPairs.push(["Gatehouse / nginx", "Gatehouse (full gate)", "nginx reverse proxy"]);
    if (runs.has("Gatehouse, remote agent")) cpuPairs.push(["Gatehouse remote agent (gateway + agent) / embedded", "Gatehouse, remote agent", "Gatehouse (full gate)"]);
    out.push("");
    out.push(table(["ratio (proxy CPU per request)", "per round, median (range)"], cpuPairs.map(([label, a, b]) => [label, paired(a, b, (r) => r.proxyUs)])));
    for (const s of skipped) out.push(`\nskipped — ${s}`);
    process.stdout.write(`\n${out.join("\n")}\n`);
  } finally {
    await stopAll();
    if (env.BENCH_KEEP === "1") log(`kept ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

for (const sig of ["SIGINT", "SIGTERM"] as const)
  process.once(sig, () => {
    killAllSync();
    process.exit(130);
  });
main().catch((e) => {
  log(`bench failed: ${(e as Error).stack}`);
  killAllSync();
  process.exitCode = 1;
});

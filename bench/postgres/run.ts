// PostgreSQL data-path benchmark: `pgbench -S` (select-only) at 1 and 8 clients, simple and
// prepared protocol, against PostgreSQL directly and through a bare Node byte pipe, PgBouncer
// (session mode) and Gatehouse with the full gate on (plaintext and TLS), all measured in the
// same run. Prints TPS and p50/p99 latency per cell, and Gatehouse's ratios to each baseline.
//
//   npm run bench:postgres                 # default: 10 s per cell, ~4 minutes
//   BENCH_SECONDS=3 npm run bench:postgres # quick mode
//
// Environment (all optional):
//   BENCH_SECONDS   seconds per cell (10)            BENCH_CLIENTS   client counts ("1,8")
//   BENCH_MODES     "simple,prepared"                BENCH_SCALE     pgbench scale factor (10)
//   BENCH_TARGETS   rows, from direct,pipe,pgbouncer,gatehouse,gatehouse-remote,gatehouse-norec,
//                   gatehouse-tls,gatehouse-mem,gatehouse-alt (default: the first seven;
//                   gatehouse-remote = the target reached through a network-resident agent
//                   process over the WebSocket tunnel; gatehouse-norec = session recording off;
//                   gatehouse-mem = audit store sqlite::memory:; gatehouse-alt, see BENCH_ALT_ROOT)
//   BENCH_REPEAT    runs per cell, interleaved across rows; the median run is reported (1)
//   BENCH_AUDIT=1   add the gatehouse-mem row (cost of the per-statement audit write to a file)
//   BENCH_PROFILE=1 afterwards, profile the gateway and the pipe (node --cpu-prof) per client count
//                   and mode; BENCH_PROFILE_TARGETS=gatehouse,pipe chooses which
//   BENCH_GATEHOUSE_ROOT  run the gateway from another checkout (to measure a patched copy)
//   BENCH_ALT_ROOT  add a row "gatehouse-alt" run from this checkout, interleaved with the others
//                   (A/B of a patch in one run); BENCH_ALT_ENV="K=V,…" sets its environment only
//   BENCH_GATEHOUSE_LOG   the gateway's logging level (warn; info writes a line per decision)
//   BENCH_OUT       write the results as JSON to this file
//   BENCH_KEEP=1    keep the temp directory (logs, configs, profiles)
//   BENCH_PG_PORT   PostgreSQL port on 127.0.0.1 (5432); user postgres, trust auth
//
// Companions: gate-costs.ts (per-stage costs in one process), cpuprofile.ts (profile summaries),
// pipe-proxy.ts (the byte-pipe row). Results and analysis: docs/performance.md.
//
// Never touches anything but 127.0.0.1, a database it creates (and drops), a temp directory
// (removed), and child processes it starts (each in its own process group, killed at the end).

import { randomBytes } from "node:crypto";
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, cpus, loadavg, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { loadConfigFile } from "../../src/config/load.ts";
import { mintDevToken } from "../../src/identity/index.ts";
import { formatSummary, summarizeFile } from "./cpuprofile.ts";
import { type CellResult, type Endpoint, type ProtocolMode, runPgbench } from "./pgbench.ts";
import { type Child, freePort, killAllSync, run, startChild, stopAll, stopChild, waitForPort, which } from "./procs.ts";

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = resolve(HERE, "../..");
const env = process.env;

const SECONDS = Number(env.BENCH_SECONDS ?? 10);
const CLIENTS = (env.BENCH_CLIENTS ?? "1,8").split(",").map(Number);
const MODES = (env.BENCH_MODES ?? "simple,prepared").split(",") as ProtocolMode[];
const SCALE = Number(env.BENCH_SCALE ?? 10);
const ALL_TARGETS = ["direct", "pipe", "pgbouncer", "gatehouse", "gatehouse-remote", "gatehouse-norec", "gatehouse-tls", "gatehouse-mem", "gatehouse-alt"] as const;
type Target = (typeof ALL_TARGETS)[number];
const TARGETS = (env.BENCH_TARGETS ?? `direct,pipe,pgbouncer,gatehouse,gatehouse-remote,gatehouse-norec,gatehouse-tls${env.BENCH_AUDIT === "1" ? ",gatehouse-mem" : ""}${env.BENCH_ALT_ROOT ? ",gatehouse-alt" : ""}`).split(",") as Target[];
const PROFILE = env.BENCH_PROFILE === "1";
const REPEAT = Math.max(1, Number(env.BENCH_REPEAT ?? 1));
const GATEHOUSE_ROOT = resolve(env.BENCH_GATEHOUSE_ROOT ?? REPO);
const ALT_ROOT = env.BENCH_ALT_ROOT ? resolve(env.BENCH_ALT_ROOT) : undefined;
/** Extra environment for the alt gateway only: "K=V,K2=V2". */
const ALT_ENV = Object.fromEntries((env.BENCH_ALT_ENV ?? "").split(",").filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]));
const PG_HOST = "127.0.0.1";
const PG_PORT = Number(env.BENCH_PG_PORT ?? 5432);
const PG_USER = "postgres";
const CPUS = availableParallelism();
const LOAD_AT_START = loadavg();

const LABELS: Record<Target, string> = {
  direct: "PostgreSQL direct",
  pipe: "Node byte pipe",
  pgbouncer: "PgBouncer (session)",
  gatehouse: "Gatehouse",
  "gatehouse-remote": "Gatehouse, remote agent",
  "gatehouse-norec": "Gatehouse, recording off",
  "gatehouse-tls": "Gatehouse TLS",
  "gatehouse-mem": "Gatehouse, audit :memory:",
  "gatehouse-alt": "Gatehouse (alt checkout)",
};

const log = (s: string) => process.stderr.write(`${s}\n`);

for (const t of TARGETS) if (!ALL_TARGETS.includes(t)) throw new Error(`unknown target ${t} in BENCH_TARGETS (known: ${ALL_TARGETS.join(", ")})`);
for (const m of MODES) if (m !== "simple" && m !== "prepared") throw new Error(`unknown mode ${m} in BENCH_MODES`);
if (!(SECONDS >= 1)) throw new Error("BENCH_SECONDS must be at least 1");

// ------------------------------------------------------------------------------------ database

async function admin<T>(database: string, f: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ host: PG_HOST, port: PG_PORT, user: PG_USER, database });
  await c.connect();
  try {
    return await f(c);
  } finally {
    await c.end();
  }
}

// ------------------------------------------------------------------------------------- servers

async function startPipe(cpuProfDir?: string): Promise<{ child: Child; port: number }> {
  const port = await freePort();
  const nodeArgs = cpuProfDir ? ["--cpu-prof", `--cpu-prof-dir=${cpuProfDir}`] : [];
  const child = startChild("pipe", process.execPath, [...nodeArgs, "--import", "tsx", join(HERE, "pipe-proxy.ts"), String(port), PG_HOST, String(PG_PORT)], { cwd: REPO });
  await waitForPort(port, child);
  return { child, port };
}

function pgbouncerBinary(): string | undefined {
  return which("pgbouncer") ?? (existsSync("/usr/sbin/pgbouncer") ? "/usr/sbin/pgbouncer" : undefined);
}

async function startPgbouncer(dir: string, database: string): Promise<{ child: Child; port: number } | { missing: string }> {
  const bin = pgbouncerBinary();
  if (!bin) return { missing: "pgbouncer is not installed: apt-get install -y --no-install-recommends pgbouncer" };
  const port = await freePort();
  const d = join(dir, "pgbouncer");
  mkdirSync(d, { mode: 0o755 });
  const asRoot = process.getuid?.() === 0;
  const ini = [
    "[databases]",
    `bench = host=${PG_HOST} port=${PG_PORT} dbname=${database} user=${PG_USER}`,
    "[pgbouncer]",
    `listen_addr = ${PG_HOST}`,
    `listen_port = ${port}`,
    "unix_socket_dir =",
    "auth_type = trust",
    `auth_file = ${join(d, "userlist.txt")}`,
    "pool_mode = session",
    "max_client_conn = 200",
    "default_pool_size = 40",
    "ignore_startup_parameters = extra_float_digits",
    "log_connections = 0",
    "log_disconnections = 0",
    "",
  ].join("\n");
  writeFileSync(join(d, "pgbouncer.ini"), ini, { mode: 0o644 });
  writeFileSync(join(d, "userlist.txt"), `"${PG_USER}" ""\n"bench" ""\n`, { mode: 0o644 });
  if (asRoot) {
    // PgBouncer refuses to run as root: run it as the postgres user, with its files owned by it.
    const uid = Number((await run("id", ["-u", "postgres"])).stdout.trim());
    const gid = Number((await run("id", ["-g", "postgres"])).stdout.trim());
    chownSync(d, uid, gid);
    for (const f of readdirSync(d)) chownSync(join(d, f), uid, gid);
  }
  const child = asRoot ? startChild("pgbouncer", "runuser", ["-u", "postgres", "--", bin, join(d, "pgbouncer.ini")]) : startChild("pgbouncer", bin, [join(d, "pgbouncer.ini")]);
  await waitForPort(port, child);
  return { child, port };
}

interface GatewayProc {
  child: Child;
  port: number;
  token: string;
}

async function startGatehouse(dir: string, database: string, opts: { name: string; storeUrl?: string; cpuProfDir?: string; root?: string; env?: Record<string, string>; extra?: Record<string, unknown> }): Promise<GatewayProc> {
  const d = join(dir, opts.name);
  mkdirSync(d, { recursive: true });
  const [pgPort, apiPort] = [await freePort(), await freePort()];
  const config = {
    identity: { devIssuer: { enabled: true, keyFile: join(dir, "dev-issuer-key.json") } },
    store: { url: opts.storeUrl ?? `sqlite:${join(d, "gatehouse.db")}` },
    api: { host: "127.0.0.1", port: apiPort },
    listeners: { postgres: { host: "127.0.0.1", port: pgPort, allowCleartextLoopback: true, tls: { selfSigned: true, selfSignedDir: join(dir, "tls") } } },
    connections: [{ name: "bench", protocol: "postgres", postgres: { host: PG_HOST, port: PG_PORT, database, user: PG_USER, tls: "disable" } }],
    policies: [{ name: "agents-read", principals: { groups: ["ai-agents"] }, operations: { kinds: ["read", "transaction", "session"] }, decision: "allow" }],
    // warn, not info: at info every decision is a JSON log line, which would dominate the profile.
    logging: { level: env.BENCH_GATEHOUSE_LOG ?? "warn" },
    ...opts.extra,
  };
  const file = join(d, "gatehouse.yaml");
  writeFileSync(file, `${JSON.stringify(config, null, 2)}\n`); // JSON is YAML
  const token = await mintDevToken(loadConfigFile(file).identity, { subject: "bench-agent", name: "bench-agent", groups: ["ai-agents"], kind: "service", lifetimeSeconds: 4 * 3600 });
  const nodeArgs = opts.cpuProfDir ? ["--cpu-prof", `--cpu-prof-dir=${opts.cpuProfDir}`] : [];
  const child = startChild(opts.name, process.execPath, [...nodeArgs, "--import", "tsx", "src/cli/index.ts", "gateway", "--config", file], { cwd: opts.root ?? GATEHOUSE_ROOT, env: { ...process.env, ...opts.env } });
  await waitForPort(pgPort, child, 60_000);
  return { child, port: pgPort, token };
}

/**
 * A gateway whose connection is served by a network-resident agent: `agents create`, then the
 * gateway, then `gatehouse agent` as its own process dialling the gateway's API; ready once a
 * session goes through.
 */
async function startRemoteGatehouse(dir: string, database: string): Promise<GatewayProc> {
  const name = "gatehouse-remote";
  const d = join(dir, name);
  mkdirSync(d, { recursive: true });
  const [pgPort, apiPort] = [await freePort(), await freePort()];
  const config = {
    identity: { devIssuer: { enabled: true, keyFile: join(dir, "dev-issuer-key.json") } },
    store: { url: `sqlite:${join(d, "gatehouse.db")}` },
    api: { host: "127.0.0.1", port: apiPort },
    listeners: { postgres: { host: "127.0.0.1", port: pgPort, allowCleartextLoopback: true, tls: { selfSigned: true, selfSignedDir: join(dir, "tls") } } },
    connections: [{ name: "bench", protocol: "postgres", agent: "bench-edge", postgres: { host: PG_HOST, port: PG_PORT, database, user: PG_USER, tls: "disable" } }],
    policies: [{ name: "agents-read", principals: { groups: ["ai-agents"] }, operations: { kinds: ["read", "transaction", "session"] }, decision: "allow" }],
    logging: { level: env.BENCH_GATEHOUSE_LOG ?? "warn" },
  };
  const file = join(d, "gatehouse.yaml");
  writeFileSync(file, `${JSON.stringify(config, null, 2)}
`);
  const created = await run(process.execPath, ["--import", "tsx", join(GATEHOUSE_ROOT, "src/cli/index.ts"), "agents", "create", "bench-edge", "--config", file], { timeoutMs: 60_000 });
  const secret = created.stdout.trim().split("\n").at(-1)!;
  const token = await mintDevToken(loadConfigFile(file).identity, { subject: "bench-agent", name: "bench-agent", groups: ["ai-agents"], kind: "service", lifetimeSeconds: 4 * 3600 });
  const child = startChild(name, process.execPath, ["--import", "tsx", "src/cli/index.ts", "gateway", "--config", file], { cwd: GATEHOUSE_ROOT });
  await waitForPort(pgPort, child, 60_000);
  startChild("agent", process.execPath, ["--import", "tsx", "src/cli/index.ts", "agent", "--gateway", `http://127.0.0.1:${apiPort}`, "--log-level", "warn"], { cwd: GATEHOUSE_ROOT, env: { ...process.env, GATEHOUSE_AGENT_TOKEN: secret } });
  for (let i = 0; ; i++) {
    const c = new pg.Client({ host: "127.0.0.1", port: pgPort, database: "bench", user: "bench-agent", password: token, ssl: false });
    c.on("error", () => {});
    try {
      await c.connect();
      await c.end();
      break;
    } catch (e) {
      if (i > 200) throw new Error(`the remote agent did not come up: ${(e as Error).message}`);
      await new Promise((r) => setTimeout(r, 150));
    }
  }
  return { child, port: pgPort, token };
}

// ------------------------------------------------------------------------------------- results

interface Cell {
  clients: number;
  mode: ProtocolMode;
}
const cellKey = (c: Cell) => `${c.clients}c ${c.mode}`;

const fmt = {
  tps: (n: number) => (Number.isFinite(n) ? Math.round(n).toString() : "—"),
  ms: (n: number) => (Number.isFinite(n) ? (n < 1 ? n.toFixed(3) : n < 10 ? n.toFixed(2) : n.toFixed(1)) : "—"),
  ratio: (a: number, b: number) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? (a / b).toFixed(2) : "—"),
};

function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(" | ")} |`;
  return [line(headers), `|${widths.map((w, i) => (i === 0 ? `${"-".repeat(w + 1)}-` : `${"-".repeat(w + 1)}:`)).join("|")}|`, ...rows.map(line)].join("\n");
}

function report(cells: Cell[], targets: Target[], results: Map<string, CellResult>, skipped: Map<Target, string>): string {
  const get = (t: Target, c: Cell) => results.get(`${t}|${cellKey(c)}`);
  const out: string[] = [];
  out.push(`pgbench -S -n (select-only), scale ${SCALE}, ${SECONDS} s per cell${REPEAT > 1 ? ` (median of ${REPEAT} interleaved runs)` : ""}, -j = min(clients, ${CPUS}); ${CPUS} CPUs (${cpus()[0]?.model.trim() ?? "?"}), Node ${process.version}`);
  out.push(`load average at the start ${LOAD_AT_START.map((x) => x.toFixed(1)).join(" ")}, at the end ${loadavg().map((x) => x.toFixed(1)).join(" ")} (other work on the machine shows here)`);
  out.push("");
  out.push("TPS, and p50 / p99 latency in ms (from per-transaction logs):");
  out.push("");
  const shown = targets.filter((t) => !skipped.has(t));
  out.push(
    table(
      ["row", ...cells.map(cellKey)],
      shown.map((t) => [
        LABELS[t],
        ...cells.map((c) => {
          const r = get(t, c);
          if (!r) return "";
          if (r.failed) return "failed";
          return `${fmt.tps(r.tps)} (${fmt.ms(r.p50Ms)} / ${fmt.ms(r.p99Ms)})`;
        }),
      ]),
    ),
  );
  const ratioRows: string[][] = [];
  const ratio = (label: string, a: Target, b: Target) => {
    if (!shown.includes(a) || !shown.includes(b)) return;
    ratioRows.push([label, ...cells.map((c) => fmt.ratio(get(a, c)?.tps ?? Number.NaN, get(b, c)?.tps ?? Number.NaN))]);
  };
  ratio("pipe / direct", "pipe", "direct");
  ratio("PgBouncer / direct", "pgbouncer", "direct");
  for (const g of ["gatehouse", "gatehouse-remote", "gatehouse-norec", "gatehouse-tls", "gatehouse-mem"] as const) {
    ratio(`${LABELS[g]} / direct`, g, "direct");
    ratio(`${LABELS[g]} / pipe`, g, "pipe");
    ratio(`${LABELS[g]} / PgBouncer`, g, "pgbouncer");
  }
  ratio("remote agent / embedded agent", "gatehouse-remote", "gatehouse");
  ratio("recording on / off (Gatehouse / recording off)", "gatehouse", "gatehouse-norec");
  ratio("Gatehouse audit file / :memory:", "gatehouse", "gatehouse-mem");
  ratio("alt checkout / Gatehouse", "gatehouse-alt", "gatehouse");
  ratio("alt checkout / pipe", "gatehouse-alt", "pipe");
  if (ratioRows.length) {
    out.push("");
    out.push("TPS ratios (targets: Gatehouse / pipe ≥ 0.95; Gatehouse ≥ PgBouncer at 8 clients):");
    out.push("");
    out.push(table(["ratio", ...cells.map(cellKey)], ratioRows));
  }
  for (const [t, why] of skipped) out.push(`\n${LABELS[t]}: skipped — ${why}`);
  for (const t of shown)
    for (const c of cells) {
      const r = get(t, c);
      if (r?.failed) out.push(`\n${LABELS[t]} ${cellKey(c)} failed: ${r.failed}`);
    }
  return out.join("\n");
}

// ---------------------------------------------------------------------------------------- main

async function main(): Promise<void> {
  const started = Date.now();
  for (const tool of ["pgbench"]) if (!which(tool)) throw new Error(`${tool} is not installed (apt-get install -y postgresql-client)`);
  const dir = mkdtempSync(join(tmpdir(), "gh-bench-pg-"));
  chmodSync(dir, 0o755); // pgbouncer runs as postgres and must reach its own subdirectory
  const database = `gh_bench_${randomBytes(4).toString("hex")}`;
  let created = false;
  try {
    log(`creating database ${database} and running pgbench -i -s ${SCALE} …`);
    await admin("postgres", (c) => c.query(`CREATE DATABASE ${database}`));
    created = true;
    await run("pgbench", ["-i", "-q", "-s", String(SCALE), "-h", PG_HOST, "-p", String(PG_PORT), "-U", PG_USER, database], { timeoutMs: 300_000 });
    await admin(database, (c) => c.query("VACUUM ANALYZE"));

    const endpoints = new Map<Target, Endpoint>();
    const skipped = new Map<Target, string>();
    const base = { host: PG_HOST, user: PG_USER, sslmode: "disable" as const };
    if (TARGETS.includes("direct")) endpoints.set("direct", { ...base, port: PG_PORT, database });

    // Start the proxies side by side (the gateways take a few seconds to load).
    const starting: Array<Promise<void>> = [];
    if (TARGETS.includes("pipe"))
      starting.push(startPipe(undefined).then((p) => void endpoints.set("pipe", { ...base, port: p.port, database })));
    if (TARGETS.includes("pgbouncer"))
      starting.push(
        startPgbouncer(dir, database)
          .catch((e: Error) => ({ missing: `PgBouncer did not start: ${e.message.split("\n").slice(0, 4).join(" | ")}` }))
          .then((p) => {
            if ("missing" in p) {
              log(`PgBouncer row skipped: ${p.missing}`);
              skipped.set("pgbouncer", p.missing);
            } else endpoints.set("pgbouncer", { ...base, port: p.port, database: "bench" });
          }),
      );
    if (TARGETS.includes("gatehouse") || TARGETS.includes("gatehouse-tls"))
      starting.push(
        startGatehouse(dir, database, { name: "gatehouse" }).then((g) => {
          const ep = { host: "127.0.0.1", port: g.port, database: "bench", user: "bench-agent", password: g.token };
          if (TARGETS.includes("gatehouse")) endpoints.set("gatehouse", { ...ep, sslmode: "disable" });
          if (TARGETS.includes("gatehouse-tls")) endpoints.set("gatehouse-tls", { ...ep, sslmode: "require" });
        }),
      );
    if (TARGETS.includes("gatehouse-remote"))
      starting.push(
        startRemoteGatehouse(dir, database).then((g) => {
          endpoints.set("gatehouse-remote", { host: "127.0.0.1", port: g.port, database: "bench", user: "bench-agent", password: g.token, sslmode: "disable" });
        }),
      );
    if (TARGETS.includes("gatehouse-norec"))
      starting.push(
        startGatehouse(dir, database, { name: "gatehouse-norec", extra: { recording: { enabled: false } } }).then((g) => {
          endpoints.set("gatehouse-norec", { host: "127.0.0.1", port: g.port, database: "bench", user: "bench-agent", password: g.token, sslmode: "disable" });
        }),
      );
    if (TARGETS.includes("gatehouse-mem"))
      starting.push(
        startGatehouse(dir, database, { name: "gatehouse-mem", storeUrl: "sqlite::memory:" }).then((g) => {
          endpoints.set("gatehouse-mem", { host: "127.0.0.1", port: g.port, database: "bench", user: "bench-agent", password: g.token, sslmode: "disable" });
        }),
      );
    if (TARGETS.includes("gatehouse-alt")) {
      if (!ALT_ROOT) throw new Error("the gatehouse-alt row needs BENCH_ALT_ROOT");
      starting.push(
        startGatehouse(dir, database, { name: "gatehouse-alt", root: ALT_ROOT, env: ALT_ENV }).then((g) => {
          endpoints.set("gatehouse-alt", { host: "127.0.0.1", port: g.port, database: "bench", user: "bench-agent", password: g.token, sslmode: "disable" });
        }),
      );
    }
    // allSettled: a start that fails must not leave a sibling starting after the cleanup ran.
    const settled = await Promise.allSettled(starting);
    for (const r of settled) if (r.status === "rejected") throw r.reason;
    checkInterrupted();

    const cells: Cell[] = CLIENTS.flatMap((clients) => MODES.map((mode) => ({ clients, mode })));
    const targets = TARGETS.filter((t) => endpoints.has(t));
    const threads = (clients: number) => Math.max(1, Math.min(clients, CPUS));

    // Warm-up: let V8 optimise the Node proxies' hot paths before anything is measured.
    const warm = Math.min(2, SECONDS);
    for (const t of targets.filter((x) => x !== "direct" && x !== "pgbouncer")) {
      for (const mode of MODES) {
        checkInterrupted();
        const r = await runPgbench({ endpoint: endpoints.get(t)!, clients: Math.max(...CLIENTS), threads: threads(Math.max(...CLIENTS)), mode, seconds: warm, logDir: join(dir, "warmup", t, mode) });
        if (r.failed) log(`warm-up of ${LABELS[t]} (${mode}) failed: ${r.failed}`);
      }
    }
    rmSync(join(dir, "warmup"), { recursive: true, force: true });

    // Cells in the outer loop, targets inside: every row of a cell is measured minutes apart at
    // most, so drift on a shared machine hits all rows alike.
    const results = new Map<string, CellResult>();
    const runs = new Map<string, CellResult[]>();
    const total = cells.length * targets.length * REPEAT;
    let n = 0;
    for (const c of cells) {
      for (let rep = 0; rep < REPEAT; rep++) {
        for (const t of targets) {
          checkInterrupted();
          const logDir = join(dir, "logs", t, `${c.clients}-${c.mode}`);
          const r = await runPgbench({ endpoint: endpoints.get(t)!, clients: c.clients, threads: threads(c.clients), mode: c.mode, seconds: SECONDS, logDir });
          rmSync(logDir, { recursive: true, force: true });
          checkInterrupted();
          const key = `${t}|${cellKey(c)}`;
          runs.set(key, [...(runs.get(key) ?? []), r]);
          n++;
          log(`[${n}/${total}] ${LABELS[t].padEnd(26)} ${cellKey(c).padEnd(12)} ${r.failed ? `FAILED ${r.failed}` : `${fmt.tps(r.tps).padStart(6)} tps  p50 ${fmt.ms(r.p50Ms)} ms  p99 ${fmt.ms(r.p99Ms)} ms`}`);
        }
      }
    }
    // With BENCH_REPEAT > 1 a cell reports its median run (by TPS), latencies of that same run.
    for (const [key, rs] of runs) {
      const ok = rs.filter((r) => !r.failed).sort((a, b) => a.tps - b.tps);
      results.set(key, ok.length ? ok[Math.floor((ok.length - 1) / 2)]! : rs[0]!);
    }
    for (const t of TARGETS) if (!endpoints.has(t) && !skipped.has(t)) skipped.set(t, "not started");
    await stopAll();

    process.stdout.write(`\n${report(cells, TARGETS, results, skipped)}\n`);
    log(`\nbenchmark took ${((Date.now() - started) / 1000).toFixed(0)} s`);

    let profiles: Record<string, string> | undefined;
    if (PROFILE) profiles = await profileGateway(dir, database);

    if (env.BENCH_OUT) {
      const json = { seconds: SECONDS, scale: SCALE, cpus: CPUS, node: process.version, results: Object.fromEntries(results), skipped: Object.fromEntries(skipped), profiles };
      writeFileSync(env.BENCH_OUT, `${JSON.stringify(json, null, 2)}\n`);
    }
  } finally {
    await stopAll();
    if (created) await admin("postgres", (c) => c.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`)).catch((e) => log(`could not drop ${database}: ${(e as Error).message}`));
    if (env.BENCH_KEEP === "1") log(`kept ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Profile mode: run the gateway (and, for comparison, the byte pipe) under node --cpu-prof, one
 * process per (row, clients, mode), and print a summary of the measured window only.
 */
async function profileGateway(dir: string, database: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const rows = (env.BENCH_PROFILE_TARGETS ?? "gatehouse,pipe").split(",");
  for (const row of rows) {
    if (row !== "gatehouse" && row !== "pipe") throw new Error(`BENCH_PROFILE_TARGETS: unknown row ${row} (gatehouse, pipe)`);
    for (const clients of CLIENTS)
      for (const mode of MODES) {
        checkInterrupted();
        const key = `${row} ${clients}c ${mode}`;
        const profDir = join(dir, "profiles", key.replaceAll(" ", "-"));
        mkdirSync(profDir, { recursive: true });
        const spawned = performance.now();
        let child: Child;
        let ep: Endpoint;
        if (row === "gatehouse") {
          const g = await startGatehouse(dir, database, { name: `prof-${key.replaceAll(" ", "-")}`, cpuProfDir: profDir });
          child = g.child;
          ep = { host: "127.0.0.1", port: g.port, database: "bench", user: "bench-agent", password: g.token, sslmode: "disable" };
        } else {
          const p = await startPipe(profDir);
          child = p.child;
          ep = { host: PG_HOST, port: p.port, database, user: PG_USER, sslmode: "disable" };
        }
        const threads = Math.min(clients, CPUS);
        await runPgbench({ endpoint: ep, clients, threads, mode, seconds: Math.min(2, SECONDS), logDir: join(profDir, "warm") });
        const from = performance.now() - spawned;
        const r = await runPgbench({ endpoint: ep, clients, threads, mode, seconds: SECONDS, logDir: join(profDir, "logs") });
        const to = performance.now() - spawned;
        await stopChild(child, 25_000); // SIGTERM: the process exits and V8 writes the profile
        const file = readdirSync(profDir).find((f) => f.endsWith(".cpuprofile"));
        // Only the measured load: start-up (module loading), warm-up and shutdown are cut off. The
        // window is timed from the spawn, a few ms before V8 starts profiling.
        const text = file
          ? `profile: ${key}, ${SECONDS} s, ${fmt.tps(r.tps)} tps under the profiler, ${r.transactions} transactions\n${formatSummary(summarizeFile(join(profDir, file), { top: 30, fromMs: from, toMs: to }), r.transactions)}`
          : `no profile was written for ${key}:\n${child.output().slice(-2000)}`;
        out[key] = text;
        process.stdout.write(`\n${text}\n`);
        if (env.BENCH_KEEP === "1" && file) log(`profile kept at ${join(profDir, file)}`);
      }
  }
  return out;
}

let interrupted = false;
let interruptedAt = 0;
function checkInterrupted(): void {
  if (interrupted) throw new Error("interrupted");
}
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    if (interrupted) {
      // npm forwards the terminal's Ctrl-C a second time: only a later signal force-quits.
      if (Date.now() - interruptedAt < 2000) return;
      killAllSync();
      process.exit(130);
    }
    interrupted = true;
    interruptedAt = Date.now();
    log(`\n${sig}: stopping child processes and dropping the database (signal again to force-quit)`);
    process.exitCode = 130;
    void stopAll();
    setTimeout(() => process.exit(130), 30_000).unref();
  });
}
process.on("exit", killAllSync);

main().catch((e) => {
  if (interrupted) log("benchmark interrupted; child processes stopped, database dropped");
  else log(`benchmark failed: ${(e as Error).stack ?? e}`);
  process.exitCode = interrupted ? 130 : 1;
});

// Target pinning for a network-resident agent: what it may open, and which of its credentials it
// may send where. The gateway names the target (address, credential references) in every OPEN; a
// gateway that is compromised, or whose configuration or store was tampered with, could otherwise
// point the agent at a host it controls and have it send any credential the agent can resolve —
// an HTTP bearer token or a PostgreSQL password (md5/cleartext) — or read any `file:` it can read.
// With a targets file (`gatehouse agent --targets FILE`) the agent opens only the targets listed
// and resolves a reference only for a target whose entry lists it. Without one, it still refuses
// its own secrets by name (the tunnel token, the OIDC client secret) and process and system files
// (/proc/self/environ holds them all) — but only the file pins everything else.
//
// The file (YAML or JSON):
//
//   targets:
//     - postgres: db.internal:5432            # host[:port] (5432 by default), as the agent sees it
//       credentials: [env:PG_PASSWORD]        # references usable with this target (password, ca)
//       tls: verify-full                      # optional: the least TLS it may be opened with
//     - http: https://ci.internal:8443        # an origin: scheme://host[:port]
//       credentials: [env:CI_TOKEN, file:/etc/ci/ca.pem]
//
// Hosts are compared as written (case-insensitive; no DNS lookups): pin the names the gateway's
// configuration uses. An entry without `credentials` allows the target with no reference at all.
//
// Never: resolve a reference, or open a socket, before the check passed.

import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { isSecretReference } from "../agent/secrets.ts";
import type { HttpTarget, PostgresTarget } from "../domain/connection.ts";
import { GatehouseError } from "../domain/errors.ts";

/** The agent's own secrets: never a target's credential, whatever a gateway or a file says. */
export const AGENT_OWN_SECRETS: readonly string[] = ["env:GATEHOUSE_AGENT_TOKEN", "env:GATEHOUSE_AGENT_CLIENT_SECRET"];

/** Process and system files: `/proc/self/environ` holds the agent's own secrets, whatever their names. */
const SYSTEM_DIRS = ["/proc", "/sys", "/dev"];

/** Whether a reference names a file in (or one of) SYSTEM_DIRS, relative paths resolved as the agent would. */
function isSystemFile(ref: string): boolean {
  if (!ref.startsWith("file:")) return false;
  const path = resolve(ref.slice(5));
  return SYSTEM_DIRS.some((d) => path === d || path.startsWith(`${d}/`));
}

const reference = z
  .string()
  .refine((r) => isSecretReference(r), "a credential reference: env:NAME or file:/path")
  .refine((r) => !AGENT_OWN_SECRETS.includes(r), "the agent's own secret cannot be a target's credential")
  .refine((r) => !isSystemFile(r), "a process or system file cannot be a target's credential");

const entrySchema = z
  .object({
    postgres: z.string().min(1).optional(),
    http: z.string().min(1).optional(),
    credentials: z.array(reference).default([]),
    tls: z.enum(["require", "verify-full"]).optional(),
  })
  .strict()
  .superRefine((e, ctx) => {
    if ((e.postgres === undefined) === (e.http === undefined)) ctx.addIssue({ code: "custom", message: "give exactly one of postgres: or http:" });
    if (e.tls !== undefined && e.postgres === undefined) ctx.addIssue({ code: "custom", path: ["tls"], message: "tls: is for postgres entries (an http entry's scheme says whether it is https)" });
  });

const fileSchema = z.object({ targets: z.array(entrySchema).min(1, "list at least one target") }).strict();

interface Pin {
  /** `postgres host:port` or `http(s) origin`, lower case: the key a target is looked up by. */
  key: string;
  credentials: ReadonlySet<string>;
  /** PostgreSQL: the least TLS the target may be opened with (`tls:` in the entry). */
  tls?: "require" | "verify-full";
}

/** PostgreSQL TLS modes, weakest first. */
const TLS_RANK = { disable: 0, prefer: 1, require: 2, "verify-full": 3 } as const;

/** `[::1]` → `::1`; lower case. */
function normalHost(h: string): string {
  return h.replace(/^\[(.*)\]$/, "$1").toLowerCase();
}

function postgresKey(host: string, port: number): string {
  return `postgres ${normalHost(host)}:${port}`;
}

/** The origin of an http(s) URL with its default port made explicit, or undefined. */
function httpKey(url: string): string | undefined {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return undefined;
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") return undefined;
  const port = u.port || (u.protocol === "https:" ? "443" : "80");
  return `http ${u.protocol}//${normalHost(u.hostname)}:${port}`;
}

function parsePostgres(s: string): string | undefined {
  // host, host:port, [v6], [v6]:port — parsed as a URL authority so IPv6 and ports are handled once.
  let u: URL;
  try {
    u = new URL(`postgres://${s}`);
  } catch {
    return undefined;
  }
  if (!u.hostname || u.username || u.password || (u.pathname && u.pathname !== "/") || u.search || u.hash) return undefined;
  return postgresKey(u.hostname, u.port ? Number(u.port) : 5432);
}

export class TargetPins {
  readonly #pins = new Map<string, Pin>();
  readonly file: string;

  private constructor(file: string, entries: z.infer<typeof entrySchema>[]) {
    this.file = file;
    for (const [i, e] of entries.entries()) {
      const bad = (what: string) => new GatehouseError("CONFIG_INVALID", `${file}: targets[${i}]: ${what}`);
      let key: string | undefined;
      if (e.postgres !== undefined) {
        key = parsePostgres(e.postgres);
        if (!key) throw bad(`postgres is host[:port], got ${JSON.stringify(e.postgres)}`);
      } else {
        const http = e.http!;
        key = httpKey(http);
        if (!key) throw bad(`http is an http:// or https:// origin, got ${JSON.stringify(http)}`);
        const url = new URL(http);
        if (url.pathname !== "/" || url.search || url.hash || url.username || url.password) throw bad(`http is an origin (scheme://host[:port]) without a path, query or user: got ${JSON.stringify(http)}`);
      }
      const prior = this.#pins.get(key);
      // Listed twice: the credentials are the union, the TLS floor the stronger one.
      const tls = [prior?.tls, e.tls].filter((x) => x !== undefined).sort((a, b) => TLS_RANK[b!] - TLS_RANK[a!])[0];
      this.#pins.set(key, { key, credentials: new Set([...(prior?.credentials ?? []), ...e.credentials]), ...(tls ? { tls } : {}) });
    }
  }

  /** Read and check a targets file; every problem is a GH-CONFIG error naming the file. */
  static load(file: string): TargetPins {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch (e) {
      throw new GatehouseError("CONFIG_UNREADABLE", `${file}: ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "file not found" : (e as Error).message}`);
    }
    return TargetPins.parse(text, file);
  }

  static parse(text: string, file = "(targets)"): TargetPins {
    let doc: unknown;
    try {
      doc = parseYaml(text);
    } catch (e) {
      throw new GatehouseError("CONFIG_UNREADABLE", `${file}: ${(e as Error).message}`);
    }
    if (doc === null || doc === undefined) throw new GatehouseError("CONFIG_INVALID", `${file}: the file is empty; it lists the agent's targets under \`targets:\``);
    const r = fileSchema.safeParse(doc);
    if (!r.success) throw new GatehouseError("CONFIG_INVALID", `${file}: ${r.error.issues.map((i) => `${i.path.join(".") || "(file)"}: ${i.message}`).join("; ")}`);
    return new TargetPins(file, r.data.targets);
  }

  get size(): number {
    return this.#pins.size;
  }

  /** Throws GH-AGENT-007 unless this PostgreSQL target, with its password and CA references, is allowed. */
  checkPostgres(connection: string, t: Pick<PostgresTarget, "host" | "port" | "password" | "ca"> & { tls?: PostgresTarget["tls"] }): void {
    const host = t.host.includes(":") && !t.host.startsWith("[") ? `[${t.host}]` : t.host;
    const key = postgresKey(t.host, t.port);
    this.#check(connection, key, `${host}:${t.port}`, [t.password, t.ca], t.ca);
    const floor = this.#pins.get(key)?.tls;
    if (floor && TLS_RANK[t.tls ?? "prefer"] < TLS_RANK[floor]) throw refused(connection, `TLS ${t.tls ?? "prefer"} to ${host}:${t.port}, where the agent's targets file requires at least ${floor}`);
  }

  /** Throws GH-AGENT-007 unless this HTTP target's origin, with its secret and CA references, is allowed. */
  checkHttp(connection: string, t: Pick<HttpTarget, "url" | "auth" | "ca">): void {
    const key = httpKey(t.url);
    if (!key) throw refused(connection, `${JSON.stringify(t.url)} is not an http(s) URL`);
    this.#check(connection, key, key.slice(5), [t.auth?.secret, t.ca], t.ca);
  }

  #check(connection: string, key: string, shown: string, refs: Array<string | undefined>, ca: string | undefined): void {
    const pin = this.#pins.get(key);
    if (!pin) throw refused(connection, `${shown} is not in the agent's targets file`);
    // A CA given as text would let whoever wrote it stand in for the pinned host: only a reference
    // the entry lists will do.
    if (ca !== undefined && !isSecretReference(ca)) throw refused(connection, `a CA for ${shown} given as text, not as a reference listed in the agent's targets file`);
    for (const r of refs) {
      if (r === undefined || !isSecretReference(r)) continue;
      if (!pin.credentials.has(r)) throw refused(connection, `the credential ${describeRef(r)} is not listed for ${shown} in the agent's targets file`);
    }
  }
}

/** `env:NAME` as it is; a file path is not echoed to the gateway (it may be sensitive itself). */
function describeRef(r: string): string {
  return r.startsWith("env:") ? r : `${r.slice(0, r.indexOf(":") + 1)}…`;
}

function refused(connection: string, why: string): GatehouseError {
  return new GatehouseError("AGENT_TARGET_REFUSED", `connection ${connection}: ${why}`);
}

/**
 * With or without a targets file: the agent's own secrets (its tunnel token and OIDC client
 * secret by name, and process and system files, which hold its environment and command line) are
 * never a target's credential. Throws GH-AGENT-007 if a reference names one. Only a targets file
 * pins the rest.
 */
export function checkOwnSecrets(connection: string, refs: Array<string | undefined>): void {
  for (const r of refs) {
    if (r === undefined) continue;
    if (AGENT_OWN_SECRETS.includes(r)) throw refused(connection, `the credential ${r} is the agent's own secret, never a target's`);
    if (isSystemFile(r)) throw refused(connection, `the credential ${describeRef(r)} is a process or system file (${SYSTEM_DIRS.join(", ")}), never a target's`);
  }
}

// Configuration and policy changes in the audit trail. At every start the gateway fingerprints its
// effective configuration — SHA-256 over canonical JSON, with secret values and URL credentials
// redacted first — and records `config.loaded` with per-section, per-rule and per-connection
// hashes. When the fingerprint differs from the previous `config.loaded`, it also records
// `config.changed`, naming the rules and connections added, removed or changed.
//
// Never: put a configuration value into the trail. Only hashes and names go in, and the hashes are
// of redacted values, so a weak password cannot be recovered from them by guessing.

import type { Config } from "../config/schema.ts";
import type { Store } from "../store/store.ts";
import { canonicalJson, sha256Hex } from "./chain.ts";
import type { AuditLog } from "./log.ts";
import { parseData } from "./query.ts";

export const REDACTED = "[redacted]";

/** Keys whose values are secrets unless they are references (`env:NAME`, `file:/path`). */
const SECRET_KEYS = new Set(["password", "secret", "signingKey", "key", "cert", "ca"]);
const REFERENCE = /^(env|file):/;

function redactUrlValue(key: string, v: string): string {
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    return v;
  }
  if (!/^(https?|postgres|postgresql):$/.test(u.protocol)) return v;
  // Webhook URLs (Slack, Teams) are secrets in their path: keep only where they point.
  if (key === "url" && u.protocol.startsWith("http")) return `${u.origin}/${REDACTED}`;
  u.password = "";
  u.search = "";
  u.hash = "";
  return u.toString();
}

/** The configuration with secret values replaced and URLs stripped of credentials. */
export function redactConfig(v: unknown, key = ""): unknown {
  if (typeof v === "string") {
    if (SECRET_KEYS.has(key)) return REFERENCE.test(v) ? v : REDACTED;
    return redactUrlValue(key, v);
  }
  if (Array.isArray(v)) return v.map((x) => redactConfig(x, key));
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, redactConfig(x, k)]));
  return v;
}

export interface ConfigFingerprint {
  fingerprint: string;
  sections: Record<string, string>;
  rules: Record<string, string>;
  ruleOrder: string[];
  connections: Record<string, string>;
}

const hashOf = (v: unknown) => sha256Hex(canonicalJson(v));

export function fingerprintConfig(config: Config): ConfigFingerprint {
  const red = redactConfig(config) as Config;
  const byName = <T extends { name: string }>(xs: T[]) => Object.fromEntries(xs.map((x) => [x.name, hashOf(x)]));
  const connections = byName(red.connections);
  // Connections are keyed by name (their order means nothing); rules keep their order (it breaks ties).
  const sections = Object.fromEntries(Object.entries(red).map(([k, v]) => [k, hashOf(k === "connections" ? connections : v)]));
  return { fingerprint: hashOf(sections), sections, rules: byName(red.policies), ruleOrder: red.policies.map((r) => r.name), connections };
}

export interface NameDiff {
  added: string[];
  removed: string[];
  changed: string[];
}

export interface ConfigDiff {
  sections: string[];
  rules: NameDiff;
  rulesReordered: boolean;
  connections: NameDiff;
}

function diffNames(a: Record<string, string>, b: Record<string, string>): NameDiff {
  return {
    added: Object.keys(b).filter((k) => !(k in a)),
    removed: Object.keys(a).filter((k) => !(k in b)),
    changed: Object.keys(b).filter((k) => k in a && a[k] !== b[k]),
  };
}

/** What changed from `prev` to `next`; undefined when the fingerprints are equal. */
export function diffConfig(prev: ConfigFingerprint, next: ConfigFingerprint): ConfigDiff | undefined {
  if (prev.fingerprint === next.fingerprint) return undefined;
  const keys = [...new Set([...Object.keys(prev.sections ?? {}), ...Object.keys(next.sections)])];
  const kept = (order: string[], other: string[]) => order.filter((n) => other.includes(n));
  const prevOrder = prev.ruleOrder ?? [];
  return {
    sections: keys.filter((k) => prev.sections?.[k] !== next.sections[k]).sort(),
    rules: diffNames(prev.rules ?? {}, next.rules),
    rulesReordered: kept(prevOrder, next.ruleOrder).join("\n") !== kept(next.ruleOrder, prevOrder).join("\n"),
    connections: diffNames(prev.connections ?? {}, next.connections),
  };
}

/** Where the seq of the latest `config.loaded` is remembered, so a start needs no scan of the trail. */
const META_KEY = "audit.config_loaded_seq";

async function previousFingerprint(store: Store): Promise<{ seq: number; fp: ConfigFingerprint } | undefined> {
  const meta = await store.db.selectFrom("gatehouse_meta").select("value").where("key", "=", META_KEY).executeTakeFirst();
  let row = meta ? await store.db.selectFrom("audit_events").select(["seq", "type", "data"]).where("seq", "=", Number(meta.value)).executeTakeFirst() : undefined;
  if (!row || row.type !== "config.loaded") {
    row = await store.db.selectFrom("audit_events").select(["seq", "type", "data"]).where("type", "=", "config.loaded").orderBy("seq", "desc").limit(1).executeTakeFirst();
  }
  if (!row) return undefined;
  const fp = parseData(row.data) as ConfigFingerprint;
  return typeof fp?.fingerprint === "string" ? { seq: Number(row.seq), fp } : undefined;
}

/** Record `config.loaded` (and `config.changed` when it differs from the previous load). */
export async function recordConfigLoaded(store: Store, audit: AuditLog, config: Config, gatewayId: string): Promise<ConfigDiff | undefined> {
  const fp = fingerprintConfig(config);
  const prev = await previousFingerprint(store);
  const diff = prev ? diffConfig(prev.fp, fp) : undefined;
  // Both in one group commit: the change first, then the load it led to.
  const [, rec] = await Promise.all([
    diff ? audit.append({ type: "config.changed", data: { gatewayId, previousFingerprint: prev?.fp.fingerprint, previousSeq: prev?.seq, fingerprint: fp.fingerprint, ...diff } }) : undefined,
    audit.appendLinked({ type: "config.loaded", data: { gatewayId, ...fp } }),
  ]);
  const value = String(rec.seq);
  await store.db
    .insertInto("gatehouse_meta")
    .values({ key: META_KEY, value })
    .onConflict((oc) => oc.column("key").doUpdateSet({ value }))
    .execute();
  return diff;
}

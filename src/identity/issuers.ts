// Which configured issuer a token claims to come from, and where that issuer's keys live.
// Why: the issuer has to be chosen from the token's *unverified* `iss` before any key lookup, so
// the match must be exact and conservative. This module must never produce a URL from token
// input except by filling a configured `{tenantid}` template with a tenant on the allow-list,
// and never accept an http:// endpoint off loopback unless the config explicitly allows it.

import { isIP } from "node:net";
import type { IssuerConfig } from "../config/schema.ts";
import { GatehouseError } from "../domain/errors.ts";

export const TENANT_PLACEHOLDER = "{tenantid}";
// Entra tenant ids are GUIDs; a permissive-but-pathless shape keeps other IdPs usable while making
// sure a crafted `iss` cannot smuggle `/`, `?` or `#` into a discovery URL.
const TENANT_SHAPE = /^[A-Za-z0-9-]{1,64}$/;

export interface IssuerMatch {
  cfg: IssuerConfig;
  /** The concrete issuer (template filled in): what `iss` must equal after verification. */
  issuer: string;
  /** The tenant taken from a `{tenantid}` issuer, lower-cased. */
  tenant?: string;
}

/** Shortens untrusted text for an error detail (never the token itself). */
export function quote(v: unknown, max = 120): string {
  const s = typeof v === "string" ? v : JSON.stringify(v) ?? String(v);
  return JSON.stringify(s.length > max ? `${s.slice(0, max)}…` : s);
}

const inList = (list: readonly string[], v: string) => list.some((x) => x.toLowerCase() === v.toLowerCase());

/**
 * Picks the issuer config for an unverified `iss`/`tid` pair. Exact matches win over templates;
 * with several candidates the first in config order is used. Throws AUTH_ISSUER_INVALID or
 * AUTH_TENANT_NOT_ALLOWED.
 */
export function resolveIssuer(iss: string, tid: unknown, issuers: readonly IssuerConfig[]): IssuerMatch {
  const exact = issuers.find((c) => c.issuer === iss && !c.issuer.includes(TENANT_PLACEHOLDER));
  if (exact) {
    if (exact.allowedTenants?.length && (typeof tid !== "string" || !inList(exact.allowedTenants, tid))) {
      throw new GatehouseError("AUTH_TENANT_NOT_ALLOWED", `tenant ${quote(tid)} is not in allowedTenants of ${exact.issuer}`);
    }
    return { cfg: exact, issuer: iss };
  }
  let templateTenant: string | undefined;
  for (const cfg of issuers) {
    const tenant = templateTenantOf(cfg.issuer, iss);
    if (tenant === undefined) continue;
    // Entra: the tid claim and the tenant inside iss must agree, or the iss was pasted together.
    if (tid !== undefined && (typeof tid !== "string" || tid.toLowerCase() !== tenant)) {
      throw new GatehouseError("AUTH_ISSUER_INVALID", `tid ${quote(tid)} does not match the tenant in iss ${quote(iss)}`);
    }
    templateTenant = tenant;
    if (cfg.allowedTenants && inList(cfg.allowedTenants, tenant)) return { cfg, issuer: iss, tenant };
  }
  if (templateTenant !== undefined) {
    throw new GatehouseError("AUTH_TENANT_NOT_ALLOWED", `tenant ${quote(templateTenant)} is not in allowedTenants`);
  }
  throw new GatehouseError("AUTH_ISSUER_INVALID", `iss ${quote(iss)} is not a configured issuer`);
}

/** The tenant a `{tenantid}` template extracts from `iss`, or undefined when it does not match. */
export function templateTenantOf(template: string, iss: string): string | undefined {
  const at = template.indexOf(TENANT_PLACEHOLDER);
  if (at < 0) return undefined;
  const prefix = template.slice(0, at);
  const suffix = template.slice(at + TENANT_PLACEHOLDER.length);
  if (iss.length <= prefix.length + suffix.length || !iss.startsWith(prefix) || !iss.endsWith(suffix)) return undefined;
  const middle = iss.slice(prefix.length, iss.length - suffix.length);
  return TENANT_SHAPE.test(middle) ? middle.toLowerCase() : undefined;
}

export type KeyLocation = { jwksUri: string; discoveryUrl?: undefined } | { discoveryUrl: string; jwksUri?: undefined };

/**
 * Where the keys of a matched issuer are published. `jwksUri` skips discovery; `{tenantid}` in
 * any of the URLs is filled with the (already allow-listed) tenant. OIDC Discovery: the issuer
 * without a trailing slash, plus `/.well-known/openid-configuration`.
 */
export function keyLocation(m: IssuerMatch): KeyLocation {
  const fill = (u: string) => (m.tenant === undefined ? u : u.split(TENANT_PLACEHOLDER).join(m.tenant));
  if (m.cfg.jwksUri) return { jwksUri: fill(m.cfg.jwksUri) };
  if (m.cfg.discoveryUrl) return { discoveryUrl: fill(m.cfg.discoveryUrl) };
  return { discoveryUrl: `${m.issuer.replace(/\/+$/, "")}/.well-known/openid-configuration` };
}

export function isLoopbackHost(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, "").toLowerCase();
  if (h === "localhost" || h === "::1") return true;
  return isIP(h) === 4 && h.startsWith("127.");
}

/**
 * Refuses a URL the gateway would fetch keys from (or trust as an issuer) unless it is https,
 * http on loopback, or http with allowInsecureHttp. Non-URL issuers (e.g. `urn:`) are only an
 * error when we would have to fetch from them.
 */
export function assertSecureUrl(url: string, allowInsecureHttp: boolean, what: string, mustFetch: boolean): void {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    if (!mustFetch) return;
    throw new GatehouseError("CONFIG_INVALID", `${what} ${quote(url)} is not a URL; set identity.issuers[].jwksUri or discoveryUrl`);
  }
  if (u.protocol === "https:") return;
  if (u.protocol === "http:") {
    if (allowInsecureHttp || isLoopbackHost(u.hostname)) return;
    throw new GatehouseError("AUTH_INSECURE_ISSUER", `${what} ${quote(url)} uses http:// off loopback`);
  }
  if (mustFetch) throw new GatehouseError("CONFIG_INVALID", `${what} ${quote(url)} must be an https:// URL`);
}

/** Construction-time check of one issuer entry (config validation, before any token arrives). */
export function validateIssuerConfig(cfg: IssuerConfig): void {
  const insecure = cfg.allowInsecureHttp;
  const discovers = !cfg.jwksUri && !cfg.discoveryUrl;
  assertSecureUrl(cfg.issuer.split(TENANT_PLACEHOLDER).join("tenant"), insecure, "issuer", discovers);
  if (cfg.discoveryUrl) assertSecureUrl(cfg.discoveryUrl, insecure, "discoveryUrl", true);
  if (cfg.jwksUri) assertSecureUrl(cfg.jwksUri, insecure, "jwksUri", true);
  if (cfg.issuer.includes(TENANT_PLACEHOLDER) && !cfg.allowedTenants?.length) {
    throw new GatehouseError("CONFIG_INVALID", `issuer ${cfg.issuer} uses ${TENANT_PLACEHOLDER} and must list allowedTenants`);
  }
}

// Verified claims → Principal, for Entra v1 and v2 access tokens (and plain OIDC ones).
// Why a pure function: every downstream decision trusts the Principal, so the mapping is kept
// free of I/O and tested claim shape by claim shape. It must only ever see claims whose signature
// has been verified, must never guess a group list (group overage is an error unless configured),
// and must never let a malformed claim degrade into "no groups" or "no roles".

import type { JWTPayload, ProtectedHeaderParameters } from "jose";
import type { IdentityConfig, IssuerConfig } from "../config/schema.ts";
import { GatehouseError } from "../domain/errors.ts";
import type { Principal, PrincipalKind } from "../domain/principal.ts";

type Claims = JWTPayload & Record<string, unknown>;

const str = (v: unknown): string | undefined => (typeof v === "string" && v !== "" ? v : undefined);

function stringArray(claims: Claims, name: string): string[] {
  const v = claims[name];
  if (v === undefined) return [];
  if (!Array.isArray(v) || !v.every((x) => typeof x === "string")) {
    throw new GatehouseError("AUTH_TOKEN_MALFORMED", `"${name}" claim must be an array of strings`);
  }
  return v as string[];
}

function scopeList(claims: Claims): string[] {
  // Entra puts delegated scopes in `scp`; RFC 9068 tokens use `scope`. Both are space-separated.
  const name = claims["scp"] !== undefined ? "scp" : "scope";
  const v = claims[name];
  if (v === undefined) return [];
  if (typeof v !== "string") throw new GatehouseError("AUTH_TOKEN_MALFORMED", `"${name}" claim must be a space-separated string`);
  return v.split(/\s+/).filter(Boolean);
}

/** Entra replaces `groups` with an overage marker when the user is in too many groups. */
export function hasGroupOverage(claims: Claims): boolean {
  const names = claims["_claim_names"];
  const viaNames = typeof names === "object" && names !== null && Object.hasOwn(names, "groups");
  return viaNames || claims["hasgroups"] === true;
}

/**
 * The kind rule, in order:
 *  1. `idtyp` present (Entra optional claim): `app` → service, anything else (`user`) → human.
 *  2. `scp` present → human (only delegated tokens carry scopes in Entra).
 *  3. no `scp` and any of: `roles` non-empty, `oid` === `sub` (Entra app tokens), or no user-ish
 *     name (`name`, `preferred_username`, `upn`, `unique_name`) → service.
 *  4. otherwise → human.
 */
export function principalKind(claims: Claims, roles: readonly string[]): PrincipalKind {
  const idtyp = str(claims["idtyp"]);
  if (idtyp !== undefined) return idtyp === "app" ? "service" : "human";
  if (claims["scp"] !== undefined) return "human";
  const oid = str(claims["oid"]);
  const userName = ["name", "preferred_username", "upn", "unique_name"].some((k) => str(claims[k]) !== undefined);
  if (roles.length > 0 || (oid !== undefined && oid === claims.sub) || !userName) return "service";
  return "human";
}

/** Token group ids followed by the names config maps them to, deduplicated, in that order. */
export function mapGroups(ids: readonly string[], names: Readonly<Record<string, string>>): string[] {
  const out = new Set<string>(ids);
  const folded = foldedNames(names);
  for (const id of ids) {
    // Object.hasOwn / Map: a group called "constructor" must not pick up Object.prototype's.
    const name = Object.hasOwn(names, id) ? names[id] : folded.get(id.toLowerCase());
    if (name !== undefined) out.add(name);
  }
  return [...out];
}

// Object ids are GUIDs, whose case varies between portals, CLIs and tokens: match them folded.
const foldCache = new WeakMap<object, Map<string, string>>();
function foldedNames(names: Readonly<Record<string, string>>): Map<string, string> {
  let m = foldCache.get(names);
  if (!m) {
    m = new Map(Object.entries(names).map(([k, v]) => [k.toLowerCase(), v]));
    foldCache.set(names, m);
  }
  return m;
}

/**
 * Builds the Principal. `header` is accepted for claim shapes that need it (e.g. v1 `x5t`) but
 * nothing reads it today. With `groupOverage: "no-groups"` an overage token yields a Principal
 * with no groups at all (rules keyed on groups do not match it) — a deliberate, configured choice.
 */
export function principalFromClaims(
  claims: JWTPayload,
  _header: ProtectedHeaderParameters,
  issuerCfg: IssuerConfig,
  identityCfg: Pick<IdentityConfig, "groupNames">,
): Principal {
  const c = claims as Claims;
  const iss = str(c.iss);
  if (iss === undefined) throw new GatehouseError("AUTH_CLAIM_MISSING", `no "iss" claim`);
  if (typeof c.exp !== "number") throw new GatehouseError("AUTH_CLAIM_MISSING", `no "exp" claim`);
  const oid = str(c["oid"]);
  const tid = str(c["tid"]);
  const sub = str(c.sub);
  let subject: string;
  if (tid !== undefined && oid !== undefined) subject = `${tid}/${oid}`;
  else if (sub !== undefined) subject = `${iss}#${sub}`;
  else throw new GatehouseError("AUTH_CLAIM_MISSING", `no subject ("oid" with "tid", or "sub")`);

  let groupIds: string[];
  const overage = hasGroupOverage(c);
  if (overage) {
    if (issuerCfg.groupOverage !== "no-groups") {
      throw new GatehouseError("AUTH_GROUPS_OVERAGE", "the token carries a group overage marker instead of its groups");
    }
    groupIds = [];
  } else {
    groupIds = stringArray(c, "groups");
  }
  const roles = stringArray(c, "roles");
  const clientId = str(c["azp"]) ?? str(c["appid"]);
  const displayName =
    ["name", "preferred_username", "upn", "unique_name", "app_displayname"].map((k) => str(c[k])).find((v) => v !== undefined) ??
    clientId ??
    subject;

  const p: Principal = {
    subject,
    issuer: iss,
    displayName,
    kind: principalKind(c, roles),
    groups: groupIds.length ? mapGroups(groupIds, identityCfg.groupNames) : [],
    roles: [...new Set(roles)],
    scopes: scopeList(c),
    expiresAt: c.exp,
  };
  if (overage) p.groupsOverage = true;
  if (oid !== undefined) p.objectId = oid;
  if (tid !== undefined) p.tenantId = tid;
  if (clientId !== undefined) p.clientId = clientId;
  const ver = str(c["ver"]);
  if (ver !== undefined) p.tokenVersion = ver;
  const tokenId = str(c["uti"]) ?? str(c.jti);
  if (tokenId !== undefined) p.tokenId = tokenId;
  return p;
}

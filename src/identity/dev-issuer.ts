// A local development issuer (`urn:gatehouse:dev`): mints Entra-v2-shaped tokens with a key kept
// on disk, so the gateway can be tried without an identity provider.
// Why it is safe: the verifier trusts this issuer only when identity.devIssuer.enabled is true,
// and only with the public half of the key file (no HTTP involved). Must never mint while the
// issuer is disabled, write the private key readable by others, or share a code path with real
// issuers' key discovery.

import { createHash, randomUUID } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type JWK, SignJWT } from "jose";
import type { IdentityConfig, IssuerConfig } from "../config/schema.ts";
import { GatehouseError } from "../domain/errors.ts";

export const DEV_ISSUER = "urn:gatehouse:dev";
export const DEV_TENANT_ID = "00000000-0000-0000-0000-000000000000";
const DEV_ALG = "ES256";
// Namespace for UUIDv5 object ids: the same subject name always gets the same `oid`.
const OID_NAMESPACE = "3c5b7f2e-9d0a-4f61-8e2b-6a1d4c9e7b53";

export interface DevKey {
  kid: string;
  privateJwk: JWK;
  publicJwk: JWK;
}

/** Reads the key file, creating it (0600, directory 0700) with a fresh ES256 key on first use. */
export async function loadOrCreateDevKey(keyFile: string): Promise<DevKey> {
  try {
    return parseKey(await readFile(keyFile, "utf8"), keyFile);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
  const { privateKey } = await generateKeyPair(DEV_ALG, { extractable: true });
  const jwk = await exportJWK(privateKey);
  const kid = await calculateJwkThumbprint(jwk);
  const body = `${JSON.stringify({ ...jwk, kid, alg: DEV_ALG, use: "sig" }, null, 2)}\n`;
  await mkdir(dirname(keyFile), { recursive: true, mode: 0o700 });
  try {
    // "wx": if another process created the file meanwhile, keep theirs (both must agree on one key).
    await writeFile(keyFile, body, { mode: 0o600, flag: "wx" });
    return parseKey(body, keyFile);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    return parseKey(await readFile(keyFile, "utf8"), keyFile);
  }
}

function parseKey(text: string, keyFile: string): DevKey {
  let jwk: JWK;
  try {
    jwk = JSON.parse(text) as JWK;
  } catch {
    throw new GatehouseError("CONFIG_INVALID", `development key file ${keyFile} is not JSON; delete it to generate a new key`);
  }
  if (jwk.kty !== "EC" || jwk.crv !== "P-256" || typeof jwk.d !== "string" || typeof jwk.kid !== "string") {
    throw new GatehouseError("CONFIG_INVALID", `development key file ${keyFile} does not hold an ES256 private key; delete it to generate a new key`);
  }
  const { d: _d, ...publicJwk } = jwk;
  return { kid: jwk.kid, privateJwk: jwk, publicJwk };
}

/** Deterministic UUIDv5 (RFC 9562) of a subject name: a stable `oid` for development tokens. */
export function devObjectId(name: string): string {
  const ns = Buffer.from(OID_NAMESPACE.replace(/-/g, ""), "hex");
  const h = createHash("sha1").update(ns).update(name, "utf8").digest().subarray(0, 16);
  h[6] = (h[6]! & 0x0f) | 0x50;
  h[8] = (h[8]! & 0x3f) | 0x80;
  const x = h.toString("hex");
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

/** The issuer entry the verifier uses for development tokens. */
export function devIssuerConfig(cfg: IdentityConfig): IssuerConfig {
  return {
    issuer: DEV_ISSUER,
    audiences: [cfg.devIssuer.audience],
    algorithms: [DEV_ALG],
    allowInsecureHttp: false,
    groupOverage: "reject",
    requireAccessTokenType: true,
    name: "development issuer",
  };
}

export interface DevTokenOptions {
  /** Subject name; the `oid` is derived from it. Default `dev-user` (human) / `dev-agent` (service). */
  subject?: string;
  name?: string;
  groups?: string[];
  roles?: string[];
  kind?: "human" | "service";
  /** Default identity.devIssuer.tokenLifetime. */
  lifetimeSeconds?: number;
  /** Issue time in milliseconds (tests); default now. */
  now?: number;
}

/** Mints an Entra-v2-shaped access token signed with the development key. */
export async function mintDevToken(cfg: IdentityConfig, opts: DevTokenOptions = {}): Promise<string> {
  if (!cfg.devIssuer.enabled) throw new GatehouseError("DEV_ISSUER_DISABLED");
  const key = await loadOrCreateDevKey(cfg.devIssuer.keyFile);
  const kind = opts.kind ?? "human";
  const subject = opts.subject ?? (kind === "service" ? "dev-agent" : "dev-user");
  const oid = devObjectId(subject);
  const iat = Math.floor((opts.now ?? Date.now()) / 1000);
  const claims: Record<string, unknown> = {
    oid,
    tid: DEV_TENANT_ID,
    // Entra: app tokens have sub === oid; user tokens a pairwise sub.
    sub: kind === "service" ? oid : createHash("sha256").update(`sub:${subject}`).digest("base64url").slice(0, 43),
    azp: kind === "service" ? devObjectId(`app:${subject}`) : devObjectId("app:gatehouse-dev-cli"),
    idtyp: kind === "service" ? "app" : "user",
    ver: "2.0",
    uti: randomUUID(),
    nbf: iat,
  };
  if (kind === "service") claims["app_displayname"] = opts.name ?? subject;
  else Object.assign(claims, { name: opts.name ?? subject, preferred_username: `${subject}@gatehouse.dev`, scp: "access_as_user" });
  if (opts.groups) claims["groups"] = opts.groups;
  if (opts.roles) claims["roles"] = opts.roles;
  return new SignJWT(claims)
    .setProtectedHeader({ alg: DEV_ALG, typ: "JWT", kid: key.kid })
    .setIssuer(DEV_ISSUER)
    .setAudience(cfg.devIssuer.audience)
    .setIssuedAt(iat)
    .setExpirationTime(iat + (opts.lifetimeSeconds ?? cfg.devIssuer.tokenLifetime))
    .sign(await importJWK(key.privateJwk, DEV_ALG));
}

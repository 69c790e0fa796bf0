// OIDC access token → Principal: the gateway's only way to learn who is calling.
// Order matters and is deliberate: cheap structural checks (size, shape, alg, typ) and issuer
// selection come before any key lookup, so garbage and forgeries never trigger a fetch; then
// signature and claims (jose, with our clock and skew); then the Principal.
// Must never: accept `alg: none` or HMAC, trust an issuer or audience not in config, trust the
// development issuer while it is disabled, or put the token in an error message or log.

import { type CryptoKey, type JWSHeaderParameters, type JWTVerifyResult, jwtVerify } from "jose";
import type { IdentityConfig } from "../config/schema.ts";
import { ERRORS, GatehouseError } from "../domain/errors.ts";
import type { Principal } from "../domain/principal.ts";
import { DEV_ISSUER, devIssuerConfig, loadOrCreateDevKey } from "./dev-issuer.ts";
import { type IssuerMatch, keyLocation, resolveIssuer, validateIssuerConfig } from "./issuers.ts";
import { type KeySource, RemoteKeySource, StaticKeySource } from "./jwks.ts";
import { checkAlgorithm, checkIssuedAt, checkType, fromJoseError, parseUnverified, SUPPORTED_ALGORITHMS } from "./jwt.ts";
import { principalFromClaims } from "./principal.ts";

export interface TokenVerifierOptions {
  /** Used for discovery and JWKS requests (tests wrap it to count fetches). */
  fetch?: typeof fetch;
  /** Milliseconds since the epoch; drives token time checks and key caching alike. */
  now?: () => number;
}

/** How long a verified token is trusted without checking its signature again. */
const VERIFIED_TTL_MS = 60_000;
const VERIFIED_MAX = 10_000;

/** A verified token: its principal, trusted until `until` (ms) unless the verifier dropped it. */
export interface TrustedToken {
  readonly principal: Principal;
  readonly until: number;
  dropped: boolean;
}

export class TokenVerifier {
  private readonly fetch: typeof fetch;
  private readonly now: () => number;
  /** One key source per key location (a `{tenantid}` issuer gets one per allowed tenant). */
  private readonly sources = new Map<string, RemoteKeySource>();
  private devKeys?: Promise<KeySource>;

  constructor(
    private readonly cfg: IdentityConfig,
    opts: TokenVerifierOptions = {},
  ) {
    for (const issuer of cfg.issuers) validateIssuerConfig(issuer);
    this.fetch = opts.fetch ?? globalThis.fetch;
    this.now = opts.now ?? Date.now;
  }

  /**
   * Tokens already verified, keyed by the whole token (signature included, so no other byte
   * string can hit an entry), until the token expires or VERIFIED_TTL_MS passes, whichever is
   * first. An HTTP client sends the same token with every request; this saves the signature check.
   * The token itself is the key — hashing it cost more per request than the lookup — so memory is
   * at most VERIFIED_MAX verified tokens (each under the size limit of parseUnverified).
   */
  private readonly verified = new Map<string, TrustedToken>();

  /**
   * A token verified before and still trusted, without waiting: else undefined. A caller may keep
   * the entry (a keep-alive connection, for its next request) while `isTrusted(entry)` holds.
   */
  cached(token: string): TrustedToken | undefined {
    const hit = this.verified.get(token);
    if (!hit) return undefined;
    if (this.now() < hit.until) return hit;
    this.verified.delete(token);
    return undefined;
  }

  /** Whether an entry from `cached` may still be used. */
  isTrusted(entry: TrustedToken): boolean {
    return !entry.dropped && this.now() < entry.until;
  }

  async verify(token: string): Promise<Principal> {
    const hit = this.cached(token);
    if (hit) return hit.principal;
    const now = this.now();
    const principal = await this.verifyUncached(token);
    const until = Math.min(principal.expiresAt * 1000, now + VERIFIED_TTL_MS);
    if (until > now) {
      if (this.verified.size >= VERIFIED_MAX) this.verified.delete(this.verified.keys().next().value as string);
      this.verified.set(token, { principal, until, dropped: false });
    }
    return principal;
  }

  private async verifyUncached(token: string): Promise<Principal> {
    const { header, claims } = parseUnverified(token, this.cfg.maxTokenBytes);
    checkAlgorithm(header.alg, SUPPORTED_ALGORITHMS);
    if (typeof claims.iss !== "string") throw new GatehouseError("AUTH_CLAIM_MISSING", `no "iss" claim`);
    const { match, keys } = this.trust(claims.iss, claims["tid"]);
    checkAlgorithm(header.alg, match.cfg.algorithms);
    checkType(header.typ, match.cfg.requireAccessTokenType);

    const candidates = await keys.keysFor(header as JWSHeaderParameters);
    const verified = await this.verifyWithAny(token, candidates, match);
    checkIssuedAt(verified.payload, Math.floor(this.now() / 1000), this.cfg.clockSkewSeconds);
    return principalFromClaims(verified.payload, verified.protectedHeader, match.cfg, this.cfg);
  }

  /** Drops cached keys; the verifier stays usable and refetches on demand. */
  close(): void {
    for (const e of this.verified.values()) e.dropped = true;
    this.verified.clear();
    for (const s of this.sources.values()) s.clear();
    this.sources.clear();
    this.devKeys = undefined;
  }

  private trust(iss: string, tid: unknown): { match: IssuerMatch; keys: KeySource } {
    if (iss === DEV_ISSUER) {
      if (!this.cfg.devIssuer.enabled) throw new GatehouseError("AUTH_ISSUER_INVALID", "development tokens are not accepted (identity.devIssuer.enabled is false)");
      this.devKeys ??= loadOrCreateDevKey(this.cfg.devIssuer.keyFile).then(
        (k) => new StaticKeySource({ keys: [k.publicJwk] }),
        (e: unknown) => {
          this.devKeys = undefined; // retry on the next token rather than caching the failure
          throw e;
        },
      );
      return { match: { cfg: devIssuerConfig(this.cfg), issuer: DEV_ISSUER }, keys: lazy(() => this.devKeys!) };
    }
    const match = resolveIssuer(iss, tid, this.cfg.issuers);
    const location = keyLocation(match);
    const id = location.jwksUri ?? location.discoveryUrl;
    let source = this.sources.get(id);
    if (!source) {
      source = new RemoteKeySource({
        location,
        expectedIssuers: [match.issuer, match.cfg.issuer],
        allowInsecureHttp: match.cfg.allowInsecureHttp,
        cacheSeconds: this.cfg.jwksCacheSeconds,
        cooldownSeconds: this.cfg.jwksRefetchCooldownSeconds,
        fetch: this.fetch,
        now: this.now,
      });
      this.sources.set(id, source);
    }
    return { match, keys: source };
  }

  /** Several candidates only when the token has no kid (or the JWKS repeats one): first that verifies wins. */
  private async verifyWithAny(token: string, keys: CryptoKey[], match: IssuerMatch): Promise<JWTVerifyResult> {
    let last: unknown;
    for (const key of keys) {
      try {
        return await jwtVerify(token, key, {
          issuer: match.issuer,
          audience: match.cfg.audiences,
          algorithms: match.cfg.algorithms,
          clockTolerance: this.cfg.clockSkewSeconds,
          currentDate: new Date(this.now()),
          requiredClaims: ["exp"],
        });
      } catch (e) {
        last = fromJoseError(e);
        if (!(last instanceof GatehouseError) || last.def !== ERRORS.AUTH_SIGNATURE_INVALID) throw last;
      }
    }
    throw last ?? new GatehouseError("AUTH_KEY_UNKNOWN");
  }
}

function lazy(get: () => Promise<KeySource>): KeySource {
  return { keysFor: async (header) => (await get()).keysFor(header) };
}

// Signing keys of one issuer, with an explicit caching and rotation policy.
// Why not jose's createRemoteJWKSet: the policy is security- and availability-relevant, so it is
// spelled out here and tested — a fetched JWKS is trusted for jwksCacheSeconds; an unknown `kid`
// triggers at most one refetch per jwksRefetchCooldownSeconds, and concurrent callers share one
// in-flight fetch; when a refresh fails, the keys fetched earlier keep working.
// Must never: refetch on every unknown kid (a token flood would hammer the IdP), trust a discovery
// document that names another issuer, or fetch keys over http:// off loopback.

import { type CryptoKey, createLocalJWKSet, errors, type JSONWebKeySet, type JWSHeaderParameters } from "jose";
import { GatehouseError } from "../domain/errors.ts";
import { assertSecureUrl, type KeyLocation, quote } from "./issuers.ts";

type LocalSet = ReturnType<typeof createLocalJWKSet>;

/** Anything that can hand out the candidate verification keys for a JWS header. */
export interface KeySource {
  keysFor(header: JWSHeaderParameters): Promise<CryptoKey[]>;
}

const FETCH_TIMEOUT_MS = 10_000;
const MAX_DOCUMENT_BYTES = 1 << 20;

/** Candidate keys from a fixed set; undefined when no key matches (unknown kid). */
async function lookup(set: LocalSet, header: JWSHeaderParameters): Promise<CryptoKey[] | undefined> {
  try {
    return [await set(header)];
  } catch (e) {
    if (e instanceof errors.JWKSNoMatchingKey) return undefined;
    if (e instanceof errors.JWKSMultipleMatchingKeys) {
      // No kid (or a duplicated kid): every matching key is a candidate; the verifier tries each.
      const keys: CryptoKey[] = [];
      for await (const k of e as errors.JWKSMultipleMatchingKeys & AsyncIterable<CryptoKey>) keys.push(k);
      return keys.length ? keys : undefined;
    }
    throw e;
  }
}

/** Keys known up front (the development issuer): no HTTP, no refetch. */
export class StaticKeySource implements KeySource {
  private readonly set: LocalSet;
  constructor(jwks: JSONWebKeySet) {
    this.set = createLocalJWKSet(jwks);
  }
  async keysFor(header: JWSHeaderParameters): Promise<CryptoKey[]> {
    const keys = await lookup(this.set, header);
    if (!keys) throw new GatehouseError("AUTH_KEY_UNKNOWN", `no development key with kid ${quote(header.kid)}`);
    return keys;
  }
}

export interface RemoteKeySourceOptions {
  location: KeyLocation;
  /** Issuer strings a discovery document may name (the concrete issuer and its template). */
  expectedIssuers: readonly string[];
  allowInsecureHttp: boolean;
  cacheSeconds: number;
  cooldownSeconds: number;
  fetch: typeof fetch;
  /** Milliseconds since the epoch. */
  now: () => number;
}

export class RemoteKeySource implements KeySource {
  private set?: LocalSet;
  private fetchedAt = 0;
  private jwksUri?: string;
  private discoveredAt = 0;
  private lastAttempt?: number;
  private lastError?: unknown;
  private inflight?: Promise<void>;

  constructor(private readonly o: RemoteKeySourceOptions) {
    this.jwksUri = o.location.jwksUri;
  }

  async keysFor(header: JWSHeaderParameters): Promise<CryptoKey[]> {
    await this.ensureFresh();
    const found = this.set && (await lookup(this.set, header));
    if (found) return found;
    // Unknown kid: the issuer may have rotated. Join a fetch already running, else start one if
    // the cooldown allows; either way at most one fetch serves the whole flood.
    if (this.inflight || this.mayFetch()) await this.refresh().catch(() => {});
    const again = this.set && (await lookup(this.set, header));
    if (again) return again;
    // While the latest attempt failed we cannot tell a rotated key from a forged kid: say outage.
    if (this.lastError !== undefined) throw asUnreachable(this.lastError);
    throw new GatehouseError("AUTH_KEY_UNKNOWN", `the issuer publishes no key with kid ${quote(header.kid)} for ${quote(header.alg)}`);
  }

  /** Forgets everything (tests, config reload). */
  clear(): void {
    this.set = undefined;
    this.jwksUri = this.o.location.jwksUri;
    this.lastAttempt = undefined;
    this.fetchedAt = this.discoveredAt = 0;
  }

  private mayFetch(): boolean {
    return this.lastAttempt === undefined || this.o.now() - this.lastAttempt >= this.o.cooldownSeconds * 1000;
  }

  private async ensureFresh(): Promise<void> {
    if (this.set && this.o.now() - this.fetchedAt < this.o.cacheSeconds * 1000) return;
    // Stale or empty. A failed refresh keeps the stale set; without one, it is an outage — and
    // even then we retry at most once per cooldown.
    if (!this.inflight && !this.mayFetch()) {
      if (this.set) return;
      throw asUnreachable(this.lastError);
    }
    try {
      await this.refresh();
    } catch (e) {
      if (!this.set) throw asUnreachable(e);
    }
  }

  private refresh(): Promise<void> {
    if (this.inflight) return this.inflight;
    this.lastAttempt = this.o.now();
    this.inflight = this.fetchKeys()
      .then(
        (set) => {
          this.set = set;
          this.fetchedAt = this.o.now();
          this.lastError = undefined;
        },
        (e: unknown) => {
          this.lastError = e;
          throw e;
        },
      )
      .finally(() => {
        this.inflight = undefined;
      });
    return this.inflight;
  }

  private async fetchKeys(): Promise<LocalSet> {
    const { location, cacheSeconds } = this.o;
    if (location.discoveryUrl && (!this.jwksUri || this.o.now() - this.discoveredAt >= cacheSeconds * 1000)) {
      const doc = await this.getJson(location.discoveryUrl);
      const issuer = (doc as { issuer?: unknown }).issuer;
      const jwksUri = (doc as { jwks_uri?: unknown }).jwks_uri;
      if (typeof issuer !== "string" || !this.o.expectedIssuers.includes(issuer)) {
        throw new GatehouseError("AUTH_ISSUER_UNREACHABLE", `discovery document ${location.discoveryUrl} names issuer ${quote(issuer)}, not the configured one`);
      }
      if (typeof jwksUri !== "string") {
        throw new GatehouseError("AUTH_ISSUER_UNREACHABLE", `discovery document ${location.discoveryUrl} has no jwks_uri`);
      }
      assertSecureUrl(jwksUri, this.o.allowInsecureHttp, "jwks_uri", true);
      this.jwksUri = jwksUri;
      this.discoveredAt = this.o.now();
    }
    const uri = this.jwksUri!;
    const body = await this.getJson(uri);
    try {
      return createLocalJWKSet(body as JSONWebKeySet);
    } catch {
      throw new GatehouseError("AUTH_ISSUER_UNREACHABLE", `${uri} is not a JSON Web Key Set`);
    }
  }

  private async getJson(url: string): Promise<unknown> {
    let text: string;
    try {
      const res = await this.o.fetch(url, { headers: { accept: "application/json" }, signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      text = await res.text();
    } catch (e) {
      throw new GatehouseError("AUTH_ISSUER_UNREACHABLE", `${url}: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (text.length > MAX_DOCUMENT_BYTES) throw new GatehouseError("AUTH_ISSUER_UNREACHABLE", `${url}: document too large`);
    try {
      const v: unknown = JSON.parse(text);
      if (v && typeof v === "object" && !Array.isArray(v)) return v;
    } catch {
      // fall through
    }
    throw new GatehouseError("AUTH_ISSUER_UNREACHABLE", `${url}: not a JSON object`);
  }
}

function asUnreachable(e: unknown): GatehouseError {
  if (e instanceof GatehouseError) return e;
  return new GatehouseError("AUTH_ISSUER_UNREACHABLE", e instanceof Error ? e.message : "keys could not be fetched");
}

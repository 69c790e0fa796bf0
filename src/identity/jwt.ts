// Cheap, pre-signature checks on a compact JWT, and the one place jose errors become AUTH_* codes.
// Why: size, shape, algorithm and `typ` are judged before any key is looked up, so a forged or
// oversized token never costs a JWKS fetch, and `alg: none` / HMAC never reach a verifier.
// Must never: put the token (or any part of it) in an error message — only short, quoted claims.

import { decodeJwt, decodeProtectedHeader, errors, type JWTPayload, type ProtectedHeaderParameters } from "jose";
import { GatehouseError } from "../domain/errors.ts";
import { quote } from "./issuers.ts";

/** The only algorithms any issuer may enable (config narrows this per issuer). */
export const SUPPORTED_ALGORITHMS: readonly string[] = ["RS256", "ES256"];

const PART = /^[A-Za-z0-9_-]*$/;

export interface UnverifiedJwt {
  header: ProtectedHeaderParameters;
  claims: JWTPayload;
}

/** Decodes without verifying: AUTH_TOKEN_MISSING / _TOO_LARGE / _MALFORMED. */
export function parseUnverified(token: unknown, maxTokenBytes: number): UnverifiedJwt {
  if (typeof token !== "string" || token.trim() === "") throw new GatehouseError("AUTH_TOKEN_MISSING");
  const bytes = Buffer.byteLength(token, "utf8");
  if (bytes > maxTokenBytes) throw new GatehouseError("AUTH_TOKEN_TOO_LARGE", `${bytes} bytes, limit ${maxTokenBytes}`);
  const parts = token.split(".");
  if (parts.length === 5) throw new GatehouseError("AUTH_TOKEN_MALFORMED", "encrypted (JWE) tokens are not accepted");
  if (parts.length !== 3) throw new GatehouseError("AUTH_TOKEN_MALFORMED", `${parts.length} dot-separated parts, expected 3`);
  if (!parts.every((p) => PART.test(p)) || !parts[0] || !parts[1]) {
    throw new GatehouseError("AUTH_TOKEN_MALFORMED", "parts are not base64url");
  }
  try {
    return { header: decodeProtectedHeader(token), claims: decodeJwt(token) };
  } catch {
    throw new GatehouseError("AUTH_TOKEN_MALFORMED", "header or payload is not base64url-encoded JSON");
  }
}

/** `alg: none`, HS* and anything else outside `allowed` → AUTH_ALGORITHM_REJECTED. */
export function checkAlgorithm(alg: unknown, allowed: readonly string[]): asserts alg is string {
  if (typeof alg !== "string" || !allowed.includes(alg)) {
    throw new GatehouseError("AUTH_ALGORITHM_REJECTED", `alg ${quote(alg, 20)} (accepted: ${allowed.join(", ")})`);
  }
}

/**
 * Access tokens are typed `JWT` (Entra), `at+jwt` (RFC 9068, oidc-provider) or not at all; a
 * `typ` naming anything else (ID tokens from some IdPs, `logout+jwt`, `secevent+jwt`…) is
 * refused so a token minted for another purpose cannot be replayed as an access token.
 */
export function checkType(typ: unknown, required: boolean): void {
  if (!required || typ === undefined) return;
  const t = typeof typ === "string" ? typ.toLowerCase().replace(/^application\//, "") : undefined;
  if (t !== "jwt" && t !== "at+jwt") {
    throw new GatehouseError("AUTH_TOKEN_TYPE_INVALID", `typ ${quote(typ, 40)} is not an access token type`);
  }
}

/** iat beyond now + skew: jose only checks iat with maxTokenAge, so it is done here. */
export function checkIssuedAt(claims: JWTPayload, nowSeconds: number, skewSeconds: number): void {
  if (typeof claims.iat === "number" && claims.iat > nowSeconds + skewSeconds) {
    throw new GatehouseError("AUTH_TOKEN_NOT_YET_VALID", `issued at ${iso(claims.iat)}, in the future`);
  }
}

const iso = (s: unknown) => (typeof s === "number" && Number.isFinite(s) ? new Date(s * 1000).toISOString() : quote(s, 20));

/** Maps a jose error to its AUTH_* code; anything unrecognised is returned as-is (a bug). */
export function fromJoseError(e: unknown): unknown {
  if (e instanceof GatehouseError) return e;
  if (e instanceof errors.JWTExpired) return new GatehouseError("AUTH_TOKEN_EXPIRED", `expired at ${iso(e.payload.exp)}`);
  if (e instanceof errors.JWTClaimValidationFailed) {
    if (e.reason === "missing") return new GatehouseError("AUTH_CLAIM_MISSING", `no "${e.claim}" claim`);
    if (e.reason === "invalid") return new GatehouseError("AUTH_TOKEN_MALFORMED", `"${e.claim}" claim has the wrong type`);
    switch (e.claim) {
      case "nbf":
        return new GatehouseError("AUTH_TOKEN_NOT_YET_VALID", `not before ${iso(e.payload.nbf)}`);
      case "aud":
        return new GatehouseError("AUTH_AUDIENCE_INVALID", `aud ${quote(e.payload.aud)} is not an accepted audience`);
      case "iss":
        return new GatehouseError("AUTH_ISSUER_INVALID", `iss ${quote(e.payload.iss)} does not match the issuer`);
      case "typ":
        return new GatehouseError("AUTH_TOKEN_TYPE_INVALID");
      default:
        return new GatehouseError("AUTH_TOKEN_MALFORMED", `"${e.claim}" claim check failed`);
    }
  }
  if (e instanceof errors.JWSSignatureVerificationFailed) return new GatehouseError("AUTH_SIGNATURE_INVALID");
  if (e instanceof errors.JOSEAlgNotAllowed) return new GatehouseError("AUTH_ALGORITHM_REJECTED");
  if (e instanceof errors.JWKSNoMatchingKey || e instanceof errors.JWKInvalid || e instanceof errors.JWKSInvalid) {
    return new GatehouseError("AUTH_KEY_UNKNOWN", "the issuer publishes no usable key for this token");
  }
  if (e instanceof errors.JWSInvalid || e instanceof errors.JWTInvalid || e instanceof errors.JOSENotSupported) {
    return new GatehouseError("AUTH_TOKEN_MALFORMED", e.message);
  }
  return e;
}

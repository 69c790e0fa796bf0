// Public API of the identity module: verify an access token into a Principal, and the local
// development issuer. Everything else in src/identity is an implementation detail.

export { DEV_ISSUER, DEV_TENANT_ID, type DevKey, type DevTokenOptions, devObjectId, loadOrCreateDevKey, mintDevToken } from "./dev-issuer.ts";
export { hasGroupOverage, mapGroups, principalFromClaims, principalKind } from "./principal.ts";
export { TokenVerifier, type TokenVerifierOptions } from "./verifier.ts";

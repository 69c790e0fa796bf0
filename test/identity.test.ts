// Token verification end to end against a real OpenID provider (oidc-provider on loopback):
// discovery, JWKS, client-credentials tokens fetched over HTTP, forged tokens built with jose and
// raw base64url edits, key rotation and the refetch rate limit.

import assert from "node:assert/strict";
import { createHmac, createPublicKey, type JsonWebKey } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { exportJWK, generateKeyPair, importJWK, type JWTPayload, SignJWT } from "jose";
import type { IdentityConfig } from "../src/config/schema.ts";
import { ERRORS, type ErrorKey, GatehouseError } from "../src/domain/errors.ts";
import { mintDevToken, TokenVerifier } from "../src/identity/index.ts";
import { startTestIdp, type TestIdp } from "./helpers/idp.ts";

const GROUP_DB = "0d6c1f6e-1111-4c2d-9e0f-00000000000a";
const GROUP_OPS = "0d6c1f6e-1111-4c2d-9e0f-00000000000b";
const OTHER_TENANT = "99999999-9999-4999-8999-999999999999";

const b64json = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
const fromB64 = (s: string) => JSON.parse(Buffer.from(s, "base64url").toString("utf8")) as Record<string, unknown>;
const nowS = () => Math.floor(Date.now() / 1000);

async function rejectsCode(p: Promise<unknown>, key: ErrorKey, token?: string) {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof GatehouseError, `expected a GatehouseError, got ${String(e)}`);
    assert.equal(e.code, ERRORS[key].code, `expected ${key}, got ${e.code}: ${e.message}`);
    if (token) assert.ok(!e.message.includes(token) && !e.detail.includes(token), "the token must never appear in an error");
    return true;
  });
}

/** Counts discovery and JWKS requests the verifier makes, passing them to the real network. */
function countingFetch() {
  const hits = { discovery: 0, jwks: 0 };
  const f = (async (input: Parameters<typeof fetch>[0], init?: Parameters<typeof fetch>[1]) => {
    const url = String(input instanceof Request ? input.url : input);
    if (url.endsWith("/.well-known/openid-configuration")) hits.discovery++;
    else hits.jwks++;
    return fetch(input, init);
  }) as typeof fetch;
  return { hits, fetch: f };
}

let idp: TestIdp;
let cfg: IdentityConfig;
let verifier: TokenVerifier;

before(async () => {
  idp = await startTestIdp();
  cfg = idp.identityConfig({ groupNames: { [GROUP_DB]: "db-admins" }, maxTokenBytes: 8192 }, { allowedTenants: [idp.tenantId], algorithms: ["RS256"] });
  verifier = new TokenVerifier(cfg);
});
after(() => idp.close());

/** Claims of a well-formed Entra-shaped app token, for crafted tokens signed with the IdP's key. */
function entraClaims(over: JWTPayload = {}): JWTPayload {
  const oid = idp.objectIdFor("crafted");
  return { iss: idp.issuer, aud: idp.audience, iat: nowS(), nbf: nowS(), exp: nowS() + 600, oid, sub: oid, tid: idp.tenantId, idtyp: "app", azp: "crafted", ver: "2.0", ...over };
}

describe("valid tokens from a real OpenID provider", () => {
  test("an Entra-shaped app-only token becomes a service Principal with groups and roles", async () => {
    const token = await idp.token({ clientId: "build-agent", groups: [GROUP_DB, GROUP_OPS], roles: ["Agent.Run", "Db.Read"] });
    const p = await verifier.verify(token);
    const oid = idp.objectIdFor("build-agent");
    assert.equal(p.kind, "service");
    assert.equal(p.subject, `${idp.tenantId}/${oid}`);
    assert.equal(p.objectId, oid);
    assert.equal(p.tenantId, idp.tenantId);
    assert.equal(p.issuer, idp.issuer);
    assert.equal(p.clientId, "build-agent");
    assert.equal(p.displayName, "build-agent");
    assert.deepEqual(p.groups, [GROUP_DB, GROUP_OPS, "db-admins"]);
    assert.deepEqual(p.roles, ["Agent.Run", "Db.Read"]);
    assert.equal(p.tokenVersion, "2.0");
    assert.ok(p.tokenId && !token.includes(`${p.tokenId}.`));
    assert.ok(p.expiresAt > nowS());
  });

  test("oidc-provider's at+jwt and Entra's JWT typ both verify", async () => {
    await verifier.verify(await idp.token({ typ: "at+jwt" }));
    await verifier.verify(await idp.token({ typ: "JWT" }));
    await verifier.verify(await idp.sign(entraClaims(), { typ: "application/at+jwt" }));
    await verifier.verify(await idp.sign(entraClaims(), { typ: undefined }));
  });

  test("exp just inside the clock skew still verifies", async () => {
    await verifier.verify(await idp.sign(entraClaims({ exp: nowS() - 60 })));
  });

  test("an ES256 issuer works too", async () => {
    const es = await startTestIdp({ alg: "ES256" });
    try {
      const p = await new TokenVerifier(es.identityConfig({}, { algorithms: ["ES256"] })).verify(await es.token({ roles: ["r"] }));
      assert.deepEqual(p.roles, ["r"]);
    } finally {
      await es.close();
    }
  });
});

describe("forged and unacceptable tokens", () => {
  const cases: { name: string; code: ErrorKey; token: () => Promise<string> }[] = [
    { name: "expired", code: "AUTH_TOKEN_EXPIRED", token: () => idp.sign(entraClaims({ iat: nowS() - 7200, nbf: nowS() - 7200, exp: nowS() - 3600 })) },
    { name: "expired, issued by the IdP itself", code: "AUTH_TOKEN_EXPIRED", token: () => idp.token({ claims: { exp: nowS() - 600 } }) },
    { name: "not yet valid (nbf)", code: "AUTH_TOKEN_NOT_YET_VALID", token: () => idp.sign(entraClaims({ nbf: nowS() + 3600 })) },
    { name: "issued in the future (iat)", code: "AUTH_TOKEN_NOT_YET_VALID", token: () => idp.sign(entraClaims({ iat: nowS() + 3600 })) },
    { name: "wrong audience", code: "AUTH_AUDIENCE_INVALID", token: () => idp.sign(entraClaims({ aud: "api://someone-else" })) },
    { name: "wrong issuer", code: "AUTH_ISSUER_INVALID", token: () => idp.sign(entraClaims({ iss: "https://evil.example" })) },
    { name: "issuer with a trailing slash added", code: "AUTH_ISSUER_INVALID", token: () => idp.sign(entraClaims({ iss: `${idp.issuer}/` })) },
    { name: "no issuer", code: "AUTH_CLAIM_MISSING", token: () => idp.sign(entraClaims({ iss: undefined })) },
    {
      name: "signed by another key with the same kid",
      code: "AUTH_SIGNATURE_INVALID",
      token: async () => {
        const { privateKey } = await generateKeyPair("RS256");
        return new SignJWT(entraClaims()).setProtectedHeader({ alg: "RS256", typ: "JWT", kid: idp.kid }).sign(privateKey);
      },
    },
    {
      name: "unknown kid",
      code: "AUTH_KEY_UNKNOWN",
      token: async () => {
        const { privateKey } = await generateKeyPair("RS256");
        return new SignJWT(entraClaims()).setProtectedHeader({ alg: "RS256", typ: "JWT", kid: "attacker-key" }).sign(privateKey);
      },
    },
    { name: "alg none", code: "AUTH_ALGORITHM_REJECTED", token: async () => `${b64json({ alg: "none", typ: "JWT" })}.${b64json(entraClaims())}.` },
    {
      name: "HS256 with the RSA public key as the HMAC secret",
      code: "AUTH_ALGORITHM_REJECTED",
      token: async () => {
        const jwk = idp.publicJwks().keys.find((k) => k.kid === idp.kid)!;
        const pem = createPublicKey({ key: jwk as JsonWebKey, format: "jwk" }).export({ type: "spki", format: "pem" });
        const signingInput = `${b64json({ alg: "HS256", typ: "JWT", kid: idp.kid })}.${b64json(entraClaims())}`;
        return `${signingInput}.${createHmac("sha256", pem).update(signingInput).digest("base64url")}`;
      },
    },
    {
      name: "ES256 while the issuer only allows RS256",
      code: "AUTH_ALGORITHM_REJECTED",
      token: async () => {
        const { privateKey } = await generateKeyPair("ES256");
        return new SignJWT(entraClaims()).setProtectedHeader({ alg: "ES256", typ: "JWT", kid: idp.kid }).sign(privateKey);
      },
    },
    {
      name: "tampered claims (payload edited, signature kept)",
      code: "AUTH_SIGNATURE_INVALID",
      token: async () => {
        const [h, p, s] = (await idp.token({ roles: ["Db.Read"] })).split(".");
        return `${h}.${b64json({ ...fromB64(p!), roles: ["Db.Admin"] })}.${s}`;
      },
    },
    {
      name: "tampered header (typ changed, signature kept)",
      code: "AUTH_SIGNATURE_INVALID",
      token: async () => {
        const [h, p, s] = (await idp.token()).split(".");
        return `${b64json({ ...fromB64(h!), typ: "JWT" })}.${p}.${s}`;
      },
    },
    { name: "missing exp", code: "AUTH_CLAIM_MISSING", token: () => idp.sign(entraClaims({ exp: undefined })) },
    { name: "missing exp, issued by the IdP itself", code: "AUTH_CLAIM_MISSING", token: () => idp.token({ omit: ["exp"] }) },
    { name: "missing subject", code: "AUTH_CLAIM_MISSING", token: () => idp.sign(entraClaims({ oid: undefined, sub: undefined })) },
    { name: "exp of the wrong type", code: "AUTH_TOKEN_MALFORMED", token: () => idp.sign(entraClaims({ exp: "tomorrow" as unknown as number })) },
    { name: "garbage", code: "AUTH_TOKEN_MALFORMED", token: async () => "this is not a token" },
    { name: "three parts of garbage", code: "AUTH_TOKEN_MALFORMED", token: async () => "eyJub3Q.anNvbg.c2ln" },
    { name: "empty", code: "AUTH_TOKEN_MISSING", token: async () => "" },
    { name: "oversized", code: "AUTH_TOKEN_TOO_LARGE", token: () => idp.token({ claims: { padding: "x".repeat(9000) } }) },
    { name: "truncated (2 parts)", code: "AUTH_TOKEN_MALFORMED", token: async () => (await idp.token()).split(".").slice(0, 2).join(".") },
    { name: "signature stripped", code: "AUTH_SIGNATURE_INVALID", token: async () => `${(await idp.token()).split(".").slice(0, 2).join(".")}.` },
    { name: "encrypted (5 parts)", code: "AUTH_TOKEN_MALFORMED", token: async () => "a.b.c.d.e" },
    { name: "wrong typ (logout+jwt)", code: "AUTH_TOKEN_TYPE_INVALID", token: () => idp.sign(entraClaims(), { typ: "logout+jwt" }) },
    { name: "wrong typ (secevent+jwt)", code: "AUTH_TOKEN_TYPE_INVALID", token: () => idp.sign(entraClaims(), { typ: "secevent+jwt" }) },
    { name: "tenant not allowed", code: "AUTH_TENANT_NOT_ALLOWED", token: () => idp.token({ tenantId: OTHER_TENANT }) },
    { name: "group overage (_claim_names)", code: "AUTH_GROUPS_OVERAGE", token: () => idp.token({ claims: { _claim_names: { groups: "src1" }, _claim_sources: { src1: { endpoint: "https://graph.microsoft.com/v1.0/servicePrincipals/x/getMemberObjects" } } } }) },
    { name: "group overage (hasgroups)", code: "AUTH_GROUPS_OVERAGE", token: () => idp.token({ claims: { hasgroups: true } }) },
    { name: "group ids that are not strings", code: "AUTH_TOKEN_MALFORMED", token: () => idp.token({ claims: { groups: [GROUP_DB, 7] } }) },
  ];
  for (const c of cases) {
    test(c.name, async () => {
      const token = await c.token();
      await rejectsCode(verifier.verify(token), c.code, token || undefined);
    });
  }

  test("with groupOverage: no-groups an overage token verifies with no groups", async () => {
    const v = new TokenVerifier(idp.identityConfig({}, { groupOverage: "no-groups" }));
    const p = await v.verify(await idp.token({ roles: ["r"], claims: { hasgroups: true } }));
    assert.deepEqual(p.groups, []);
    assert.deepEqual(p.roles, ["r"]);
  });

  test("requireAccessTokenType: false accepts other typ values", async () => {
    const v = new TokenVerifier(idp.identityConfig({}, { requireAccessTokenType: false }));
    await v.verify(await idp.sign(entraClaims(), { typ: "logout+jwt" }));
  });

  test("forged tokens never cause a key fetch", async () => {
    const { hits, fetch } = countingFetch();
    const v = new TokenVerifier(cfg, { fetch });
    for (const t of ["", "garbage", `${b64json({ alg: "none" })}.${b64json(entraClaims())}.`, await idp.sign(entraClaims({ iss: "https://evil.example" }))]) {
      await v.verify(t).catch(() => {});
    }
    assert.deepEqual(hits, { discovery: 0, jwks: 0 });
  });
});

describe("issuer configuration and availability", () => {
  test("an http:// issuer off loopback is refused at construction", () => {
    const bad = { ...cfg, issuers: [{ ...cfg.issuers[0]!, issuer: "http://idp.example.com" }] };
    assert.throws(() => new TokenVerifier(bad), (e: unknown) => e instanceof GatehouseError && e.def === ERRORS.AUTH_INSECURE_ISSUER);
    new TokenVerifier({ ...bad, issuers: [{ ...bad.issuers[0]!, allowInsecureHttp: true }] });
  });

  test("a discovery document naming another issuer is not trusted", async () => {
    // Same server, but configured under a different issuer string than the one it announces.
    const alias = idp.issuer.replace("127.0.0.1", "localhost");
    const v = new TokenVerifier(idp.identityConfig({}, { issuer: alias, discoveryUrl: `${idp.issuer}/.well-known/openid-configuration` }));
    await rejectsCode(v.verify(await idp.sign(entraClaims({ iss: alias }))), "AUTH_ISSUER_UNREACHABLE");
  });

  test("an unreachable issuer → AUTH_ISSUER_UNREACHABLE, but cached keys keep working", async () => {
    const down = await startTestIdp();
    let clock = Date.now();
    const c = down.identityConfig({ jwksCacheSeconds: 60, jwksRefetchCooldownSeconds: 5 });
    const warm = new TokenVerifier(c, { now: () => clock });
    const token = await down.token();
    await warm.verify(token);
    await down.close();
    clock += 120_000; // cache expired, refresh fails, the old keys stay in use
    await warm.verify(token);
    await rejectsCode(new TokenVerifier(c).verify(token), "AUTH_ISSUER_UNREACHABLE");
  });
});

describe("key rotation", () => {
  test("a rotated key verifies after exactly one refetch; floods of unknown kids are rate-limited", async () => {
    const rot = await startTestIdp();
    try {
      let clock = Date.now();
      const { hits, fetch } = countingFetch();
      const v = new TokenVerifier(rot.identityConfig({ jwksRefetchCooldownSeconds: 30, jwksCacheSeconds: 600 }), { fetch, now: () => clock });
      const oldToken = await rot.token();
      await v.verify(oldToken);
      assert.deepEqual(hits, { discovery: 1, jwks: 1 });

      const oldKid = rot.kid;
      const newKid = await rot.rotateKeys();
      assert.notEqual(newKid, oldKid);
      clock += 30_000;
      await v.verify(await rot.token());
      assert.equal(hits.jwks, 2, "exactly one refetch for the new kid");
      await v.verify(oldToken);
      await v.verify(await rot.token());
      assert.equal(hits.jwks, 2, "both keys now come from the cache");

      const forged = await Promise.all(
        Array.from({ length: 40 }, async (_, i) => {
          const { privateKey } = await generateKeyPair("ES256");
          return new SignJWT(entraClaims({ iss: rot.issuer, aud: rot.audience, tid: rot.tenantId })).setProtectedHeader({ alg: "ES256", kid: `flood-${i}` }).sign(privateKey);
        }),
      );
      const floodRsa = await Promise.all(
        Array.from({ length: 10 }, async (_, i) => {
          const jwk = await exportJWK((await generateKeyPair("RS256", { extractable: true })).privateKey);
          const key = await importJWK(jwk, "RS256");
          return new SignJWT(entraClaims({ iss: rot.issuer, aud: rot.audience, tid: rot.tenantId })).setProtectedHeader({ alg: "RS256", kid: `flood-rsa-${i}` }).sign(key);
        }),
      );
      const flood = async () => {
        const results = await Promise.allSettled([...forged, ...floodRsa].map((t) => v.verify(t)));
        for (const r of results) assert.ok(r.status === "rejected" && r.reason instanceof GatehouseError && r.reason.def === ERRORS.AUTH_KEY_UNKNOWN);
      };
      await flood(); // within the cooldown of the rotation refetch
      assert.equal(hits.jwks, 2);
      clock += 30_000;
      await flood(); // cooldown over: one shared refetch for 50 concurrent unknown kids
      assert.equal(hits.jwks, 3);
      clock += 10_000;
      await flood();
      assert.equal(hits.jwks, 3);
      clock += 20_000;
      await flood();
      assert.equal(hits.jwks, 4);
      assert.equal(hits.discovery, 1);

      // Dropping the old key: once the cache is refreshed, old tokens are no longer accepted.
      await rot.rotateKeys({ dropPrevious: true });
      clock += 600_000;
      await rejectsCode(v.verify(oldToken), "AUTH_KEY_UNKNOWN");
    } finally {
      await rot.close();
    }
  });
});

describe("development issuer", () => {
  let dir = "";
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "gatehouse-identity-"));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test("a minted token verifies when enabled and is rejected when disabled", async () => {
    const enabled = idp.identityConfig({ devIssuer: { enabled: true, keyFile: join(dir, "dev.json"), audience: "gatehouse-dev", tokenLifetime: 300 } });
    const token = await mintDevToken(enabled, { kind: "service", subject: "agent-7", roles: ["Agent.Run"] });
    const p = await new TokenVerifier(enabled).verify(token);
    assert.equal(p.kind, "service");
    assert.equal(p.issuer, "urn:gatehouse:dev");
    await verifier.verify(await idp.token()); // the real issuer keeps working alongside
    await rejectsCode(verifier.verify(token), "AUTH_ISSUER_INVALID", token);
    await rejectsCode(mintDevToken(cfg), "DEV_ISSUER_DISABLED");
  });

  test("an entry is trusted until the token expires or 60 s pass, and never after the verifier drops it", async () => {
    const c = idp.identityConfig({ devIssuer: { enabled: true, keyFile: join(dir, "dev.json"), audience: "gatehouse-dev", tokenLifetime: 300 } });
    let clock = Date.now();
    const v = new TokenVerifier(c, { now: () => clock });
    const token = await mintDevToken(c, { kind: "service", subject: "agent-cache", lifetimeSeconds: 30 });
    assert.equal(v.cached(token), undefined, "nothing is trusted before it was verified");
    const p = await v.verify(token);
    const entry = v.cached(token)!;
    assert.equal(entry.principal, p);
    assert.equal(v.cached(`${token.slice(0, -2)}AA`), undefined, "another byte string (a forged signature) never hits the entry");
    assert.ok(v.isTrusted(entry));
    clock += 31_000; // past the token's exp (30 s): no longer trusted, though kept by a caller
    assert.equal(v.isTrusted(entry), false);
    assert.equal(v.cached(token), undefined);
    // A longer-lived token: trusted for at most 60 s without a new signature check.
    const long = await mintDevToken(c, { kind: "service", subject: "agent-cache", lifetimeSeconds: 3600 });
    clock = Date.now();
    await v.verify(long);
    const e2 = v.cached(long)!;
    clock += 59_000;
    assert.ok(v.isTrusted(e2));
    clock += 2_000;
    assert.equal(v.isTrusted(e2), false);
    clock = Date.now();
    await v.verify(long);
    const e3 = v.cached(long)!;
    v.close();
    assert.equal(v.isTrusted(e3), false, "closing the verifier drops what callers kept");
  });
});

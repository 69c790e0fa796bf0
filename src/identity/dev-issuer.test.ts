import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { decodeJwt, decodeProtectedHeader } from "jose";
import { identitySchema } from "../config/schema.ts";
import { ERRORS, type ErrorKey, GatehouseError } from "../domain/errors.ts";
import { DEV_ISSUER, DEV_TENANT_ID, devObjectId, loadOrCreateDevKey, mintDevToken } from "./dev-issuer.ts";
import { TokenVerifier } from "./verifier.ts";

let dir = "";
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "gatehouse-dev-issuer-"));
});
after(() => rm(dir, { recursive: true, force: true }));

const cfg = (enabled: boolean, keyFile = join(dir, "nested", "dev-key.json")) =>
  identitySchema.parse({ devIssuer: { enabled, keyFile }, groupNames: { "dev-group-id": "developers" } });

async function rejectsCode(p: Promise<unknown>, key: ErrorKey) {
  await assert.rejects(p, (e: unknown) => e instanceof GatehouseError && e.def === ERRORS[key]);
}

describe("development key", () => {
  test("created on first use: directory made, file mode 0600, then reused", async () => {
    const file = join(dir, "a", "b", "key.json");
    const [k1, k2] = await Promise.all([loadOrCreateDevKey(file), loadOrCreateDevKey(file)]);
    assert.equal(k1.kid, k2.kid, "concurrent first use agrees on one key");
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    assert.equal((await loadOrCreateDevKey(file)).kid, k1.kid);
    assert.equal(k1.publicJwk.d, undefined);
    assert.equal(JSON.parse(await readFile(file, "utf8")).kty, "EC");
  });
  test("a corrupt key file is a configuration error", async () => {
    const file = join(dir, "corrupt.json");
    await writeFile(file, "{ not json");
    await rejectsCode(loadOrCreateDevKey(file), "CONFIG_INVALID");
    await writeFile(file, JSON.stringify({ kty: "oct", k: "AAAA" }));
    await rejectsCode(loadOrCreateDevKey(file), "CONFIG_INVALID");
  });
  test("object ids are stable UUIDv5 values per subject", () => {
    assert.equal(devObjectId("alice"), devObjectId("alice"));
    assert.notEqual(devObjectId("alice"), devObjectId("bob"));
    assert.match(devObjectId("alice"), /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });
});

describe("mintDevToken", () => {
  test("refuses while the development issuer is disabled", async () => {
    await rejectsCode(mintDevToken(cfg(false)), "DEV_ISSUER_DISABLED");
  });
  test("an Entra-v2-shaped human token that the verifier accepts when enabled", async () => {
    const c = cfg(true);
    const token = await mintDevToken(c, { subject: "alice", name: "Alice", groups: ["dev-group-id"] });
    const header = decodeProtectedHeader(token);
    const claims = decodeJwt(token);
    assert.equal(header.typ, "JWT");
    assert.equal(header.alg, "ES256");
    assert.ok(header.kid);
    assert.equal(claims.iss, DEV_ISSUER);
    assert.equal(claims.ver, "2.0");
    const p = await new TokenVerifier(c).verify(token);
    assert.equal(p.kind, "human");
    assert.equal(p.subject, `${DEV_TENANT_ID}/${devObjectId("alice")}`);
    assert.equal(p.displayName, "Alice");
    assert.deepEqual(p.groups, ["dev-group-id", "developers"]);
    assert.deepEqual(p.scopes, ["access_as_user"]);
  });
  test("a service token carries idtyp app, roles, and the configured lifetime", async () => {
    const c = cfg(true);
    const token = await mintDevToken(c, { kind: "service", subject: "ci-agent", roles: ["Agent.Run"], lifetimeSeconds: 60 });
    const claims = decodeJwt(token);
    assert.equal(claims.idtyp, "app");
    assert.equal(claims.sub, claims.oid);
    assert.equal(claims.exp! - claims.iat!, 60);
    const p = await new TokenVerifier(c).verify(token);
    assert.equal(p.kind, "service");
    assert.deepEqual(p.roles, ["Agent.Run"]);
    assert.equal(p.displayName, "ci-agent");
  });
  test("the verifier rejects development tokens when the issuer is disabled", async () => {
    const token = await mintDevToken(cfg(true));
    await rejectsCode(new TokenVerifier(cfg(false)).verify(token), "AUTH_ISSUER_INVALID");
  });
  test("a development token from another key file does not verify", async () => {
    const token = await mintDevToken(cfg(true, join(dir, "other-key.json")));
    await rejectsCode(new TokenVerifier(cfg(true)).verify(token), "AUTH_KEY_UNKNOWN");
  });
  test("expired development tokens are rejected", async () => {
    const token = await mintDevToken(cfg(true), { now: Date.now() - 7200_000, lifetimeSeconds: 3600 });
    await rejectsCode(new TokenVerifier(cfg(true)).verify(token), "AUTH_TOKEN_EXPIRED");
  });
});

describe("verified-token cache", () => {
  test("a cached token stops being accepted once it expires (the cache never outlives exp)", async () => {
    let clock = Date.now();
    const c = cfg(true);
    const token = await mintDevToken(c, { now: clock, lifetimeSeconds: 30 });
    const v = new TokenVerifier(c, { now: () => clock });
    assert.equal((await v.verify(token)).displayName, (await v.verify(token)).displayName, "second call served from the cache");
    clock += 31_000 + 120_000 + 1000; // past exp and the clock skew
    await rejectsCode(v.verify(token), "AUTH_TOKEN_EXPIRED");
  });
  test("a token differing in one byte of its signature is verified, not served from the cache", async () => {
    const c = cfg(true);
    const token = await mintDevToken(c);
    const v = new TokenVerifier(c);
    await v.verify(token);
    const last = token.at(-2) === "A" ? "B" : "A";
    const forged = `${token.slice(0, -2)}${last}${token.at(-1)}`;
    await rejectsCode(v.verify(forged), "AUTH_SIGNATURE_INVALID");
  });
});

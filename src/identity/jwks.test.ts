// The caching and rotation policy of RemoteKeySource, against a real HTTP server on loopback
// whose documents, failures and request counts the test controls.

import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, beforeEach, describe, test } from "node:test";
import { exportJWK, generateKeyPair, type JWK } from "jose";
import { ERRORS, type ErrorKey, GatehouseError } from "../domain/errors.ts";
import { RemoteKeySource, type RemoteKeySourceOptions } from "./jwks.ts";

let server: Server;
let base = "";
let issuerInDoc = "";
let keys: JWK[] = [];
let status = 200;
let jwksUriInDoc = "";
const hits = { discovery: 0, jwks: 0 };

async function publicKey(kid: string): Promise<JWK> {
  const { publicKey } = await generateKeyPair("RS256", { extractable: true });
  return { ...(await exportJWK(publicKey)), kid, alg: "RS256", use: "sig" };
}

before(async () => {
  server = createServer((req, res) => {
    if (req.url === "/.well-known/openid-configuration") hits.discovery++;
    if (req.url === "/keys") hits.jwks++;
    if (status !== 200) return res.writeHead(status).end();
    const body = req.url === "/keys" ? { keys } : { issuer: issuerInDoc, jwks_uri: jwksUriInDoc };
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(body));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => new Promise<void>((r) => server.close(() => r())));

let clock = 0;
beforeEach(async () => {
  hits.discovery = hits.jwks = 0;
  status = 200;
  issuerInDoc = base;
  jwksUriInDoc = `${base}/keys`;
  keys = [await publicKey("k1")];
  clock = 1_000_000;
});

function source(o: Partial<RemoteKeySourceOptions> = {}) {
  return new RemoteKeySource({
    location: { discoveryUrl: `${base}/.well-known/openid-configuration` },
    expectedIssuers: [base],
    allowInsecureHttp: false,
    cacheSeconds: 600,
    cooldownSeconds: 30,
    fetch: globalThis.fetch,
    now: () => clock,
    ...o,
  });
}
const hdr = (kid: string) => ({ alg: "RS256", kid });

async function rejectsCode(p: Promise<unknown>, key: ErrorKey) {
  await assert.rejects(p, (e: unknown) => e instanceof GatehouseError && e.def === ERRORS[key]);
}

describe("RemoteKeySource", () => {
  test("discovers once, then serves from cache until jwksCacheSeconds pass", async () => {
    const s = source();
    assert.equal((await s.keysFor(hdr("k1"))).length, 1);
    await s.keysFor(hdr("k1"));
    assert.deepEqual(hits, { discovery: 1, jwks: 1 });
    clock += 599_000;
    await s.keysFor(hdr("k1"));
    assert.equal(hits.jwks, 1);
    clock += 1_000;
    await s.keysFor(hdr("k1"));
    assert.deepEqual(hits, { discovery: 2, jwks: 2 });
  });

  test("unknown kid: one shared refetch for a concurrent flood, none during the cooldown", async () => {
    const s = source();
    await s.keysFor(hdr("k1"));
    clock += 30_000;
    const flood = await Promise.allSettled(Array.from({ length: 50 }, (_, i) => s.keysFor(hdr(`nope-${i}`))));
    assert.ok(flood.every((r) => r.status === "rejected" && r.reason instanceof GatehouseError && r.reason.def === ERRORS.AUTH_KEY_UNKNOWN));
    assert.equal(hits.jwks, 2);
    clock += 29_000;
    await rejectsCode(s.keysFor(hdr("nope")), "AUTH_KEY_UNKNOWN");
    assert.equal(hits.jwks, 2);
    clock += 1_000;
    await rejectsCode(s.keysFor(hdr("nope")), "AUTH_KEY_UNKNOWN");
    assert.equal(hits.jwks, 3);
    assert.equal(hits.discovery, 1, "a kid refetch reuses the discovered jwks_uri");
  });

  test("a rotated key is found with exactly one refetch", async () => {
    const s = source();
    await s.keysFor(hdr("k1"));
    keys = [await publicKey("k2"), ...keys];
    clock += 31_000;
    await s.keysFor(hdr("k2"));
    assert.equal(hits.jwks, 2);
  });

  test("a failed refresh keeps the cached keys working", async () => {
    const s = source();
    await s.keysFor(hdr("k1"));
    status = 500;
    clock += 700_000;
    await s.keysFor(hdr("k1"));
    await s.keysFor(hdr("k1"));
    assert.equal(hits.discovery, 2, "after a failure, no retry until the cooldown passes");
    // An unknown kid while the issuer is down is an outage, not proof of a forged key.
    await rejectsCode(s.keysFor(hdr("k9")), "AUTH_ISSUER_UNREACHABLE");
    assert.equal(hits.discovery, 2);
    clock += 30_000;
    await rejectsCode(s.keysFor(hdr("k9")), "AUTH_ISSUER_UNREACHABLE");
    assert.equal(hits.discovery, 3);
    status = 200;
    clock += 30_000;
    await rejectsCode(s.keysFor(hdr("k9")), "AUTH_KEY_UNKNOWN");
    assert.equal(hits.jwks, 2);
  });

  test("no keys and an unreachable issuer → AUTH_ISSUER_UNREACHABLE, retried at most once per cooldown", async () => {
    status = 503;
    const s = source();
    await rejectsCode(s.keysFor(hdr("k1")), "AUTH_ISSUER_UNREACHABLE");
    await rejectsCode(s.keysFor(hdr("k1")), "AUTH_ISSUER_UNREACHABLE");
    assert.equal(hits.discovery, 1);
    status = 200;
    clock += 30_000;
    await s.keysFor(hdr("k1"));
  });

  test("connection refused → AUTH_ISSUER_UNREACHABLE", async () => {
    const s = source({ location: { jwksUri: "http://127.0.0.1:1/keys" } });
    await rejectsCode(s.keysFor(hdr("k1")), "AUTH_ISSUER_UNREACHABLE");
  });

  test("a discovery document naming another issuer is not trusted", async () => {
    issuerInDoc = "https://evil.example";
    await rejectsCode(source().keysFor(hdr("k1")), "AUTH_ISSUER_UNREACHABLE");
    assert.equal(hits.jwks, 0);
  });

  test("a jwks_uri over http off loopback is refused", async () => {
    jwksUriInDoc = "http://keys.example/keys";
    await rejectsCode(source().keysFor(hdr("k1")), "AUTH_INSECURE_ISSUER");
  });

  test("a body that is not a JWKS → AUTH_ISSUER_UNREACHABLE", async () => {
    keys = "not a key list" as unknown as JWK[];
    const s = source({ location: { jwksUri: `${base}/keys` } });
    await rejectsCode(s.keysFor(hdr("k1")), "AUTH_ISSUER_UNREACHABLE");
    assert.equal(hits.discovery, 0);
  });

  test("no kid: every key of the right type is a candidate", async () => {
    keys = [await publicKey("a"), await publicKey("b")];
    assert.equal((await source().keysFor({ alg: "RS256" })).length, 2);
    await rejectsCode(source().keysFor({ alg: "ES256" }), "AUTH_KEY_UNKNOWN");
  });
});

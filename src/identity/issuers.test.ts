import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { type IssuerConfig, issuerSchema } from "../config/schema.ts";
import { ERRORS, type ErrorKey, GatehouseError } from "../domain/errors.ts";
import { isLoopbackHost, keyLocation, resolveIssuer, templateTenantOf, validateIssuerConfig } from "./issuers.ts";

const T1 = "11111111-1111-4111-8111-111111111111";
const T2 = "22222222-2222-4222-8222-222222222222";
const cfg = (o: Partial<IssuerConfig> & { issuer: string }) => issuerSchema.parse({ audiences: ["api://gatehouse"], ...o });
const v2Template = cfg({ issuer: "https://login.microsoftonline.com/{tenantid}/v2.0", allowedTenants: [T1] });
const v1Template = cfg({ issuer: "https://sts.windows.net/{tenantid}/", allowedTenants: [T1, T2] });
const single = cfg({ issuer: `https://login.microsoftonline.com/${T2}/v2.0` });

function throwsCode(fn: () => unknown, key: ErrorKey) {
  assert.throws(fn, (e: unknown) => e instanceof GatehouseError && e.def === ERRORS[key]);
}

describe("resolveIssuer", () => {
  test("exact match", () => {
    const m = resolveIssuer(single.issuer, T2, [v2Template, single]);
    assert.equal(m.cfg, single);
    assert.equal(m.tenant, undefined);
  });
  test("v2 tenant template with an allowed tenant", () => {
    const m = resolveIssuer(`https://login.microsoftonline.com/${T1}/v2.0`, T1, [v2Template]);
    assert.equal(m.cfg, v2Template);
    assert.equal(m.tenant, T1);
  });
  test("v1 tenant template (trailing slash) and upper-case tenant", () => {
    const m = resolveIssuer(`https://sts.windows.net/${T2.toUpperCase()}/`, T2, [v2Template, v1Template]);
    assert.equal(m.cfg, v1Template);
    assert.equal(m.tenant, T2);
  });
  test("template with a tenant not on the list → AUTH_TENANT_NOT_ALLOWED", () => {
    throwsCode(() => resolveIssuer(`https://login.microsoftonline.com/${T2}/v2.0`, T2, [v2Template]), "AUTH_TENANT_NOT_ALLOWED");
  });
  test("tid that disagrees with the tenant in iss → AUTH_ISSUER_INVALID", () => {
    throwsCode(() => resolveIssuer(`https://login.microsoftonline.com/${T1}/v2.0`, T2, [v2Template]), "AUTH_ISSUER_INVALID");
  });
  test("a tenant segment cannot smuggle a path", () => {
    assert.equal(templateTenantOf(v2Template.issuer, "https://login.microsoftonline.com/evil.example/x/v2.0"), undefined);
    assert.equal(templateTenantOf(v2Template.issuer, "https://login.microsoftonline.com//v2.0"), undefined);
    throwsCode(() => resolveIssuer("https://login.microsoftonline.com/a/b/v2.0", undefined, [v2Template]), "AUTH_ISSUER_INVALID");
  });
  test("exact issuer with allowedTenants checks tid", () => {
    const c = cfg({ issuer: "https://idp.example", allowedTenants: [T1] });
    assert.equal(resolveIssuer("https://idp.example", T1, [c]).cfg, c);
    throwsCode(() => resolveIssuer("https://idp.example", T2, [c]), "AUTH_TENANT_NOT_ALLOWED");
    throwsCode(() => resolveIssuer("https://idp.example", undefined, [c]), "AUTH_TENANT_NOT_ALLOWED");
  });
  test("unknown issuer, and prefix tricks → AUTH_ISSUER_INVALID", () => {
    throwsCode(() => resolveIssuer("https://evil.example", T1, [single, v2Template]), "AUTH_ISSUER_INVALID");
    throwsCode(() => resolveIssuer(`${single.issuer}/`, T2, [single]), "AUTH_ISSUER_INVALID");
  });
});

describe("keyLocation", () => {
  test("discovery from the issuer, without its trailing slash", () => {
    assert.deepEqual(keyLocation({ cfg: v1Template, issuer: `https://sts.windows.net/${T1}/`, tenant: T1 }), {
      discoveryUrl: `https://sts.windows.net/${T1}/.well-known/openid-configuration`,
    });
  });
  test("jwksUri skips discovery and templates are filled", () => {
    const c = cfg({ issuer: "https://login.microsoftonline.com/{tenantid}/v2.0", allowedTenants: [T1], jwksUri: "https://login.microsoftonline.com/{tenantid}/discovery/v2.0/keys" });
    assert.deepEqual(keyLocation({ cfg: c, issuer: "x", tenant: T1 }), { jwksUri: `https://login.microsoftonline.com/${T1}/discovery/v2.0/keys` });
  });
});

describe("validateIssuerConfig", () => {
  test("http:// off loopback → AUTH_INSECURE_ISSUER", () => {
    throwsCode(() => validateIssuerConfig(cfg({ issuer: "http://idp.example" })), "AUTH_INSECURE_ISSUER");
    throwsCode(() => validateIssuerConfig(cfg({ issuer: "https://idp.example", jwksUri: "http://idp.example/keys" })), "AUTH_INSECURE_ISSUER");
    throwsCode(() => validateIssuerConfig(cfg({ issuer: "https://idp.example", discoveryUrl: "http://10.0.0.1/.well-known/openid-configuration" })), "AUTH_INSECURE_ISSUER");
  });
  test("loopback http and explicit allowInsecureHttp are accepted", () => {
    for (const issuer of ["http://127.0.0.1:8080", "http://127.8.9.10", "http://localhost:1", "http://[::1]:9000"]) validateIssuerConfig(cfg({ issuer }));
    validateIssuerConfig(cfg({ issuer: "http://idp.test", allowInsecureHttp: true }));
  });
  test("a non-URL issuer needs jwksUri or discoveryUrl", () => {
    throwsCode(() => validateIssuerConfig(cfg({ issuer: "urn:example:idp" })), "CONFIG_INVALID");
    validateIssuerConfig(cfg({ issuer: "urn:example:idp", jwksUri: "https://idp.example/keys" }));
  });
  test("a tenant template must list allowedTenants", () => {
    throwsCode(() => validateIssuerConfig(cfg({ issuer: "https://login.microsoftonline.com/{tenantid}/v2.0" })), "CONFIG_INVALID");
  });
  test("isLoopbackHost", () => {
    assert.ok(isLoopbackHost("127.0.0.1") && isLoopbackHost("[::1]") && isLoopbackHost("LOCALHOST"));
    assert.ok(!isLoopbackHost("127.0.0.1.nip.io") && !isLoopbackHost("localhost.example") && !isLoopbackHost("10.0.0.1"));
  });
});

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import type { JWTPayload } from "jose";
import { type IssuerConfig, issuerSchema } from "../config/schema.ts";
import { ERRORS, type ErrorKey, GatehouseError } from "../domain/errors.ts";
import { mapGroups, principalFromClaims } from "./principal.ts";

const TID = "72f988bf-0000-41af-91ab-2d7cd011db47";
const OID = "5e6f7a8b-1111-4c2d-9e0f-123456789abc";
const G1 = "a1b2c3d4-0000-0000-0000-000000000001";
const G2 = "a1b2c3d4-0000-0000-0000-000000000002";
const HEADER = { alg: "RS256", typ: "JWT", kid: "k1" };
const groupNames = { [G1]: "db-admins", [G2.toUpperCase()]: "oncall" };
const issuer = (o: Partial<IssuerConfig> = {}) =>
  issuerSchema.parse({ issuer: `https://login.microsoftonline.com/${TID}/v2.0`, audiences: ["api://gatehouse"], ...o });

const build = (claims: JWTPayload, cfg: Partial<IssuerConfig> = {}) => principalFromClaims(claims, HEADER, issuer(cfg), { groupNames });

function throwsCode(fn: () => unknown, key: ErrorKey) {
  assert.throws(fn, (e: unknown) => e instanceof GatehouseError && e.def === ERRORS[key]);
}

// Shapes follow Microsoft's access token claims reference.
const v2AppOnly = {
  aud: "api://gatehouse",
  iss: `https://login.microsoftonline.com/${TID}/v2.0`,
  iat: 1700000000,
  nbf: 1700000000,
  exp: 1700003600,
  azp: "c0ffee00-aaaa-bbbb-cccc-000000000001",
  azpacr: "1",
  idtyp: "app",
  oid: OID,
  sub: OID,
  roles: ["Agent.Run", "Db.Read"],
  groups: [G1, G2],
  tid: TID,
  uti: "AbCdEf",
  ver: "2.0",
};

const v1Delegated = {
  aud: "api://gatehouse",
  iss: `https://sts.windows.net/${TID}/`,
  iat: 1700000000,
  nbf: 1700000000,
  exp: 1700003600,
  appid: "c0ffee00-aaaa-bbbb-cccc-000000000002",
  appidacr: "0",
  oid: OID,
  sub: "pairwise-sub-value",
  scp: "user_impersonation  Files.Read",
  tid: TID,
  unique_name: "ada@contoso.com",
  upn: "ada@contoso.com",
  uti: "XyZ",
  ver: "1.0",
};

describe("principalFromClaims: Entra shapes", () => {
  test("v2 app-only token → service principal with roles, group ids and mapped names", () => {
    const p = build(v2AppOnly);
    assert.deepEqual(p, {
      subject: `${TID}/${OID}`,
      objectId: OID,
      tenantId: TID,
      issuer: v2AppOnly.iss,
      displayName: v2AppOnly.azp,
      kind: "service",
      groups: [G1, G2, "db-admins", "oncall"],
      roles: ["Agent.Run", "Db.Read"],
      scopes: [],
      clientId: v2AppOnly.azp,
      tokenVersion: "2.0",
      tokenId: "AbCdEf",
      expiresAt: 1700003600,
    });
  });

  test("v1 delegated token → human principal, upn as name, appid as client, scp split", () => {
    const p = build(v1Delegated);
    assert.equal(p.kind, "human");
    assert.equal(p.displayName, "ada@contoso.com");
    assert.equal(p.clientId, v1Delegated.appid);
    assert.deepEqual(p.scopes, ["user_impersonation", "Files.Read"]);
    assert.equal(p.tokenVersion, "1.0");
    assert.equal(p.subject, `${TID}/${OID}`);
    assert.deepEqual(p.groups, []);
  });

  test("v2 delegated token with idtyp user and name", () => {
    const { roles: _r, groups: _g, ...rest } = v2AppOnly;
    const p = build({ ...rest, idtyp: "user", sub: "pairwise", name: "Ada Lovelace", preferred_username: "ada@contoso.com", scp: "access_as_user" });
    assert.equal(p.kind, "human");
    assert.equal(p.displayName, "Ada Lovelace");
    assert.deepEqual(p.scopes, ["access_as_user"]);
  });

  test("v1 app-only token without idtyp: roles, no scp → service; app_displayname names it", () => {
    const { scp: _s, upn: _u, unique_name: _n, ...rest } = v1Delegated;
    const p = build({ ...rest, sub: OID, roles: ["Agent.Run"], app_displayname: "build-agent" });
    assert.equal(p.kind, "service");
    assert.equal(p.displayName, "build-agent");
  });
});

describe("principalFromClaims: kind rule", () => {
  const base = { iss: "https://idp.example", exp: 1, sub: "s1" };
  const cases: [string, JWTPayload, "human" | "service"][] = [
    ["idtyp app wins over scp", { ...base, idtyp: "app", scp: "x", name: "n" }, "service"],
    ["idtyp user wins over roles", { ...base, idtyp: "user", roles: ["r"] }, "human"],
    ["scp without idtyp → human", { ...base, scp: "x", roles: ["r"] }, "human"],
    ["no scp, roles → service", { ...base, name: "n", roles: ["r"] }, "service"],
    ["no scp, oid === sub → service", { ...base, name: "n", oid: "s1" }, "service"],
    ["no scp, no user name → service", { ...base }, "service"],
    ["no scp, a user name, no roles, oid ≠ sub → human", { ...base, upn: "u@x", oid: "o1" }, "human"],
  ];
  for (const [name, claims, kind] of cases) test(name, () => assert.equal(build(claims).kind, kind));
});

describe("principalFromClaims: subjects and names", () => {
  test("without tid+oid the subject is iss#sub", () => {
    assert.equal(build({ iss: "https://idp.example", sub: "abc", exp: 1 }).subject, "https://idp.example#abc");
    assert.equal(build({ iss: "https://idp.example", sub: "abc", oid: OID, exp: 1 }).subject, "https://idp.example#abc");
  });
  test("no subject at all → AUTH_CLAIM_MISSING", () => throwsCode(() => build({ iss: "https://idp.example", exp: 1, oid: OID }), "AUTH_CLAIM_MISSING"));
  test("display name falls back to azp, then the subject", () => {
    assert.equal(build({ iss: "i", sub: "s", exp: 1, azp: "app-1" }).displayName, "app-1");
    assert.equal(build({ iss: "i", sub: "s", exp: 1 }).displayName, "i#s");
  });
  test("jti is the token id when uti is absent", () => assert.equal(build({ iss: "i", sub: "s", exp: 1, jti: "j" }).tokenId, "j"));
});

describe("principalFromClaims: groups", () => {
  test("ids and mapped names, deduplicated; id lookup tolerates case", () => {
    assert.deepEqual(build({ ...v2AppOnly, groups: [G1, G1, G2, "db-admins"] }).groups, [G1, G2, "db-admins", "oncall"]);
  });
  test("a group id equal to an Object.prototype key maps to nothing", () => {
    assert.deepEqual(mapGroups(["constructor", "__proto__", "toString"], {}), ["constructor", "__proto__", "toString"]);
  });
  test("overage via _claim_names → AUTH_GROUPS_OVERAGE", () => {
    const { groups: _g, ...rest } = v2AppOnly;
    const claims = { ...rest, _claim_names: { groups: "src1" }, _claim_sources: { src1: { endpoint: "https://graph.microsoft.com/v1.0/users/x/getMemberObjects" } } };
    throwsCode(() => build(claims), "AUTH_GROUPS_OVERAGE");
  });
  test("overage via hasgroups → AUTH_GROUPS_OVERAGE", () => {
    const { groups: _g, ...rest } = v2AppOnly;
    throwsCode(() => build({ ...rest, hasgroups: true }), "AUTH_GROUPS_OVERAGE");
  });
  test("overage with groupOverage: no-groups → a principal with no groups", () => {
    const { groups: _g, ...rest } = v2AppOnly;
    assert.deepEqual(build({ ...rest, hasgroups: true }, { groupOverage: "no-groups" }).groups, []);
    assert.deepEqual(build({ ...rest, _claim_names: { groups: "src1" } }, { groupOverage: "no-groups" }).groups, []);
    assert.equal(build({ ...rest, hasgroups: true }, { groupOverage: "no-groups" }).groupsOverage, true);
    assert.equal(build(rest, { groupOverage: "no-groups" }).groupsOverage, undefined);
  });
  test("non-string group or role entries → AUTH_TOKEN_MALFORMED", () => {
    throwsCode(() => build({ ...v2AppOnly, groups: [G1, 42] }), "AUTH_TOKEN_MALFORMED");
    throwsCode(() => build({ ...v2AppOnly, groups: G1 }), "AUTH_TOKEN_MALFORMED");
    throwsCode(() => build({ ...v2AppOnly, roles: [{ admin: true }] }), "AUTH_TOKEN_MALFORMED");
    throwsCode(() => build({ ...v1Delegated, scp: ["a", "b"] }), "AUTH_TOKEN_MALFORMED");
  });
  test("property: every token group is kept, nothing is duplicated, names follow config", () => {
    fc.assert(
      fc.property(fc.array(fc.string()), fc.dictionary(fc.string(), fc.string()), (ids, names) => {
        const out = mapGroups(ids, names);
        assert.equal(new Set(out).size, out.length);
        for (const id of ids) assert.ok(out.includes(id));
        for (const id of ids) if (Object.hasOwn(names, id)) assert.ok(out.includes(names[id]!));
      }),
    );
  });
});

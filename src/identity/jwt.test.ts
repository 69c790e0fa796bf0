import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ERRORS, type ErrorKey, GatehouseError } from "../domain/errors.ts";
import { checkAlgorithm, checkIssuedAt, checkType, parseUnverified } from "./jwt.ts";

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
const good = `${b64({ alg: "RS256", typ: "JWT" })}.${b64({ iss: "x" })}.c2ln`;

function throwsCode(fn: () => unknown, key: ErrorKey) {
  assert.throws(fn, (e: unknown) => e instanceof GatehouseError && e.def === ERRORS[key]);
}

describe("parseUnverified", () => {
  test("decodes header and claims", () => {
    assert.deepEqual(parseUnverified(good, 1024), { header: { alg: "RS256", typ: "JWT" }, claims: { iss: "x" } });
  });
  test("missing", () => {
    for (const t of ["", "   ", undefined, null]) throwsCode(() => parseUnverified(t, 1024), "AUTH_TOKEN_MISSING");
  });
  test("too large counts bytes, not characters", () => {
    throwsCode(() => parseUnverified("é".repeat(600), 1024), "AUTH_TOKEN_TOO_LARGE");
    throwsCode(() => parseUnverified(`${good}${"A".repeat(2000)}`, 1024), "AUTH_TOKEN_TOO_LARGE");
  });
  test("malformed shapes", () => {
    for (const t of ["garbage", "a.b", "a.b.c.d", `${good}.x.y`, "a+b.c/d.e", ".x.y", `${b64({ alg: "RS256" })}.bm90IGpzb24.sig`, `${b64([1])}.${b64({})}.s`]) {
      throwsCode(() => parseUnverified(t, 1024), "AUTH_TOKEN_MALFORMED");
    }
  });
  test("an error message never contains the token", () => {
    const secret = `${b64({ alg: "RS256" })}.${b64({ secret: "hunter2" })}`;
    try {
      parseUnverified(secret, 1024);
      assert.fail("should throw");
    } catch (e) {
      assert.ok(!(e as Error).message.includes(secret) && !(e as Error).message.includes("hunter2"));
    }
  });
});

describe("checkAlgorithm / checkType / checkIssuedAt", () => {
  test("only the allowed algorithms pass", () => {
    checkAlgorithm("RS256", ["RS256", "ES256"]);
    for (const alg of ["none", "None", "HS256", "HS512", "PS256", "ES256", undefined, 7]) throwsCode(() => checkAlgorithm(alg, ["RS256"]), "AUTH_ALGORITHM_REJECTED");
  });
  test("access token types pass, others are refused", () => {
    for (const typ of [undefined, "JWT", "jwt", "at+jwt", "application/at+jwt", "AT+JWT"]) checkType(typ, true);
    for (const typ of ["logout+jwt", "secevent+jwt", "id_token", "JOSE", "", 1]) throwsCode(() => checkType(typ, true), "AUTH_TOKEN_TYPE_INVALID");
    checkType("logout+jwt", false);
  });
  test("iat in the future beyond skew", () => {
    checkIssuedAt({ iat: 1100 }, 1000, 120);
    throwsCode(() => checkIssuedAt({ iat: 1121 }, 1000, 120), "AUTH_TOKEN_NOT_YET_VALID");
  });
});

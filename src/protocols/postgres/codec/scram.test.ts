import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { ProtocolErrorCode } from "./errors.ts";
import { ProtocolError } from "./errors.ts";
import {
  md5Password,
  parseScramServerFirst,
  ScramSha256Client,
  saslprep,
  scramClientFinal,
  scramClientFirst,
  verifyScramServerFinal,
} from "./scram.ts";

function expectError(code: ProtocolErrorCode, fn: () => unknown): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof ProtocolError, `expected ProtocolError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    return true;
  });
}

// RFC 7677 section 3: user "user", password "pencil".
const RFC = {
  clientNonce: "rOprNGfwEbeRWgbNEkqO",
  clientFirst: "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
  serverFirst: "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
  clientFinal: "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
  serverFinal: "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
};

// Computed independently with Python's hashlib/hmac for password "pass" (what SASLprep makes of
// "p\u00AAss"), an empty user name as PostgreSQL clients send, and RFC 5802's nonce and salt.
const PY = {
  clientNonce: "fyko+d2lbbFgONRv9qkxdawL",
  serverFirst: "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
  clientFinal: "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=1ic/fXixBCsNkMXO5w68U1eLP8Gg8adGZS1u4RIAmOk=",
  serverFinal: "v=y4ga8sXvN4RKDPnl+oySzQ9pQ+01MrVFBM1sSzcttOg=",
};

describe("SCRAM-SHA-256 client", () => {
  test("RFC 7677 test vector, step by step", () => {
    const first = scramClientFirst({ nonce: RFC.clientNonce, username: "user" });
    assert.equal(first.message, RFC.clientFirst);
    const server = parseScramServerFirst(RFC.serverFirst, first.nonce);
    assert.equal(server.iterations, 4096);
    const final = scramClientFinal(first, server, "pencil");
    assert.equal(final.message, RFC.clientFinal);
    verifyScramServerFinal(RFC.serverFinal, final.serverSignature);
  });

  test("RFC 7677 test vector through the state machine", () => {
    const c = new ScramSha256Client("pencil", { nonce: RFC.clientNonce, username: "user" });
    assert.equal(c.clientFirst(), RFC.clientFirst);
    assert.equal(c.clientFinal(Buffer.from(RFC.serverFirst)), RFC.clientFinal);
    assert.equal(c.done, false);
    c.verifyServerFinal(Buffer.from(RFC.serverFinal));
    assert.equal(c.done, true);
  });

  test("PostgreSQL style: empty user name, SASLprep'd password (independent Python vector)", () => {
    const c = new ScramSha256Client("p\u00aass", { nonce: PY.clientNonce });
    assert.equal(c.clientFirst(), `n,,n=,r=${PY.clientNonce}`);
    assert.equal(c.clientFinal(PY.serverFirst), PY.clientFinal);
    c.verifyServerFinal(PY.serverFinal);
  });

  test("a random nonce by default, 18 bytes in base64 like libpq", () => {
    const a = scramClientFirst();
    const b = scramClientFirst();
    assert.match(a.message, /^n,,n=,r=[A-Za-z0-9+/]{24}$/);
    assert.notEqual(a.nonce, b.nonce);
  });

  test("user names are escaped", () => {
    assert.equal(scramClientFirst({ nonce: "x", username: "a=b,c" }).bare, "n=a=3Db=2Cc,r=x");
  });

  test("a wrong server signature is refused", () => {
    const c = new ScramSha256Client("pencil", { nonce: RFC.clientNonce, username: "user" });
    c.clientFirst();
    c.clientFinal(RFC.serverFirst);
    expectError("PG_SCRAM_SERVER_SIGNATURE_INVALID", () => c.verifyServerFinal("v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="));
    expectError("PG_SCRAM_SERVER_SIGNATURE_INVALID", () => c.verifyServerFinal("v=AAAA"));
    assert.equal(c.done, false);
  });

  test("a password the server does not know gives a different proof and fails verification", () => {
    const first = scramClientFirst({ nonce: RFC.clientNonce, username: "user" });
    const final = scramClientFinal(first, parseScramServerFirst(RFC.serverFirst, first.nonce), "pencil2");
    assert.notEqual(final.message, RFC.clientFinal);
    expectError("PG_SCRAM_SERVER_SIGNATURE_INVALID", () => verifyScramServerFinal(RFC.serverFinal, final.serverSignature));
  });

  test("server errors and malformed messages", () => {
    expectError("PG_SCRAM_SERVER_ERROR", () => verifyScramServerFinal("e=invalid-proof", Buffer.alloc(32)));
    expectError("PG_SCRAM_MESSAGE_INVALID", () => verifyScramServerFinal("x=1", Buffer.alloc(32)));
    expectError("PG_SCRAM_MESSAGE_INVALID", () => verifyScramServerFinal("v=not base64!", Buffer.alloc(32)));
    const n = RFC.clientNonce;
    expectError("PG_SCRAM_NONCE_MISMATCH", () => parseScramServerFirst("r=somebodyelse,s=QSXCR+Q6sek8bf92,i=4096", n));
    expectError("PG_SCRAM_NONCE_MISMATCH", () => parseScramServerFirst(`r=${n},s=QSXCR+Q6sek8bf92,i=4096`, n));
    expectError("PG_SCRAM_ITERATIONS_INVALID", () => parseScramServerFirst(`r=${n}x,s=QSXCR+Q6sek8bf92,i=0`, n));
    expectError("PG_SCRAM_ITERATIONS_INVALID", () => parseScramServerFirst(`r=${n}x,s=QSXCR+Q6sek8bf92,i=abc`, n));
    expectError("PG_SCRAM_ITERATIONS_INVALID", () => parseScramServerFirst(`r=${n}x,s=QSXCR+Q6sek8bf92,i=99999999999`, n));
    expectError("PG_SCRAM_ITERATIONS_INVALID", () => parseScramServerFirst(`r=${n}x,s=QSXCR+Q6sek8bf92,i=5000`, n, { maxIterations: 4096 }));
    expectError("PG_SCRAM_MESSAGE_INVALID", () => parseScramServerFirst(`r=${n}x,s=***,i=4096`, n));
    expectError("PG_SCRAM_MESSAGE_INVALID", () => parseScramServerFirst(`r=${n}x,s=,i=4096`, n));
    expectError("PG_SCRAM_MESSAGE_INVALID", () => parseScramServerFirst(`m=ext,r=${n}x,s=QSXCR+Q6sek8bf92,i=4096`, n));
    expectError("PG_SCRAM_MESSAGE_INVALID", () => parseScramServerFirst(`s=QSXCR+Q6sek8bf92,r=${n}x,i=4096`, n));
    expectError("PG_SCRAM_MESSAGE_INVALID", () => parseScramServerFirst("", n));
    assert.equal(parseScramServerFirst(`r=${n}x,s=QSXCR+Q6sek8bf92,i=4096,x=ext`, n).iterations, 4096, "trailing extensions are allowed");
    expectError("PG_SCRAM_MESSAGE_INVALID", () => scramClientFirst({ nonce: "a,b" }));
  });

  test("messages out of order are refused", () => {
    const c = new ScramSha256Client("pencil", { nonce: RFC.clientNonce });
    expectError("PG_SCRAM_MESSAGE_INVALID", () => c.verifyServerFinal(RFC.serverFinal));
    expectError("PG_SCRAM_MESSAGE_INVALID", () => c.clientFinal(RFC.serverFirst));
    c.clientFirst();
    assert.throws(() => c.clientFirst());
  });
});

describe("SASLprep", () => {
  test("RFC 4013 examples and PostgreSQL's fallback", () => {
    assert.equal(saslprep("I\u00adX"), "IX");
    assert.equal(saslprep("user"), "user");
    assert.equal(saslprep("USER"), "USER");
    assert.equal(saslprep("\u00aa"), "a");
    assert.equal(saslprep("\u2168"), "IX");
    assert.equal(saslprep("a\u00a0b"), "a b");
    // prohibited output: PostgreSQL then uses the password as it is
    assert.equal(saslprep("\u0007"), "\u0007");
    assert.equal(saslprep("\u00e9\u0007"), "\u00e9\u0007");
    assert.equal(saslprep("\ue000x\u00e9"), "\ue000x\u00e9");
  });
});

describe("MD5 password", () => {
  test("md5(md5(password + user) + salt), vector computed with Python's hashlib", () => {
    assert.equal(md5Password("postgres", "postgres", Buffer.from([1, 2, 3, 4])), "md568be9ed08db75f318087ab337aaea044");
    expectError("PG_FIELD_INVALID", () => md5Password("u", "p", Buffer.alloc(2)));
  });
});

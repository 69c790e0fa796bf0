import assert from "node:assert/strict";
import { createHash, createHmac, pbkdf2Sync } from "node:crypto";
import { describe, test } from "node:test";
import {
  BackendFramer,
  BackendType,
  backend as bw,
  FrontendDecoder,
  frontendWriter as fw,
  isProtocolError,
  ProtocolError,
  parseAuthentication,
  parseBackendKeyData,
  parseNoticeFields,
  parsePassword,
  parseReadyForQuery,
  parseSASLInitialResponse,
  SCRAM_SHA_256,
  ScramSha256Client,
} from "./index.ts";

describe("public API, as an engine uses it", () => {
  test("gateway as server: TLS refused, startup, cleartext token, then extended-protocol traffic", () => {
    const client = new FrontendDecoder();
    const [ssl] = client.push(fw.sslRequest());
    assert.equal(ssl?.type, "SSLRequest");
    const reply = bw.sslResponse(false);
    assert.deepEqual(reply, Buffer.from("N"));

    const [startup] = client.push(fw.startupMessage({ user: "agent@example.com", database: "orders" }));
    assert.ok(startup?.type === "StartupMessage");
    assert.equal(startup.parameters["database"], "orders");
    assert.equal(client.phase, "typed");

    // the gateway asks for the token as a cleartext password, the client sends it
    const [pw] = client.push(fw.passwordMessage("eyJ0eXAiOiJKV1Qi.x.y"));
    assert.ok(pw?.type === "AuthResponse");
    assert.equal(parsePassword(pw.payload), "eyJ0eXAiOiJKV1Qi.x.y");

    // the gateway's answer reads back with the framer the agent side uses
    const server = new BackendFramer();
    const frames = server.push(
      Buffer.concat([bw.authenticationOk(), bw.parameterStatus("server_version", "17.0"), bw.backendKeyData(1, Buffer.alloc(32, 1)), bw.readyForQuery("I")]),
    );
    assert.deepEqual(parseAuthentication(frames[0]!.payload), { kind: "Ok" });
    assert.equal(parseBackendKeyData(frames[2]!.payload).secretKey.length, 32);
    assert.equal(parseReadyForQuery(frames[3]!.payload), "I");

    // a denied statement is answered in the client's own protocol
    const denied = new BackendFramer().push(Buffer.concat([bw.errorResponse({ severity: "ERROR", code: "42501", message: "denied by rule no-drop" }), bw.readyForQuery("I")]));
    assert.equal(denied[0]!.type, BackendType.ErrorResponse);
    assert.equal(parseNoticeFields(denied[0]!.payload).code, "42501");
  });

  test("gateway as client: SCRAM-SHA-256 against a server simulated with node:crypto", () => {
    const password = "correct horse";
    const salt = Buffer.from("0123456789abcdef");
    const iterations = 4096;
    // what the server stores (pg_authid.rolpassword)
    const salted = pbkdf2Sync(password, salt, iterations, 32, "sha256");
    const storedKey = createHash("sha256").update(createHmac("sha256", salted).update("Client Key").digest()).digest();
    const serverKey = createHmac("sha256", salted).update("Server Key").digest();

    const scram = new ScramSha256Client(password);
    const initial = fw.saslInitialResponse(SCRAM_SHA_256, scram.clientFirst());
    // the server reads it with the frontend decoder
    const decoder = new FrontendDecoder();
    decoder.startupDone();
    const [m] = decoder.push(initial);
    assert.ok(m?.type === "AuthResponse");
    const init = parseSASLInitialResponse(m.payload);
    assert.equal(init.mechanism, SCRAM_SHA_256);
    const clientFirst = init.data!.toString();
    assert.ok(clientFirst.startsWith("n,,n=,r="));
    const clientFirstBare = clientFirst.slice(3);
    const serverFirst = `r=${clientFirstBare.slice("n=,r=".length)}SERVERNONCE,s=${salt.toString("base64")},i=${iterations}`;

    const [cont] = new BackendFramer().push(bw.authenticationSASLContinue(serverFirst));
    const c = parseAuthentication(cont!.payload);
    assert.ok(c.kind === "SASLContinue");
    const clientFinal = scram.clientFinal(c.data);

    // the server verifies the proof the way PostgreSQL does
    const withoutProof = clientFinal.slice(0, clientFinal.lastIndexOf(",p="));
    const proof = Buffer.from(clientFinal.slice(clientFinal.lastIndexOf(",p=") + 3), "base64");
    const authMessage = `${clientFirstBare},${serverFirst},${withoutProof}`;
    const clientSignature = createHmac("sha256", storedKey).update(authMessage).digest();
    const clientKey = Buffer.from(proof.map((b, i) => b ^ clientSignature[i]!));
    assert.deepEqual(createHash("sha256").update(clientKey).digest(), storedKey, "server accepts the proof");

    const serverSignature = createHmac("sha256", serverKey).update(authMessage).digest();
    const [fin] = new BackendFramer().push(bw.authenticationSASLFinal(`v=${serverSignature.toString("base64")}`));
    const f = parseAuthentication(fin!.payload);
    assert.ok(f.kind === "SASLFinal");
    scram.verifyServerFinal(f.data);
    assert.equal(scram.done, true);
  });

  test("ProtocolError carries a code and the SQLSTATE to report", () => {
    const d = new FrontendDecoder();
    try {
      d.push(Buffer.from([0, 0, 0, 2]));
      assert.fail("expected a ProtocolError");
    } catch (e) {
      assert.ok(isProtocolError(e));
      assert.equal(e.code, "PG_STARTUP_LENGTH_INVALID");
      assert.equal(e.sqlstate, "08P01");
      assert.equal(e.name, "ProtocolError");
    }
    assert.equal(new ProtocolError("PG_SCRAM_SERVER_SIGNATURE_INVALID", "x").sqlstate, "28000");
    assert.equal(new ProtocolError("PG_WRITE_INVALID", "x").sqlstate, "XX000");
    assert.equal(isProtocolError(new Error("x")), false);
  });
});

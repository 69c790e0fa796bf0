// Checkpoint signing and the trust rules for verifying a signature: a trusted key decides; the key
// embedded in a file counts only when nothing is trusted; files are validated strictly.

import assert from "node:assert/strict";
import { createHash, generateKeyPairSync } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { CHECKPOINT_FORMAT, CheckpointSigner, checkpointFile, checkpointStatement, checkSignature, keyIdOf, loadSigner, parseCheckpoints, parsePublicKey, trustedKeyMap } from "./checkpoints.ts";

const pem = () => String(generateKeyPairSync("ed25519").privateKey.export({ format: "pem", type: "pkcs8" }));
const H = "a".repeat(64);

describe("checkpoint signer", () => {
  test("key id is the first 16 hex of SHA-256 of the raw 32-byte public key; the statement is fixed", () => {
    const s = new CheckpointSigner(pem());
    const raw = s.publicKey.export({ format: "der", type: "spki" }).subarray(-32);
    assert.equal(s.keyId, createHash("sha256").update(raw).digest("hex").slice(0, 16));
    assert.equal(keyIdOf(parsePublicKey(s.publicKeyPem)), s.keyId);
    assert.equal(checkpointStatement({ seq: 7, hash: H, at: 1000 }), `gatehouse-audit-checkpoint/v1\n7\n${H}\n1000`);
  });

  test("not Ed25519, not PEM, unresolvable: GH-AUDIT-001 without echoing the key", async () => {
    const rsa = String(generateKeyPairSync("rsa", { modulusLength: 1024 }).privateKey.export({ format: "pem", type: "pkcs8" }));
    assert.throws(() => new CheckpointSigner(rsa), (e: Error & { code?: string }) => e.code === "GH-AUDIT-001" && /rsa key, not Ed25519/.test(e.message));
    assert.throws(() => new CheckpointSigner("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----"), (e: Error & { code?: string }) => e.code === "GH-AUDIT-001" && !e.message.includes("nope"));
    await assert.rejects(loadSigner("env:GH_TEST_NO_SUCH_KEY_VAR"), (e: Error & { code?: string }) => e.code === "GH-AUDIT-001");
    assert.equal(await loadSigner(undefined), undefined);
    const dir = mkdtempSync(join(tmpdir(), "gh-cp-"));
    writeFileSync(join(dir, "k.pem"), pem());
    assert.ok((await loadSigner(`file:${join(dir, "k.pem")}`)) instanceof CheckpointSigner);
    assert.throws(() => parsePublicKey(rsa), (e: Error & { code?: string }) => e.code === "GH-AUDIT-003");
  });
});

describe("signature trust", () => {
  const signer = new CheckpointSigner(pem());
  const other = new CheckpointSigner(pem());
  const row = { seq: 5, hash: H, at: 1_700_000_000_000, gateway_id: "g", key_id: signer.keyId, signature: signer.sign({ seq: 5, hash: H, at: 1_700_000_000_000 }) };
  const file = checkpointFile(row, signer);
  const trusted = trustedKeyMap([signer.publicKey]);

  test("valid with the trusted key; any edit of seq, hash or time breaks it", () => {
    assert.equal(checkSignature(file, trusted).status, "valid");
    for (const edit of [{ seq: 6 }, { hash: "b".repeat(64) }, { at: row.at + 1 }]) assert.equal(checkSignature({ ...file, ...edit }, trusted).status, "invalid");
  });

  test("a file re-signed by another key, with that key embedded, is refused when a key is trusted", () => {
    const forged = { ...file, keyId: other.keyId, signature: other.sign(file), publicKey: other.publicKeyPem };
    const s = checkSignature(forged, trusted);
    assert.equal(s.status, "invalid");
    assert.match((s as { reason: string }).reason, /not a trusted key/);
    // With nothing trusted, the embedded key only shows the file is self-consistent.
    assert.equal(checkSignature(forged, new Map()).status, "embedded-only");
    assert.equal(checkSignature({ ...forged, publicKey: signer.publicKeyPem }, new Map()).status, "invalid");
    assert.equal(checkSignature({ ...file, publicKey: undefined }, new Map()).status, "unchecked");
    assert.equal(checkSignature({ ...file, signature: null }, trusted).status, "unsigned");
  });

  test("checkpoint files: one, a list or { items }; strict validation with GH-AUDIT-002", () => {
    assert.equal(file.publicKey, signer.publicKeyPem);
    assert.equal(checkpointFile(row, other).publicKey, undefined, "the public key is embedded only for the key that signed");
    assert.deepEqual(parseCheckpoints(JSON.stringify(file)), [file]);
    assert.deepEqual(parseCheckpoints({ items: [file, file] }).length, 2);
    assert.deepEqual(parseCheckpoints([{ format: CHECKPOINT_FORMAT, seq: 1, hash: H, at: 0 }])[0]?.signature, null);
    for (const bad of ["{", JSON.stringify({ ...file, hash: "xyz" }), JSON.stringify({ ...file, format: "other" }), JSON.stringify({ ...file, seq: 0 })]) {
      assert.throws(() => parseCheckpoints(bad), (e: Error & { code?: string }) => e.code === "GH-AUDIT-002");
    }
  });
});

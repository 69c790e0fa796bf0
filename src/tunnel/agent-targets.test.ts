// Target pinning (agent-targets.ts): the file's checks, and every way a gateway could try to steer
// an agent to a target or credential its targets file does not allow.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import fc from "fast-check";
import { GatehouseError } from "../domain/errors.ts";
import { checkOwnSecrets, TargetPins } from "./agent-targets.ts";

const FILE = `
targets:
  - postgres: DB.internal:5433
    credentials: [env:PG_PROD, file:/etc/pg/ca.pem]
  - postgres: reports.internal            # port 5432
    credentials: [env:PG_REPORTS]
  - postgres: "[fd00::7]:6432"
  - http: https://CI.internal
    credentials: [env:CI_TOKEN]
  - http: http://wiki.internal:8080
`;

const pins = TargetPins.parse(FILE, "targets.yaml");

function refusal(f: () => void, pattern: RegExp): void {
  assert.throws(f, (e) => e instanceof GatehouseError && e.code === "GH-AGENT-007" && pattern.test(e.detail), "refused with GH-AGENT-007");
}

function configError(text: string, pattern: RegExp): void {
  assert.throws(() => TargetPins.parse(text, "t.yaml"), (e) => e instanceof GatehouseError && e.code.startsWith("GH-CONFIG-") && pattern.test(e.message));
}

describe("agent targets file", () => {
  test("PostgreSQL: host (any case) and port must match, default port 5432, IPv6 in brackets or not", () => {
    pins.checkPostgres("prod", { host: "db.internal", port: 5433, password: "env:PG_PROD" });
    pins.checkPostgres("prod", { host: "DB.INTERNAL", port: 5433, password: "env:PG_PROD", ca: "file:/etc/pg/ca.pem" });
    pins.checkPostgres("reports", { host: "reports.internal", port: 5432, password: "env:PG_REPORTS" });
    pins.checkPostgres("v6", { host: "fd00::7", port: 6432 });
    pins.checkPostgres("v6", { host: "[FD00::7]", port: 6432 });
    refusal(() => pins.checkPostgres("prod", { host: "db.internal", port: 5432, password: "env:PG_PROD" }), /connection prod: db\.internal:5432 is not in the agent's targets file/);
    refusal(() => pins.checkPostgres("x", { host: "db.internal.evil.example", port: 5433 }), /not in the agent's targets file/);
    refusal(() => pins.checkPostgres("x", { host: "10.0.0.5", port: 5433 }), /not in the agent's targets file/);
  });

  test("a credential is sent only to a target whose entry lists it", () => {
    refusal(() => pins.checkPostgres("prod", { host: "db.internal", port: 5433, password: "env:PG_REPORTS" }), /the credential env:PG_REPORTS is not listed for db\.internal:5433/);
    refusal(() => pins.checkPostgres("reports", { host: "reports.internal", port: 5432, password: "env:PG_PROD" }), /env:PG_PROD is not listed/);
    refusal(() => pins.checkPostgres("v6", { host: "fd00::7", port: 6432, password: "env:PG_PROD" }), /env:PG_PROD is not listed/);
    // A file reference is named without its path: the gateway does not learn which files exist.
    refusal(() => pins.checkPostgres("reports", { host: "reports.internal", port: 5432, ca: "file:/etc/shadow" }), /the credential file:… is not listed/);
    // Any scheme-shaped value counts as a reference (fail closed), even one no provider resolves.
    refusal(() => pins.checkPostgres("reports", { host: "reports.internal", port: 5432, password: "vault:secret/pg" }), /the credential vault:… is not listed/);
    refusal(() => pins.checkHttp("ci", { url: "https://ci.internal/api", auth: { type: "bearer", secret: "env:PG_PROD" } }), /env:PG_PROD is not listed for https:\/\/ci\.internal:443/);
  });

  test("a TLS floor per PostgreSQL target: a weaker mode is refused, the strongest of repeated entries holds", () => {
    const tls = TargetPins.parse("targets:\n  - postgres: db:5432\n    tls: require\n  - postgres: db\n    tls: verify-full\n  - postgres: other\n    tls: require\n");
    tls.checkPostgres("p", { host: "db", port: 5432, tls: "verify-full" });
    refusal(() => tls.checkPostgres("p", { host: "db", port: 5432, tls: "require" }), /TLS require to db:5432, where the agent's targets file requires at least verify-full/);
    tls.checkPostgres("o", { host: "other", port: 5432, tls: "require" });
    refusal(() => tls.checkPostgres("o", { host: "other", port: 5432, tls: "prefer" }), /TLS prefer to other:5432/);
    refusal(() => tls.checkPostgres("o", { host: "other", port: 5432, tls: "disable" }), /TLS disable/);
    refusal(() => tls.checkPostgres("o", { host: "other", port: 5432 }), /TLS prefer/);
    pins.checkPostgres("reports", { host: "reports.internal", port: 5432, tls: "disable", password: "env:PG_REPORTS" });
    configError("targets:\n  - postgres: db\n    tls: prefer\n", /targets\.0\.tls: /);
    configError("targets:\n  - http: https://ci.internal\n    tls: require\n", /targets\.0\.tls: tls: is for postgres entries/);
  });

  test("a CA given as text for a pinned target is refused (it would let its author stand in for the host)", () => {
    refusal(() => pins.checkHttp("ci", { url: "https://ci.internal/", auth: { type: "bearer", secret: "env:CI_TOKEN" }, ca: "-----BEGIN CERTIFICATE-----\nMIIB…" }), /a CA for https:\/\/ci\.internal:443 given as text/);
    refusal(() => pins.checkPostgres("prod", { host: "db.internal", port: 5433, password: "env:PG_PROD", ca: "-----BEGIN CERTIFICATE-----" }), /a CA for db\.internal:5433 given as text/);
    pins.checkPostgres("prod", { host: "db.internal", port: 5433, password: "env:PG_PROD", ca: "file:/etc/pg/ca.pem" });
  });

  test("HTTP: scheme, host and port (the default one made explicit) must match; the path is free", () => {
    pins.checkHttp("ci", { url: "https://ci.internal/job/build", auth: { type: "bearer", secret: "env:CI_TOKEN" } });
    pins.checkHttp("ci", { url: "https://ci.internal:443", auth: { type: "header", header: "X-Key", secret: "env:CI_TOKEN" } });
    pins.checkHttp("wiki", { url: "http://wiki.internal:8080/w" });
    refusal(() => pins.checkHttp("ci", { url: "http://ci.internal/", auth: { type: "bearer", secret: "env:CI_TOKEN" } }), /http:\/\/ci\.internal:80 is not in the agent's targets file/);
    refusal(() => pins.checkHttp("ci", { url: "https://ci.internal:8443/", auth: { type: "bearer", secret: "env:CI_TOKEN" } }), /not in the agent's targets file/);
    refusal(() => pins.checkHttp("ci", { url: "https://ci.internal.attacker.example/", auth: { type: "bearer", secret: "env:CI_TOKEN" } }), /not in the agent's targets file/);
    refusal(() => pins.checkHttp("wiki", { url: "http://wiki.internal:8080/", auth: { type: "basic", username: "u", secret: "env:CI_TOKEN" } }), /env:CI_TOKEN is not listed/);
    refusal(() => pins.checkHttp("ftp", { url: "ftp://ci.internal/" }), /is not an http\(s\) URL/);
    refusal(() => pins.checkHttp("junk", { url: "not a url" }), /is not an http\(s\) URL/);
    // user@host in a URL does not change the host it reaches.
    refusal(() => pins.checkHttp("ci", { url: "https://ci.internal@attacker.example/", auth: { type: "bearer", secret: "env:CI_TOKEN" } }), /https:\/\/attacker\.example:443 is not in/);
  });

  test("only the exact pinned targets pass (property)", () => {
    const host = fc.constantFrom("db.internal", "reports.internal", "fd00::7", "ci.internal", "wiki.internal", "evil.example", "db.internal.evil", "127.0.0.1");
    const allowed = new Set(["db.internal:5433", "reports.internal:5432", "fd00::7:6432"]);
    fc.assert(
      fc.property(host, fc.integer({ min: 1, max: 65535 }), fc.boolean(), (h, port, upper) => {
        const t = { host: upper ? h.toUpperCase() : h, port };
        let ok = true;
        try {
          pins.checkPostgres("p", t);
        } catch {
          ok = false;
        }
        assert.equal(ok, allowed.has(`${h}:${port}`));
      }),
      { numRuns: 400 },
    );
  });

  test("the agent's own secrets are never a target's credential, with or without a file", () => {
    refusal(() => checkOwnSecrets("x", [undefined, "env:GATEHOUSE_AGENT_TOKEN"]), /the credential env:GATEHOUSE_AGENT_TOKEN is the agent's own secret/);
    refusal(() => checkOwnSecrets("x", ["env:GATEHOUSE_AGENT_CLIENT_SECRET"]), /own secret/);
    checkOwnSecrets("x", ["env:PG_PROD", undefined, "literal", "file:/etc/pg/password", "file:/procfile"]);
    // Process and system files hold the agent's environment and arguments, whatever the names.
    for (const ref of ["file:/proc/self/environ", "file:/proc/1/cmdline", "file:/dev/fd/0", "file:/sys/x", "file:/etc/../proc/self/environ", "file:/proc"]) refusal(() => checkOwnSecrets("x", [ref]), /is a process or system file/);
    configError("targets:\n  - http: https://ci.internal\n    credentials: [file:/proc/self/environ]\n", /a process or system file cannot be a target's credential/);
    configError("targets:\n  - http: https://ci.internal\n    credentials: [env:GATEHOUSE_AGENT_TOKEN]\n", /the agent's own secret cannot be a target's credential/);
  });

  test("a bad file is refused at start with what is wrong and where", () => {
    configError("", /the file is empty; it lists the agent's targets under `targets:`/);
    configError("targets: []\n", /list at least one target/);
    configError("targets:\n  - postgres: db:99999\n", /targets\[0\]: postgres is host\[:port\], got "db:99999"/);
    configError("targets:\n  - postgres: user@db:5432\n", /postgres is host\[:port\]/);
    configError("targets:\n  - postgres: db/name\n", /postgres is host\[:port\]/);
    configError("targets:\n  - http: https://ci.internal/api\n", /http is an origin \(scheme:\/\/host\[:port\]\) without a path/);
    configError("targets:\n  - http: ftp://ci.internal\n", /http is an http:\/\/ or https:\/\/ origin/);
    configError("targets:\n  - http: https://ci.internal\n    postgres: db\n", /targets\.0: give exactly one of postgres: or http:/);
    configError("targets:\n  - credentials: [env:X]\n", /targets\.0: give exactly one of postgres: or http:/);
    configError("targets:\n  - http: https://ci.internal\n    credentials: [hunter2]\n", /a credential reference: env:NAME or file:\/path/);
    configError("targets:\n  - http: https://ci.internal\n    secret: env:X\n", /targets/);
    configError("targets: [\n", /GH-CONFIG-003|t\.yaml/);
    const dir = mkdtempSync(join(tmpdir(), "gh-targets-"));
    try {
      assert.throws(() => TargetPins.load(join(dir, "missing.yaml")), (e) => e instanceof GatehouseError && e.code === "GH-CONFIG-003" && /file not found/.test(e.message));
      writeFileSync(join(dir, "t.yaml"), "targets:\n  - postgres: db\n  - postgres: DB:5432\n    credentials: [env:A]\n  - postgres: db\n    credentials: [env:B]\n");
      const merged = TargetPins.load(join(dir, "t.yaml"));
      assert.equal(merged.size, 1, "one target listed three times");
      merged.checkPostgres("m", { host: "db", port: 5432, password: "env:A" });
      merged.checkPostgres("m", { host: "db", port: 5432, password: "env:B" });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

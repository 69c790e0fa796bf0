import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { ConfigError, formatPath, interpolateEnv, loadConfigFile, parseConfig } from "./load.ts";
import { parseDuration } from "./duration.ts";

const dir = mkdtempSync(join(tmpdir(), "gh-config-"));
const file = (name: string, text: string) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};

function problemsOf(fn: () => unknown): { code: string; problems: { path: string; message: string }[] } {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof ConfigError, `expected ConfigError, got ${e}`);
    return { code: e.code, problems: e.problems };
  }
  assert.fail("expected a ConfigError");
}

describe("config loading", () => {
  test("empty file gives all defaults", () => {
    const cfg = loadConfigFile(file("empty.yaml", ""));
    assert.equal(cfg.store.url, "sqlite:./data/gatehouse.db");
    assert.equal(cfg.listeners.postgres.port, 15432);
    assert.equal(cfg.identity.clockSkewSeconds, 120);
    assert.equal(cfg.identity.devIssuer.enabled, false, "the dev issuer is never on by default");
  });

  test("the shipped example validates", () => {
    const cfg = loadConfigFile("examples/gatehouse.yaml", { ENTRA_TENANT_ID: "72f988bf-86f1-41af-91ab-2d7cd011db47", GATEHOUSE_APP_ID: "11111111-2222-3333-4444-555555555555" });
    assert.equal(cfg.identity.issuers[0]?.issuer, "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0");
    assert.equal(cfg.connections[0]?.postgres?.password, "env:PG_PROD_PASSWORD", "credential references stay references");
    assert.equal(cfg.policies.find((r) => r.name === "schema-changes")?.review?.expires, 1800);
  });

  test("errors name the key path and what is wrong", () => {
    const p = problemsOf(() =>
      loadConfigFile(file("bad.yaml", `connections:\n  - name: Bad Name\n    protocol: postgres\n    postgres: { host: h, port: "5432", database: d, user: u }\npolicies:\n  - name: r\n    decison: allow\nbogus: 1\n`)),
    );
    assert.equal(p.code, "GH-CONFIG-001");
    const byPath = Object.fromEntries(p.problems.map((x) => [x.path, x.message]));
    assert.match(byPath["connections[0].name"] ?? "", /lower-case/);
    assert.match(byPath["connections[0].postgres.port"] ?? "", /expected number/);
    assert.match(byPath["policies[0]"] ?? "", /unknown key "decison"/);
    assert.match(byPath["(top level)"] ?? "", /unknown key "bogus"/);
  });

  test("semantic checks: duplicates, review settings on non-review rules, tenant templates, postgres target", () => {
    const p = problemsOf(() =>
      parseConfig({
        connections: [
          { name: "a", protocol: "postgres", postgres: { host: "h", database: "d", user: "u" } },
          { name: "a", protocol: "postgres" },
        ],
        policies: [{ name: "x", decision: "allow", review: { quorum: 2 } }],
        identity: { issuers: [{ issuer: "https://login.microsoftonline.com/{tenantid}/v2.0", audiences: ["x"] }] },
      }),
    );
    const paths = p.problems.map((x) => x.path);
    assert.ok(paths.includes("connections[1].postgres"), paths.join());
    assert.ok(paths.includes("connections[1].name"));
    assert.ok(paths.includes("policies[0].review"));
    assert.ok(paths.includes("identity.issuers[0].allowedTenants"));
  });

  test("${ENV} references: substituted, defaults, escapes, and missing ones named by key", () => {
    const cfg = parseConfig({ store: { url: "${STORE:-sqlite::memory:}" }, api: { publicUrl: "https://${HOST}/x" } }, "t", { HOST: "gw.example.com" });
    assert.equal(cfg.store.url, "sqlite::memory:");
    assert.equal(cfg.api.publicUrl, "https://gw.example.com/x");
    assert.equal(interpolateEnv("a $${LITERAL} b", {}), "a ${LITERAL} b");
    const p = problemsOf(() => parseConfig({ api: { publicUrl: "https://${NOPE}/" } }, "t", {}));
    assert.equal(p.code, "GH-CONFIG-002");
    assert.deepEqual(p.problems, [{ path: "api.publicUrl", message: "environment variable NOPE is not set" }]);
  });

  test("an env value is never re-interpreted as YAML or as another reference", () => {
    const cfg = parseConfig({ api: { publicUrl: "https://${H}/" } }, "t", { H: "x.example" });
    assert.equal(cfg.api.publicUrl, "https://x.example/");
    assert.equal(interpolateEnv("${A}", { A: "${B}", B: "no" }), "${B}");
  });

  test("unreadable and unparsable files", () => {
    assert.equal(problemsOf(() => loadConfigFile(join(dir, "missing.yaml"))).code, "GH-CONFIG-003");
    const p = problemsOf(() => loadConfigFile(file("broken.yaml", "a: [1, 2\nb: }")));
    assert.equal(p.code, "GH-CONFIG-003");
    assert.equal(p.problems[0]?.path, "(yaml)");
  });

  test("durations", () => {
    assert.equal(parseDuration("90"), 90);
    assert.equal(parseDuration("15m"), 900);
    assert.equal(parseDuration("1h"), 3600);
    assert.equal(parseDuration("7d"), 604800);
    assert.equal(parseDuration(" 2 s "), 2);
    assert.equal(parseDuration("soon"), undefined);
    assert.equal(parseDuration(-1), undefined);
    assert.equal(formatPath(["a", 0, "b"]), "a[0].b");
  });
});

import { configWarnings } from "./warnings.ts";

test("warnings: reviews nobody can approve, literal passwords, open allow rules", () => {
  const cfg = parseConfig({
    identity: { devIssuer: { enabled: true } },
    connections: [{ name: "a", protocol: "postgres", postgres: { host: "h", database: "d", user: "u", password: "hunter2" } }],
    policies: [{ name: "all", decision: "allow" }],
  });
  const w = configWarnings(cfg).join("\n");
  assert.match(w, /connections\[0\] \(a\): reviews can be opened \(unparseable statements\) but no approver group/);
  assert.match(w, /password is a literal/);
  assert.match(w, /policies\[0\] \(all\) allows for every principal/);
  assert.match(w, /devIssuer/);
  assert.ok(!w.includes("hunter2"));
  assert.deepEqual(configWarnings(parseConfig({ identity: { issuers: [{ issuer: "https://login.microsoftonline.com/t/v2.0", audiences: ["a"] }] } })), []);
});

// The shipped deployment files: no Docker engine or cluster runs here, so they are validated as
// far as tools allow — every YAML parses, the embedded gateway configurations pass the real
// config schema, the Compose file wires what the config expects, and kustomize renders.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { test } from "node:test";
import { parseAllDocuments, parse as parseYaml } from "yaml";
import { parseConfig } from "../src/config/load.ts";
import { TargetPins } from "../src/tunnel/agent-targets.ts";

const env = { ENTRA_TENANT_ID: "72f988bf-86f1-41af-91ab-2d7cd011db47", GATEHOUSE_APP_ID: "11111111-2222-3333-4444-555555555555", GATEHOUSE_STORE_URL: "postgres://gatehouse@db/gatehouse" };

test("every manifest parses; the ConfigMap's gatehouse.yaml is a valid configuration", () => {
  const docs = readdirSync("deploy/kubernetes").filter((f) => f.endsWith(".yaml")).flatMap((f) => parseAllDocuments(readFileSync(`deploy/kubernetes/${f}`, "utf8")).map((d) => ({ f, d })));
  for (const { f, d } of docs) assert.equal(d.errors.length, 0, `${f}: ${d.errors.join("; ")}`);
  const cm = docs.map(({ d }) => d.toJS()).find((o) => o.kind === "ConfigMap");
  const cfg = parseConfig(parseYaml(cm.data["gatehouse.yaml"]), "configmap", env);
  assert.equal(cfg.connections[0]?.postgres?.password, "env:PG_PROD_PASSWORD");
  assert.equal(cfg.identity.devIssuer.enabled, false, "no dev issuer in the production manifests");
  const dep = docs.map(({ d }) => d.toJS()).find((o) => o.kind === "Deployment");
  const c = dep.spec.template.spec.containers[0];
  assert.equal(c.readinessProbe.httpGet.path, "/readyz");
  assert.equal(c.securityContext.readOnlyRootFilesystem, true);
});

test("the agent's manifests: dials out only, no ingress, secret from a Secret, no Service", () => {
  const docs = readdirSync("deploy/kubernetes/agent").filter((f) => f.endsWith(".yaml")).flatMap((f) => parseAllDocuments(readFileSync(`deploy/kubernetes/agent/${f}`, "utf8")).map((d) => ({ f, d })));
  for (const { f, d } of docs) assert.equal(d.errors.length, 0, `${f}: ${d.errors.join("; ")}`);
  const objs = docs.map(({ d }) => d.toJS());
  assert.ok(!objs.some((o) => o.kind === "Service"), "nothing listens");
  const np = objs.find((o) => o.kind === "NetworkPolicy");
  assert.deepEqual(np.spec.policyTypes, ["Ingress", "Egress"]);
  assert.deepEqual(np.spec.ingress, [], "no inbound connection is allowed");
  const pod = objs.find((o) => o.kind === "Deployment").spec.template.spec;
  const c = pod.containers[0];
  // Pinned: the agent opens only what its targets file (a ConfigMap) lists.
  assert.deepEqual(c.args, ["agent", "--targets", "/etc/gatehouse-agent/targets.yaml"]);
  const cm = objs.find((o) => o.kind === "ConfigMap" && o.metadata.name === "gatehouse-agent-targets");
  assert.equal(pod.volumes.find((v: { name: string }) => v.name === "targets").configMap.name, cm.metadata.name);
  assert.equal(c.volumeMounts.find((m: { name: string }) => m.name === "targets").mountPath, "/etc/gatehouse-agent");
  const pins = TargetPins.parse(cm.data["targets.yaml"], "deploy/kubernetes/agent/targets.yaml");
  pins.checkPostgres("pg-prod", { host: "db.internal", port: 5432, password: "env:PG_PROD_PASSWORD" });
  assert.match(c.env.find((e: { name: string }) => e.name === "GATEHOUSE_GATEWAY").value, /^https:\/\//, "the secret travels over TLS");
  assert.equal(c.envFrom[0].secretRef.name, "gatehouse-agent");
  assert.equal(c.securityContext.readOnlyRootFilesystem, true);
});

test("the Compose quick start: config valid, ports and password wired, database not published", () => {
  const compose = parseYaml(readFileSync("deploy/compose/compose.yaml", "utf8"));
  const cfg = parseConfig(parseYaml(readFileSync("deploy/compose/gatehouse.yaml", "utf8")), "compose config", {});
  const gw = compose.services.gatehouse;
  assert.ok(gw.ports.includes(`127.0.0.1:${cfg.api.port}:${cfg.api.port}`));
  assert.ok(gw.ports.includes(`127.0.0.1:${cfg.listeners.postgres.port}:${cfg.listeners.postgres.port}`));
  assert.equal(cfg.connections[0]?.postgres?.password, "env:APP_DB_PASSWORD");
  assert.ok("APP_DB_PASSWORD" in gw.environment, "the agent's credential reference is satisfied");
  assert.equal(compose.services.postgres.ports, undefined, "only the gateway reaches the database");
  assert.equal(cfg.connections[0]?.postgres?.host, "postgres");
});

test("the Dockerfile runs the shipped binary", () => {
  const df = readFileSync("Dockerfile", "utf8");
  assert.match(df, /ENTRYPOINT \[.*"\/app\/bin\/gatehouse.js"\]/);
  assert.ok(existsSync("bin/gatehouse.js"));
  assert.match(df, /npm ci --omit=dev/);
});

test("kustomize renders the manifests (kubectl, when installed)", (t) => {
  try {
    execFileSync("kubectl", ["version", "--client"], { stdio: "ignore" });
  } catch {
    t.skip("kubectl is not installed here; YAML was still validated above");
    return;
  }
  const agent = execFileSync("kubectl", ["kustomize", "deploy/kubernetes/agent"], { encoding: "utf8" });
  assert.deepEqual(parseAllDocuments(agent).map((d) => d.toJS().kind).sort(), ["ConfigMap", "Deployment", "Namespace", "NetworkPolicy"]);
  const out = execFileSync("kubectl", ["kustomize", "deploy/kubernetes"], { encoding: "utf8" });
  const kinds = parseAllDocuments(out).map((d) => d.toJS().kind).sort();
  assert.deepEqual(kinds, ["ConfigMap", "Deployment", "Namespace", "NetworkPolicy", "Service"]);
  assert.match(out, /image: ghcr.io\/your-org\/gatehouse:0.1.0/);
});

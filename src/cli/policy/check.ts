// `gatehouse policy check`: a dry run of policy for one operation, offline (reads the config
// file only). Prints the Decision as JSON, so it can gate policy changes in CI.

import type { Command } from "commander";
import { connectionsOf } from "../../config/connections.ts";
import { loadConfigFile } from "../../config/load.ts";
import { GatehouseError } from "../../domain/errors.ts";
import { describeOperation } from "../../gate/describe.ts";
import { PolicyEngine } from "../../policy/engine.ts";
import { simulatedPrincipal } from "../../policy/simulate.ts";
import { initClassifier } from "../../protocols/postgres/classify/index.ts";
import { action, printJson } from "../output.ts";

const list = (v: string) => v.split(",").map((s) => s.trim()).filter(Boolean);

export function register(policy: Command): void {
  policy
    .command("check")
    .description("print the Decision policy gives one operation, as JSON (exit 0 whatever the decision; see --expect)")
    .requiredOption("--config <file>", "configuration file")
    .requiredOption("--connection <name>", "connection name")
    .option("--groups <list>", "comma-separated groups of the simulated principal", list, [] as string[])
    .option("--roles <list>", "comma-separated app roles", list, [] as string[])
    .option("--kind <kind>", "human or service", "service")
    .option("--subject <id>", "subject (tid/oid or oid)")
    .option("--sql <text>", "SQL text to judge")
    .option("--expect <action>", "exit 3 unless the decision is this action (allow, review, deny)")
    .option("--explain", "include the classification in the output")
    .action(
      action(async (o: { config: string; connection: string; groups: string[]; roles: string[]; kind: string; subject?: string; sql?: string; expect?: string; explain?: boolean }) => {
        const cfg = loadConfigFile(o.config);
        const connection = connectionsOf(cfg).get(o.connection);
        if (!connection) throw new GatehouseError("POLICY_UNKNOWN_CONNECTION", `"${o.connection}" is not in ${o.config} (known: ${cfg.connections.map((c) => c.name).join(", ") || "none"})`);
        if (o.kind !== "human" && o.kind !== "service") throw new GatehouseError("API_BAD_REQUEST", "--kind must be human or service");
        if (o.sql === undefined) throw new GatehouseError("API_BAD_REQUEST", "give the operation to judge with --sql");
        await initClassifier();
        const principal = simulatedPrincipal({ groups: o.groups, roles: o.roles, kind: o.kind, subject: o.subject }, cfg.identity.groupNames);
        const operation = describeOperation(connection, { sql: o.sql });
        const decision = new PolicyEngine(cfg.policies).decide({ principal, connection, operation });
        printJson(o.explain ? { decision, operation } : decision);
        if (o.expect && o.expect !== decision.action) process.exitCode = 3;
      }),
    );
}

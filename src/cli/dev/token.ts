// `gatehouse dev token`: mint a token from the local development issuer, for the quick start
// and for tests. The gateway trusts it only when identity.devIssuer.enabled is set.

import type { Command } from "commander";
import { loadConfigFile } from "../../config/load.ts";
import type { Config } from "../../config/schema.ts";
import { demoConfig } from "../../config/demo.ts";
import { GatehouseError } from "../../domain/errors.ts";
import { mintDevToken } from "../../identity/index.ts";
import { action } from "../output.ts";

const list = (v: string, prev: string[]) => [...prev, ...v.split(",").map((s) => s.trim()).filter(Boolean)];

export function register(dev: Command): void {
  dev
    .command("token")
    .description("print a development access token (trusted only where identity.devIssuer.enabled is true)")
    .option("--config <file>", "configuration file (default: the demo configuration of `npm start`)")
    .option("--group <name>", "group to include (repeatable or comma-separated)", list, [] as string[])
    .option("--role <name>", "app role to include (repeatable or comma-separated)", list, [] as string[])
    .option("--name <name>", "principal name", "dev-agent")
    .option("--kind <kind>", "service (app-only, like an AI agent) or human", "service")
    .option("--ttl <seconds>", "lifetime in seconds", (v) => Number(v))
    .action(
      action(async (o: { config?: string; group: string[]; role: string[]; name: string; kind: string; ttl?: number }) => {
        const cfg: Config = o.config ? loadConfigFile(o.config) : demoConfig();
        if (o.kind !== "human" && o.kind !== "service") throw new GatehouseError("API_BAD_REQUEST", "--kind must be human or service");
        const token = await mintDevToken(cfg.identity, { subject: o.name, name: o.name, groups: o.group, roles: o.role, kind: o.kind, lifetimeSeconds: o.ttl });
        process.stdout.write(`${token}\n`);
      }),
    );
}

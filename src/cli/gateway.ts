// `gatehouse gateway`: run the gateway until SIGTERM/SIGINT, then shut down gracefully
// (stop accepting, end sessions, flush the audit trail). `--demo` runs the embedded defaults
// with an in-process PGlite database so the quick start needs nothing installed.

import type { Command } from "commander";
import { type DemoTargetAddress, demoConfig } from "../config/demo.ts";
import { loadConfigFile } from "../config/load.ts";
import type { Config } from "../config/schema.ts";
import { startDemoTarget, type DemoTarget } from "../demo/pglite-target.ts";
import { GatehouseError } from "../domain/errors.ts";
import { mintDevToken } from "../identity/index.ts";
import { startGateway, type Gateway } from "../main.ts";
import { createLogger } from "../observability/logger.ts";
import { action } from "./output.ts";

export function register(program: Command): void {
  program
    .command("gateway")
    .description("run the gateway")
    .option("--config <file>", "configuration file")
    .option("--demo", "run on the embedded demo defaults (SQLite store, dev issuer, demo policy, PGlite database); for a laptop only")
    .option("--target-url <url>", "with --demo: use this PostgreSQL (postgres://user:pass@host:port/db) instead of the in-process PGlite")
    .action(
      action(async (o: { config?: string; demo?: boolean; targetUrl?: string }) => {
        if (!o.config && !o.demo) throw new GatehouseError("CONFIG_UNREADABLE", "give --config FILE, or --demo for the embedded demo defaults");
        let demoTarget: DemoTarget | undefined;
        let cfg: Config;
        if (o.config) cfg = loadConfigFile(o.config);
        else {
          let address: DemoTargetAddress;
          if (o.targetUrl) address = parseTargetUrl(o.targetUrl);
          else {
            process.stderr.write("starting the demo database (PGlite, in-process; takes a few seconds)…\n");
            demoTarget = await startDemoTarget(process.env.GATEHOUSE_DEMO_PGLITE_DIR);
            address = { host: demoTarget.host, port: demoTarget.port };
          }
          cfg = demoConfig(address);
        }
        const logger = createLogger(cfg.logging.level);
        if (cfg.identity.devIssuer.enabled) logger.warn("the development issuer is enabled: anyone who can read its key file can mint tokens; never do this in production");
        // Signals are taken from the start: one that arrives while the gateway starts stops it
        // as soon as it is up (the default action would kill it mid-write).
        const stopped = new Promise<void>((resolve) => {
          const stop = (signal: string) => {
            logger.info({ signal }, "shutdown requested");
            resolve();
          };
          process.once("SIGTERM", () => stop("SIGTERM"));
          process.once("SIGINT", () => stop("SIGINT"));
        });
        let gw: Gateway;
        try {
          gw = await startGateway(cfg, { logger });
        } catch (e) {
          await demoTarget?.close();
          throw e;
        }
        if (o.demo) await printDemoBanner(cfg, gw);
        await stopped;
        const timer = setTimeout(() => {
          logger.error("graceful shutdown took more than 20 s; exiting");
          process.exit(1);
        }, 20_000);
        timer.unref();
        await gw.close();
        await demoTarget?.close();
      }),
    );
}

function parseTargetUrl(url: string): DemoTargetAddress {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new GatehouseError("CONFIG_INVALID", `--target-url is not a URL: ${url.replace(/:[^:@/]*@/, ":***@")}`);
  }
  const a: DemoTargetAddress = { host: u.hostname, port: Number(u.port || 5432), database: decodeURIComponent(u.pathname.slice(1)) || "postgres", user: decodeURIComponent(u.username) || "postgres" };
  if (u.password) a.password = decodeURIComponent(u.password);
  return a;
}

async function printDemoBanner(cfg: Config, gw: Gateway): Promise<void> {
  const agent = await mintDevToken(cfg.identity, { subject: "demo-agent", name: "demo-agent", groups: ["ai-agents"], kind: "service" });
  const dba = await mintDevToken(cfg.identity, { subject: "dana-dba", name: "Dana (DBA)", groups: ["dba"], kind: "human" });
  const pgPort = gw.postgres?.port ?? cfg.listeners.postgres.port;
  const lines = [
    "",
    "Gatehouse is running on its embedded demo defaults (never use these in production).",
    `  API:         ${gw.apiUrl}   (OpenAPI: ${gw.apiUrl}/api/v1/openapi.json)`,
    `  PostgreSQL:  127.0.0.1:${pgPort}, connection "demo"`,
    "",
    "1. Connect as an AI agent (group ai-agents). In a new terminal:",
    `     export PGPASSWORD=${agent}`,
    `     psql "host=127.0.0.1 port=${pgPort} dbname=demo user=agent sslmode=require"`,
    "   demo=> select name, email from customers limit 3;              -- allowed: a read",
    "   demo=> alter table customers add column vip boolean;            -- held: waits for a DBA",
    "",
    "2. Review it as a DBA (a human in group dba), from another terminal in this directory:",
    `     export GATEHOUSE_API=${gw.apiUrl}`,
    `     export GATEHOUSE_TOKEN=${dba}`,
    "     npm run -s gatehouse -- reviews list",
    "     npm run -s gatehouse -- reviews show <id>",
    "     npm run -s gatehouse -- reviews approve <id>        # or: reviews deny <id> --reason '…'",
    "   The ALTER TABLE then completes in psql. `drop database postgres;` is denied outright.",
    "",
    "Tokens are valid for 1 hour; mint more with: npm run -s gatehouse -- dev token --group ai-agents",
    "Stop with Ctrl-C.",
    "",
  ];
  process.stderr.write(`${lines.join("\n")}\n`);
}

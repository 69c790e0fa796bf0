// `gatehouse gateway`: run the gateway until SIGTERM/SIGINT, then shut down gracefully
// (stop accepting, let in-flight work finish, flush the audit trail).

import type { Command } from "commander";
import { demoConfig } from "../config/demo.ts";
import { loadConfigFile } from "../config/load.ts";
import { GatehouseError } from "../domain/errors.ts";
import { mintDevToken } from "../identity/index.ts";
import { startGateway } from "../main.ts";
import { createLogger } from "../observability/logger.ts";
import { action } from "./output.ts";

export function register(program: Command): void {
  program
    .command("gateway")
    .description("run the gateway")
    .option("--config <file>", "configuration file")
    .option("--demo", "run on the embedded demo defaults (SQLite store, dev issuer, demo policy); for a laptop only")
    .action(
      action(async (o: { config?: string; demo?: boolean }) => {
        if (!o.config && !o.demo) throw new GatehouseError("CONFIG_UNREADABLE", "give --config FILE, or --demo for the embedded demo defaults");
        const cfg = o.config ? loadConfigFile(o.config) : demoConfig();
        const logger = createLogger(cfg.logging.level);
        if (cfg.identity.devIssuer.enabled) logger.warn("the development issuer is enabled: anyone who can read its key file can mint tokens; never do this in production");
        const gw = await startGateway(cfg, { logger });
        if (o.demo) await printDemoBanner(cfg, gw.apiUrl);
        await new Promise<void>((resolve) => {
          const stop = (signal: string) => {
            logger.info({ signal }, "shutdown requested");
            resolve();
          };
          process.once("SIGTERM", () => stop("SIGTERM"));
          process.once("SIGINT", () => stop("SIGINT"));
        });
        const timer = setTimeout(() => {
          logger.error("graceful shutdown took more than 20 s; exiting");
          process.exit(1);
        }, 20_000);
        timer.unref();
        await gw.close();
      }),
    );
}

async function printDemoBanner(cfg: ReturnType<typeof demoConfig>, apiUrl: string): Promise<void> {
  const token = await mintDevToken(cfg.identity, { subject: "demo-agent", name: "demo-agent", groups: ["ai-agents"], kind: "service" });
  const lines = [
    "",
    "Gatehouse is running on its embedded demo defaults.",
    `  API:      ${apiUrl}   (OpenAPI: ${apiUrl}/api/v1/openapi.json)`,
    "",
    "A development token for an AI agent in group ai-agents (valid 1 h):",
    `  export GATEHOUSE_TOKEN=${token}`,
    "",
    "Try:",
    `  curl -s -H "Authorization: Bearer $GATEHOUSE_TOKEN" ${apiUrl}/api/v1/whoami`,
    "",
    "Stop with Ctrl-C.",
    "",
  ];
  process.stderr.write(`${lines.join("\n")}\n`);
}

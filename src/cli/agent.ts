// `gatehouse agent --gateway URL --token SECRET`: run a network-resident agent. It dials out to
// the gateway, holds the targets' credentials (resolved from env:/file: references in its own
// environment) and serves the sessions of the connections that name it, until SIGTERM/SIGINT.

import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { GatehouseError } from "../domain/errors.ts";
import { createLogger } from "../observability/logger.ts";
import { AgentClient } from "../tunnel/agent-client.ts";
import { TargetPins } from "../tunnel/agent-targets.ts";
import { clientCredentialsTokenSource } from "../tunnel/client-credentials.ts";
import { VERSION } from "../version.ts";
import { action } from "./output.ts";

export function register(program: Command): void {
  program
    .command("agent")
    .description("run a network-resident agent that dials out to the gateway and holds the targets' credentials")
    .option("--gateway <url>", "the gateway's API URL, e.g. https://gatehouse.example.com (default: $GATEHOUSE_GATEWAY)")
    .option("--token <secret>", "the agent's secret from `gatehouse agents create` (default: $GATEHOUSE_AGENT_TOKEN; prefer the variable: arguments show in ps)")
    .option("--ca <file>", "CA bundle (PEM) to verify the gateway's certificate")
    .option("--targets <file>", "the targets this agent may open and the credential references it may send to each (YAML; docs/operations.md). Without it the agent opens whatever target the gateway names (default: $GATEHOUSE_AGENT_TARGETS)")
    .option("--git-mirror-dir <dir>", "where to keep bare mirrors of git targets (fast-forward checks of pushes)", process.env.GATEHOUSE_GIT_MIRROR_DIR ?? "./data/git-mirrors")
    .option("--oidc-token-url <url>", "authenticate with the agent's own OIDC client-credentials token instead of a secret: the IdP's token endpoint (default: $GATEHOUSE_AGENT_TOKEN_URL)")
    .option("--client-id <id>", "with --oidc-token-url: the agent's application (client) id; its secret comes from $GATEHOUSE_AGENT_CLIENT_SECRET")
    .option("--scope <scope>", "with --oidc-token-url: e.g. api://<gateway-app-id>/.default (Entra)")
    .option("--resource <uri>", "with --oidc-token-url: RFC 8707 resource indicator (other providers)")
    .option("--client-auth <how>", "with --oidc-token-url: basic (default) or post", "basic")
    .option("--allow-insecure", "allow ws:// / http:// to a non-loopback gateway (the secret travels in clear: trusted networks only)")
    .option("--log-level <level>", "trace, debug, info, warn, error", process.env.GATEHOUSE_LOG_LEVEL ?? "info")
    .action(
      action(async (o: { gateway?: string; token?: string; ca?: string; targets?: string; gitMirrorDir: string; allowInsecure?: boolean; logLevel: string; oidcTokenUrl?: string; clientId?: string; scope?: string; resource?: string; clientAuth: string }) => {
        const gateway = o.gateway ?? process.env.GATEHOUSE_GATEWAY;
        if (!gateway) throw new GatehouseError("CONFIG_INVALID", "give --gateway URL (or set GATEHOUSE_GATEWAY)");
        const tokenUrl = o.oidcTokenUrl ?? process.env.GATEHOUSE_AGENT_TOKEN_URL;
        let token: string | (() => Promise<string>) | undefined = o.token ?? process.env.GATEHOUSE_AGENT_TOKEN;
        if (tokenUrl) {
          const clientSecret = process.env.GATEHOUSE_AGENT_CLIENT_SECRET;
          if (!o.clientId || !clientSecret) throw new GatehouseError("AGENT_AUTH_FAILED", "with --oidc-token-url give --client-id and set GATEHOUSE_AGENT_CLIENT_SECRET");
          if (o.clientAuth !== "basic" && o.clientAuth !== "post") throw new GatehouseError("CONFIG_INVALID", "--client-auth is basic or post");
          token = clientCredentialsTokenSource({ tokenUrl, clientId: o.clientId, clientSecret, auth: o.clientAuth, ...(o.scope ? { scope: o.scope } : {}), ...(o.resource ? { resource: o.resource } : {}) });
        }
        if (!token) throw new GatehouseError("AGENT_AUTH_FAILED", "give the agent's secret in GATEHOUSE_AGENT_TOKEN (or --token), or --oidc-token-url and --client-id for an OIDC identity");
        const targetsFile = o.targets ?? process.env.GATEHOUSE_AGENT_TARGETS;
        const targets = targetsFile ? TargetPins.load(targetsFile) : undefined;
        const logger = createLogger(o.logLevel as "info");
        const client = new AgentClient({ gateway, token, logger, version: VERSION, gitMirrorDir: o.gitMirrorDir, ...(targets ? { targets } : {}), ...(o.ca ? { ca: readFileSync(o.ca, "utf8") } : {}), ...(o.allowInsecure ? { allowInsecure: true } : {}) });
        client.start();
        logger.info({ gateway, version: VERSION, ...(targets ? { targetsFile, targets: targets.size } : {}) }, "agent started");
        if (!targets)
          logger.warn({}, "no --targets file: this agent opens any target the gateway names, with any credential reference it can resolve; pin its targets so a tampered gateway configuration cannot redirect credentials (docs/operations.md#pinning-an-agents-targets)");
        await new Promise<void>((resolve) => {
          process.once("SIGTERM", () => resolve());
          process.once("SIGINT", () => resolve());
        });
        logger.info({}, "agent stopping");
        await client.stop();
      }),
    );
}

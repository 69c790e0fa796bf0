// `gatehouse config check FILE`: validate a configuration without starting anything.

import type { Command } from "commander";
import { loadConfigFile } from "../../config/load.ts";
import { configWarnings } from "../../config/warnings.ts";
import { redactUrl } from "../../store/store.ts";
import { action } from "../output.ts";

export function register(config: Command): void {
  config
    .command("check")
    .description("validate a configuration file (keys, types, ${ENV} references) and print a summary")
    .argument("<file>", "YAML configuration file")
    .option("--json", "print the validated configuration with defaults applied (secrets from the environment are masked)")
    .action(
      action((file: string, opts: { json?: boolean }) => {
        const cfg = loadConfigFile(file);
        if (opts.json) {
          process.stdout.write(`${JSON.stringify(maskSecrets(cfg), null, 2)}\n`);
          return;
        }
        for (const w of configWarnings(cfg)) process.stderr.write(`warning: ${w}\n`);
        process.stdout.write(
          `${file}: ok — ${cfg.identity.issuers.length} issuer(s)${cfg.identity.devIssuer.enabled ? " + dev issuer (development only)" : ""}, ` +
            `${cfg.connections.length} connection(s), ${cfg.policies.length} rule(s), store ${cfg.store.url.split(":")[0]}\n`,
        );
      }),
    );
}

/** Literal passwords never leave the process in output; references (env:/file:) are fine. */
function maskSecrets(v: unknown, key = ""): unknown {
  if (typeof v === "string") {
    if (/password|secret|key$/i.test(key) && !/^(env|file):/.test(v) && key !== "keyFile") return "***";
    if (key === "url") return redactUrl(v);
    return v;
  }
  if (Array.isArray(v)) return v.map((x) => maskSecrets(x));
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, maskSecrets(x, k)]));
  return v;
}

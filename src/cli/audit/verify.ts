// `gatehouse audit verify --config F`: walk the audit hash chain in the store directly (works with
// the gateway stopped) and report the first broken link. Exit 0 when intact, 4 when broken.

import type { Command } from "commander";
import { verifyChain } from "../../audit/log.ts";
import { loadConfigFile } from "../../config/load.ts";
import { openStore } from "../../store/store.ts";
import { action, printJson } from "../output.ts";

export const EXIT_CHAIN_BROKEN = 4;

export function register(audit: Command): void {
  audit
    .command("verify")
    .description("verify the audit trail's hash chain in the store (exit 4 if broken)")
    .requiredOption("--config <file>", "configuration file (its store.url is read)")
    .option("--json", "print the result as JSON")
    .action(
      action(async (o: { config: string; json?: boolean }) => {
        const cfg = loadConfigFile(o.config);
        const store = await openStore(cfg.store.url, { poolSize: 2 });
        try {
          const v = await verifyChain(store);
          if (o.json) printJson(v);
          else if (v.ok) process.stdout.write(`audit chain intact: ${v.checked} events${v.head ? `, head #${v.head.seq} ${v.head.hash}` : ""}\n`);
          else process.stdout.write(`audit chain BROKEN at event #${v.brokenAt?.seq}: ${v.brokenAt?.reason} (${v.checked} events verified before it)\n`);
          if (!v.ok) process.exitCode = EXIT_CHAIN_BROKEN;
        } finally {
          await store.close();
        }
      }),
    );
}

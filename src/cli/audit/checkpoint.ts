// `gatehouse audit checkpoint --config F`: checkpoint the current head now, directly in the store,
// signed with audit.signingKey when it is configured (the gateway may be stopped).

import type { Command } from "commander";
import { checkpointFile, loadSigner, writeCheckpoint } from "../../audit/checkpoints.ts";
import { GatehouseError } from "../../domain/errors.ts";
import { action, printJson } from "../output.ts";
import { withConfigStore } from "./direct.ts";

export function register(audit: Command): void {
  audit
    .command("checkpoint")
    .description("checkpoint the audit chain's head now, in the store (signed with audit.signingKey when set)")
    .requiredOption("--config <file>", "configuration file (its store.url and audit.signingKey are read)")
    .option("--json", "print the checkpoint file")
    .action(
      action(async (o: { config: string; json?: boolean }) => {
        const cp = await withConfigStore(o.config, async (store, config) => {
          const signer = await loadSigner(config.audit.signingKey);
          const row = await writeCheckpoint(store, { signer, gatewayId: "cli" });
          if (!row) throw new GatehouseError("API_BAD_REQUEST", "the audit trail is empty: there is no head to checkpoint");
          return checkpointFile(row, signer);
        });
        if (o.json) printJson(cp);
        else process.stdout.write(`checkpoint #${cp.seq} ${cp.hash} at ${cp.time}${cp.signature ? ` signed by key ${cp.keyId}` : " (unsigned)"}\n`);
      }),
    );
}

// `gatehouse audit checkpoints`: list the stored checkpoints (newest first) in their export
// format; `--latest --json > cp.json` exports the newest one to keep outside the store, for
// `audit verify --checkpoint cp.json`. Through the API, or the store directly with --config.

import type { Command } from "commander";
import { type CheckpointFile, checkpointFile, listCheckpoints } from "../../audit/checkpoints.ts";
import { addApiOptions, ApiClient, type ApiOptions } from "../api-client.ts";
import { action, printJson } from "../output.ts";
import { table } from "../table.ts";
import { configSigner, withConfigStore } from "./direct.ts";

export function checkpointsTable(items: CheckpointFile[]): string {
  return table(
    ["SEQ", "TIME", "HASH", "GATEWAY", "KEY ID", "SIGNED"],
    items.map((c) => [String(c.seq), c.time, c.hash, c.gatewayId ?? "", c.keyId ?? "", c.signature ? "yes" : "no"]),
    64,
  );
}

export function register(audit: Command): void {
  addApiOptions(audit.command("checkpoints").description("list audit checkpoints, newest first; --latest --json exports one for offline verification"))
    .option("--config <file>", "read the store of this configuration directly instead of the API")
    .option("--limit <n>", "at most this many", "20")
    .option("--latest", "only the newest checkpoint (with --json: one object, the checkpoint file)")
    .option("--json", "print JSON")
    .action(
      action(async (o: ApiOptions & { config?: string; limit: string; latest?: boolean; json?: boolean }) => {
        const limit = o.latest ? 1 : Number(o.limit);
        const items = o.config
          ? await withConfigStore(o.config, async (store, config) => {
              const signer = await configSigner(config, (w) => process.stderr.write(`warning: ${w}\n`));
              return (await listCheckpoints(store, limit)).map((c) => checkpointFile(c, signer));
            })
          : (await new ApiClient(o).request<{ items: CheckpointFile[] }>("GET", `/api/v1/audit/checkpoints?limit=${limit}`)).items;
        if (o.json) printJson(o.latest ? (items[0] ?? null) : items);
        else process.stdout.write(`${checkpointsTable(items)}\n`);
      }),
    );
}

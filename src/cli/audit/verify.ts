// `gatehouse audit verify`: walk the audit hash chain and report the first broken link; exit 0
// when intact, 4 when broken. With --config it reads the store directly (works with the gateway
// stopped); without, it asks the gateway (POST /api/v1/audit/verify, auditor groups). Stored
// checkpoints are always checked; --checkpoint adds one kept outside the store, --public-key
// trusts a signing key (repeatable, e.g. the old key after a rotation).

import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { parseCheckpoints, parsePublicKey } from "../../audit/checkpoints.ts";
import { type ChainVerification, verifyChain } from "../../audit/verify.ts";
import { GatehouseError } from "../../domain/errors.ts";
import { addApiOptions, ApiClient, type ApiOptions } from "../api-client.ts";
import { action, printJson } from "../output.ts";
import { configSigner, withConfigStore } from "./direct.ts";

export const EXIT_CHAIN_BROKEN = 4;

function readText(file: string, code: "AUDIT_CHECKPOINT_INVALID" | "AUDIT_PUBLIC_KEY_INVALID"): string {
  try {
    return readFileSync(file, "utf8");
  } catch (e) {
    throw new GatehouseError(code, `${file} cannot be read (${(e as NodeJS.ErrnoException).code ?? "error"})`);
  }
}

export function printVerification(v: ChainVerification, json?: boolean): void {
  if (json) printJson(v);
  else {
    const from = v.anchor ? ` (kept chain from anchor #${v.anchor.seq}, pruned ${v.anchor.prunedAt})` : "";
    if (v.ok) process.stdout.write(`audit chain intact: ${v.checked} events${v.head ? `, head #${v.head.seq} ${v.head.hash}` : ""}${from}\n`);
    else process.stdout.write(`audit chain BROKEN at event #${v.brokenAt?.seq}: ${v.brokenAt?.reason} (${v.checked} events verified before it)\n`);
    const c = v.checkpoints;
    process.stdout.write(`checkpoints: ${c.stored} stored, ${c.external} given; ${c.signed} signed, ${c.verified} verified with a trusted key\n`);
    for (const w of v.warnings) process.stderr.write(`warning: ${w}\n`);
  }
  if (!v.ok) process.exitCode = EXIT_CHAIN_BROKEN;
}

const collect = (v: string, all: string[] = []) => [...all, v];

export function register(audit: Command): void {
  addApiOptions(audit.command("verify").description("verify the audit trail's hash chain, anchor and checkpoints (exit 4 if broken)"))
    .option("--config <file>", "read the store of this configuration directly (the gateway may be stopped); without it, ask the gateway's API")
    .option("--checkpoint <file>", "also check a checkpoint file kept outside the store (`audit checkpoints --latest --json`)")
    .option("--public-key <file>", "trust checkpoint signatures by this Ed25519 public key (PEM; repeatable)", collect)
    .option("--require-signed", "every checkpoint must carry a signature by a trusted key")
    .option("--json", "print the result as JSON")
    .action(
      action(async (o: ApiOptions & { config?: string; checkpoint?: string; publicKey?: string[]; requireSigned?: boolean; json?: boolean }) => {
        const checkpointText = o.checkpoint ? readText(o.checkpoint, "AUDIT_CHECKPOINT_INVALID") : undefined;
        const keyFiles = o.publicKey ?? [];
        const keyPems = keyFiles.map((f) => readText(f, "AUDIT_PUBLIC_KEY_INVALID"));
        const requireSigned = o.requireSigned ?? false;
        if (!o.config) {
          const body = { ...(checkpointText ? { checkpoint: parseCheckpoints(checkpointText) } : {}), publicKeys: keyPems, requireSigned };
          return printVerification(await new ApiClient(o).request<ChainVerification>("POST", "/api/v1/audit/verify", body), o.json);
        }
        const checkpoints = checkpointText ? parseCheckpoints(checkpointText) : [];
        const given = keyPems.map((pem, i) => parsePublicKey(pem, keyFiles[i]));
        const v = await withConfigStore(o.config, async (store, config) => {
          const warnings: string[] = [];
          const signer = await configSigner(config, (w) => warnings.push(w));
          const r = await verifyChain(store, { trustedKeys: [...(signer ? [signer.publicKey] : []), ...given], checkpoints, requireSigned });
          r.warnings.unshift(...warnings);
          return r;
        });
        printVerification(v, o.json);
      }),
    );
}

// `gatehouse retention run --config F`: prune old recordings (and audit events, when
// audit.retention is set) once, directly in the store. The gateway runs the same job on a schedule.

import type { Command } from "commander";
import { AuditLog } from "../../audit/log.ts";
import { loadConfigFile } from "../../config/load.ts";
import { openSink } from "../../recording/sinks.ts";
import { runRetention } from "../../retention/run.ts";
import { openStore } from "../../store/store.ts";
import { action, printJson } from "../output.ts";
import { formatBytes } from "../sessions/view.ts";

export function register(retention: Command): void {
  retention
    .command("run")
    .description("prune recordings older than recording.retention (and audit events older than audit.retention, up to a checkpoint)")
    .requiredOption("--config <file>", "configuration file (store, recording and audit settings are read)")
    .option("--json", "print the result as JSON")
    .action(
      action(async (o: { config: string; json?: boolean }) => {
        const cfg = loadConfigFile(o.config);
        const store = await openStore(cfg.store.url, { poolSize: 2 });
        try {
          const audit = new AuditLog(store);
          const r = await runRetention({ store, sink: openSink(store, cfg.recording.storage, cfg.recording.directory, undefined, cfg.recording.compression), audit, config: cfg });
          await audit.drain();
          if (o.json) return printJson(r);
          const lines = [
            r.recordings.cutoff === null ? "recordings: kept forever (recording.retention is 0)" : `recordings: ${r.recordings.pruned} pruned (ended before ${r.recordings.cutoff}), ${formatBytes(r.recordings.bytesFreed)} freed`,
            r.audit === null ? "audit events: kept forever (audit.retention is 0)" : `audit events: ${r.audit.deleted} pruned (before ${r.audit.cutoff})${r.audit.anchor ? `; the chain now starts after #${r.audit.anchor.seq}` : ""}`,
          ];
          process.stdout.write(`${lines.join("\n")}\n`);
        } finally {
          await store.close();
        }
      }),
    );
}

// The retention job: prune recordings older than recording.retention (their session rows and
// audit events stay, marked `pruned`), then audit events older than audit.retention — only up to
// a checkpoint, so the kept chain still verifies from its anchor. Run by the gateway every
// retention.interval and once by `gatehouse retention run`. Each run is itself audited.

import type { AuditLog } from "../audit/log.ts";
import { pruneAuditEvents, type PruneResult } from "../audit/prune.ts";
import type { Config } from "../config/schema.ts";
import type { Logger } from "../observability/logger.ts";
import type { RecordingSink } from "../recording/sinks.ts";
import type { Store } from "../store/store.ts";

export interface RetentionResult {
  recordings: { pruned: number; bytesFreed: number; cutoff: string | null };
  audit: (Omit<PruneResult, "cutoff"> & { cutoff: string }) | null;
}

export interface RetentionDeps {
  store: Store;
  sink: RecordingSink;
  audit: AuditLog;
  config: Pick<Config, "recording" | "audit">;
  logger?: Logger;
}

const BATCH = 500;

export async function runRetention(d: RetentionDeps, now = Date.now()): Promise<RetentionResult> {
  const result: RetentionResult = { recordings: { pruned: 0, bytesFreed: 0, cutoff: null }, audit: null };
  const keep = d.config.recording.retention;
  if (keep > 0) {
    const cutoff = now - keep * 1000;
    result.recordings.cutoff = new Date(cutoff).toISOString();
    for (;;) {
      // Only sessions that are over: an active session's recording is never pruned under it.
      const rows = await d.store.db
        .selectFrom("sessions")
        .select("id")
        .where("status", "!=", "active")
        .where("ended_at", "<", cutoff)
        .where("rec_status", "not in", ["none", "pruned"])
        .limit(BATCH)
        .execute();
      if (!rows.length) break;
      const ids = rows.map((r) => r.id);
      result.recordings.bytesFreed += await d.sink.remove(ids);
      await d.store.db.updateTable("sessions").set({ rec_status: "pruned" }).where("id", "in", ids).execute();
      result.recordings.pruned += ids.length;
      if (rows.length < BATCH) break;
    }
  }
  let auditError: unknown;
  if (d.config.audit.retention > 0) {
    try {
      const r = await pruneAuditEvents(d.store, { olderThanMs: d.config.audit.retention * 1000, now });
      result.audit = { ...r, cutoff: new Date(r.cutoff).toISOString() };
    } catch (e) {
      // E.g. GH-AUDIT-004: the chain to be pruned does not verify, so nothing of it is deleted.
      // The recordings part stands; the run is audited with the refusal, then reported.
      auditError = e;
    }
  }
  await d.audit.append({ type: "retention.run", data: { ...result, ...(auditError ? { auditError: (auditError as Error).message } : {}) } });
  if (auditError) throw auditError;
  d.logger?.info({ retention: result }, "retention run");
  return result;
}

/** Run the job every `intervalSeconds` (unref'd); returns a stop function. */
export function scheduleRetention(d: RetentionDeps, intervalSeconds: number): () => Promise<void> {
  if (intervalSeconds <= 0) return async () => {};
  let running: Promise<unknown> | undefined;
  const timer = setInterval(() => {
    if (running) return;
    running = runRetention(d)
      .catch((e) => d.logger?.error({ err: (e as Error).message }, "retention run failed; it is retried at the next interval"))
      .finally(() => {
        running = undefined;
      });
  }, intervalSeconds * 1000);
  timer.unref();
  return async () => {
    clearInterval(timer);
    await running;
  };
}

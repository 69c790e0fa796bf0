// Retention for the audit trail: delete old events, but only up to (and including) a checkpoint,
// and leave an anchor — the seq and hash of the last deleted event — so `audit verify` starts the
// kept chain from it, and the checkpoint at the same seq vouches for the anchor.
//
// Never: delete events whose chain does not verify (that would destroy the evidence), or cut the
// chain anywhere but at a checkpoint.

import { GatehouseError } from "../domain/errors.ts";
import type { Store } from "../store/store.ts";
import { GENESIS_HASH } from "./chain.ts";
import { walkChain } from "./verify.ts";

export interface PruneResult {
  /** Events deleted. */
  deleted: number;
  /** Older checkpoints deleted with them (the one at the anchor stays). */
  checkpointsDeleted: number;
  /** The anchor after this run (unchanged when nothing was pruned). */
  anchor?: { seq: number; hash: string };
  /** Events taken before this time (Unix ms) were eligible. */
  cutoff: number;
}

/**
 * Prune audit events older than `olderThanMs` (0 or less: keep everything). The cut is at the
 * newest checkpoint taken before the cutoff; the events up to it are verified first, and a broken
 * chain refuses the prune with GH-AUDIT-004.
 */
export async function pruneAuditEvents(store: Store, opts: { olderThanMs: number; now?: number; pageSize?: number }): Promise<PruneResult> {
  const cutoff = (opts.now ?? Date.now()) - opts.olderThanMs;
  const current = await store.db.selectFrom("audit_anchor").select(["seq", "hash"]).where("id", "=", 1).executeTakeFirst();
  const anchor = current ? { seq: Number(current.seq), hash: current.hash } : undefined;
  const unchanged: PruneResult = { deleted: 0, checkpointsDeleted: 0, cutoff, ...(anchor ? { anchor } : {}) };
  if (opts.olderThanMs <= 0) return unchanged;

  const cut = await store.db
    .selectFrom("audit_checkpoints")
    .select(["seq", "hash"])
    .where("at", "<", cutoff)
    .where("seq", ">", anchor?.seq ?? 0)
    .orderBy("seq", "desc")
    .limit(1)
    .executeTakeFirst();
  if (!cut) return unchanged;
  const seq = Number(cut.seq);

  const pins = new Map([[seq, [{ seq, hash: cut.hash, label: `checkpoint #${seq}` }]]]);
  const walked = await walkChain(store, anchor ? { seq: anchor.seq + 1, prev: anchor.hash } : { seq: 1, prev: GENESIS_HASH }, { until: seq, pins, ...(opts.pageSize ? { pageSize: opts.pageSize } : {}) });
  if (walked.broken) throw new GatehouseError("AUDIT_PRUNE_REFUSED", `event #${walked.broken.seq}: ${walked.broken.reason}`);
  if (walked.last?.seq !== seq) throw new GatehouseError("AUDIT_PRUNE_REFUSED", `checkpoint #${seq} attests an event that is not in the store (the chain ends at #${walked.last?.seq ?? anchor?.seq ?? 0})`);

  const prunedAt = opts.now ?? Date.now();
  return store.db.transaction().execute(async (trx) => {
    const del = await trx.deleteFrom("audit_events").where("seq", "<=", seq).executeTakeFirst();
    await trx
      .insertInto("audit_anchor")
      .values({ id: 1, seq, hash: cut.hash, pruned_at: prunedAt })
      .onConflict((oc) => oc.column("id").doUpdateSet({ seq, hash: cut.hash, pruned_at: prunedAt }))
      .execute();
    const cps = await trx.deleteFrom("audit_checkpoints").where("seq", "<", seq).executeTakeFirst();
    return { deleted: Number(del.numDeletedRows), checkpointsDeleted: Number(cps.numDeletedRows), anchor: { seq, hash: cut.hash }, cutoff };
  });
}

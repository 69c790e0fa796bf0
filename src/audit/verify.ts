// Verification of the audit trail: walk the chain in sequence order from its start (genesis, or
// the anchor left by pruning) and report the first broken link. Besides each event's own links
// (seq, prev_hash, content hash) every checkpoint is checked: stored ones and any given from
// outside (a file kept off the store): the event at its seq must exist with exactly its hash, and
// a signature must verify with a trusted key. A chain that ends before a checkpoint's seq lost its
// tail. What this can and cannot detect is in docs/audit.md.

import type { KeyObject } from "node:crypto";
import type { Store } from "../store/store.ts";
import { GENESIS_HASH, hashEvent } from "./chain.ts";
import { type CheckpointFile, checkSignature, trustedKeyMap } from "./checkpoints.ts";

export interface VerifyOptions {
  pageSize?: number;
  /** Public keys whose checkpoint signatures are trusted (the configured signing key's, --public-key). */
  trustedKeys?: KeyObject[];
  /** Checkpoints kept outside the store (`--checkpoint FILE`). */
  checkpoints?: CheckpointFile[];
  /** Every checkpoint must carry a signature that verifies with a trusted key. */
  requireSigned?: boolean;
}

export interface ChainVerification {
  ok: boolean;
  /** Events verified (before the break, when broken). */
  checked: number;
  head?: { seq: number; hash: string };
  /** Where the kept chain starts after pruning: the last pruned event. */
  anchor?: { seq: number; hash: string; prunedAt: string };
  checkpoints: { stored: number; external: number; signed: number; verified: number };
  /** First broken link, when not ok. */
  brokenAt?: { seq: number; reason: string };
  /** What weakens the result without breaking it (e.g. no checkpoints, signatures not checkable). */
  warnings: string[];
}

interface Pinned {
  seq: number;
  hash: string;
  label: string;
}

/** Walk events from `start` (the first expected seq and the hash it must link to). */
export async function walkChain(
  store: Store,
  start: { seq: number; prev: string },
  opts: { pageSize?: number; until?: number; pins?: ReadonlyMap<number, Pinned[]> } = {},
): Promise<{ checked: number; last?: { seq: number; hash: string }; broken?: { seq: number; reason: string } }> {
  const pageSize = opts.pageSize ?? 5000;
  let prev = start.prev;
  let expectedSeq = start.seq;
  let checked = 0;
  let last: { seq: number; hash: string } | undefined;
  for (;;) {
    let q = store.db.selectFrom("audit_events").selectAll().where("seq", ">=", expectedSeq).orderBy("seq").limit(pageSize);
    if (opts.until !== undefined) q = q.where("seq", "<=", opts.until);
    const rows = await q.execute();
    if (!rows.length) break;
    for (const r of rows) {
      const seq = Number(r.seq);
      const broken = (s: number, reason: string) => ({ checked, ...(last ? { last } : {}), broken: { seq: s, reason } });
      if (seq !== expectedSeq) return broken(expectedSeq, `event ${expectedSeq} is missing (next present is ${seq})`);
      if (r.prev_hash !== prev) return broken(seq, "prev_hash does not match the previous event's hash (deleted, inserted or reordered events)");
      const { hash, ...rest } = r;
      if (hashEvent({ ...rest, seq, at: Number(r.at) }) !== hash) return broken(seq, "event content does not match its hash (edited)");
      for (const p of opts.pins?.get(seq) ?? []) {
        if (p.hash !== hash) return broken(seq, `event ${seq}'s hash differs from ${p.label}: the chain up to it was rewritten`);
      }
      prev = hash;
      last = { seq, hash };
      expectedSeq++;
      checked++;
    }
  }
  return { checked, ...(last ? { last } : {}) };
}

/** Verify the whole kept chain, its anchor and every checkpoint; report the first broken link. */
export async function verifyChain(store: Store, options: VerifyOptions | number = {}): Promise<ChainVerification> {
  const o: VerifyOptions = typeof options === "number" ? { pageSize: options } : options;
  const trusted = trustedKeyMap(o.trustedKeys ?? []);
  const warnings: string[] = [];
  const problems: Array<{ seq: number; reason: string }> = [];

  const anchorRow = await store.db.selectFrom("audit_anchor").selectAll().where("id", "=", 1).executeTakeFirst();
  const anchor = anchorRow ? { seq: Number(anchorRow.seq), hash: anchorRow.hash, prunedAt: new Date(Number(anchorRow.pruned_at)).toISOString() } : undefined;
  const stored = await store.db.selectFrom("audit_checkpoints").selectAll().orderBy("seq").execute();
  const all = [
    ...stored.map((c) => ({ seq: Number(c.seq), hash: c.hash, at: Number(c.at), keyId: c.key_id, signature: c.signature, label: `checkpoint #${Number(c.seq)} (stored)` })),
    ...(o.checkpoints ?? []).map((c) => ({ ...c, label: `checkpoint #${c.seq} (given)` })),
  ];

  const counts = { stored: stored.length, external: o.checkpoints?.length ?? 0, signed: 0, verified: 0 };
  let unchecked = 0;
  let embeddedOnly = 0;
  const pins = new Map<number, Pinned[]>();
  for (const c of all) {
    const s = checkSignature(c, trusted);
    if (s.status !== "unsigned") counts.signed++;
    if (s.status === "valid") counts.verified++;
    if (s.status === "invalid") problems.push({ seq: c.seq, reason: `${c.label}: ${s.reason}` });
    if (s.status === "unchecked") unchecked++;
    if (s.status === "embedded-only") embeddedOnly++;
    if (o.requireSigned && s.status === "unsigned") problems.push({ seq: c.seq, reason: `${c.label} is not signed (signatures are required)` });
    if (o.requireSigned && (s.status === "unchecked" || s.status === "embedded-only")) problems.push({ seq: c.seq, reason: `${c.label} is signed, but by no trusted key (pass the public key)` });
    if (anchor && c.seq < anchor.seq) continue;
    pins.set(c.seq, [...(pins.get(c.seq) ?? []), c]);
  }
  if (unchecked) warnings.push(`${unchecked} checkpoint signature(s) not checked: no trusted public key (configure audit.signingKey or pass --public-key)`);
  if (embeddedOnly) warnings.push(`${embeddedOnly} checkpoint signature(s) checked only against the key embedded in the file, which proves nothing about who signed it (pass --public-key)`);
  const before = all.filter((c) => anchor && c.seq < anchor.seq).length;
  if (before) warnings.push(`${before} checkpoint(s) are older than the anchor #${anchor?.seq}: their events were pruned, only their signatures were checked`);
  if (!all.length) warnings.push("no checkpoints: deleting the newest events (the tail) cannot be detected; export checkpoints and keep them outside the store");

  if (anchor) {
    const atAnchor = pins.get(anchor.seq) ?? [];
    if (!atAnchor.length) problems.push({ seq: anchor.seq, reason: `the chain starts after an anchor at #${anchor.seq} that no checkpoint attests (events were deleted, not pruned at a checkpoint)` });
    else if (atAnchor.some((p) => p.hash !== anchor.hash)) problems.push({ seq: anchor.seq, reason: `the anchor's hash differs from ${atAnchor.find((p) => p.hash !== anchor.hash)?.label}` });
  }

  const walked = await walkChain(store, anchor ? { seq: anchor.seq + 1, prev: anchor.hash } : { seq: 1, prev: GENESIS_HASH }, { ...(o.pageSize ? { pageSize: o.pageSize } : {}), pins });
  if (walked.broken) problems.push(walked.broken);
  else {
    const end = walked.last?.seq ?? anchor?.seq ?? 0;
    const beyond = all.filter((c) => c.seq > end).sort((a, b) => b.seq - a.seq)[0];
    if (beyond) problems.push({ seq: end + 1, reason: `the chain ends at #${end} but ${beyond.label} attests event #${beyond.seq}: events after #${end} were deleted (truncated tail)` });
  }

  const result: ChainVerification = { ok: problems.length === 0, checked: walked.checked, checkpoints: counts, warnings };
  if (walked.last) result.head = walked.last;
  if (anchor) result.anchor = anchor;
  const first = problems.sort((a, b) => a.seq - b.seq)[0];
  if (first) result.brokenAt = first;
  return result;
}

// Audit checkpoints: the chain head (seq, hash) at a moment, kept in `audit_checkpoints` and
// exportable as a JSON file, optionally signed with a configured Ed25519 key. A checkpoint pins
// the chain: verification fails if the event at its seq has another hash (a rewritten chain) or is
// gone (a truncated tail), and pruning may only cut the chain at a checkpoint.
//
// Writing a checkpoint appends no audit event: the checkpoint table is its own record, and an event
// per checkpoint would only move the head it had just pinned.
//
// Never: trust the public key embedded in a checkpoint file when a trusted key is known.

import { createHash, createPrivateKey, createPublicKey, type KeyObject, sign, verify } from "node:crypto";
import { z } from "zod";
import { SecretResolver } from "../agent/secrets.ts";
import { GatehouseError } from "../domain/errors.ts";
import type { Logger } from "../observability/logger.ts";
import type { AuditCheckpointsTable } from "../store/schema.ts";
import type { Store } from "../store/store.ts";

export const CHECKPOINT_FORMAT = "gatehouse-audit-checkpoint/v1";

export type CheckpointRow = AuditCheckpointsTable;

/** A checkpoint as exported (`gatehouse audit checkpoints --json`, GET /api/v1/audit/checkpoints). */
export interface CheckpointFile {
  format: typeof CHECKPOINT_FORMAT;
  seq: number;
  hash: string;
  /** Unix milliseconds when the checkpoint was taken (part of the signed statement). */
  at: number;
  /** `at` as ISO 8601, for people. */
  time: string;
  gatewayId: string | null;
  keyId: string | null;
  /** Ed25519 signature (base64) over `checkpointStatement`. */
  signature: string | null;
  /** The signer's public key (SPKI PEM), when known; verifiers trust it only if it matches theirs. */
  publicKey?: string;
}

/** The exact bytes that are signed. */
export function checkpointStatement(c: { seq: number; hash: string; at: number }): string {
  return `${CHECKPOINT_FORMAT}\n${c.seq}\n${c.hash}\n${c.at}`;
}

/** First 16 hex digits of the SHA-256 of the raw 32-byte Ed25519 public key. */
export function keyIdOf(publicKey: KeyObject): string {
  const raw = Buffer.from(String(publicKey.export({ format: "jwk" }).x), "base64url");
  return createHash("sha256").update(raw).digest("hex").slice(0, 16);
}

/** An Ed25519 public key from PEM (a private key PEM is accepted too: its public half is used). */
export function parsePublicKey(pem: string, what = "public key"): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch (e) {
    throw new GatehouseError("AUDIT_PUBLIC_KEY_INVALID", `${what} is not a PEM key (${(e as Error).message})`);
  }
  if (key.asymmetricKeyType !== "ed25519") throw new GatehouseError("AUDIT_PUBLIC_KEY_INVALID", `${what} is ${key.asymmetricKeyType ?? "not asymmetric"}, not Ed25519`);
  return key;
}

export class CheckpointSigner {
  readonly publicKey: KeyObject;
  readonly publicKeyPem: string;
  readonly keyId: string;
  readonly #privateKey: KeyObject;

  constructor(privateKeyPem: string) {
    let key: KeyObject;
    try {
      key = createPrivateKey(privateKeyPem);
    } catch {
      throw new GatehouseError("AUDIT_SIGNING_KEY_INVALID", "audit.signingKey is not a PEM private key");
    }
    if (key.asymmetricKeyType !== "ed25519") throw new GatehouseError("AUDIT_SIGNING_KEY_INVALID", `audit.signingKey is a ${key.asymmetricKeyType} key, not Ed25519`);
    this.#privateKey = key;
    this.publicKey = createPublicKey(key);
    this.publicKeyPem = String(this.publicKey.export({ format: "pem", type: "spki" }));
    this.keyId = keyIdOf(this.publicKey);
  }

  sign(c: { seq: number; hash: string; at: number }): string {
    return sign(null, Buffer.from(checkpointStatement(c)), this.#privateKey).toString("base64");
  }
}

/** Resolve audit.signingKey (`file:/path`, `env:NAME` or inline PEM); undefined when not configured. */
export async function loadSigner(reference: string | undefined, resolver = new SecretResolver()): Promise<CheckpointSigner | undefined> {
  if (!reference) return undefined;
  let pem: string;
  try {
    pem = await resolver.resolve(reference);
  } catch (e) {
    throw new GatehouseError("AUDIT_SIGNING_KEY_INVALID", (e as Error).message);
  }
  return new CheckpointSigner(pem);
}

export function checkpointFile(row: CheckpointRow, signer?: CheckpointSigner): CheckpointFile {
  const at = Number(row.at);
  const f: CheckpointFile = { format: CHECKPOINT_FORMAT, seq: Number(row.seq), hash: row.hash, at, time: new Date(at).toISOString(), gatewayId: row.gateway_id, keyId: row.key_id, signature: row.signature };
  if (signer && row.key_id === signer.keyId) f.publicKey = signer.publicKeyPem;
  return f;
}

const fileSchema = z.object({
  format: z.literal(CHECKPOINT_FORMAT),
  seq: z.number().int().min(1),
  hash: z.string().regex(/^[0-9a-f]{64}$/),
  at: z.number().int().min(0),
  time: z.string().optional(),
  gatewayId: z.string().nullable().optional(),
  keyId: z.string().regex(/^[0-9a-f]{16}$/).nullable().optional(),
  signature: z.string().nullable().optional(),
  publicKey: z.string().optional(),
});

/** Read checkpoints from a file's text or parsed JSON: one checkpoint, a list, or `{ items: [...] }`. */
export function parseCheckpoints(input: unknown): CheckpointFile[] {
  let v = input;
  if (typeof v === "string") {
    try {
      v = JSON.parse(v);
    } catch (e) {
      throw new GatehouseError("AUDIT_CHECKPOINT_INVALID", `not JSON: ${(e as Error).message}`);
    }
  }
  if (v && typeof v === "object" && !Array.isArray(v) && Array.isArray((v as { items?: unknown }).items)) v = (v as { items: unknown[] }).items;
  const list = Array.isArray(v) ? v : [v];
  return list.map((x, i) => {
    const r = fileSchema.safeParse(x);
    if (!r.success) throw new GatehouseError("AUDIT_CHECKPOINT_INVALID", `${list.length > 1 ? `checkpoint [${i}]: ` : ""}${r.error.issues.map((s) => `${s.path.join(".") || "(top level)"}: ${s.message}`).join("; ")}`);
    const d = r.data;
    const f: CheckpointFile = { format: CHECKPOINT_FORMAT, seq: d.seq, hash: d.hash, at: d.at, time: new Date(d.at).toISOString(), gatewayId: d.gatewayId ?? null, keyId: d.keyId ?? null, signature: d.signature ?? null };
    if (d.publicKey) f.publicKey = d.publicKey;
    return f;
  });
}

export type SignatureStatus =
  | { status: "unsigned" }
  /** Verified with a trusted key. */
  | { status: "valid" }
  /** Verified only with the key embedded in the file (nothing else to trust). */
  | { status: "embedded-only" }
  /** Signed, but no key is available to check it. */
  | { status: "unchecked" }
  | { status: "invalid"; reason: string };

/**
 * Check a checkpoint's signature. `trusted` maps key ids to trusted public keys; when it is not
 * empty, a signature by any other key is invalid (after a key rotation, pass the old public key
 * too). The embedded key of a checkpoint file is used only when nothing is trusted.
 */
export function checkSignature(c: { seq: number; hash: string; at: number; keyId: string | null; signature: string | null; publicKey?: string }, trusted: ReadonlyMap<string, KeyObject>): SignatureStatus {
  if (!c.signature) return { status: "unsigned" };
  const sig = Buffer.from(c.signature, "base64");
  const statement = Buffer.from(checkpointStatement(c));
  if (trusted.size) {
    const key = c.keyId ? trusted.get(c.keyId) : undefined;
    if (!key) return { status: "invalid", reason: `signed by key ${c.keyId ?? "(no key id)"}, which is not a trusted key (after a key rotation, pass the old public key too)` };
    return verify(null, statement, key, sig) ? { status: "valid" } : { status: "invalid", reason: "its signature does not verify (forged or edited checkpoint)" };
  }
  if (!c.publicKey) return { status: "unchecked" };
  let embedded: KeyObject;
  try {
    embedded = parsePublicKey(c.publicKey, "the embedded public key");
  } catch (e) {
    return { status: "invalid", reason: (e as Error).message };
  }
  if (keyIdOf(embedded) !== c.keyId) return { status: "invalid", reason: "its embedded public key does not match its key id" };
  return verify(null, statement, embedded, sig) ? { status: "embedded-only" } : { status: "invalid", reason: "its signature does not verify against its embedded key (forged or edited checkpoint)" };
}

export function trustedKeyMap(keys: Iterable<KeyObject>): Map<string, KeyObject> {
  return new Map([...keys].map((k) => [keyIdOf(k), k]));
}

/**
 * Checkpoint the current head. Returns the checkpoint (an existing one when the head has not moved
 * since), or undefined for an empty chain.
 */
export async function writeCheckpoint(store: Store, opts: { signer?: CheckpointSigner | undefined; gatewayId?: string | null; now?: number } = {}): Promise<CheckpointRow | undefined> {
  const head = await store.db.selectFrom("audit_events").select(["seq", "hash"]).orderBy("seq", "desc").limit(1).executeTakeFirst();
  if (!head) return undefined;
  const seq = Number(head.seq);
  const existing = await store.db.selectFrom("audit_checkpoints").selectAll().where("seq", "=", seq).executeTakeFirst();
  if (existing) return existing;
  const at = opts.now ?? Date.now();
  const row: CheckpointRow = { seq, hash: head.hash, at, gateway_id: opts.gatewayId ?? null, key_id: opts.signer?.keyId ?? null, signature: opts.signer?.sign({ seq, hash: head.hash, at }) ?? null };
  // Another replica may checkpoint the same head at the same moment: the first row stays.
  await store.db
    .insertInto("audit_checkpoints")
    .values(row)
    .onConflict((oc) => oc.column("seq").doNothing())
    .execute();
  return (await store.db.selectFrom("audit_checkpoints").selectAll().where("seq", "=", seq).executeTakeFirst()) ?? row;
}

/** Stored checkpoints, newest first. */
export async function listCheckpoints(store: Store, limit = 100): Promise<CheckpointRow[]> {
  return store.db.selectFrom("audit_checkpoints").selectAll().orderBy("seq", "desc").limit(limit).execute();
}

/** Writes a checkpoint every `intervalSeconds` (0: only on demand) and one when the gateway stops. */
export class Checkpointer {
  readonly signer: CheckpointSigner | undefined;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<unknown> = Promise.resolve();
  #stopped = false;

  constructor(
    private readonly store: Store,
    private readonly opts: { intervalSeconds: number; signer?: CheckpointSigner | undefined; gatewayId: string; logger?: Logger },
  ) {
    this.signer = opts.signer;
  }

  /** Resolve audit.signingKey (a bad key fails the start with GH-AUDIT-001). */
  static async fromConfig(store: Store, audit: { signingKey?: string | undefined; checkpointInterval: number }, opts: { gatewayId: string; logger?: Logger }): Promise<Checkpointer> {
    return new Checkpointer(store, { intervalSeconds: audit.checkpointInterval, signer: await loadSigner(audit.signingKey), ...opts });
  }

  /** Trusted keys for verification: the signer's public key. */
  get trustedKeys(): KeyObject[] {
    return this.signer ? [this.signer.publicKey] : [];
  }

  start(): void {
    if (this.opts.intervalSeconds <= 0 || this.#timer || this.#stopped) return;
    this.#timer = setInterval(() => {
      this.checkpoint().catch((e) => this.opts.logger?.error({ err: (e as Error).message }, "audit checkpoint failed"));
    }, this.opts.intervalSeconds * 1000);
    this.#timer.unref();
  }

  /** Write one now (serialized with the periodic ones). */
  checkpoint(): Promise<CheckpointRow | undefined> {
    const run = this.#running.catch(() => {}).then(() => writeCheckpoint(this.store, { signer: this.signer, gatewayId: this.opts.gatewayId }));
    this.#running = run;
    return run;
  }

  /** Stop the timer and checkpoint the final head (call after the last audit event is durable). */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.checkpoint();
  }
}

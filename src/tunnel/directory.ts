// The agents a gateway knows: created with a secret (printed once, stored as SHA-256 — a 256-bit
// random secret needs no slow hash), authenticated by that secret, revoked for good.

import { createHash, randomBytes } from "node:crypto";
import { GatehouseError } from "../domain/errors.ts";
import type { AgentsTable } from "../store/schema.ts";
import type { Store } from "../store/store.ts";

/** Secrets start with this, so secret scanners can find leaked ones. */
export const AGENT_SECRET_PREFIX = "gha_";
const NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;

export const hashSecret = (secret: string) => createHash("sha256").update(secret).digest("hex");

export class AgentDirectory {
  constructor(private readonly store: Store) {}

  /** Create an agent; returns its secret (the only time it exists outside the agent). */
  async create(name: string, now = Date.now()): Promise<string> {
    if (name === "embedded" || !NAME.test(name)) throw new GatehouseError("CONFIG_INVALID", `agent name "${name}": use lower-case letters, digits, '.', '_' and '-' (not "embedded")`);
    const existing = await this.store.db.selectFrom("agents").select(["name", "revoked_at"]).where("name", "=", name).executeTakeFirst();
    if (existing && existing.revoked_at === null) throw new GatehouseError("AGENT_EXISTS", `agent "${name}" already exists; revoke it first to issue a new secret`);
    const secret = `${AGENT_SECRET_PREFIX}${randomBytes(32).toString("base64url")}`;
    const row = { name, secret_hash: hashSecret(secret), created_at: now, revoked_at: null, last_seen_at: null, last_address: null, last_version: null };
    if (existing) await this.store.db.updateTable("agents").set(row).where("name", "=", name).execute();
    else await this.store.db.insertInto("agents").values(row).execute();
    return secret;
  }

  /** The agent a secret belongs to, or undefined (unknown, malformed or revoked). */
  async authenticate(secret: string): Promise<string | undefined> {
    if (!secret.startsWith(AGENT_SECRET_PREFIX) || secret.length > 200) return undefined;
    const row = await this.store.db.selectFrom("agents").select(["name", "revoked_at"]).where("secret_hash", "=", hashSecret(secret)).executeTakeFirst();
    return row && row.revoked_at === null ? row.name : undefined;
  }

  /**
   * Revoke an agent. `tokenAgents` are the names that authenticate by OIDC token (config `agents`):
   * they get a revoked row (with an unusable secret hash) so their tokens are refused from now on.
   */
  async revoke(name: string, now = Date.now(), tokenAgents: readonly string[] = []): Promise<void> {
    const r = await this.store.db.updateTable("agents").set({ revoked_at: now }).where("name", "=", name).where("revoked_at", "is", null).executeTakeFirst();
    if (Number(r.numUpdatedRows) > 0) return;
    const row = await this.store.db.selectFrom("agents").select("name").where("name", "=", name).executeTakeFirst();
    if (!row && tokenAgents.includes(name)) {
      await this.store.db.insertInto("agents").values({ name, secret_hash: `revoked:${randomBytes(16).toString("hex")}`, created_at: now, revoked_at: now, last_seen_at: null, last_address: null, last_version: null }).execute();
      return;
    }
    throw new GatehouseError("AGENT_NOT_FOUND", `no active agent named "${name}"`);
  }

  /** Revoked in the store. (An agent that authenticates by OIDC token may have no row at all.) */
  async isRevoked(name: string): Promise<boolean> {
    const row = await this.store.db.selectFrom("agents").select("revoked_at").where("name", "=", name).executeTakeFirst();
    return !!row && row.revoked_at !== null;
  }

  async seen(name: string, address: string | null, version: string | null, now = Date.now()): Promise<void> {
    await this.store.db.updateTable("agents").set({ last_seen_at: now, last_address: address, last_version: version }).where("name", "=", name).execute();
  }

  async list(): Promise<Array<Omit<AgentsTable, "secret_hash">>> {
    return this.store.db.selectFrom("agents").select(["name", "created_at", "revoked_at", "last_seen_at", "last_address", "last_version"]).orderBy("name").execute();
  }
}

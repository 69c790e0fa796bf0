// Gateway liveness in the store. Each process heartbeats; on start, sessions left `active` by
// processes that stopped heartbeating are marked `interrupted`, so their recordings and held
// reviews are not mistaken for live ones.

import { sql } from "kysely";
import type { AuditLog } from "../audit/log.ts";
import type { Store } from "../store/store.ts";

export const HEARTBEAT_MS = 10_000;
/** A gateway silent for this long is considered gone. */
export const STALE_MS = 3 * HEARTBEAT_MS;

export class GatewayRegistry {
  #timer: NodeJS.Timeout | undefined;
  constructor(
    private readonly store: Store,
    private readonly audit: AuditLog,
    readonly id: string,
    private readonly version: string,
  ) {}

  async start(now = Date.now()): Promise<{ interruptedSessions: string[] }> {
    await this.store.db.insertInto("gateways").values({ id: this.id, started_at: now, heartbeat_at: now, version: this.version, stopped_at: null }).execute();
    // A SQLite store belongs to one gateway process: whatever another process left active is
    // orphaned now, without waiting for its heartbeat to go stale (a restart after kill -9 comes
    // back within seconds). Shared PostgreSQL stores wait for staleness and sweep periodically.
    const interruptedSessions = await this.interruptOrphans(now, this.store.kind === "sqlite");
    this.#timer = setInterval(() => {
      this.store.db
        .updateTable("gateways")
        .set({ heartbeat_at: Date.now() })
        .where("id", "=", this.id)
        .execute()
        .then(() => this.interruptOrphans())
        .catch(() => {});
    }, HEARTBEAT_MS);
    this.#timer.unref();
    return { interruptedSessions };
  }

  /** Mark sessions of dead gateways interrupted; returns their ids. */
  async interruptOrphans(now = Date.now(), onlySelfAlive = false): Promise<string[]> {
    const alive = onlySelfAlive
      ? this.store.db.selectFrom("gateways").select("id").where("id", "=", this.id)
      : this.store.db.selectFrom("gateways").select("id").where("heartbeat_at", ">", now - STALE_MS).where("stopped_at", "is", null);
    const orphans = await this.store.db.selectFrom("sessions").select(["id", "connection", "principal_subject"]).where("status", "=", "active").where("gateway_id", "not in", alive).execute();
    if (!orphans.length) return [];
    const ids = orphans.map((o) => o.id);
    for (let i = 0; i < ids.length; i += 500) {
      await this.store.db
        .updateTable("sessions")
        .set({
          status: "interrupted",
          end_reason: "the gateway stopped without closing the session",
          ended_at: sql<number>`coalesce(ended_at, ${now})`,
          // Readable up to the last flush; the status says it ends early.
          rec_status: sql<string>`case when rec_status = 'recording' then 'interrupted' else rec_status end`,
        })
        .where("id", "in", ids.slice(i, i + 500))
        .execute();
    }
    await this.audit.append({ type: "session.interrupted", data: { count: ids.length, sessions: ids.slice(0, 100), detectedBy: this.id } });
    return ids;
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    await this.store.db.updateTable("gateways").set({ stopped_at: Date.now() }).where("id", "=", this.id).execute();
  }
}

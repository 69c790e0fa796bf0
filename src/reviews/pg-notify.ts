// Cross-replica review release on a PostgreSQL store: a decision taken through any replica is
// announced with NOTIFY; every replica LISTENs and wakes its own held operations at once.
// With SQLite there is one gateway process and in-process events suffice.

import pg from "pg";
import type { Logger } from "../observability/logger.ts";
import type { ReviewService } from "./service.ts";

const CHANNEL = "gatehouse_reviews";

export interface ReviewNotifyLink {
  close(): Promise<void>;
}

export async function linkReviewsAcrossReplicas(url: string, reviews: ReviewService, logger: Logger): Promise<ReviewNotifyLink> {
  let closed = false;
  let listener: pg.Client | undefined;
  const publisher = new pg.Pool({ connectionString: url, max: 1 });
  publisher.on("error", () => {});
  const wake = reviews.crossReplica((id) => {
    publisher.query("select pg_notify($1, $2)", [CHANNEL, id]).catch((e: Error) => logger.warn({ err: e.message }, "review NOTIFY failed; other replicas will see the decision at expiry"));
  });
  const connect = async (): Promise<void> => {
    const c = new pg.Client({ connectionString: url });
    c.on("notification", (n) => {
      if (n.channel === CHANNEL && n.payload) wake(n.payload);
    });
    c.on("error", () => {});
    c.on("end", () => {
      if (closed) return;
      logger.warn("review LISTEN connection lost; reconnecting");
      setTimeout(() => connect().catch(() => {}), 1000).unref();
    });
    await c.connect();
    await c.query(`LISTEN ${CHANNEL}`);
    listener = c;
  };
  await connect();
  return {
    async close() {
      closed = true;
      await listener?.end().catch(() => {});
      await publisher.end().catch(() => {});
    },
  };
}

// `gatehouse reviews list`: reviews, newest first (pending by default).

import type { Command } from "commander";
import { addApiOptions, ApiClient, type ApiOptions } from "../api-client.ts";
import { action, printJson } from "../output.ts";
import { type ReviewJson, reviewsTable } from "./view.ts";

export function register(reviews: Command): void {
  addApiOptions(reviews.command("list").description("list reviews (pending by default)"))
    .option("--status <status>", "pending, approved, denied, expired, cancelled or all", "pending")
    .option("--connection <name>", "only this connection")
    .option("--limit <n>", "at most this many", "50")
    .option("--json", "print JSON")
    .action(
      action(async (o: ApiOptions & { status: string; connection?: string; limit: string; json?: boolean }) => {
        const q = new URLSearchParams({ limit: o.limit });
        if (o.status !== "all") q.set("status", o.status);
        if (o.connection) q.set("connection", o.connection);
        const res = await new ApiClient(o).request<{ items: ReviewJson[] }>("GET", `/api/v1/reviews?${q}`);
        if (o.json) printJson(res.items);
        else process.stdout.write(`${reviewsTable(res.items)}\n`);
      }),
    );
}

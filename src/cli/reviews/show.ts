// `gatehouse reviews show ID`: the exact operation, its classification, requester and votes.

import type { Command } from "commander";
import { addApiOptions, ApiClient, type ApiOptions } from "../api-client.ts";
import { action, printJson } from "../output.ts";
import { type ReviewJson, reviewDetail } from "./view.ts";

export function register(reviews: Command): void {
  addApiOptions(reviews.command("show").description("show one review in full").argument("<id>", "review id"))
    .option("--json", "print JSON")
    .action(
      action(async (id: string, o: ApiOptions & { json?: boolean }) => {
        const r = await new ApiClient(o).request<ReviewJson>("GET", `/api/v1/reviews/${encodeURIComponent(id)}`);
        if (o.json) printJson(r);
        else process.stdout.write(`${reviewDetail(r)}\n`);
      }),
    );
}

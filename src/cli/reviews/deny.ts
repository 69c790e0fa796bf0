// `gatehouse reviews deny ID --reason …`: deny; the waiting client sees the reason.

import type { Command } from "commander";
import { addApiOptions, ApiClient, type ApiOptions } from "../api-client.ts";
import { action, printJson } from "../output.ts";
import type { ReviewJson } from "./view.ts";

export function register(reviews: Command): void {
  addApiOptions(reviews.command("deny").description("deny a pending review").argument("<id>", "review id"))
    .requiredOption("--reason <text>", "why; the requester sees it")
    .option("--json", "print the review as JSON")
    .action(
      action(async (id: string, o: ApiOptions & { reason: string; json?: boolean }) => {
        const r = await new ApiClient(o).request<ReviewJson>("POST", `/api/v1/reviews/${encodeURIComponent(id)}/deny`, { reason: o.reason });
        if (o.json) printJson(r);
        else process.stdout.write(`review ${r.id} denied\n`);
      }),
    );
}

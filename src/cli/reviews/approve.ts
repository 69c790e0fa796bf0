// `gatehouse reviews approve ID`: vote to approve with your own (human) token.

import type { Command } from "commander";
import { addApiOptions, ApiClient, type ApiOptions } from "../api-client.ts";
import { action, printJson } from "../output.ts";
import type { ReviewJson } from "./view.ts";

export function register(reviews: Command): void {
  addApiOptions(reviews.command("approve").description("approve a pending review").argument("<id>", "review id"))
    .option("--comment <text>", "a note for the audit trail")
    .option("--json", "print the review as JSON")
    .action(
      action(async (id: string, o: ApiOptions & { comment?: string; json?: boolean }) => {
        const r = await new ApiClient(o).request<ReviewJson>("POST", `/api/v1/reviews/${encodeURIComponent(id)}/approve`, o.comment ? { comment: o.comment } : {});
        if (o.json) printJson(r);
        else {
          const approvals = r.votes.filter((v) => v.verdict === "approve").length;
          process.stdout.write(r.status === "approved" ? `review ${r.id} approved; the operation is released\n` : `review ${r.id}: your approval is recorded (${approvals} of ${r.quorum})\n`);
        }
      }),
    );
}

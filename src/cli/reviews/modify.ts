// `gatehouse reviews modify ID --sql …`: replace the held statement with a corrected one. The
// gateway classifies and judges the replacement as if the requester had sent it.

import type { Command } from "commander";
import { addApiOptions, ApiClient, type ApiOptions } from "../api-client.ts";
import { action, printJson } from "../output.ts";
import type { ReviewJson } from "./view.ts";

export function register(reviews: Command): void {
  addApiOptions(reviews.command("modify").description("replace a pending review's operation (counts as your approval of the replacement)").argument("<id>", "review id"))
    .requiredOption("--sql <text>", "the statement to run instead")
    .option("--comment <text>", "why; recorded in the audit trail")
    .option("--json", "print the review as JSON")
    .action(
      action(async (id: string, o: ApiOptions & { sql: string; comment?: string; json?: boolean }) => {
        const r = await new ApiClient(o).request<ReviewJson>("POST", `/api/v1/reviews/${encodeURIComponent(id)}/modify`, { sql: o.sql, ...(o.comment ? { comment: o.comment } : {}) });
        if (o.json) printJson(r);
        else process.stdout.write(r.status === "approved" ? `review ${r.id} modified and approved; the replacement runs\n` : `review ${r.id} modified; it needs ${r.quorum - 1} more approval(s)\n`);
      }),
    );
}

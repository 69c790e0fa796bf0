// `gatehouse sessions show ID`: the session and its operations with their decisions.

import type { Command } from "commander";
import type { SessionOperation, SessionView } from "../../recording/read.ts";
import { addApiOptions, ApiClient, type ApiOptions } from "../api-client.ts";
import { action, printJson } from "../output.ts";
import { table } from "../table.ts";
import { formatBytes } from "./view.ts";

export function register(sessions: Command): void {
  addApiOptions(sessions.command("show").argument("<id>", "session id").description("show a session and every operation with its decision"))
    .option("--json", "print JSON")
    .action(
      action(async (id: string, o: ApiOptions & { json?: boolean }) => {
        const res = await new ApiClient(o).request<{ session: SessionView; operations: SessionOperation[] }>("GET", `/api/v1/sessions/${encodeURIComponent(id)}`);
        if (o.json) return printJson(res);
        const s = res.session;
        const lines = [
          `session     ${s.id}`,
          `principal   ${s.principal.name} (${s.principal.subject})`,
          `connection  ${s.connection} (${s.protocol}) from ${s.client ?? "?"}`,
          `started     ${s.startedAt}`,
          `ended       ${s.endedAt ?? "-"}  ${s.status}${s.endReason ? `: ${s.endReason}` : ""}`,
          `recording   ${s.recording.status}, ${formatBytes(s.recording.bytes)}${s.recording.storage ? ` in the ${s.recording.storage}` : ""}`,
          "",
        ];
        const ops = res.operations.filter((e) => e.type !== "session.started" && e.type !== "session.ended");
        lines.push(
          ops.length
            ? table(
                ["#", "TIME", "EVENT", "DECISION", "RULE", "OPERATION"],
                ops.map((e) => [String(e.seq), e.at.slice(11, 23), e.type, e.decision ?? "", e.rule ?? "", String(e.data.text ?? e.data.reviewId ?? "")]),
                80,
              )
            : "no operations",
        );
        process.stdout.write(`${lines.join("\n")}\n`);
      }),
    );
}

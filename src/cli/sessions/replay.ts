// `gatehouse sessions replay ID`: the conversation decoded — each statement with its decision,
// result rows, errors and notices, and timings. Streams, so long sessions start printing at once.

import type { Command } from "commander";
import type { ReplayItem } from "../../recording/postgres-replay.ts";
import type { SessionView } from "../../recording/read.ts";
import { renderItem } from "../../recording/render.ts";
import { addApiOptions, ApiClient, type ApiOptions } from "../api-client.ts";
import { action } from "../output.ts";

type Line = { type: "session"; session: SessionView } | ReplayItem | { error: { code: string; title: string; detail: string | null } };

export function register(sessions: Command): void {
  addApiOptions(sessions.command("replay").argument("<id>", "session id").description("replay a recorded session: statements, decisions, rows, errors, timings"))
    .option("--max-rows <n>", "rows shown per result (the rest are counted)", "100")
    .option("--json", "print the decoded items as JSON Lines")
    .action(
      action(async (id: string, o: ApiOptions & { maxRows: string; json?: boolean }) => {
        const api = new ApiClient(o);
        let start = 0;
        for await (const item of api.lines<Line>(`/api/v1/sessions/${encodeURIComponent(id)}/replay?maxRows=${Number(o.maxRows) || 0}`)) {
          if (o.json) {
            process.stdout.write(`${JSON.stringify(item)}\n`);
            continue;
          }
          if ("error" in item) {
            process.stdout.write(`-- the recording could not be read further: ${item.error.code} ${item.error.title}${item.error.detail ? `: ${item.error.detail}` : ""}\n`);
            process.exitCode = 2;
            continue;
          }
          if (item.type === "session") {
            const s = item.session;
            start = Date.parse(s.startedAt);
            process.stdout.write(`-- session ${s.id}: ${s.principal.name} on ${s.connection}, ${s.startedAt} → ${s.endedAt ?? "(open)"} ${s.status}; recording ${s.recording.status}\n`);
            continue;
          }
          process.stdout.write(`${renderItem(item, start).join("\n")}\n`);
        }
      }),
    );
}
